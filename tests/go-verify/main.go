// Checks the exchange's audit ledger formats with Go's own implementations of the standards
// (golang.org/x/mod/sumdb/note and sumdb/tlog), independent of the exchange's Rust code.
//
//	go run main.go VKEY PROOF_FILE [OLD_CHECKPOINT CONSISTENCY_PROOF_FILE]
//
// PROOF_FILE is a C2SP tlog-proof file (the leaf in its extra line). With OLD_CHECKPOINT (a
// signed note) and CONSISTENCY_PROOF_FILE (one base64 hash a line), also checks that the proof
// file's checkpoint extends the old one. Prints "ok" and exits 0 when everything verifies.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func hash(line string) tlog.Hash {
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil || len(b) != tlog.HashSize {
		fail("not a base64 hash: %q", line)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

func open(verifier note.Verifier, signed []byte) tlog.Tree {
	n, err := note.Open(signed, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint does not open: %v", err)
	}
	// A C2SP checkpoint body: origin, size, base64 root, each on its own line. (tlog.ParseTree
	// reads the go.sum database's older form, whose first line is fixed, so it is parsed here.)
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" || lines[0] != verifier.Name() {
		fail("checkpoint body is not origin, size, root: %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(size, 10) != lines[1] {
		fail("checkpoint size: %q", lines[1])
	}
	return tlog.Tree{N: size, Hash: hash(lines[2])}
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 5 {
		fail("usage: go run main.go VKEY PROOF_FILE [OLD_CHECKPOINT CONSISTENCY_PROOF_FILE]")
	}
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fail("verifier key: %v", err)
	}
	text, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	head, checkpoint, found := bytes.Cut(text, []byte("\n\n"))
	if !found {
		fail("no blank line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "extra ") || !strings.HasPrefix(lines[2], "index ") {
		fail("not a tlog-proof file with an extra line")
	}
	leaf, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], "extra "))
	if err != nil {
		fail("extra: %v", err)
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[2], "index "), 10, 64)
	if err != nil {
		fail("index: %v", err)
	}
	var proof tlog.RecordProof
	for _, line := range lines[3:] {
		proof = append(proof, hash(line))
	}
	tree := open(verifier, checkpoint)
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, tlog.RecordHash(leaf)); err != nil {
		fail("inclusion proof: %v", err)
	}
	if len(os.Args) == 5 {
		old, err := os.ReadFile(os.Args[3])
		if err != nil {
			fail("%v", err)
		}
		oldTree := open(verifier, old)
		file, err := os.Open(os.Args[4])
		if err != nil {
			fail("%v", err)
		}
		var consistency tlog.TreeProof
		scanner := bufio.NewScanner(file)
		for scanner.Scan() {
			if scanner.Text() != "" {
				consistency = append(consistency, hash(scanner.Text()))
			}
		}
		if err := tlog.CheckTree(consistency, tree.N, tree.Hash, oldTree.N, oldTree.Hash); err != nil {
			fail("consistency proof: %v", err)
		}
	}
	fmt.Println("ok")
}
