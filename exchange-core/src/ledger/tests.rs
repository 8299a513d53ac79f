use std::path::Path;

use super::log::{CHECKPOINT, EVENTS, HASHES, OFFSETS};
use super::*;
use crate::tlog::{self, LogKey};

/// An event as a node writes one (`n` makes each different).
pub(crate) fn event(n: u64) -> AuditEvent {
    AuditEvent {
        time_ms: 1_800_000_000_000 + n as i64,
        node: "js.gongan".into(),
        principal: "spiffe://exchange.test/dept/js.scjg/system".into(),
        department: "js.scjg".into(),
        operation: "get".into(),
        dataset: "js.gongan/population".into(),
        schema_version: 1,
        fields: vec!["id_number".into(), "name".into()],
        keys: vec![format!("key-{n}")],
        count: 1,
        purpose: "business-licensing".into(),
        case_id: String::new(),
        decision: Decision::Allow,
        reason: "grant g-000001".into(),
        grant_id: "g-000001".into(),
        served_sha256: String::new(),
        withheld_until: 0,
    }
}

fn key() -> LogKey {
    LogKey::generate("exchange.test/node/js.gongan").unwrap().0
}

fn commit(ledger: &mut Ledger, events: std::ops::Range<u64>) -> std::ops::Range<u64> {
    let mut group = ledger.begin().unwrap();
    let all: Vec<_> = events.map(event).collect();
    group.stage(&all).unwrap();
    ledger.commit(group).unwrap()
}

/// A ledger of `n` events in `dir` with a checkpoint over all of them.
fn signed_ledger(dir: &Path, n: u64, key: &LogKey) -> Ledger {
    let mut ledger = Ledger::open(dir, key.clone()).unwrap();
    commit(&mut ledger, 0..n);
    ledger.checkpoint().unwrap();
    ledger
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(EVENTS))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    std::fs::write(
        dir.join(EVENTS),
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn leaves_are_the_events_lines_and_commits_number_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path(), key()).unwrap();
    assert_eq!(commit(&mut ledger, 0..3), 0..3);
    assert_eq!(commit(&mut ledger, 3..5), 3..5);
    let text = lines(dir.path());
    assert_eq!(text.len(), 5);
    assert_eq!(text[3].as_bytes(), encode(&event(3)).unwrap());
    let reader = ledger.reader().unwrap();
    assert_eq!(
        reader.leaves(1, 2).unwrap(),
        vec![encode(&event(1)).unwrap(), encode(&event(2)).unwrap()]
    );
    assert_eq!(reader.leaves(4, 10).unwrap().len(), 1);
    assert!(reader.leaves(5, 10).unwrap().is_empty());
}

#[test]
fn checkpoints_and_proofs_verify_with_the_log_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let mut ledger = Ledger::open(dir.path(), key.clone()).unwrap();
    commit(&mut ledger, 0..7);
    assert!(ledger.checkpoint_due());
    let first = ledger.checkpoint().unwrap();
    assert!(!ledger.checkpoint_due());
    assert_eq!(ledger.checkpoint().unwrap(), first, "nothing new: the same checkpoint");
    commit(&mut ledger, 7..20);
    let second = ledger.checkpoint().unwrap();
    assert_eq!((first.size, second.size), (7, 20));

    let reader = ledger.reader().unwrap();
    let verifier = key.verifier();
    assert_eq!(verifier.open_checkpoint(second.note.as_bytes()).unwrap(), second);
    assert_eq!(reader.checkpoint(), Some(second.clone()));
    assert_eq!(reader.root(), second.root);
    for index in 0..20 {
        let proof: Vec<_> = reader.inclusion_proof(index, 20).unwrap().iter().map(|h| h.0).collect();
        let leaf = tlog::leaf_hash(&encode(&event(index)).unwrap());
        tlog::verify_inclusion(index, 20, &leaf.0, &proof, &second.root.0).unwrap();
        let file = reader.proof_file(index, &second).unwrap();
        assert_eq!(file.verify(&verifier).unwrap(), second);
    }
    let proof: Vec<_> = reader.consistency_proof(7, 20).unwrap().iter().map(|h| h.0).collect();
    tlog::verify_consistency(7, 20, &first.root.0, &second.root.0, &proof).unwrap();
    assert_eq!(reader.root_at(7).unwrap(), first.root);
    assert!(matches!(reader.inclusion_proof(3, 21), Err(LedgerError::OutOfRange(_))));
    assert!(matches!(
        reader.consistency_proof(0, 20),
        Err(LedgerError::OutOfRange(_))
    ));
}

#[test]
fn reopening_recovers_the_size_and_cuts_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let root = {
        let mut ledger = signed_ledger(dir.path(), 5, &key);
        commit(&mut ledger, 5..8); // after the checkpoint: hashes re-derived at open
        ledger.reader().unwrap().root()
    };
    // A crash mid-append leaves half a line, never acknowledged.
    let mut events = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(EVENTS))
        .unwrap();
    std::io::Write::write_all(&mut events, b"{\"time_ms\":1,\"no").unwrap();
    let mut ledger = Ledger::open(dir.path(), key.clone()).unwrap();
    assert_eq!(ledger.size(), 8);
    assert_eq!(
        ledger.recovered(),
        Recovered {
            cut_bytes: 16,
            rederived: 3
        }
    );
    assert_eq!(ledger.reader().unwrap().root(), root);
    assert_eq!(commit(&mut ledger, 8..9), 8..9);
    assert_eq!(lines(dir.path()).len(), 9);
}

#[test]
fn lost_derived_files_are_derived_again() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let checkpoint = signed_ledger(dir.path(), 40, &key).checkpoint().unwrap();
    std::fs::remove_file(dir.path().join(HASHES)).unwrap();
    std::fs::remove_file(dir.path().join(OFFSETS)).unwrap();
    let ledger = Ledger::open(dir.path(), key.clone()).unwrap();
    assert_eq!(ledger.recovered().rederived, 40);
    let reader = ledger.reader().unwrap();
    assert_eq!(reader.root(), checkpoint.root);
    let file = reader.proof_file(33, &checkpoint).unwrap();
    file.verify(&key.verifier()).unwrap();
}

#[test]
fn a_ledger_cut_below_its_checkpoint_is_refused_at_open_and_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    drop(signed_ledger(dir.path(), 6, &key));
    let all = lines(dir.path());
    write_lines(dir.path(), &all[..4]);
    let err = Ledger::open(dir.path(), key.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("cut off the end") && err.contains("covers 6 entries, the file holds 4"),
        "{err}"
    );
    let err = verify_dir(dir.path(), &key.verifier()).unwrap_err().to_string();
    assert!(err.contains("ledger entry 4: cut off the end"), "{err}");
}

#[test]
fn a_checkpoint_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    drop(signed_ledger(dir.path(), 3, &key));
    let other = self::key();
    let err = Ledger::open(dir.path(), other.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("did not sign"), "{err}");
    let err = verify_dir(dir.path(), &other.verifier()).unwrap_err().to_string();
    assert!(err.contains("another key signed it"), "{err}");
}

#[test]
fn verify_names_the_first_changed_dropped_swapped_or_inserted_entry() {
    let key = key();
    let check = |alter: &dyn Fn(&mut Vec<String>), index: u64, what: &str| {
        let dir = tempfile::tempdir().unwrap();
        drop(signed_ledger(dir.path(), 10, &key));
        assert_eq!(verify_dir(dir.path(), &key.verifier()).unwrap().size, 10);
        let mut all = lines(dir.path());
        alter(&mut all);
        write_lines(dir.path(), &all);
        let err = verify_dir(dir.path(), &key.verifier()).unwrap_err();
        let LedgerError::Tampered { error, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(error.index, index, "{err}");
        assert!(error.why.contains(what), "{what}: {err}");
    };
    check(&|l| l[3] = l[3].replace("\"get\"", "\"query\""), 3, "changed");
    check(&|l| drop(l.remove(5)), 5, "dropped");
    check(&|l| l.swap(2, 3), 2, "swapped with entry 3");
    check(
        &|l| l.insert(7, String::from_utf8(encode(&event(99)).unwrap()).unwrap()),
        7,
        "inserted",
    );
    check(&|l| l.truncate(9), 9, "cut off the end");
    check(&|l| l[0] = "not json".into(), 0, "not an audit event");
}

#[test]
fn a_rewritten_hash_file_is_found_out() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    drop(signed_ledger(dir.path(), 10, &key));
    // The events intact, the derived hashes damaged: the node's proofs would fail.
    let mut hashes = std::fs::read(dir.path().join(HASHES)).unwrap();
    hashes[5 * 32] ^= 1;
    std::fs::write(dir.path().join(HASHES), &hashes).unwrap();
    let err = verify_dir(dir.path(), &key.verifier()).unwrap_err().to_string();
    assert!(err.contains("hash file does not"), "{err}");

    // An entry changed and the hash file recomputed to match it: detected, not locatable here.
    let mut all = lines(dir.path());
    all[4] = all[4].replace("\"allow\"", "\"deny\"");
    write_lines(dir.path(), &all);
    std::fs::remove_file(dir.path().join(HASHES)).unwrap();
    std::fs::remove_file(dir.path().join(OFFSETS)).unwrap();
    std::fs::rename(dir.path().join(CHECKPOINT), dir.path().join("kept")).unwrap();
    drop(Ledger::open(dir.path(), key.clone()).unwrap());
    std::fs::rename(dir.path().join("kept"), dir.path().join(CHECKPOINT)).unwrap();
    let err = verify_dir(dir.path(), &key.verifier()).unwrap_err().to_string();
    assert!(err.contains("cannot be located here"), "{err}");
    let err = Ledger::open(dir.path(), key.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("does not have the root its signed checkpoint"), "{err}");
}

#[test]
fn a_group_is_staged_whole_and_a_stale_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path(), key()).unwrap();
    let mut early = ledger.begin().unwrap();
    early.stage(&[event(1)]).unwrap();
    assert!(!early.is_empty());
    commit(&mut ledger, 0..1);
    let err = ledger.commit(early).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Stale {
                begun_at: 0,
                size: 1,
                ..
            }
        ),
        "{err}"
    );
    commit(&mut ledger, 1..2);
    assert_eq!(lines(dir.path()).len(), 2);
}

#[test]
fn after_a_failed_write_nothing_more_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    // Every write to /dev/full fails with "no space left on device".
    std::os::unix::fs::symlink("/dev/full", dir.path().join(EVENTS)).unwrap();
    let mut ledger = Ledger::open(dir.path(), key()).unwrap();
    let mut group = ledger.begin().unwrap();
    group.stage(&[event(1)]).unwrap();
    let err = ledger.commit(group).unwrap_err();
    assert!(matches!(err, LedgerError::Broken { .. }), "{err}");
    assert!(
        err.to_string().contains("refused until the server is restarted"),
        "{err}"
    );
    assert_eq!(ledger.size(), 0);
    assert!(matches!(ledger.begin(), Err(LedgerError::Broken { .. })));
}

#[test]
fn the_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let _umask = crate::testing::UMASK.lock().unwrap_or_else(|p| p.into_inner());
    // The common umask, under which other files are created readable by all.
    let before = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().unwrap();
    let opened = Ledger::open(&dir.path().join("ledger"), key()).map(|mut l| {
        commit(&mut l, 0..1);
        l.checkpoint().unwrap();
    });
    let key_path = dir.path().join("log.key");
    let key_made = LogKey::load_or_create(&key_path, "exchange.test/node/js.gongan");
    std::fs::write(dir.path().join("other"), b"x").unwrap();
    rustix::process::umask(before);
    opened.unwrap();
    key_made.unwrap();
    let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("other"), 0o644, "the umask was 022");
    assert_eq!(mode("ledger"), 0o700);
    for file in [EVENTS, HASHES, OFFSETS, CHECKPOINT] {
        assert_eq!(mode(&format!("ledger/{file}")), 0o600, "{file}");
    }
    assert_eq!(mode("log.key"), 0o600);
}

#[test]
fn a_log_key_is_created_once_and_must_name_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.key");
    let (made, created) = LogKey::load_or_create(&path, "exchange.test/node/js.gongan").unwrap();
    assert!(created);
    let (loaded, created) = LogKey::load_or_create(&path, "exchange.test/node/js.gongan").unwrap();
    assert!(!created);
    assert_eq!(loaded.vkey(), made.vkey());
    let err = LogKey::load_or_create(&path, "exchange.test/node/js.scjg")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot change its name"), "{err}");
}

#[test]
fn a_first_form_ledger_migrates_into_the_log_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("audit.ledger");
    let old: Vec<_> = (0..4).map(event).collect();
    std::fs::write(&legacy, v1::write(&old)).unwrap();
    let stored = v1::read_events(&legacy).unwrap();
    let key = key();
    let mut ledger = Ledger::open(&dir.path().join("ledger"), key.clone()).unwrap();
    assert_eq!(ledger.migrate_v1(&legacy).unwrap(), Some(4));
    assert!(!legacy.exists());
    assert!(dir.path().join("audit.ledger.migrated").exists());
    assert_eq!(ledger.migrate_v1(&legacy).unwrap(), None);
    let reader = ledger.reader().unwrap();
    assert_eq!(reader.leaves(0, 10).unwrap(), stored);
    let checkpoint = reader.checkpoint().expect("signed at migration");
    assert_eq!(checkpoint.size, 4);
    commit(&mut ledger, 4..6);
    drop(ledger);
    assert_eq!(verify_dir(&dir.path().join("ledger"), &key.verifier()).unwrap().size, 6);
}

#[test]
fn pruning_frees_old_entries_and_keeps_the_rest_provable() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let mut ledger = Ledger::open(dir.path(), key.clone()).unwrap();
    // Big events, so the freed space is whole filesystem blocks.
    let big = |n: u64| AuditEvent {
        reason: "x".repeat(4000),
        ..event(n)
    };
    let mut group = ledger.begin().unwrap();
    group.stage(&(0..40).map(big).collect::<Vec<_>>()).unwrap();
    ledger.commit(group).unwrap();
    let early = ledger.checkpoint().unwrap();
    let blocks_before = std::fs::metadata(dir.path().join(EVENTS)).unwrap().blocks();

    // Only signed entries, never the last signed one: asking for more prunes 39 of 40.
    assert_eq!(ledger.prune(1000).unwrap(), 39);
    assert_eq!(ledger.prune(10).unwrap(), 39, "pruning never goes back");
    commit(&mut ledger, 40..45);
    let late = ledger.checkpoint().unwrap();
    let reader = ledger.reader().unwrap();
    assert!(
        std::fs::metadata(dir.path().join(EVENTS)).unwrap().blocks() < blocks_before / 4,
        "the space is freed"
    );
    assert!(matches!(reader.leaves(10, 1), Err(LedgerError::OutOfRange(_))));
    assert_eq!(reader.pruned(), 39);

    // The rest is provable against both checkpoints, and the two are consistent.
    for index in 39..45 {
        reader
            .proof_file(index, &late)
            .unwrap()
            .verify(&key.verifier())
            .unwrap();
    }
    let proof: Vec<_> = reader
        .consistency_proof(early.size, late.size)
        .unwrap()
        .iter()
        .map(|h| h.0)
        .collect();
    tlog::verify_consistency(early.size, late.size, &early.root.0, &late.root.0, &proof).unwrap();
    // A pruned entry's inclusion is still provable from the hashes, by anyone who kept it.
    let kept = encode(&big(5)).unwrap();
    let proof: Vec<_> = reader
        .inclusion_proof(5, late.size)
        .unwrap()
        .iter()
        .map(|h| h.0)
        .collect();
    tlog::verify_inclusion(5, late.size, &tlog::leaf_hash(&kept).0, &proof, &late.root.0).unwrap();

    // Reopening and verifying offline both work on the pruned ledger.
    drop(reader);
    drop(ledger);
    let ledger = Ledger::open(dir.path(), key.clone()).unwrap();
    assert_eq!((ledger.size(), ledger.pruned()), (45, 39));
    let (verified, entries) = read_verified(dir.path(), &key.verifier()).unwrap();
    assert_eq!((verified.size, verified.pruned), (45, 39));
    assert_eq!(entries.first().map(|e| e.index), Some(39));
    assert_eq!(entries.len(), 6);
    // A changed entry after the pruned ones is still found.
    drop(ledger);
    let text = std::fs::read(dir.path().join(EVENTS)).unwrap();
    let at = text.windows(6).rposition(|w| w == b"key-42").unwrap();
    let mut changed = text.clone();
    changed[at + 5] = b'9';
    std::fs::write(dir.path().join(EVENTS), &changed).unwrap();
    let err = verify_dir(dir.path(), &key.verifier()).unwrap_err().to_string();
    assert!(err.contains("ledger entry 42: changed"), "{err}");
}

#[test]
fn an_event_view_reads_what_an_event_reads_and_refuses_what_it_refuses() {
    let mut escaped = event(7);
    escaped.reason = "quoted \"reason\"\nwith a line break".into();
    escaped.keys.push("键\\2".into());
    escaped.withheld_until = 1_900_000_000;
    for event in [event(1), escaped] {
        let bytes = encode(&event).unwrap();
        let view = EventView::parse(&bytes).unwrap();
        assert_eq!(
            (
                view.time_ms,
                &*view.node,
                &*view.department,
                &*view.dataset,
                view.decision
            ),
            (
                event.time_ms,
                &*event.node,
                &*event.department,
                &*event.dataset,
                event.decision
            )
        );
        assert_eq!(
            (&*view.reason, &*view.grant_id, view.withheld_until),
            (&*event.reason, &*event.grant_id, event.withheld_until)
        );
        assert_eq!(view.keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(), event.keys);
    }
    let good: serde_json::Value = serde_json::from_slice(&encode(&event(1)).unwrap()).unwrap();
    let mut cases = vec![b"{}".to_vec(), b"[1]".to_vec(), b"{\"time_ms\":".to_vec()];
    for field in ["time_ms", "keys", "decision", "served_sha256"] {
        let mut without = good.clone();
        without.as_object_mut().unwrap().remove(field);
        cases.push(serde_json::to_vec(&without).unwrap());
        let mut wrong = good.clone();
        wrong[field] = serde_json::json!({"not": "this"});
        cases.push(serde_json::to_vec(&wrong).unwrap());
    }
    let mut undecided = good.clone();
    undecided["decision"] = "maybe".into();
    cases.push(serde_json::to_vec(&undecided).unwrap());
    for bytes in cases {
        let owned = serde_json::from_slice::<AuditEvent>(&bytes).is_ok();
        assert_eq!(
            EventView::parse(&bytes).is_ok(),
            owned,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn digests_are_written_as_lower_case_hex_and_read_back() {
    // SHA-256 of nothing, as `sha256sum` prints it.
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(served_digest(std::iter::empty::<&[u8]>()), empty);
    let mut hash = [0u8; 32];
    hash[0] = 0x0f;
    hash[31] = 0xa0;
    let text = hex(&hash);
    assert_eq!(&text[..2], "0f");
    assert_eq!(&text[62..], "a0");
    assert_eq!(parse_hex(&text), Some(hash));
    assert_eq!(parse_hex(&text.to_uppercase()), Some(hash));
}
