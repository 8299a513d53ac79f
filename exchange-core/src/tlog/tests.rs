use std::path::{Path, PathBuf};

use super::*;

/// The RFC 6962 vectors of transparency-dev/merkle (Apache-2.0, see testdata/rfc6962/LICENSE).
fn vectors(kind: &str) -> Vec<(PathBuf, serde_json::Value)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, serde_json::Value)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                let value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                out.push((path, value));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/rfc6962")
            .join(kind),
        &mut out,
    );
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.as_str().unwrap()).unwrap()
}

fn proof(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array().map(|a| a.iter().map(bytes).collect()).unwrap_or_default()
}

#[test]
fn every_inclusion_vector_passes_or_fails_as_it_should() {
    let all = vectors("inclusion");
    assert!(all.len() > 80, "vectors missing: {}", all.len());
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, v)| {
            let got = verify_inclusion(
                v["leafIdx"].as_u64().unwrap(),
                v["treeSize"].as_u64().unwrap(),
                &bytes(&v["leafHash"]),
                &proof(&v["proof"]),
                &bytes(&v["root"]),
            );
            got.is_err() != v["wantErr"].as_bool().unwrap()
        })
        .map(|(p, v)| format!("{} ({})", p.display(), v["desc"]))
        .collect();
    assert!(wrong.is_empty(), "vectors decided wrongly: {wrong:#?}");
}

#[test]
fn every_consistency_vector_passes_or_fails_as_it_should() {
    let all = vectors("consistency");
    assert!(all.len() > 80, "vectors missing: {}", all.len());
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, v)| {
            let got = verify_consistency(
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                &bytes(&v["root1"]),
                &bytes(&v["root2"]),
                &proof(&v["proof"]),
            );
            got.is_err() != v["wantErr"].as_bool().unwrap()
        })
        .map(|(p, v)| format!("{} ({})", p.display(), v["desc"]))
        .collect();
    assert!(wrong.is_empty(), "vectors decided wrongly: {wrong:#?}");
}

/// Stored hashes in memory, indexed as a log's hash file is.
#[derive(Default)]
struct Memory(Vec<Hash>);

impl HashReader for Memory {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn leaf(n: u64) -> Vec<u8> {
    format!("{{\"n\":{n}}}").into_bytes()
}

fn log(size: u64) -> Memory {
    let mut memory = Memory::default();
    for n in 0..size {
        let hashes = stored_hashes(n, &leaf(n), &memory).unwrap();
        memory.0.extend(hashes);
    }
    assert_eq!(memory.0.len() as u64, stored_hash_count(size));
    memory
}

#[test]
fn every_leaf_and_every_pair_of_sizes_is_provable() {
    let memory = log(21);
    let roots: Vec<Hash> = (0..=21).map(|n| tree_hash(n, &memory).unwrap()).collect();
    assert_eq!(roots[0], EMPTY_HASH);
    for size in 1..=21u64 {
        for index in 0..size {
            let p = prove_record(size, index, &memory).unwrap();
            let p: Vec<[u8; 32]> = p.iter().map(|h| h.0).collect();
            verify_inclusion(index, size, &leaf_hash(&leaf(index)).0, &p, &roots[size as usize].0).unwrap();
            // Another leaf, another index or another root: refused.
            assert!(verify_inclusion(index, size, &leaf_hash(b"other").0, &p, &roots[size as usize].0).is_err());
            assert!(
                verify_inclusion(index, size, &leaf_hash(&leaf(index)).0, &p, &roots[size as usize - 1].0).is_err()
            );
        }
        for old in 1..=size {
            let p = prove_tree(size, old, &memory).unwrap();
            let p: Vec<[u8; 32]> = p.iter().map(|h| h.0).collect();
            verify_consistency(old, size, &roots[old as usize].0, &roots[size as usize].0, &p).unwrap();
            if old < size {
                let forked = leaf_hash(b"forked").0;
                assert!(verify_consistency(old, size, &forked, &roots[size as usize].0, &p).is_err());
            }
        }
    }
}

#[test]
fn a_checkpoint_opens_with_its_key_only() {
    let (key, text) = LogKey::generate("exchange.test/node/js.gongan").unwrap();
    assert!(text.starts_with("PRIVATE+KEY+exchange.test/node/js.gongan+"));
    assert_eq!(LogKey::from_text(&text).unwrap().vkey(), key.vkey());
    assert!(key.vkey().starts_with("exchange.test/node/js.gongan+"));

    let memory = log(5);
    let checkpoint = key.sign_checkpoint(5, tree_hash(5, &memory).unwrap()).unwrap();
    let body = format!("exchange.test/node/js.gongan\n5\n{}\n\n", base64(&checkpoint.root.0));
    assert!(checkpoint.note.starts_with(&body), "{}", checkpoint.note);
    assert!(checkpoint.note.contains("\n— exchange.test/node/js.gongan "));
    assert_eq!(
        key.verifier().open_checkpoint(checkpoint.note.as_bytes()).unwrap(),
        checkpoint
    );

    // Another key of the same name, a changed size, a changed signature: refused.
    let (other, _) = LogKey::generate("exchange.test/node/js.gongan").unwrap();
    assert!(other.verifier().open_checkpoint(checkpoint.note.as_bytes()).is_err());
    let resized = checkpoint.note.replacen("\n5\n", "\n6\n", 1);
    assert!(key.verifier().open_checkpoint(resized.as_bytes()).is_err());
    let mut flipped = checkpoint.note.clone().into_bytes();
    let last = flipped.len() - 3;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    assert!(key.verifier().open_checkpoint(&flipped).is_err());

    // A key signs only checkpoints of its own origin.
    let (elsewhere, _) = LogKey::generate("exchange.test/node/js.scjg").unwrap();
    let theirs = elsewhere.sign_checkpoint(5, checkpoint.root).unwrap();
    assert!(key.verifier().open_checkpoint(theirs.note.as_bytes()).is_err());
    assert!(LogKey::generate("has space").is_err());
    assert!(LogKey::from_text("PRIVATE+KEY+x+00000000+AAAA").is_err());
}

#[test]
fn the_signed_note_example_of_the_spec_opens() {
    // From C2SP signed-note: the example key and its signature of the example message.
    let vkey = LogVerifier::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
    let note = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    assert_eq!(
        vkey.open_note(note.as_bytes()).unwrap(),
        b"This is an example message.\n"
    );
    assert!(vkey
        .open_note(note.replace("example message", "exemplary message").as_bytes())
        .is_err());
}

#[test]
fn a_proof_file_proves_its_leaf_and_any_altered_byte_fails() {
    let (key, _) = LogKey::generate("exchange.test/node/js.gongan").unwrap();
    let memory = log(13);
    let checkpoint = key.sign_checkpoint(13, tree_hash(13, &memory).unwrap()).unwrap();
    let file = ProofFile {
        leaf: leaf(6),
        index: 6,
        proof: prove_record(13, 6, &memory).unwrap(),
        checkpoint: checkpoint.note.clone(),
    };
    let text = file.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
    assert!(text.contains("\nindex 6\n"));
    let parsed = ProofFile::parse(&text).unwrap();
    assert_eq!(parsed, file);
    assert_eq!(parsed.verify(&key.verifier()).unwrap(), checkpoint);

    // Flip every byte in turn (each to another character of the same kind, so the file still
    // parses where it can): not one altered file verifies.
    let mut accepted = Vec::new();
    for i in 0..text.len() {
        let mut altered = text.clone().into_bytes();
        altered[i] = match altered[i] {
            b'\n' => b' ',
            b'A' => b'B',
            b'0'..=b'8' => altered[i] + 1,
            b'9' => b'0',
            b'a'..=b'y' | b'A'..=b'Y' => altered[i] + 1,
            b'z' | b'Z' => altered[i] - 1,
            _ => b'x',
        };
        let Ok(altered) = String::from_utf8(altered) else {
            continue;
        };
        if ProofFile::parse(&altered)
            .and_then(|p| p.verify(&key.verifier()))
            .is_ok()
        {
            accepted.push(i);
        }
    }
    assert!(accepted.is_empty(), "altered at {accepted:?} and still accepted");
}

#[test]
fn a_frontier_grows_the_same_tree_and_round_trips_as_text() {
    let memory = log(37);
    let mut frontier = Frontier::default();
    for n in 0..37u64 {
        let stored = frontier.push(leaf_hash(&leaf(n)));
        assert_eq!(stored, stored_hashes(n, &leaf(n), &memory).unwrap());
        assert_eq!(frontier.root(), tree_hash(n + 1, &memory).unwrap());
        assert_eq!(Frontier::read(n + 1, &memory).unwrap(), frontier);
        assert_eq!(Frontier::from_text(&frontier.to_text()).unwrap(), frontier);
    }
    assert!(Frontier::from_text("38 0:AAAA").is_err());
    let text = frontier.to_text();
    assert!(
        Frontier::from_text(&text.replacen("37 ", "36 ", 1)).is_err(),
        "another size, other nodes"
    );
}
