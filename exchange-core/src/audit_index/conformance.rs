//! The behaviour every [`AuditIndex`] must have. Engines call [`run`] from their tests.
//!
//! A generated history of events over three nodes, consumers, datasets, purposes, decisions,
//! grants, cases, record keys and days is added in batches (some twice); then a table of
//! queries, each field alone and in combination, with and without time ranges, is searched page
//! by page and compared with the same filter applied to the whole history, in (time, node,
//! index) order; and the counts are compared with counting the history.

use std::collections::BTreeMap;

use super::{day_of, AuditIndex, AuditQuery, CountBy};
use crate::ledger::{AuditEvent, Decision};

const DAY_MS: i64 = 86_400_000;
const START_MS: i64 = 1_796_000_000_000;

/// Event `i` of node `node`: its fields cycle at different rates, so that every combination of
/// filters has some matches and some misses.
fn event(node: &str, i: u64) -> AuditEvent {
    let consumers = ["js.scjg", "js.rsj", "js.mzt"];
    let datasets = ["population", "households"];
    let purposes = ["business-licensing", "social-assistance-review", "tax-audit"];
    AuditEvent {
        // Two nodes share timestamps now and then, so order ties break on (node, index).
        time_ms: START_MS + (i as i64 / 7) * (DAY_MS / 5) + (i as i64 % 7) * 1000,
        node: node.to_string(),
        principal: format!("spiffe://exchange.test/dept/{}/system", consumers[i as usize % 3]),
        department: consumers[i as usize % 3].to_string(),
        operation: if i.is_multiple_of(4) { "query" } else { "get" }.to_string(),
        dataset: format!("{node}/{}", datasets[i as usize % 2]),
        schema_version: 1,
        fields: vec!["name".into()],
        keys: vec![format!("k{}", i % 11), format!("k{}", (i + 5) % 11)],
        count: 2,
        purpose: purposes[i as usize % 3 / 2 + usize::from(i.is_multiple_of(5))].to_string(),
        case_id: if i.is_multiple_of(6) {
            format!("case-{}", i % 4)
        } else {
            String::new()
        },
        decision: if i % 9 == 4 { Decision::Deny } else { Decision::Allow },
        reason: String::new(),
        grant_id: if i % 9 == 4 {
            String::new()
        } else {
            format!("g-{:06}", i % 5)
        },
        served_sha256: String::new(),
        withheld_until: 0,
    }
}

type History = Vec<(String, u64, AuditEvent)>;

fn history() -> History {
    let mut all = Vec::new();
    for (node, count) in [("js.gongan", 80u64), ("js.scjg", 50), ("js.zrzy", 30)] {
        for i in 0..count {
            all.push((node.to_string(), i, event(node, i)));
        }
    }
    all
}

fn expected(history: &History, query: &AuditQuery) -> Vec<(String, u64)> {
    let mut found: Vec<_> = history
        .iter()
        .filter(|(node, _, e)| query.matches(node, e))
        .map(|(node, i, e)| (e.time_ms, node.clone(), *i))
        .collect();
    found.sort();
    found.into_iter().map(|(_, node, i)| (node, i)).collect()
}

fn search_all(index: &dyn AuditIndex, query: &AuditQuery, limit: usize) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = index.search(query, cursor.as_deref(), limit).expect("search");
        assert!(page.events.len() <= limit, "a page holds at most its limit");
        for e in &page.events {
            assert!(
                query.matches(&e.node, &e.event),
                "{query:?} returned a non-matching event"
            );
            all.push((e.node.clone(), e.index));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
    panic!("{query:?}: paging never ended");
}

/// Runs every check against an empty index, panicking with a description on the first failure.
pub fn run(index: &dyn AuditIndex) {
    let history = history();
    // Added in batches per node, the first batch of each node twice (as after a crash).
    for node in ["js.gongan", "js.scjg", "js.zrzy"] {
        let events: Vec<(u64, Vec<u8>)> = history
            .iter()
            .filter(|(n, _, _)| n == node)
            .map(|(_, i, e)| (*i, serde_json::to_vec(e).expect("encode")))
            .collect();
        for chunk in events.chunks(16) {
            index.add(node, chunk).expect("add");
        }
        index.add(node, &events[..16]).expect("add again");
    }

    // Reading a node's events by index gives them back byte for byte.
    let read = index.read("js.scjg", 45, 10).expect("read");
    assert_eq!(
        read.iter().map(|l| l.index).collect::<Vec<_>>(),
        (45..50).collect::<Vec<_>>()
    );
    assert_eq!(
        read[0].bytes,
        serde_json::to_vec(&event("js.scjg", 45)).expect("encode")
    );
    assert_eq!(read[0].event, event("js.scjg", 45));
    assert!(index.read("js.zrzy", 30, 10).expect("read").is_empty());
    assert_eq!(
        (
            index.held("js.gongan").expect("held"),
            index.held("js.zrzy").expect("held")
        ),
        (80, 30)
    );
    assert_eq!(index.held("js.nobody").expect("held"), 0);

    let t = |day: i64| START_MS + day * DAY_MS;
    let s = |v: &str| Some(v.to_string());
    let queries = vec![
        AuditQuery::default(),
        AuditQuery {
            consumer: s("js.rsj"),
            ..Default::default()
        },
        AuditQuery {
            provider: s("js.scjg"),
            ..Default::default()
        },
        AuditQuery {
            dataset: s("js.gongan/population"),
            ..Default::default()
        },
        AuditQuery {
            purpose: s("tax-audit"),
            ..Default::default()
        },
        AuditQuery {
            decision: Some(Decision::Deny),
            ..Default::default()
        },
        AuditQuery {
            grant: s("g-000003"),
            ..Default::default()
        },
        AuditQuery {
            case_id: s("case-2"),
            ..Default::default()
        },
        AuditQuery {
            record_key: s("k7"),
            ..Default::default()
        },
        AuditQuery {
            from_ms: Some(t(1)),
            to_ms: Some(t(2)),
            ..Default::default()
        },
        AuditQuery {
            consumer: s("js.scjg"),
            provider: s("js.gongan"),
            ..Default::default()
        },
        AuditQuery {
            record_key: s("k3"),
            dataset: s("js.gongan/households"),
            consumer: s("js.mzt"),
            ..Default::default()
        },
        AuditQuery {
            decision: Some(Decision::Allow),
            purpose: s("business-licensing"),
            from_ms: Some(t(1)),
            ..Default::default()
        },
        AuditQuery {
            grant: s("g-000001"),
            to_ms: Some(t(2)),
            ..Default::default()
        },
        AuditQuery {
            case_id: s("case-0"),
            record_key: s("k6"),
            ..Default::default()
        },
        AuditQuery {
            consumer: s("js.nobody"),
            ..Default::default()
        },
        AuditQuery {
            from_ms: Some(t(100)),
            ..Default::default()
        },
    ];
    for query in &queries {
        let want = expected(&history, query);
        for limit in [1, 3, 1000] {
            assert_eq!(search_all(index, query, limit), want, "{query:?} with pages of {limit}");
        }
    }
    assert!(
        !expected(&history, &queries[11]).is_empty(),
        "a combined query that matches something"
    );

    let counted: Vec<_> = CountBy::ALL
        .iter()
        .map(|by| index.counts(*by, "", "").expect("counts"))
        .collect();
    check_counts(index, &history);

    // Retention: events before day 2 go; the rest is found as before, and the counts stay.
    let removed = index.prune(t(2)).expect("prune");
    assert_eq!(
        removed as usize,
        history.iter().filter(|(_, _, e)| e.time_ms < t(2)).count()
    );
    let kept: History = history.iter().filter(|(_, _, e)| e.time_ms >= t(2)).cloned().collect();
    for query in &queries {
        assert_eq!(
            search_all(index, query, 7),
            expected(&kept, query),
            "{query:?} after pruning"
        );
    }
    // Reading from an index skips what was pruned: the events held from there on, in order.
    let first_kept: Vec<u64> = kept
        .iter()
        .filter(|(n, _, _)| n == "js.gongan")
        .map(|(_, i, _)| *i)
        .take(5)
        .collect();
    let read: Vec<u64> = index
        .read("js.gongan", 0, 5)
        .expect("read")
        .iter()
        .map(|l| l.index)
        .collect();
    assert_eq!(read, first_kept, "pruned events are not read");
    assert_eq!(index.read("js.gongan", 79, 5).expect("read").len(), 1);
    let after: Vec<_> = CountBy::ALL
        .iter()
        .map(|by| index.counts(*by, "", "").expect("counts"))
        .collect();
    assert_eq!(after, counted, "counts are history; pruning keeps them");
    assert_eq!(index.prune(t(2)).expect("prune again"), 0);
}

fn check_counts(index: &dyn AuditIndex, history: &History) {
    let t = |day: i64| START_MS + day * DAY_MS;
    // Counts per value and day are those of the history.
    for by in CountBy::ALL {
        let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (node, _, e) in history {
            let value = match by {
                CountBy::Consumer => e.department.clone(),
                CountBy::Provider => node.clone(),
                CountBy::Dataset => e.dataset.clone(),
                CountBy::Decision => e.decision.to_string(),
                CountBy::ProviderDecision if e.department == *node => continue,
                CountBy::ProviderDecision => format!("{node}/{}", e.decision),
            };
            *want.entry((value, day_of(e.time_ms))).or_default() += 1;
        }
        let got: BTreeMap<(String, String), u64> = index
            .counts(by, "", "")
            .expect("counts")
            .into_iter()
            .map(|c| ((c.value, c.day), c.count))
            .collect();
        assert_eq!(got, want, "counts by {by}");
        let day = day_of(t(1));
        let one_day = index.counts(by, &day, &day).expect("counts");
        assert!(
            !one_day.is_empty() && one_day.iter().all(|c| c.day == day),
            "counts by {by} on {day}"
        );
    }
}
