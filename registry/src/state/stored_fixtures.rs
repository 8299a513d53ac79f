//! The registry's stored forms stay readable forever: a store holding what the code of each
//! fixture set's date wrote opens and answers (the rule is in ARCHITECTURE.md, "stored types
//! evolve"; the core types' own fixtures are in `exchange-core/fixtures/stored`).

use super::*;
use exchange_core::identity::Role;
use exchange_core::store::MemStore;

macro_rules! core_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../exchange-core/fixtures/stored/2026-12-01/", $name)).as_slice()
    };
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../fixtures/stored/2026-12-01/", $name)).as_slice()
    };
}

const HISTORY: &str = "f16d05ec6b29248d2c61adb1e9263f78e4f7bace1b955014a2d17872cfe4064d";

/// A registry store as the code of 2026-12-01 left it: a department, a dataset with a schema
/// version, a revoked grant, their change log (one entry from before history fingerprints) and
/// the meta keys.
fn store_of_2026_12_01() -> Arc<MemStore> {
    let store = Arc::new(MemStore::new());
    let mut batch = Batch::default();
    batch.put(dept_key("js.nj.gongan"), core_fixture!("department.json"));
    batch.put(dataset_key("js.gongan/population"), core_fixture!("dataset.json"));
    batch.put(
        version_key("js.gongan/population", 2),
        core_fixture!("schema_version.json"),
    );
    batch.put(grant_key("g-000042"), core_fixture!("grant.json"));
    batch.put(log_key(15), fixture!("log_entry_before_history.json"));
    batch.put(log_key(17), fixture!("log_entry.json"));
    batch.put(META_REVISION.to_vec(), fixture!("meta_revision.json"));
    batch.put(META_HISTORY.to_vec(), fixture!("meta_history.json"));
    batch.put(META_GRANT_SEQ.to_vec(), fixture!("meta_grant_seq.json"));
    store.commit(batch).unwrap();
    store
}

#[tokio::test]
async fn a_store_of_2026_12_01_opens_and_answers() {
    let store = store_of_2026_12_01();
    let limits = GrantLimits {
        max_duration_secs: 86_400 * 365,
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = super::tests::ledger(dir.path());
    let state = State::open(store, limits, Clock::system(), ledger, "exchange.example").unwrap();
    assert_eq!(*state.subscribe().borrow(), 17);
    let dept = state.get_department("js.nj.gongan").unwrap();
    assert_eq!(
        (dept.level, dept.parent_id.as_deref()),
        (Level::City, Some("js.gongan"))
    );
    let with = state.get_dataset("js.gongan/population").unwrap();
    assert_eq!(with.dataset.classification, Classification::Conditional);
    assert_eq!(with.versions.len(), 1);
    let auditor = Principal::new("js.dsj", Role::Auditor);
    let grant = state.get_grant(&auditor, "g-000042").unwrap();
    assert_eq!(
        (grant.state, grant.reason.as_str()),
        (GrantState::Revoked, "case closed")
    );

    // The change log replays both entries, the one from before fingerprints with none.
    let changes = state.changes_since(None, 0, None, 100).await.unwrap();
    let replayed: Vec<(u64, &str)> = changes.items.iter().map(|(r, h, _)| (*r, h.as_str())).collect();
    assert_eq!(replayed, [(15, ""), (17, HISTORY)]);
    assert_eq!((changes.last, changes.history.as_str()), (17, HISTORY));
    // A watcher resuming with the fingerprint it was sent is recognised.
    assert!(state.changes_since(None, 17, Some(HISTORY), 100).await.is_ok());

    // Numbering goes on from the stored counters.
    let admin = Principal::new("js.dsj", Role::Admin);
    let mut province = dept.clone();
    province.id = "js.gongan".into();
    province.level = Level::Province;
    province.region_code = "320000".into();
    province.parent_id = None;
    assert_eq!(state.register_department(&admin, province).await.unwrap().revision, 18);
}

/// Today's code writes the newest set's forms (a change in them needs a new set).
#[test]
fn the_newest_set_is_what_this_code_writes() {
    let entry = LogEntry {
        kind: Kind::Grant,
        id: "g-000042".into(),
        history: HISTORY.into(),
    };
    assert_eq!(encode(&entry).unwrap(), fixture!("log_entry.json"));
    assert_eq!(encode(&17u64).unwrap(), fixture!("meta_revision.json"));
    assert_eq!(encode(&HISTORY).unwrap(), fixture!("meta_history.json"));
    assert_eq!(encode(&42u64).unwrap(), fixture!("meta_grant_seq.json"));
}
