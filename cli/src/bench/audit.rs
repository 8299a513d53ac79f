//! Row 5: auditor queries over shipped events, on the registry's own index engine (the
//! `AuditIndex` the registry's SearchAuditEvents and AccessReport call; the gRPC call around
//! them is row 1's baseline), beside a full scan of the same events.
//!
//! The events are generated as nodes write them: 20 nodes of 3 datasets each, read by 50
//! departments for 8 purposes under a grant per (department, dataset), one record key each out
//! of a million, 3 % refused, spread over 30 days, each node's in time order, added in batches
//! of 500 per node as shipping adds them.

use std::sync::Arc;
use std::time::Instant;

use exchange_core::audit_index::{AuditIndex, AuditQuery, StoreAuditIndex};
use exchange_core::ledger::{encode, AuditEvent, Decision};
use exchange_core::store::{LsmStore, StoreConfig};

use super::load::{percentiles, thousands};
use super::Row;

const NODES: u64 = 20;
const DATASETS_PER_NODE: u64 = 3;
const CONSUMERS: u64 = 50;
const PURPOSES: u64 = 8;
const RECORD_KEYS: u64 = 1_000_000;
const CASES: u64 = 100_000;
const DAYS: i64 = 30;
/// Events per add, as shipping sends them.
const SHIP_BATCH: u64 = 500;
/// Results per page an auditor asks for.
const PAGE: usize = 100;

/// A pseudo-random sequence (splitmix64): the same events every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % below.max(1)
    }
}

fn node(n: u64) -> String {
    format!("js.prov{n:02}")
}

fn consumer(n: u64) -> String {
    format!("js.cons{n:02}")
}

fn dataset(node_n: u64, d: u64) -> String {
    format!("{}/set{d}", node(node_n))
}

fn purpose(n: u64) -> String {
    format!("purpose-{n}")
}

fn record_key(n: u64) -> String {
    format!("320102{:012}", n)
}

fn grant(consumer_n: u64, node_n: u64, d: u64) -> String {
    format!("g-{consumer_n:02}-{node_n:02}-{d}")
}

/// The `index`th event of node `node_n`, of `per_node`, its time spread over [`DAYS`].
fn event(mix: &mut Mix, node_n: u64, index: u64, per_node: u64, start_ms: i64) -> AuditEvent {
    let span = DAYS * 86_400_000;
    // Node n's events fall between node n-1's and n+1's: the nodes' ledgers interleave in time.
    let slot = (index * NODES + node_n) as i128;
    let time_ms = start_ms + ((slot * span as i128) / (per_node.max(1) * NODES) as i128) as i64;
    let c = mix.next(CONSUMERS);
    let d = mix.next(DATASETS_PER_NODE);
    let deny = mix.next(100) < 3;
    let key = record_key(mix.next(RECORD_KEYS));
    AuditEvent {
        time_ms,
        node: node(node_n),
        principal: format!("spiffe://exchange.bench/dept/{}/system", consumer(c)),
        department: consumer(c),
        operation: "get".into(),
        dataset: dataset(node_n, d),
        schema_version: 1,
        fields: vec!["name".into(), "birth_date".into()],
        keys: vec![key],
        count: u64::from(!deny),
        purpose: purpose(mix.next(PURPOSES)),
        case_id: format!("case-{:05}", mix.next(CASES)),
        decision: if deny { Decision::Deny } else { Decision::Allow },
        reason: if deny {
            "no grant allows this purpose".into()
        } else {
            "grant allows".into()
        },
        grant_id: if deny { String::new() } else { grant(c, node_n, d) },
        served_sha256: if deny { String::new() } else { "9f".repeat(32) },
        withheld_until: 0,
    }
}

/// Adds `total` events to `index`, node by node in batches as shipping does; the seconds taken
/// and every `total / keep`th event (to ask for what is there).
fn fill(index: &dyn AuditIndex, total: u64, start_ms: i64, keep: usize) -> anyhow::Result<(f64, Vec<AuditEvent>)> {
    let per_node = total.div_ceil(NODES);
    let stride = (total / keep.max(1) as u64).max(1);
    let mut kept = Vec::new();
    let mut mix = Mix(9);
    let started = Instant::now();
    let mut next = vec![0u64; NODES as usize];
    let mut added = 0u64;
    while added < total {
        for n in 0..NODES {
            let from = next[n as usize];
            let count = SHIP_BATCH.min(per_node - from.min(per_node)).min(total - added);
            if count == 0 {
                continue;
            }
            let mut batch = Vec::with_capacity(count as usize);
            for i in from..from + count {
                let event = event(&mut mix, n, i, per_node, start_ms);
                batch.push((i, encode(&event)?));
                if (added + i - from).is_multiple_of(stride) {
                    kept.push(event);
                }
            }
            index.add(&node(n), &batch)?;
            next[n as usize] = from + count;
            added += count;
        }
    }
    Ok((started.elapsed().as_secs_f64(), kept))
}

/// Latencies of `queries`' first page, in microseconds.
fn first_pages(index: &dyn AuditIndex, queries: &[AuditQuery]) -> anyhow::Result<(Vec<u64>, usize)> {
    let mut latencies = Vec::new();
    let mut found = 0;
    for query in queries {
        let start = Instant::now();
        let page = index.search(query, None, PAGE)?;
        latencies.push(start.elapsed().as_micros() as u64);
        found += page.events.len();
    }
    Ok((latencies, found))
}

/// Runs row 5 over `events` events in `dir`, `samples` queries per filter.
pub(crate) fn run(dir: &std::path::Path, events: u64, samples: usize) -> anyhow::Result<Row> {
    // Opened as the registry opens its own.
    let config = registry::audit_index_config(StoreConfig::default());
    let store = Arc::new(LsmStore::open_index(&dir.join("audit-index"), config)?);
    let index = StoreAuditIndex::new(store);
    let start_ms = exchange_core::now() * 1000 - DAYS * 86_400_000;
    let (fill_seconds, kept) = fill(&index, events, start_ms, samples)?;
    anyhow::ensure!(!kept.is_empty(), "no events to query");
    let sampled = |n: u64| &kept[n as usize % kept.len()];

    let mut mix = Mix(77);
    let samples = samples.max(1);
    let pick = |mix: &mut Mix, f: &dyn Fn(&mut Mix) -> AuditQuery| (0..samples).map(|_| f(mix)).collect::<Vec<_>>();
    let filters: Vec<(&str, Vec<AuditQuery>)> = vec![
        (
            "time (1 h)",
            pick(&mut mix, &|m| {
                let from = sampled(m.next(u64::MAX)).time_ms - 1_800_000;
                AuditQuery {
                    from_ms: Some(from),
                    to_ms: Some(from + 3_600_000),
                    ..Default::default()
                }
            }),
        ),
        (
            "consumer",
            pick(&mut mix, &|m| AuditQuery {
                consumer: Some(consumer(m.next(CONSUMERS))),
                ..Default::default()
            }),
        ),
        (
            "provider",
            pick(&mut mix, &|m| AuditQuery {
                provider: Some(node(m.next(NODES))),
                ..Default::default()
            }),
        ),
        (
            "dataset",
            pick(&mut mix, &|m| AuditQuery {
                dataset: Some(dataset(m.next(NODES), m.next(DATASETS_PER_NODE))),
                ..Default::default()
            }),
        ),
        (
            "purpose",
            pick(&mut mix, &|m| AuditQuery {
                purpose: Some(purpose(m.next(PURPOSES))),
                ..Default::default()
            }),
        ),
        (
            "decision",
            pick(&mut mix, &|_| AuditQuery {
                decision: Some(Decision::Deny),
                ..Default::default()
            }),
        ),
        (
            "grant",
            pick(&mut mix, &|m| {
                // A grant that was relied on (a refused read names none).
                let from = m.next(u64::MAX) as usize;
                let relied = (0..kept.len())
                    .map(|i| &kept[(from + i) % kept.len()])
                    .find(|e| !e.grant_id.is_empty());
                AuditQuery {
                    grant: Some(relied.map_or_else(|| grant(0, 0, 0), |e| e.grant_id.clone())),
                    ..Default::default()
                }
            }),
        ),
        (
            "case id",
            pick(&mut mix, &|m| AuditQuery {
                case_id: Some(sampled(m.next(u64::MAX)).case_id.clone()),
                ..Default::default()
            }),
        ),
        (
            "record key",
            pick(&mut mix, &|m| AuditQuery {
                record_key: Some(sampled(m.next(u64::MAX)).keys[0].clone()),
                ..Default::default()
            }),
        ),
        (
            "consumer + purpose + 1 day",
            pick(&mut mix, &|m| {
                let event = sampled(m.next(u64::MAX));
                let from = event.time_ms - event.time_ms.rem_euclid(86_400_000);
                AuditQuery {
                    consumer: Some(event.department.clone()),
                    purpose: Some(event.purpose.clone()),
                    from_ms: Some(from),
                    to_ms: Some(from + 86_400_000),
                    ..Default::default()
                }
            }),
        ),
    ];
    let mut worst_filter = 0f64;
    let mut parts = Vec::new();
    let mut figures = Vec::new();
    for (name, queries) in &filters {
        let (latencies, found) = first_pages(&index, queries)?;
        anyhow::ensure!(found > 0, "no {name} query found anything");
        let (p50, p99) = percentiles(latencies);
        worst_filter = worst_filter.max(p99);
        parts.push(format!("{name} {p50:.1}/{p99:.1}"));
        figures.push((format!("{}_p99_ms", name.replace([' ', '(', ')', '+'], "_")), p99));
    }

    // The access report for one key: every read of it, page after page (as AccessReport pages).
    let mut report_latencies = Vec::new();
    let mut reads = 0usize;
    for _ in 0..samples {
        // A key that was read, of the dataset it was read from, as its owner would ask.
        let read = sampled(mix.next(u64::MAX));
        let query = AuditQuery {
            record_key: Some(read.keys[0].clone()),
            provider: Some(read.node.clone()),
            dataset: Some(read.dataset.clone()),
            ..Default::default()
        };
        let start = Instant::now();
        let mut cursor: Option<String> = None;
        loop {
            let page = index.search(&query, cursor.as_deref(), PAGE)?;
            reads += page.events.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        report_latencies.push(start.elapsed().as_micros() as u64);
    }
    anyhow::ensure!(
        reads >= samples,
        "the access reports found {reads} reads of keys that were read"
    );
    let (r50, r99) = percentiles(report_latencies);

    // The baseline: every event read and checked against one filter.
    let scan_query = AuditQuery {
        consumer: Some(consumer(7)),
        ..Default::default()
    };
    let scan_start = Instant::now();
    let mut scanned = 0u64;
    let mut matched = 0u64;
    for n in 0..NODES {
        let mut from = 0;
        loop {
            let page = index.read(&node(n), from, 1000)?;
            let Some(last) = page.last() else { break };
            from = last.index + 1;
            scanned += page.len() as u64;
            matched += page.iter().filter(|e| scan_query.matches(&e.node, &e.event)).count() as u64;
        }
    }
    let scan_ms = scan_start.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(scanned == events, "the scan read {scanned} of {events} events");
    figures.extend([
        ("access_report_p99_ms".to_string(), r99),
        ("full_scan_ms".to_string(), scan_ms),
        ("index_events_per_s".to_string(), events as f64 / fill_seconds),
    ]);
    let at_size = events >= 10_000_000;
    Ok(Row {
        number: 5,
        what: format!(
            "auditor queries over {} shipped events: first page of {PAGE} per filter, {samples} each (p50/p99 ms), and the access report for one key",
            thousands(events as f64)
        ),
        measured: format!(
            "{}; access report p50 {r50:.1} ms, p99 {r99:.1} ms ({} reads found); indexing took {:.0} s ({} events/s)",
            parts.join(", "),
            reads,
            fill_seconds,
            thousands(events as f64 / fill_seconds)
        ),
        baseline: format!(
            "full scan of the same events for one consumer: {scan_ms:.0} ms ({} matched)",
            thousands(matched as f64)
        ),
        target: "over 10M events: p99 < 100 ms per filter; access report p99 < 500 ms".into(),
        outcome: format!(
            "worst filter p99 {worst_filter:.1} ms, access report p99 {r99:.1} ms{}",
            if at_size { String::new() } else { format!(" at {} events, not 10M", thousands(events as f64)) }
        ),
        met: at_size && worst_filter < 100.0 && r99 < 500.0,
        figures,
    })
}
