//! Micro-benchmarks of what every publish and every audited read pays in exchange-core, so that
//! a slower end-to-end figure (BENCHMARKS.md) can be traced to the step that slowed down.
//!
//! Run: `cargo bench -p exchange-core --bench micro` (all), add `-- --quick` for a short run, or
//! a name filter such as `-- ledger/` for one group.

// Setup that fails should stop the run loudly: there is no caller to hand an error to.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use exchange_core::audit_index::{AuditIndex, StoreAuditIndex};
use exchange_core::catalog::{Classification, Dataset};
use exchange_core::compat::CompatMode;
use exchange_core::filter::Filter;
use exchange_core::formats::id_number_check_char;
use exchange_core::grant::{Grant, GrantState};
use exchange_core::identity::{Principal, Role};
use exchange_core::ledger::{encode, AuditEvent, Decision, Ledger};
use exchange_core::mask::{mask_str, mask_value, Sensitivity};
use exchange_core::policy::{authorize, ReadRequest};
use exchange_core::schema::{self, DatasetSchema};
use exchange_core::store::{LsmStore, MemStore, Store};
use exchange_core::tlog::{self, LogKey};

const NOW: i64 = 1_800_000_000;
const POPULATION_SCHEMA: &str = include_str!("../../schemas/population.json");

/// A resident identity number with a valid check character (a wrong one would bench the
/// error path).
fn id_number() -> String {
    let first17 = "32010219900101123";
    format!("{first17}{}", id_number_check_char(first17).unwrap())
}

/// A record of `js.gongan/population` like those the sample publisher sends.
fn resident() -> Value {
    json!({
        "id_number": id_number(),
        "name": "张三丰",
        "gender": "male",
        "ethnicity": "汉族",
        "birth_date": "1990-01-01",
        "household_register_region": "320102",
        "address": "南京市玄武区中山路1号",
        "phone": "13812345678",
        "marital_status": "married",
        "updated_at": "2026-11-01T08:00:00+08:00"
    })
}

/// The population schema as a node loads a stored version of it.
fn population_schema() -> DatasetSchema {
    schema::load_stored_schema(POPULATION_SCHEMA, "id_number").unwrap()
}

fn population_dataset() -> Dataset {
    Dataset {
        id: "js.gongan/population".into(),
        title: "人口基础信息".into(),
        description: String::new(),
        domain: "population".into(),
        classification: Classification::Conditional,
        update_frequency: "daily".into(),
        steward: String::new(),
        key_field: "id_number".into(),
        tags: vec![],
        compatibility: CompatMode::Backward,
        latest_version: 1,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

/// An approved grant with a row filter and a masked field, as an owner decides one.
fn grant() -> Grant {
    Grant {
        id: "g-000001".into(),
        consumer_id: "js.scjg".into(),
        dataset_id: "js.gongan/population".into(),
        fields: ["id_number", "name", "gender", "birth_date", "household_register_region"]
            .map(String::from)
            .into(),
        clear_fields: vec!["name".into()],
        row_filter: "household_register_region STARTS WITH \"3201\"".into(),
        purposes: vec!["business-licensing".into()],
        investigative_purposes: vec![],
        legal_basis: "《江苏省公共数据管理办法》".into(),
        expires_at: NOW + 86_400,
        state: GrantState::Approved,
        reason: "approved".into(),
        requested_by: "spiffe://exchange.test/dept/js.scjg/system".into(),
        decided_by: "spiffe://exchange.test/dept/js.gongan/system".into(),
        created_at: NOW - 3600,
        updated_at: NOW - 1800,
        revision: 1,
        steps: Default::default(),
    }
}

/// An event as a node writes one for a `get` of one record (`n` makes each different).
fn event(n: u64) -> AuditEvent {
    AuditEvent {
        time_ms: NOW * 1000 + n as i64,
        node: "js.gongan".into(),
        principal: "spiffe://exchange.test/dept/js.scjg/system".into(),
        department: "js.scjg".into(),
        operation: "get".into(),
        dataset: "js.gongan/population".into(),
        schema_version: 1,
        fields: vec!["id_number".into(), "name".into()],
        keys: vec![id_number()],
        count: 1,
        purpose: "business-licensing".into(),
        case_id: String::new(),
        decision: Decision::Allow,
        reason: "grant g-000001 for purpose business-licensing".into(),
        grant_id: "g-000001".into(),
        served_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        withheld_until: 0,
    }
}

fn key() -> LogKey {
    LogKey::generate("exchange.test/node/js.gongan").unwrap().0
}

/// A directory for a ledger beside the build, not in `/tmp`, which may be a tmpfs where an
/// fsync costs nothing.
fn ledger_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn schema_validation(c: &mut Criterion) {
    let validator = schema::compile(&population_schema().schema).unwrap();
    let errors = |record: &Value| schema::record_errors(&validator, record);
    let mut record = resident();
    record["id_number"] = json!("320102199001011230");
    assert!(!errors(&record).is_empty(), "a wrong check digit must be refused");
    record["id_number"] = json!(id_number());
    assert!(errors(&record).is_empty(), "the record must be valid");
    // What a node's publish does with each record it is sent (after parsing its JSON).
    c.bench_function("schema/record_errors", |b| b.iter(|| errors(black_box(&record))));
}

fn masking(c: &mut Criterion) {
    let id = id_number();
    let id_value = Value::String(id.clone());
    let mut group = c.benchmark_group("mask");
    group.bench_function("mask_str/name", |b| {
        b.iter(|| mask_str(Sensitivity::Name, black_box("张三丰")))
    });
    group.bench_function("mask_str/id_number", |b| {
        b.iter(|| mask_str(Sensitivity::IdNumber, black_box(&id)))
    });
    // The form a read masks a field in.
    group.bench_function("mask_value/id_number", |b| {
        b.iter(|| mask_value(Sensitivity::IdNumber, black_box(&id_value)))
    });
    group.finish();
}

fn grant_check(c: &mut Criterion) {
    let principal = Principal::new("js.scjg", Role::System);
    let (dataset, schema, grant) = (population_dataset(), population_schema(), grant());
    let (fields, filter) = (vec!["name".to_string(), "birth_date".to_string()], Filter::default());
    let request = ReadRequest {
        fields: &fields,
        purpose: "business-licensing",
        filter: &filter,
    };
    let grants = [&grant];
    let read = || authorize(&principal, &dataset, &schema, &grants, black_box(&request), NOW);
    assert!(read().is_ok(), "the grant must allow the read");
    c.bench_function("policy/authorize", |b| b.iter(read));
}

fn ledger_append(c: &mut Criterion) {
    let event = event(0);
    c.bench_function("ledger/encode", |b| b.iter(|| encode(black_box(&event))));

    let dir = ledger_dir();
    let mut ledger = Ledger::open(dir.path(), key()).unwrap();
    let mut group = c.benchmark_group("ledger/append");
    for n in [1u64, 64] {
        let events: Vec<AuditEvent> = (0..n).map(self::event).collect();
        group.throughput(Throughput::Elements(n));
        // Per group, fdatasync of `events` included: a commit returns only once its events are
        // on disk, so this is mostly the disk's sync latency, paid once per group however large.
        group.bench_with_input(BenchmarkId::from_parameter(n), &events, |b, events| {
            b.iter(|| {
                let mut staged = ledger.begin().unwrap();
                staged.stage(events).unwrap();
                ledger.commit(staged).unwrap()
            })
        });
    }
    group.finish();
}

fn merkle_proofs(c: &mut Criterion) {
    const SIZE: u64 = 100_000;
    const INDEX: u64 = 12_345;
    const OLD_SIZE: u64 = 60_000;
    let dir = ledger_dir();
    let mut ledger = Ledger::open(dir.path(), key()).unwrap();
    let mut staged = ledger.begin().unwrap();
    staged.stage(&(0..SIZE).map(event).collect::<Vec<_>>()).unwrap();
    ledger.commit(staged).unwrap();
    let reader = ledger.reader().unwrap();
    let (root, old_root) = (reader.root(), reader.root_at(OLD_SIZE).unwrap());
    let leaf_hash = tlog::leaf_hash(&reader.leaves(INDEX, 1).unwrap()[0]);
    // A verifier holds proofs as bytes, as a proof file or a response carries them.
    let as_bytes = |proof: Vec<tlog::Hash>| proof.into_iter().map(|h| h.0).collect::<Vec<_>>();
    let inclusion = as_bytes(reader.inclusion_proof(INDEX, SIZE).unwrap());
    let consistency = as_bytes(reader.consistency_proof(OLD_SIZE, SIZE).unwrap());

    let mut group = c.benchmark_group("tlog");
    // Proofs read their hashes from the `hashes` file (in the page cache here).
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| reader.inclusion_proof(black_box(INDEX), SIZE))
    });
    group.bench_function("consistency_proof", |b| {
        b.iter(|| reader.consistency_proof(black_box(OLD_SIZE), SIZE))
    });
    group.bench_function("verify_inclusion", |b| {
        b.iter(|| tlog::verify_inclusion(INDEX, SIZE, &leaf_hash.0, black_box(&inclusion), &root.0).unwrap())
    });
    group.bench_function("verify_consistency", |b| {
        b.iter(|| tlog::verify_consistency(OLD_SIZE, SIZE, &old_root.0, &root.0, black_box(&consistency)).unwrap())
    });
    group.finish();
}

/// The registry's cost per shipped event: a node's batch of 64 `get` events, and one `query`
/// event naming the 500 record keys of a page (a posting each), stored and indexed. The index
/// grows as it runs (every add is new events), so compare runs of the same length.
fn audit_index_add(c: &mut Criterion) {
    let gets: Vec<Vec<u8>> = (0..64).map(|n| encode(&event(n)).unwrap()).collect();
    let mut query = event(0);
    query.operation = "query".into();
    query.keys = (0..500).map(|n| format!("3201021990{n:08}")).collect();
    query.count = 500;
    let query = vec![encode(&query).unwrap()];
    let dir = ledger_dir();
    let stores: [(&str, Arc<dyn Store>); 2] = [
        ("memory", Arc::new(MemStore::new())),
        ("fjall", Arc::new(LsmStore::open(dir.path()).unwrap())),
    ];
    let mut group = c.benchmark_group("audit_index/add");
    for (name, store) in stores {
        let index = StoreAuditIndex::new(store);
        let mut next = 0u64;
        for (what, events) in [("get_x64", &gets), ("query_500_keys", &query)] {
            group.throughput(Throughput::Elements(events.len() as u64));
            group.bench_function(format!("{name}/{what}"), |b| {
                b.iter(|| {
                    let batch: Vec<(u64, Vec<u8>)> = events
                        .iter()
                        .map(|bytes| {
                            next += 1;
                            (next, bytes.clone())
                        })
                        .collect();
                    index.add("js.gongan", &batch).unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    audit_index_add,
    schema_validation,
    masking,
    grant_check,
    ledger_append,
    merkle_proofs
);
criterion_main!(benches);
