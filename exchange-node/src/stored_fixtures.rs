//! A node's stored forms stay readable forever: a store holding what the code of each fixture
//! set's date wrote (the registry view, records, the change feed, the counters) loads and
//! serves. The rule is in ARCHITECTURE.md ("stored types evolve"); the core types' own fixtures
//! are in `exchange-core/fixtures/stored`.

use std::sync::Arc;

use exchange_core::catalog::{Dataset, SchemaVersion};
use exchange_core::grant::Grant;
use exchange_core::ledger::Ledger;
use exchange_core::store::{Batch, MemStore, Store};

use crate::catalog::Catalog;
use crate::records::{change_key, changes_after, get_record, record_key, seq_key, NewChange};
use crate::writer::Writer;

macro_rules! core_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../exchange-core/fixtures/stored/2026-12-01/", $name)).as_slice()
    };
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../fixtures/stored/2026-12-01/", $name)).as_slice()
    };
}

const DATASET: &str = "js.gongan/population";
const KEY: &str = "320102198801010012";
const HISTORY: &str = "f16d05ec6b29248d2c61adb1e9263f78e4f7bace1b955014a2d17872cfe4064d";
const FIRST: &str = r#"{"id_number":"320102198801010012","name":"张三"}"#;
const SECOND: &str = r#"{"id_number":"320102198801010012","name":"张三丰"}"#;

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let key = exchange_core::tlog::LogKey::generate("exchange.example/node/js.gongan")
        .unwrap()
        .0;
    let ledger = Ledger::open(&dir.path().join("ledger"), key).unwrap();
    (dir, ledger)
}

/// A node store as the code of 2026-12-01 left it: the registry's view at revision 17 (the
/// core fixtures' dataset, schema version and grant), and one record published, then changed.
fn store_of_2026_12_01() -> Arc<MemStore> {
    let store = Arc::new(MemStore::new());
    let mut batch = Batch::default();
    batch.put(b"reg/revision".to_vec(), fixture!("view_revision.txt"));
    batch.put(b"reg/history".to_vec(), fixture!("view_history.txt"));
    batch.put(format!("reg/ds/{DATASET}").into_bytes(), fixture!("view_dataset.json"));
    batch.put(b"reg/grant/g-000042".to_vec(), core_fixture!("grant.json"));
    batch.put(record_key(DATASET, KEY), fixture!("record.bin"));
    batch.put(change_key(DATASET, 1), fixture!("change_1.json"));
    batch.put(change_key(DATASET, 2), fixture!("change_2.json"));
    batch.put(seq_key(DATASET), fixture!("counters.json"));
    store.commit(batch).unwrap();
    store
}

#[tokio::test]
async fn a_store_of_2026_12_01_loads_and_serves() {
    let store = store_of_2026_12_01();
    let catalog = Catalog::load(store.clone()).unwrap();
    assert_eq!((catalog.revision(), catalog.history()), (17, HISTORY.to_string()));
    let dataset = catalog.dataset(DATASET).unwrap();
    assert_eq!(dataset.dataset.key_field, "id_number");
    assert_eq!(
        dataset.latest().unwrap().version,
        2,
        "the stored schema version compiles"
    );
    let grants = catalog.grants(DATASET, "js.scjg");
    assert_eq!(grants.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["g-000042"]);

    let (_dir, ledger) = ledger();
    let writer = Writer::start(store.clone(), ledger).unwrap();
    assert_eq!((writer.records(DATASET), *writer.feed(DATASET).borrow()), (1, 2));
    let record = get_record(&*store, DATASET, KEY).unwrap().unwrap();
    assert_eq!((record.sequence, record.schema_version), (2, 2));
    assert_eq!(record.json, SECOND.as_bytes());
    let changes = changes_after(&*store, DATASET, 0, 2, 10).unwrap();
    let seen: Vec<(u64, Option<&str>, Option<&str>)> = changes
        .iter()
        .map(|c| (c.sequence, c.before.as_deref(), c.after.as_deref()))
        .collect();
    assert_eq!(seen, [(1, None, Some(FIRST)), (2, Some(FIRST), Some(SECOND))]);
    // Sequences go on from the stored counters.
    let next = NewChange {
        key: "320102199001010015".into(),
        json: Some(b"{}".to_vec()),
    };
    assert_eq!(writer.publish(DATASET, 2, vec![next]).await.unwrap(), (3, 3));
    writer.stop().await;
}

/// Today's code writes the newest set's forms, byte for byte: a change in them needs a new set.
#[tokio::test]
async fn the_newest_set_is_what_this_code_writes() {
    let store = Arc::new(MemStore::new());
    let catalog = Catalog::load(store.clone()).unwrap();
    let dataset: Dataset = serde_json::from_slice(core_fixture!("dataset.json")).unwrap();
    let version: SchemaVersion = serde_json::from_slice(core_fixture!("schema_version.json")).unwrap();
    let grant: Grant = serde_json::from_slice(core_fixture!("grant.json")).unwrap();
    catalog.apply_dataset((15, HISTORY), dataset, vec![version]).unwrap();
    catalog.apply_grant((17, HISTORY), grant).unwrap();
    let (_dir, ledger) = ledger();
    let writer = Writer::start(store.clone(), ledger).unwrap();
    for json in [FIRST, SECOND] {
        let change = NewChange {
            key: KEY.into(),
            json: Some(json.as_bytes().to_vec()),
        };
        writer.publish(DATASET, 2, vec![change]).await.unwrap();
    }
    writer.stop().await;

    let stored = |key: Vec<u8>| store.get(&key).unwrap().unwrap();
    for (name, today, fixture) in [
        (
            "view_revision.txt",
            stored(b"reg/revision".to_vec()),
            fixture!("view_revision.txt"),
        ),
        (
            "view_history.txt",
            stored(b"reg/history".to_vec()),
            fixture!("view_history.txt"),
        ),
        (
            "view_dataset.json",
            stored(format!("reg/ds/{DATASET}").into_bytes()),
            fixture!("view_dataset.json"),
        ),
        (
            "grant.json",
            stored(b"reg/grant/g-000042".to_vec()),
            core_fixture!("grant.json"),
        ),
        ("record.bin", stored(record_key(DATASET, KEY)), fixture!("record.bin")),
        (
            "change_1.json",
            stored(change_key(DATASET, 1)),
            fixture!("change_1.json"),
        ),
        (
            "change_2.json",
            stored(change_key(DATASET, 2)),
            fixture!("change_2.json"),
        ),
        ("counters.json", stored(seq_key(DATASET)), fixture!("counters.json")),
    ] {
        assert!(
            today == fixture,
            "{name}: this code writes a form the newest fixture set does not have; add a set with:\n{}",
            String::from_utf8_lossy(&today)
        );
    }
}

/// The node's secret outlives upgrades, and so does what is made from it: a consumer keeping a
/// copy matches records by their pseudonyms, and a page token given before an upgrade opens after.
#[test]
fn the_page_token_secret_of_2026_12_01_gives_the_same_pseudonyms_and_opens_its_tokens() {
    let store = MemStore::new();
    let mut batch = Batch::default();
    batch.put(b"meta/page-token-secret".to_vec(), fixture!("page_token_secret.bin"));
    store.commit(batch).unwrap();
    let tokens = crate::page_token::PageTokens::load_or_create(&store).unwrap();
    let pseudonym = std::str::from_utf8(fixture!("pseudonym.txt")).unwrap();
    assert_eq!(tokens.pseudonym("js.gongan/population\njs.scjg", KEY), pseudonym);
    let token = std::str::from_utf8(fixture!("page_token.txt")).unwrap();
    assert_eq!(tokens.open("scope", token).as_deref(), Some(KEY));
    assert_eq!(tokens.open("another scope", token), None);
}

/// A node that stopped following a restored registry still knows it after an upgrade.
#[test]
fn a_diverged_view_of_2026_12_01_stays_diverged() {
    let store = store_of_2026_12_01();
    let mut batch = Batch::default();
    batch.put(b"reg/diverged".to_vec(), fixture!("view_diverged.txt"));
    store.commit(batch).unwrap();
    let catalog = Catalog::load(store).unwrap();
    let why = catalog.diverged().unwrap().unwrap();
    assert!(
        why.starts_with("the registry's history does not match this node's view"),
        "{why}"
    );
}
