//! Auditors' queries over the shipped events, access reports for citizens, and that every such
//! question is itself on the registry's record.

use std::time::Duration;

use exchange_core::audit_index::AuditQuery;
use exchange_core::identity::Role;
use exchange_core::ledger::{AuditEvent, Decision};
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use super::*;
use crate::harness::*;

/// A history of reads at js.gongan's node: allowed reads by js.scjg of each key with two
/// purposes and cases, and denied ones by js.rsj; returns once the registry holds all of it.
async fn history(ex: &TestExchange, node: &TestNode, keys: &[String]) -> Vec<(String, u64, AuditEvent)> {
    let mut scjg = node.client(ex, "js.scjg", Role::System).await;
    let mut rsj = node.client(ex, "js.rsj", Role::System).await;
    for (i, key) in keys.iter().enumerate() {
        let mut read = get(std::slice::from_ref(key), &["name"], "business-licensing");
        read.case_id = format!("case-{}", i % 2);
        scjg.get(read).await.unwrap();
        ex.clock.advance(Duration::from_secs(3600));
        let _ = rsj.get(get(std::slice::from_ref(key), &[], "business-licensing")).await;
    }
    scjg.get(get(keys, &["name"], "business-licensing")).await.unwrap();
    wait_shipped(node, ex).await;
    exchange_node::read_ledger(&node.data_dir)
        .unwrap()
        .into_iter()
        .map(|e| ("js.gongan".to_string(), e.index, e.event))
        .collect()
}

fn request(query: &AuditQuery, limit: u32, page_token: &str) -> pb::SearchAuditEventsRequest {
    pb::SearchAuditEventsRequest {
        from_ms: query.from_ms.unwrap_or(0),
        to_ms: query.to_ms.unwrap_or(0),
        consumer_id: query.consumer.clone().unwrap_or_default(),
        provider_id: query.provider.clone().unwrap_or_default(),
        dataset_id: query.dataset.clone().unwrap_or_default(),
        purpose: query.purpose.clone().unwrap_or_default(),
        decision: query.decision.map(|d| d.to_string()).unwrap_or_default(),
        grant_id: query.grant.clone().unwrap_or_default(),
        case_id: query.case_id.clone().unwrap_or_default(),
        record_key: query.record_key.clone().unwrap_or_default(),
        limit,
        page_token: page_token.into(),
    }
}

#[tokio::test]
async fn auditor_queries_return_exactly_the_matching_events_and_are_recorded() {
    let (ex, node, keys, grant) = setup().await;
    let history = history(&ex, &node, &keys).await;
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let s = |v: &str| Some(v.to_string());
    let start = history[0].2.time_ms;
    let queries = [
        AuditQuery::default(),
        AuditQuery {
            consumer: s("js.rsj"),
            ..Default::default()
        },
        AuditQuery {
            decision: Some(Decision::Deny),
            ..Default::default()
        },
        AuditQuery {
            grant: Some(grant.clone()),
            ..Default::default()
        },
        AuditQuery {
            case_id: s("case-1"),
            ..Default::default()
        },
        AuditQuery {
            record_key: Some(keys[1].clone()),
            ..Default::default()
        },
        AuditQuery {
            dataset: s("js.gongan/population"),
            purpose: s("business-licensing"),
            ..Default::default()
        },
        AuditQuery {
            from_ms: Some(start + 3_600_000),
            to_ms: Some(start + 3 * 3_600_000),
            ..Default::default()
        },
        AuditQuery {
            consumer: s("js.scjg"),
            record_key: Some(keys[0].clone()),
            decision: Some(Decision::Allow),
            ..Default::default()
        },
    ];
    // The registry's own events are searched too (grant decisions name the grant): here, the
    // node's only.
    for query in &queries {
        let query = &AuditQuery {
            provider: s("js.gongan"),
            ..query.clone()
        };
        let want: Vec<(String, u64)> = history
            .iter()
            .filter(|(node, _, e)| query.matches(node, e))
            .map(|(node, index, _)| (node.clone(), *index))
            .collect();
        assert!(!want.is_empty(), "{query:?} matches something");
        let mut got = Vec::new();
        let mut token = String::new();
        loop {
            let page = auditor
                .search_audit_events(request(query, 2, &token))
                .await
                .unwrap()
                .into_inner();
            got.extend(page.events.iter().map(|e| (e.node.clone(), e.index)));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(got, want, "{query:?}");
    }

    // Counts per consumer and day add up to the history.
    let counts = auditor
        .count_audit_events(pb::CountAuditEventsRequest {
            by: "consumer".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .counts;
    let rsj: u64 = counts.iter().filter(|c| c.value == "js.rsj").map(|c| c.count).sum();
    assert_eq!(
        rsj,
        history.iter().filter(|(_, _, e)| e.department == "js.rsj").count() as u64
    );

    // Nobody else asks, and bad questions get clear answers.
    let mut consumer = ex.client("js.scjg", Role::System).await;
    assert_status(
        consumer
            .search_audit_events(request(&AuditQuery::default(), 10, ""))
            .await,
        Code::PermissionDenied,
        "only admins and auditors",
    );
    let mut bad = request(&AuditQuery::default(), 10, "");
    bad.decision = "maybe".into();
    assert_status(
        auditor.search_audit_events(bad).await,
        Code::InvalidArgument,
        "decision",
    );
    assert_status(
        auditor
            .search_audit_events(request(&AuditQuery::default(), 10, "!!"))
            .await,
        Code::InvalidArgument,
        "page_token",
    );

    assert_status(
        auditor
            .count_audit_events(pb::CountAuditEventsRequest {
                by: "consumer".into(),
                from_day: "2026-02-30".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "not a day of the calendar",
    );
    assert_status(
        auditor
            .get_shipped_ledger(pb::GetShippedLedgerRequest {
                department_id: "js.nope".into(),
            })
            .await,
        Code::NotFound,
        "js.nope is not registered",
    );

    // Auditors are audited: each question is an event of the registry, found like any other,
    // and so is a question refused.
    let refused = auditor
        .search_audit_events(request(
            &AuditQuery {
                provider: s("registry"),
                consumer: s("js.scjg"),
                decision: Some(Decision::Deny),
                ..Default::default()
            },
            100,
            "",
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let refused: Vec<AuditEvent> = refused
        .iter()
        .map(|e| serde_json::from_slice(&e.event).unwrap())
        .collect();
    assert!(
        refused
            .iter()
            .any(|e| e.operation == "search_audit_events" && e.reason.contains("only admins and auditors")),
        "{refused:?}"
    );
    let asked = AuditQuery {
        provider: s("registry"),
        ..Default::default()
    };
    let page = auditor
        .search_audit_events(request(&asked, 1000, ""))
        .await
        .unwrap()
        .into_inner();
    let searches: Vec<AuditEvent> = page
        .events
        .iter()
        .map(|e| serde_json::from_slice::<AuditEvent>(&e.event).unwrap())
        .filter(|e| e.operation == "search_audit_events" && e.department == "js.dsj")
        .collect();
    assert!(searches.len() >= queries.len(), "{} searches recorded", searches.len());
    assert!(
        searches
            .iter()
            .any(|e| e.reason == "consumer=js.rsj provider=js.gongan"),
        "the question is recorded"
    );
}

#[tokio::test]
async fn an_owner_answers_who_read_a_citizens_record() {
    let (ex, node, keys, grant) = setup().await;
    let history = history(&ex, &node, &keys).await;
    let mut owner = ex.client("js.gongan", Role::System).await;
    let report = owner
        .access_report(pb::AccessReportRequest {
            dataset_id: "js.gongan/population".into(),
            record_key: keys[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<u64> = history
        .iter()
        .filter(|(_, _, e)| e.keys.contains(&keys[0]))
        .map(|(_, i, _)| *i)
        .collect();
    assert_eq!(report.reads.iter().map(|r| r.index).collect::<Vec<_>>(), want);
    let read = &report.reads[0];
    assert_eq!(
        (
            read.department_id.as_str(),
            read.purpose.as_str(),
            read.grant_id.as_str(),
            read.decision.as_str()
        ),
        ("js.scjg", "business-licensing", grant.as_str(), "allow")
    );
    assert!(!read.legal_basis.is_empty(), "the grant's legal basis is given");
    // Another department's record reads are not its business.
    let mut consumer = ex.client("js.scjg", Role::System).await;
    assert_status(
        consumer
            .access_report(pb::AccessReportRequest {
                dataset_id: "js.gongan/population".into(),
                record_key: keys[0].clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "who read js.gongan's records",
    );
}

#[tokio::test]
async fn a_withheld_read_appears_in_the_access_report_only_after_its_date() {
    let (ex, node, keys, _) = setup().await;
    // A second grant for js.scjg, whose fraud investigations may be withheld from the report.
    let mut scjg = ex.client("js.scjg", Role::System).await;
    let mut request = grant_request("js.gongan/population", &["name"]);
    request.purposes = vec!["fraud-investigation".into(), "business-licensing".into()];
    request.investigative_purposes = vec!["fraud-investigation".into()];
    let g = scjg.request_grant(request).await.unwrap().into_inner();
    assert_eq!(g.investigative_purposes, ["fraud-investigation"]);
    let approved = approve(&ex, &g.id).await;
    node.wait_current(&ex, approved.revision).await;

    let now = ex.clock.clock().now();
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut withheld = get(&keys[..1], &["name"], "fraud-investigation");
    withheld.withhold_until = now + 3600;
    let receipt = consumer
        .get(withheld.clone())
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    // Only for an investigative purpose, and only ahead.
    let mut not_investigative = get(&keys[..1], &["name"], "business-licensing");
    not_investigative.withhold_until = now + 3600;
    assert_status(
        consumer.get(not_investigative).await,
        Code::PermissionDenied,
        "as investigative",
    );
    withheld.withhold_until = now - 1;
    assert_status(consumer.get(withheld).await, Code::InvalidArgument, "withhold_until");

    let report = |who: Role, dept: &'static str| {
        let ex = &ex;
        let request = pb::AccessReportRequest {
            dataset_id: "js.gongan/population".into(),
            record_key: keys[0].clone(),
            ..Default::default()
        };
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let mut client = ex.client(dept, who).await;
                let mut auditor = ex.client("js.dsj", Role::Auditor).await;
                // Wait until the read is shipped (the auditor sees it first).
                let all = auditor.access_report(request.clone()).await.unwrap().into_inner().reads;
                if all.iter().any(|r| r.index == receipt.index) || tokio::time::Instant::now() > deadline {
                    return client.access_report(request.clone()).await.unwrap().into_inner().reads;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let audited = report(Role::Auditor, "js.dsj").await;
    let shown = audited
        .iter()
        .find(|r| r.index == receipt.index)
        .expect("auditors always see it");
    assert_eq!(shown.withheld_until, now + 3600);
    let owner = report(Role::System, "js.gongan").await;
    assert!(
        owner.iter().all(|r| r.index != receipt.index),
        "withheld from the owner's report"
    );

    // After its date, the owner's report shows it.
    ex.clock.advance(Duration::from_secs(7200));
    let owner = report(Role::System, "js.gongan").await;
    let shown = owner
        .iter()
        .find(|r| r.index == receipt.index)
        .expect("shown after its date");
    assert_eq!(shown.purpose, "fraud-investigation");
}
