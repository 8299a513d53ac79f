use super::*;
use exchange_core::identity::Role;
use exchange_core::store::MemStore;

/// A state over a memory store, with its ledger in a directory removed when it is dropped.
pub(super) struct TestState {
    state: State,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestState {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

pub(super) fn ledger(dir: &std::path::Path) -> Arc<RegistryLedger> {
    let index = Arc::new(exchange_core::audit_index::StoreAuditIndex::new(Arc::new(
        MemStore::new(),
    )));
    Arc::new(RegistryLedger::open(dir, "exchange.test/registry", index).unwrap())
}

fn state() -> TestState {
    state_over(Arc::new(MemStore::new()), Clock::system())
}

pub(super) fn state_over(store: Arc<dyn Store>, clock: Clock) -> TestState {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(
        store,
        GrantLimits {
            max_duration_secs: 86_400,
        },
        clock,
        ledger(dir.path()),
        "exchange.test",
    )
    .unwrap();
    TestState { state, _dir: dir }
}

fn dept(id: &str) -> Department {
    Department {
        id: id.into(),
        name: id.into(),
        level: Level::Province,
        region_code: "320000".into(),
        parent_id: None,
        node_endpoint: None,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

#[tokio::test]
async fn changes_since_sends_each_object_once_in_its_latest_state() {
    let s = state();
    let admin = Principal::new("js.dsj", Role::Admin);
    s.register_department(&admin, dept("js.gongan")).await.unwrap();
    let dataset = open_dataset("js.gongan/population");
    s.register_dataset(&admin, dataset.clone()).await.unwrap();
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#;
    s.publish_schema(&admin, &dataset.id, schema).await.unwrap();

    // Registered at revision 2, then changed at 3: only the latest state is sent, at 3.
    let Changes { items, last, history } = s.changes_since(Some("js.gongan"), 0, None, 100).await.unwrap();
    assert_eq!(last, 3);
    assert_eq!(items.len(), 1);
    let (revision, item_history, WatchItem::Dataset(d)) = &items[0] else {
        panic!("expected the dataset");
    };
    assert_eq!(*revision, 3);
    assert_eq!(item_history, &history, "the dataset's change is the last one examined");
    assert_eq!(d.dataset.latest_version, 1);
    assert_eq!(d.versions.len(), 1);

    // Other departments see nothing of it; a resume after the last revision sees nothing new.
    assert!(s
        .changes_since(Some("js.scjg"), 0, None, 100)
        .await
        .unwrap()
        .items
        .is_empty());
    let resumed = s.changes_since(Some("js.gongan"), 3, None, 100).await.unwrap();
    assert!(resumed.items.is_empty());
    assert_eq!((resumed.last, resumed.history.as_str()), (3, history.as_str()));
    // Resuming with that fingerprint is fine; with another one (a history this registry
    // does not have) it is refused.
    assert!(s.changes_since(None, 3, Some(&history), 100).await.is_ok());
    let err = s.changes_since(None, 3, Some(&"0".repeat(64)), 100).await.unwrap_err();
    assert!(matches!(err, CoreError::OutOfRange(_)), "{err}");
    // Another revision's fingerprint does not match this one.
    let err = s.changes_since(None, 1, Some(&history), 100).await.unwrap_err();
    assert!(matches!(err, CoreError::OutOfRange(_)), "{err}");
    // A revision this registry never reached (a node ahead of a restored backup) is named.
    for beyond in [4, u64::MAX] {
        let err = s.changes_since(None, beyond, None, 100).await.unwrap_err();
        assert!(matches!(err, CoreError::OutOfRange(_)), "{err}");
        assert!(err.to_string().contains("beyond this registry's latest, 3"), "{err}");
    }
}

#[tokio::test]
async fn a_refused_write_changes_nothing_and_takes_no_revision() {
    let s = state();
    let admin = Principal::new("js.dsj", Role::Admin);
    let mut bad = dept("js.gongan");
    bad.region_code = "x".into();
    assert!(s.register_department(&admin, bad).await.is_err());
    assert_eq!(*s.subscribe().borrow(), 0);
    assert!(s.list_departments(None, None).unwrap().is_empty());
    s.register_department(&admin, dept("js.gongan")).await.unwrap();
    assert_eq!(*s.subscribe().borrow(), 1);
}

/// A store whose next commit applies its batch and then fails, as sled does when the batch is
/// applied in memory but the flush fails.
struct FlushFailsOnce {
    inner: MemStore,
    fail_next: std::sync::atomic::AtomicBool,
}

impl Store for FlushFailsOnce {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<exchange_core::store::Entry>, StoreError> {
        self.inner.scan_prefix(prefix)
    }
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<exchange_core::store::Entry>, StoreError> {
        self.inner.range(start, end, limit)
    }
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch)?;
        match self.fail_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            true => Err(StoreError::Engine("flush failed: disk error".into())),
            false => Ok(()),
        }
    }
}

fn flaky_state() -> (Arc<FlushFailsOnce>, TestState) {
    let store = Arc::new(FlushFailsOnce {
        inner: MemStore::new(),
        fail_next: std::sync::atomic::AtomicBool::new(false),
    });
    let state = state_over(store.clone(), Clock::system());
    (store, state)
}

#[tokio::test]
async fn a_failed_commit_does_not_hand_its_revision_to_the_next_write() {
    let (store, s) = flaky_state();
    let admin = Principal::new("js.dsj", Role::Admin);
    store.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = s.register_department(&admin, dept("js.gongan")).await;
    assert!(matches!(failed, Err(CoreError::Store(_))), "{failed:?}");
    s.register_department(&admin, dept("js.scjg")).await.unwrap();
    // The batch that reported failure may still reach the disk; its log entry survives.
    assert_eq!(s.get_department("js.gongan").unwrap().revision, 1);
    assert_eq!(s.get_department("js.scjg").unwrap().revision, 2);
    assert!(store.get(&log_key(1)).unwrap().is_some() && store.get(&log_key(2)).unwrap().is_some());
}

#[tokio::test]
async fn watch_does_not_pass_on_a_change_whose_commit_failed() {
    let (store, s) = flaky_state();
    let admin = Principal::new("js.dsj", Role::Admin);
    s.register_department(&admin, dept("js.gongan")).await.unwrap();
    store.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(s.register_department(&admin, dept("js.scjg")).await.is_err());
    // Revision 2 is in memory but was reported failed: a watcher stops before it.
    let last = s.changes_since(None, 0, None, 100).await.unwrap().last;
    assert_eq!(last, 1);
    assert!(matches!(
        s.changes_since(None, 2, None, 100).await,
        Err(CoreError::OutOfRange(_))
    ));
}

#[tokio::test]
async fn a_write_whose_caller_goes_away_still_takes_its_revision() {
    let s = state();
    let admin = Principal::new("js.dsj", Role::Admin);
    // Polled once, then dropped while its commit runs: a client that cancels its call.
    let cancelled = futures_util::FutureExt::now_or_never(s.register_department(&admin, dept("js.gongan")));
    assert!(cancelled.is_none(), "the write was still committing when dropped");
    s.register_department(&admin, dept("js.scjg")).await.unwrap();
    // Both are stored, each under its own revision, and Watch replays both.
    let Changes { items, last, .. } = s.changes_since(None, 0, None, 100).await.unwrap();
    assert_eq!(last, 2);
    assert!(
        items.is_empty(),
        "departments are not watched, but their revisions are counted"
    );
    let ids: Vec<String> = s
        .list_departments(None, None)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["js.gongan", "js.scjg"]);
    assert_eq!(s.get_department("js.gongan").unwrap().revision, 1);
    assert_eq!(s.get_department("js.scjg").unwrap().revision, 2);
}

fn open_dataset(id: &str) -> Dataset {
    Dataset {
        id: id.into(),
        title: "t".into(),
        description: String::new(),
        domain: String::new(),
        classification: Classification::Open,
        update_frequency: String::new(),
        steward: String::new(),
        key_field: "id".into(),
        tags: vec![],
        compatibility: compat::CompatMode::Backward,
        latest_version: 0,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

#[tokio::test]
async fn every_change_is_an_event_in_the_registry_ledger_first() {
    let s = state();
    let admin = Principal::new("js.dsj", Role::Admin);
    s.register_department(&admin, dept("js.gongan")).await.unwrap();
    s.register_department(&admin, dept("js.scjg")).await.unwrap();
    s.register_dataset(&admin, open_dataset("js.gongan/population"))
        .await
        .unwrap();
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#;
    s.publish_schema(&admin, "js.gongan/population", schema).await.unwrap();
    let consumer = Principal::new("js.scjg", Role::System);
    let request = GrantRequest {
        dataset_id: "js.gongan/population".into(),
        consumer_id: String::new(),
        fields: vec!["id".into()],
        clear_fields: vec![],
        purposes: vec!["business-licensing".into()],
        investigative_purposes: vec![],
        legal_basis: "law".into(),
        row_filter: String::new(),
        expires_at: s.now() + 3600,
    };
    let g = s.request_grant(&consumer, "spiffe://x", request).await.unwrap();
    s.decide_grant(&admin, "spiffe://x", &g.id, GrantState::Revoked, "no longer needed")
        .await
        .unwrap();
    // A refused change is not an event.
    assert!(s.register_department(&consumer, dept("js.other")).await.is_err());

    let reader = s.ledger().reader();
    let events: Vec<exchange_core::ledger::AuditEvent> = reader
        .leaves(0, 100)
        .unwrap()
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let summary: Vec<(&str, &str, String, &str)> = events
        .iter()
        .map(|e| {
            (
                e.operation.as_str(),
                e.department.as_str(),
                e.keys.join(",") + &e.dataset,
                e.grant_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("register_department", "js.dsj", "js.gongan".to_string(), ""),
            ("register_department", "js.dsj", "js.scjg".to_string(), ""),
            ("register_dataset", "js.dsj", "js.gongan/population".to_string(), ""),
            ("publish_schema", "js.dsj", "js.gongan/population".to_string(), ""),
            (
                "request_grant",
                "js.scjg",
                "js.gongan/population".to_string(),
                g.id.as_str()
            ),
            (
                "revoke_grant",
                "js.dsj",
                "js.gongan/population".to_string(),
                g.id.as_str()
            ),
        ]
    );
    assert_eq!(events[3].schema_version, 1);
    assert_eq!(events[4].purpose, "business-licensing");
    assert_eq!(events[5].reason, "no longer needed");
    assert!(events.iter().all(|e| e.node == "registry"));
    assert_eq!(events[0].principal, "spiffe://exchange.test/dept/js.dsj/admin");
    // Signed with the registry's key, origin <trust domain>/registry.
    let checkpoint = s.ledger().checkpoint().await.unwrap();
    assert_eq!(
        (checkpoint.origin.as_str(), checkpoint.size),
        ("exchange.test/registry", 6)
    );
}

#[tokio::test]
async fn a_change_that_cannot_be_recorded_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ledger")).unwrap();
    // Every write to /dev/full fails with "no space left on device".
    std::os::unix::fs::symlink("/dev/full", dir.path().join("ledger/events")).unwrap();
    let s = State::open(
        Arc::new(MemStore::new()),
        GrantLimits {
            max_duration_secs: 86_400,
        },
        Clock::system(),
        ledger(dir.path()),
        "exchange.test",
    )
    .unwrap();
    let admin = Principal::new("js.dsj", Role::Admin);
    let err = s.register_department(&admin, dept("js.gongan")).await.unwrap_err();
    assert!(matches!(err, CoreError::Audit(_)), "{err}");
    assert!(s.get_department("js.gongan").is_err(), "not made");
    assert_eq!(*s.subscribe().borrow(), 0, "no revision taken");
}

/// A request on data its owner's node reports no records of gets the longer decision period
/// (10 working days, not 5); once records are reported, the usual one.
#[tokio::test]
async fn a_request_on_data_not_yet_published_has_longer_to_be_decided() {
    let store = Arc::new(MemStore::new());
    let TestState { state, _dir } = state_over(store.clone(), Clock::system());
    let clocks = grant::Clocks {
        review: false,
        ..grant::Clocks::default()
    };
    let calendar = exchange_core::calendar::WorkingCalendar::from_config(&Default::default()).unwrap();
    let s = TestState {
        state: state.with_clocks(clocks, calendar),
        _dir,
    };
    let admin = Principal::new("js.dsj", Role::Admin);
    s.register_department(&admin, dept("js.gongan")).await.unwrap();
    s.register_department(&admin, dept("js.scjg")).await.unwrap();
    let mut dataset = open_dataset("js.gongan/population");
    dataset.classification = Classification::Conditional;
    s.register_dataset(&admin, dataset).await.unwrap();
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#;
    s.publish_schema(&admin, "js.gongan/population", schema).await.unwrap();
    let consumer = Principal::new("js.scjg", Role::System);
    let request = || GrantRequest {
        dataset_id: "js.gongan/population".into(),
        consumer_id: String::new(),
        fields: vec!["id".into()],
        clear_fields: vec![],
        purposes: vec!["business-licensing".into()],
        investigative_purposes: vec![],
        legal_basis: "law".into(),
        row_filter: String::new(),
        expires_at: s.now() + 3600,
    };
    let report = |sequence: u64| {
        let health = crate::shipping::NodeHealth {
            department: "js.gongan".into(),
            reported_at_ms: 1,
            ledger_size: 0,
            datasets: [(
                "js.gongan/population".to_string(),
                crate::shipping::Freshness {
                    sequence,
                    changed_at: 1,
                },
            )]
            .into(),
        };
        let mut batch = Batch::default();
        batch.put(b"health/js.gongan".to_vec(), serde_json::to_vec(&health).unwrap());
        store.commit(batch).unwrap();
    };
    let now = s.now();
    // Its node never reported: not known to be empty, the usual 5 days.
    let g = s.request_grant(&consumer, "spiffe://x", request()).await.unwrap();
    assert_eq!(g.steps.due_at, s.calendar().due(now, 5));
    s.decide_grant(&consumer, "spiffe://x", &g.id, GrantState::Revoked, "asked again")
        .await
        .unwrap();
    report(0);
    let g = s.request_grant(&consumer, "spiffe://x", request()).await.unwrap();
    assert_eq!(g.steps.due_at, s.calendar().due(now, 10), "no records yet");
    s.decide_grant(&consumer, "spiffe://x", &g.id, GrantState::Revoked, "asked again")
        .await
        .unwrap();
    report(42);
    let g = s.request_grant(&consumer, "spiffe://x", request()).await.unwrap();
    assert_eq!(g.steps.due_at, s.calendar().due(now, 5), "published");
}

#[tokio::test]
async fn a_watcher_reading_while_writes_run_misses_nothing_and_ends_at_each_latest_state() {
    let s = state();
    let admin = Principal::new("js.dsj", Role::Admin);
    s.register_department(&admin, dept("js.gongan")).await.unwrap();
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#;
    let ids: Vec<String> = (0..20).map(|i| format!("js.gongan/d{i:02}")).collect();
    let writes = async {
        for id in &ids {
            s.register_dataset(&admin, open_dataset(id)).await.unwrap();
            s.publish_schema(&admin, id, schema).await.unwrap();
        }
    };
    // Reads interleave with the writes (reading holds no write back), a few entries at a time.
    let done = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        let (mut last, mut seen) = (0, Vec::new());
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let changes = s.changes_since(Some("js.gongan"), last, None, 3).await.unwrap();
            for (revision, _, item) in changes.items {
                assert!(revision > seen.last().map_or(0, |(r, _, _)| *r), "in revision order");
                let WatchItem::Dataset(d) = item else {
                    panic!("only datasets here")
                };
                seen.push((revision, d.dataset.id.clone(), d.dataset.latest_version));
            }
            if changes.last == last && finished {
                return seen;
            }
            last = changes.last;
            tokio::task::yield_now().await;
        }
    };
    let ((), seen) = tokio::join!(
        async {
            writes.await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        },
        watch
    );
    // Each dataset reaches the watcher in its latest state (a state sent early, registered
    // without its schema, is sent again once the schema is published).
    for id in &ids {
        let last = seen.iter().rev().find(|(_, d, _)| d == id);
        assert_eq!(last.map(|(_, _, v)| *v), Some(1), "{id}: {seen:?}");
    }
}
