//! The behaviour every [`Store`] engine must have. Engines call [`run`] from their tests.

use super::{Batch, Store, StoreError};

/// Runs every check against an empty store, panicking with a description on the first failure.
pub fn run(store: &dyn Store) {
    empty_store_has_nothing(store);
    put_get_delete(store);
    batches_apply_in_order(store);
    prefix_scans_are_ordered_and_bounded(store);
    ranges_are_half_open_and_limited(store);
    concurrent_commits_all_land(store);
}

fn commit(store: &dyn Store, puts: &[(&str, &str)], deletes: &[&str]) {
    let mut batch = Batch::default();
    for (k, v) in puts {
        batch.put(k.as_bytes(), v.as_bytes());
    }
    for k in deletes {
        batch.delete(k.as_bytes());
    }
    store.commit(batch).expect("commit");
}

fn keys(entries: Vec<super::Entry>) -> Vec<String> {
    entries
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

fn empty_store_has_nothing(store: &dyn Store) {
    assert_eq!(store.get(b"conf/missing").expect("get"), None, "missing key");
    assert!(store.scan_prefix(b"conf/").expect("scan").is_empty(), "empty scan");
    store.commit(Batch::default()).expect("an empty batch commits");
}

fn put_get_delete(store: &dyn Store) {
    commit(store, &[("conf/a", "1")], &[]);
    assert_eq!(store.get(b"conf/a").expect("get"), Some(b"1".to_vec()), "put then get");
    commit(store, &[("conf/a", "2")], &[]);
    assert_eq!(store.get(b"conf/a").expect("get"), Some(b"2".to_vec()), "overwrite");
    commit(store, &[], &["conf/a"]);
    assert_eq!(store.get(b"conf/a").expect("get"), None, "delete");
    commit(store, &[], &["conf/never-there"]);
}

fn batches_apply_in_order(store: &dyn Store) {
    // A put then a delete of the same key in one batch leaves nothing; the reverse leaves the put.
    commit(store, &[("conf/x", "1")], &["conf/x"]);
    assert_eq!(store.get(b"conf/x").expect("get"), None, "put then delete");
    let mut batch = Batch::default();
    batch.delete(b"conf/y".to_vec());
    batch.put(b"conf/y".to_vec(), b"2".to_vec());
    store.commit(batch).expect("commit");
    assert_eq!(
        store.get(b"conf/y").expect("get"),
        Some(b"2".to_vec()),
        "delete then put"
    );
    commit(store, &[], &["conf/y"]);
}

fn prefix_scans_are_ordered_and_bounded(store: &dyn Store) {
    commit(
        store,
        &[
            ("conf/p/2", "b"),
            ("conf/p/10", "c"),
            ("conf/p/1", "a"),
            ("conf/q/1", "z"),
            ("conf/p", "root"),
        ],
        &[],
    );
    assert_eq!(
        keys(store.scan_prefix(b"conf/p/").expect("scan")),
        ["conf/p/1", "conf/p/10", "conf/p/2"],
        "byte order, prefix only"
    );
    commit(store, &[], &["conf/p/2", "conf/p/10", "conf/p/1", "conf/q/1", "conf/p"]);
}

fn ranges_are_half_open_and_limited(store: &dyn Store) {
    let puts: Vec<(String, String)> = (0..10).map(|i| (format!("conf/r/{i:02}"), i.to_string())).collect();
    let refs: Vec<(&str, &str)> = puts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    commit(store, &refs, &[]);
    assert_eq!(
        keys(store.range(b"conf/r/03", b"conf/r/06", usize::MAX).expect("range")),
        ["conf/r/03", "conf/r/04", "conf/r/05"],
        "start included, end excluded"
    );
    assert_eq!(
        keys(store.range(b"conf/r/", b"conf/r0", 2).expect("range")),
        ["conf/r/00", "conf/r/01"],
        "limit"
    );
    assert!(
        store.range(b"conf/r/09", b"conf/r/00", 10).expect("range").is_empty(),
        "empty when start >= end"
    );
    // Visiting gives what `range` gives, and stops at the first error the visitor returns.
    for (start, end, limit) in [
        (&b"conf/r/03"[..], &b"conf/r/06"[..], usize::MAX),
        (b"conf/r/", b"conf/r0", 2),
        (b"conf/r/09", b"conf/r/00", 10),
    ] {
        let mut visited = Vec::new();
        store
            .visit_range(start, end, limit, &mut |k, v| {
                visited.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .expect("visit_range");
        assert_eq!(visited, store.range(start, end, limit).expect("range"));
    }
    let mut seen = 0;
    let stopped = store.visit_range(b"conf/r/", b"conf/r0", usize::MAX, &mut |k, _| {
        seen += 1;
        Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(k).into_owned(),
            message: "stop".into(),
        })
    });
    assert!(
        matches!(stopped, Err(StoreError::Corrupt { .. })) && seen == 1,
        "{stopped:?} after {seen}"
    );
    let deletes: Vec<&str> = puts.iter().map(|(k, _)| k.as_str()).collect();
    commit(store, &[], &deletes);
}

fn concurrent_commits_all_land(store: &dyn Store) {
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                for i in 0..20 {
                    let key = format!("conf/c/{t}/{i:02}");
                    commit(store, &[(&key, "v")], &[]);
                }
            });
        }
    });
    assert_eq!(
        store.scan_prefix(b"conf/c/").expect("scan").len(),
        160,
        "every concurrent commit landed"
    );
    let all: Vec<String> = keys(store.scan_prefix(b"conf/c/").expect("scan"));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    commit(store, &[], &refs);
}
