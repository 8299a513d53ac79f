use std::sync::Arc;

use exchange_core::ledger::{read_verified, AuditEvent, Decision, Ledger};
use exchange_core::store::MemStore;
use exchange_core::tlog::LogKey;

use super::*;
use crate::records::{changes_after, get_record, scan_records};

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        time_ms: n as i64,
        node: "js.gongan".into(),
        principal: "p".into(),
        department: "js.scjg".into(),
        operation: "get".into(),
        dataset: "js.gongan/population".into(),
        schema_version: 1,
        fields: vec![],
        keys: vec![format!("k{n}")],
        count: 1,
        purpose: "x".into(),
        case_id: String::new(),
        decision: Decision::Allow,
        reason: String::new(),
        grant_id: String::new(),
        served_sha256: String::new(),
        withheld_until: 0,
    }
}

fn key() -> LogKey {
    LogKey::generate("exchange.test/node/js.gongan").unwrap().0
}

fn change(key: &str, json: Option<&str>) -> NewChange {
    NewChange {
        key: key.into(),
        json: json.map(|j| j.as_bytes().to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_audits_share_commits_and_number_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let key = key();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let writer = Writer::start(store.clone(), Ledger::open(&ledger, key.clone()).unwrap()).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move { (n, writer.audit(vec![event(n)]).await) })
        })
        .collect();
    let mut indexes = Vec::new();
    for task in tasks {
        let (n, range) = task.await.unwrap();
        indexes.push((n, range.unwrap().start));
    }
    let (_, entries) = read_verified(&ledger, &key.verifier()).unwrap();
    assert_eq!(entries.len(), 200);
    // Each audit was told the index its event has.
    for (n, index) in indexes {
        assert_eq!(entries[index as usize].event, event(n));
    }
    assert_eq!(writer.ledger().size(), 200);

    // On demand, a checkpoint of everything committed; the next one without events is the same.
    let checkpoint = writer.checkpoint().await.unwrap();
    assert_eq!(checkpoint.size, 200);
    assert_eq!(checkpoint.root, writer.ledger().root());
    assert_eq!(writer.checkpoint().await.unwrap(), checkpoint);

    // A new writer over the same ledger continues it; stopping leaves everything signed.
    writer.stop().await;
    let again = Writer::start(store.clone(), Ledger::open(&ledger, key.clone()).unwrap()).unwrap();
    assert_eq!(again.audit(vec![event(200)]).await.unwrap(), 200..201);
    again.stop().await;
    let (verified, _) = read_verified(&ledger, &key.verifier()).unwrap();
    assert_eq!((verified.size, verified.checkpoint.map(|c| c.size)), (201, Some(201)));
}

#[tokio::test]
async fn events_are_signed_within_a_second_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let writer = Writer::start(store, Ledger::open(dir.path(), key()).unwrap()).unwrap();
    writer.audit(vec![event(1), event(2)]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while writer.ledger().checkpoint().map(|c| c.size) != Some(2) {
        assert!(std::time::Instant::now() < deadline, "no checkpoint signed after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.stop().await;
}

#[tokio::test]
async fn publishes_get_contiguous_sequences_and_before_images() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let key = key();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let writer = Writer::start(store.clone(), Ledger::open(&ledger, key.clone()).unwrap()).unwrap();
    let mut feed = writer.feed("d/x");
    let (first, last) = writer
        .publish(
            "d/x",
            1,
            vec![
                change("a", Some("{\"v\":1}")),
                change("a", Some("{\"v\":2}")),
                change("b", Some("{}")),
            ],
        )
        .await
        .unwrap();
    assert_eq!((first, last), (1, 3));
    assert_eq!(*feed.borrow_and_update(), 3);
    let (first, last) = writer.publish("d/x", 1, vec![change("a", None)]).await.unwrap();
    assert_eq!((first, last), (4, 4));
    let changes = changes_after(&*store, "d/x", 0, 4, 100).unwrap();
    let befores: Vec<Option<&str>> = changes.iter().map(|c| c.before.as_deref()).collect();
    assert_eq!(befores, [None, Some("{\"v\":1}"), None, Some("{\"v\":2}")]);
    assert!(get_record(&*store, "d/x", "a").unwrap().is_none(), "deleted");
    assert_eq!(get_record(&*store, "d/x", "b").unwrap().unwrap().sequence, 3);
    assert_eq!(writer.records("d/x"), 1, "a and b written, a deleted");
    assert_eq!(changes_after(&*store, "d/x", 2, 4, 100).unwrap().len(), 2);
    // Only what is committed is read: a subscriber never sees past the feed's sequence.
    assert_eq!(changes_after(&*store, "d/x", 0, 3, 100).unwrap().len(), 3);
    assert!(changes_after(&*store, "d/x", 3, 3, 100).unwrap().is_empty());
    // A dataset first published after start has its feed made by the commit.
    writer.publish("d/new", 1, vec![change("n", Some("{}"))]).await.unwrap();
    assert_eq!(*writer.feed("d/new").borrow(), 1);
    // Another dataset whose id extends this one's shares nothing with it.
    writer.publish("d/xy", 1, vec![change("a", Some("{}"))]).await.unwrap();
    assert_eq!(scan_records(&*store, "d/x", None, 100).unwrap().len(), 1);
    assert_eq!(changes_after(&*store, "d/x", 0, 4, 100).unwrap().len(), 4);
    // Sequences survive a restart of the writer.
    writer.stop().await;
    let again = Writer::start(store.clone(), Ledger::open(&ledger, key).unwrap()).unwrap();
    assert_eq!(again.records("d/x"), 1, "counts survive a restart");
    assert_eq!(
        again.publish("d/x", 1, vec![change("c", Some("{}"))]).await.unwrap(),
        (5, 5)
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_failed_ledger_write_fails_audits_as_an_audit_failure_and_records_still_commit() {
    // Every write to /dev/full fails with "no space left on device".
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("events")).unwrap();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let writer = Writer::start(store.clone(), Ledger::open(dir.path(), key()).unwrap()).unwrap();
    for _ in 0..2 {
        let err = writer.audit(vec![event(1)]).await.unwrap_err();
        assert!(matches!(err, CoreError::Audit(_)), "{err}");
        assert!(
            err.to_string()
                .contains("audited reads are refused until the server is restarted"),
            "{err}"
        );
    }
    assert_eq!(writer.ledger().size(), 0);
    // Publishing needs no audit event: the department's own data still goes in.
    assert_eq!(
        writer.publish("d/x", 1, vec![change("a", Some("{}"))]).await.unwrap(),
        (1, 1)
    );
}

#[tokio::test]
async fn an_import_stores_each_batch_once_and_refuses_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let writer = Writer::start(store.clone(), Ledger::open(&dir.path().join("ledger"), key()).unwrap()).unwrap();
    let step = |batch| {
        Some(ImportStep {
            id: "load-1".into(),
            batch,
        })
    };
    let ds = "js.gongan/population";
    // Batches 1 and 2 queued back to back commit in order, possibly in one group.
    let one = writer
        .queue_publish(ds, 1, vec![change("a", Some(r#"{"k":"a","v":1}"#))], step(1))
        .await
        .unwrap();
    let two = writer
        .queue_publish(ds, 1, vec![change("a", Some(r#"{"k":"a","v":2}"#))], step(2))
        .await
        .unwrap();
    assert_eq!(one.await.unwrap().unwrap(), Committed::Stored((1, 1)));
    assert_eq!(two.await.unwrap().unwrap(), Committed::Stored((2, 2)));
    // Batch 2 again (its acknowledgement lost): recognised, nothing written.
    let again = writer
        .queue_publish(ds, 1, vec![change("a", Some(r#"{"k":"a","v":2}"#))], step(2))
        .await
        .unwrap();
    assert_eq!(again.await.unwrap().unwrap(), Committed::AlreadyStored);
    assert_eq!(get_record(&*store, ds, "a").unwrap().unwrap().sequence, 2);
    // Batch 4 skips 3: refused, and says what to send.
    let gap = writer
        .queue_publish(ds, 1, vec![change("b", Some(r#"{"k":"b"}"#))], step(4))
        .await
        .unwrap();
    let error = gap.await.unwrap().unwrap_err().to_string();
    assert!(error.contains("send batch 3 next"), "{error}");
    assert!(get_record(&*store, ds, "b").unwrap().is_none());
    // Another import of the same dataset counts its own batches.
    let other = writer
        .queue_publish(
            ds,
            1,
            vec![change("b", Some(r#"{"k":"b"}"#))],
            Some(ImportStep {
                id: "load-2".into(),
                batch: 1,
            }),
        )
        .await
        .unwrap();
    assert_eq!(other.await.unwrap().unwrap(), Committed::Stored((3, 3)));
    writer.stop().await;
    // The marks are in the store: a restarted writer still knows batch 2 is stored.
    let writer = Writer::start(store.clone(), Ledger::open(&dir.path().join("ledger"), key()).unwrap()).unwrap();
    let again = writer.queue_publish(ds, 1, vec![], step(2)).await.unwrap();
    assert_eq!(again.await.unwrap().unwrap(), Committed::AlreadyStored);
}
