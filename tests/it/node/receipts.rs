//! Receipts and proofs: every read response names its audit event, whose inclusion proof against
//! a signed checkpoint proves what was served, to whom and why; and who may see it.

use exchange_core::identity::Role;
use exchange_core::ledger::{AuditEvent, Decision};
use exchange_core::tlog::{self, LogVerifier, ProofFile};
use exchange_proto::node::v1 as npb;
use tonic::Code;

use super::*;
use crate::harness::*;

/// The digest a receipt names: each record's JSON followed by a newline.
fn digest(jsons: &[&[u8]]) -> String {
    let mut all = Vec::new();
    for json in jsons {
        all.extend_from_slice(json);
        all.push(b'\n');
    }
    exchange_core::ledger::hex(
        &ring::digest::digest(&ring::digest::SHA256, &all)
            .as_ref()
            .try_into()
            .unwrap(),
    )
}

async fn node_vkey(node: &TestNode, ex: &TestExchange) -> LogVerifier {
    let mut owner = node.client(ex, "js.gongan", Role::System).await;
    let status = owner.status(npb::StatusRequest {}).await.unwrap().into_inner();
    LogVerifier::parse(&status.log_vkey).unwrap()
}

#[tokio::test]
async fn a_receipt_proves_the_bytes_a_consumer_received_and_no_others() {
    let (ex, node, keys, grant) = setup().await;
    let vkey = node_vkey(&node, &ex).await;
    assert_eq!(vkey.name(), "exchange.test/node/js.gongan");
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let reply = consumer
        .get(get(&keys, &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner();
    let receipt = reply.receipt.clone().expect("a receipt");
    assert_eq!(receipt.node, "js.gongan");
    let served: Vec<&[u8]> = reply.records.iter().map(|r| r.json.as_slice()).collect();
    assert_eq!(served.len(), 2, "the row filter hides the third");
    assert_eq!(receipt.served_sha256, digest(&served));

    // The consumer fetches its event's proof and checks it offline with the node's key.
    let proof = consumer
        .prove_event(npb::ProveEventRequest { index: receipt.index })
        .await
        .unwrap()
        .into_inner();
    let file = ProofFile::parse(&proof.proof_file).unwrap();
    let checkpoint = file.verify(&vkey).unwrap();
    assert!(checkpoint.size > receipt.index, "signed at once for the receipt");
    assert_eq!(file.leaf, proof.event);
    let event: AuditEvent = serde_json::from_slice(&file.leaf).unwrap();
    assert_eq!(
        (
            event.department.as_str(),
            event.decision,
            event.grant_id.as_str(),
            event.purpose.as_str()
        ),
        ("js.scjg", Decision::Allow, grant.as_str(), "business-licensing")
    );
    assert_eq!(event.served_sha256, receipt.served_sha256);
    assert_eq!(event.keys, keys[..2]);
    // The proof's parts agree with its file.
    let hashes: Vec<Vec<u8>> = file.proof.iter().map(|h| h.0.to_vec()).collect();
    assert_eq!(proof.proof, hashes);
    let signed = proof.checkpoint.unwrap();
    tlog::verify_inclusion(
        receipt.index,
        signed.size,
        &tlog::leaf_hash(&proof.event).0,
        &proof.proof,
        &signed.root,
    )
    .unwrap();

    // Any other bytes: another digest than the one proved.
    let mut altered = reply.records[0].json.clone();
    altered[3] ^= 1;
    assert_ne!(digest(&[&altered, served[1]]), event.served_sha256);
    // And the event cannot be swapped for another: its proof is for its bytes only.
    let mut forged = file.clone();
    forged.leaf = serde_json::to_vec(&AuditEvent {
        served_sha256: digest(&[&altered, served[1]]),
        ..event
    })
    .unwrap();
    assert!(forged.verify(&vkey).is_err());
}

#[tokio::test]
async fn each_query_message_has_its_own_receipt_and_denials_have_none() {
    let (ex, node, _keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut stream = consumer.query(query(0, "")).await.unwrap().into_inner();
    let message = stream.message().await.unwrap().unwrap();
    let receipt = message.receipt.expect("a receipt");
    let served: Vec<&[u8]> = message.records.iter().map(|r| r.json.as_slice()).collect();
    assert_eq!(receipt.served_sha256, digest(&served));
    let again = consumer
        .query(query(0, ""))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.receipt.unwrap().index, receipt.index + 1, "one event per message");
    assert_status(
        consumer.get(get(&[], &["age"], "business-licensing")).await,
        Code::PermissionDenied,
        "not granted",
    );
}

#[tokio::test]
async fn an_event_is_shown_to_its_reader_its_node_and_auditors_only() {
    let (ex, node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let receipt = consumer
        .get(get(&keys, &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    let ask = npb::ProveEventRequest { index: receipt.index };
    for (dept, role) in [
        ("js.gongan", Role::System),
        ("js.dsj", Role::Auditor),
        ("js.scjg", Role::Node),
    ] {
        let mut client = node.client(&ex, dept, role).await;
        client
            .prove_event(ask)
            .await
            .unwrap_or_else(|e| panic!("{dept} {role}: {e}"));
    }
    let mut stranger = node.client(&ex, "js.rsj", Role::System).await;
    assert_status(
        stranger.prove_event(ask).await,
        Code::PermissionDenied,
        "may not see this audit event",
    );
    assert_status(
        consumer.prove_event(npb::ProveEventRequest { index: 1_000_000 }).await,
        Code::NotFound,
        "there is no event 1000000",
    );
}

#[tokio::test]
async fn checkpoints_are_consistent_with_every_earlier_one() {
    let (ex, node, keys, _) = setup().await;
    let vkey = node_vkey(&node, &ex).await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    let first = consumer
        .get_checkpoint(npb::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let opened = vkey.open_checkpoint(first.note.as_bytes()).unwrap();
    assert_eq!((opened.size, opened.root.0.to_vec()), (first.size, first.root.clone()));
    for _ in 0..3 {
        consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    }
    let second = consumer
        .get_checkpoint(npb::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.size, first.size + 3, "signed on demand");
    let proof = consumer
        .prove_consistency(npb::ProveConsistencyRequest {
            old_size: first.size,
            new_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.new_size, second.size);
    assert_eq!(proof.checkpoint.unwrap().note, second.note);
    tlog::verify_consistency(first.size, second.size, &first.root, &second.root, &proof.proof).unwrap();
    assert_status(
        consumer
            .prove_consistency(npb::ProveConsistencyRequest {
                old_size: second.size + 1,
                new_size: 0,
            })
            .await,
        Code::InvalidArgument,
        "a consistency proof goes from",
    );
}

/// Go's own `sumdb/note` and `sumdb/tlog` (an implementation independent of ours) accept a
/// node's checkpoints, inclusion proofs and consistency proofs, and refuse an altered event.
/// Needs a Go toolchain and golang.org/x/mod (Debian: golang-go, golang-golang-x-mod-dev);
/// without them the check is skipped with a note, unless EXCHANGE_REQUIRE_GO=1 (as in CI).
#[tokio::test]
async fn go_accepts_our_checkpoints_and_proofs() {
    let gopath = std::env::var("EXCHANGE_GOPATH").unwrap_or_else(|_| "/usr/share/gocode".into());
    let have_go = std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let have_mod = std::path::Path::new(&gopath)
        .join("src/golang.org/x/mod/sumdb/tlog")
        .is_dir();
    if !(have_go && have_mod) {
        assert!(
            std::env::var("EXCHANGE_REQUIRE_GO").is_err(),
            "EXCHANGE_REQUIRE_GO is set but there is no go toolchain or no golang.org/x/mod in {gopath}"
        );
        eprintln!(
            "skipped: no go toolchain or no golang.org/x/mod in {gopath} (Debian: golang-go golang-golang-x-mod-dev)"
        );
        return;
    }
    let (ex, node, keys, _) = setup().await;
    let vkey = node_vkey(&node, &ex).await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    let old = consumer
        .get_checkpoint(npb::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut receipt = None;
    for _ in 0..6 {
        let reply = consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
        receipt = reply.into_inner().receipt;
    }
    let index = receipt.unwrap().index;
    let proof = consumer
        .prove_event(npb::ProveEventRequest { index })
        .await
        .unwrap()
        .into_inner();
    let consistency = consumer
        .prove_consistency(npb::ProveConsistencyRequest {
            old_size: old.size,
            new_size: proof.checkpoint.as_ref().unwrap().size,
        })
        .await
        .unwrap()
        .into_inner();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let proof_path = write("event.tlog-proof", &proof.proof_file);
    let old_path = write("old.checkpoint", &old.note);
    let hashes: Vec<String> = consistency.proof.iter().map(|h| tlog::base64(h)).collect();
    let consistency_path = write("consistency.txt", &hashes.join("\n"));
    let go = |args: &[&str]| {
        let out = std::process::Command::new("go")
            .arg("run")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/go-verify/main.go"))
            .args(args)
            .env("GO111MODULE", "off")
            .env("GOPATH", &gopath)
            .env("GOCACHE", dir.path().join("gocache"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = go(&[vkey.text(), &proof_path, &old_path, &consistency_path]);
    assert!(ok && out.trim() == "ok", "{out}");

    // The same proof with the event changed: Go refuses it too.
    let mut file = ProofFile::parse(&proof.proof_file).unwrap();
    file.leaf = String::from_utf8(file.leaf)
        .unwrap()
        .replace("\"allow\"", "\"deny\"")
        .into_bytes();
    let altered = write("altered.tlog-proof", &file.to_text());
    let (ok, out) = go(&[vkey.text(), &altered]);
    assert!(!ok && out.contains("inclusion proof"), "{out}");
}
