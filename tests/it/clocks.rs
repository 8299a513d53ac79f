//! Request clocks in working days: the data authority's review, the owner's decision, escalation
//! when overdue, the appeal; on China's 2026 calendar, with the registry's clock set by the test.

use exchange_core::identity::Role;
use exchange_core::ledger::AuditEvent;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use crate::harness::*;

/// Unix seconds of `date` (YYYY-MM-DD) at `hh:00` Beijing time.
fn beijing(date: &str, hh: u8) -> i64 {
    let date = exchange_core::calendar::parse_date(date).unwrap();
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap();
    date.with_hms(hh, 0, 0).unwrap().assume_offset(offset).unix_timestamp()
}

fn decide(id: &str, reason: &str) -> pb::DecideGrantRequest {
    pb::DecideGrantRequest {
        grant_id: id.into(),
        reason: reason.into(),
    }
}

fn stage(g: &pb::Grant) -> pb::GrantStage {
    pb::GrantStage::try_from(g.stage).unwrap()
}

async fn waiting(client: &mut Client) -> Vec<String> {
    let request = pb::ListGrantsRequest {
        waiting_for_me: true,
        ..Default::default()
    };
    let listed = client.list_grants(request).await.unwrap().into_inner();
    listed.grants.into_iter().map(|g| g.id).collect()
}

/// The registry's ledger events about grant `id`, as an auditor finds them.
async fn ledgered(ex: &TestExchange, id: &str) -> Vec<AuditEvent> {
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let request = pb::SearchAuditEventsRequest {
        provider_id: "registry".into(),
        grant_id: id.into(),
        limit: 100,
        ..Default::default()
    };
    let page = auditor.search_audit_events(request).await.unwrap().into_inner();
    page.events
        .iter()
        .map(|e| serde_json::from_slice(&e.event).unwrap())
        .collect()
}

#[tokio::test]
async fn a_request_is_reviewed_decided_escalated_and_appealed_in_working_days() {
    let ex = TestExchange::start_configured(|config| config.grants.review = true).await;
    // Wednesday 30 September 2026, the day before the National Day week off.
    ex.clock.set(beijing("2026-09-30", 10));
    ex.seed().await;
    let (mut admin, mut owner) = (ex.admin().await, ex.client("js.gongan", Role::System).await);
    let mut consumer = ex.client("js.scjg", Role::System).await;

    let g = consumer
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    // Review in 2 working days: 1 to 7 October are off, so Thursday 8th and Friday 9th.
    assert_eq!(
        (stage(&g), g.due_at, g.overdue),
        (pb::GrantStage::Review, beijing("2026-10-10", 0), false)
    );
    assert_status(
        owner.approve_grant(decide(&g.id, "")).await,
        Code::FailedPrecondition,
        "at the data authority's review",
    );
    assert_status(
        consumer.pass_review(decide(&g.id, "")).await,
        Code::PermissionDenied,
        "only the data authority's admins",
    );
    assert_eq!(waiting(&mut admin).await, vec![g.id.clone()]);
    assert!(waiting(&mut owner).await.is_empty());

    // Passed on Friday 9 October: 5 working days are Saturday 10th (a make-up working day) and
    // Monday 12th to Thursday 15th.
    ex.clock.set(beijing("2026-10-09", 15));
    let g = admin
        .pass_review(decide(&g.id, "legal basis checked"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stage(&g), g.due_at),
        (pb::GrantStage::Decision, beijing("2026-10-16", 0))
    );
    assert!(g.reviewed_by.ends_with("/dept/js.dsj/admin"), "{}", g.reviewed_by);
    assert_eq!(waiting(&mut owner).await, vec![g.id.clone()]);
    assert!(waiting(&mut admin).await.is_empty(), "not overdue yet");

    // Friday 16th: overdue, so it escalates to the data authority, which decides in its place.
    ex.clock.set(beijing("2026-10-16", 9));
    let listed = owner
        .get_grant(pb::GetGrantRequest { grant_id: g.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.overdue);
    assert_eq!(waiting(&mut admin).await, vec![g.id.clone()]);
    let approved = admin
        .approve_grant(decide(&g.id, "no answer in 5 working days"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.state, pb::GrantState::Approved as i32);
    assert!(approved.decided_in_place && !approved.overdue);
    assert!(waiting(&mut admin).await.is_empty() && waiting(&mut owner).await.is_empty());
    let events = ledgered(&ex, &g.id).await;
    let operations: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        ["request_grant", "pass_review", "approve_grant"],
        "{events:?}"
    );
    assert_eq!(events[2].reason, "in the owner's place: no answer in 5 working days");

    // A second request, rejected by its owner, appealed by the consumer, overturned.
    let g = consumer
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    admin.pass_review(decide(&g.id, "")).await.unwrap();
    assert_status(
        consumer.appeal_grant(decide(&g.id, "we need it")).await,
        Code::FailedPrecondition,
        "only a rejected grant can be appealed",
    );
    owner
        .reject_grant(decide(&g.id, "names are not needed to register a company"))
        .await
        .unwrap();
    assert_status(
        owner.appeal_grant(decide(&g.id, "x")).await,
        Code::PermissionDenied,
        "only js.scjg (the consumer)",
    );
    assert_status(
        consumer.appeal_grant(decide(&g.id, " ")).await,
        Code::InvalidArgument,
        "say why",
    );
    let appealed = consumer
        .appeal_grant(decide(&g.id, "article 35 names the legal representative's name"))
        .await
        .unwrap()
        .into_inner();
    // Friday 16th: 5 working days are 19 to 23 October.
    assert_eq!(appealed.appeal.as_ref().unwrap().due_at, beijing("2026-10-24", 0));
    assert_eq!(waiting(&mut admin).await, vec![g.id.clone()]);
    assert_status(
        owner.overturn_appeal(decide(&g.id, "x")).await,
        Code::PermissionDenied,
        "admins",
    );
    let overturned = admin
        .overturn_appeal(decide(&g.id, "article 35 applies"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overturned.state, pb::GrantState::Approved as i32);
    assert_eq!(overturned.appeal.unwrap().outcome, pb::AppealOutcome::Overturned as i32);
    assert_eq!(overturned.reason, "approved on appeal: article 35 applies");
    assert_status(
        consumer.appeal_grant(decide(&g.id, "again")).await,
        Code::FailedPrecondition,
        "only a rejected grant",
    );
    let operations: Vec<String> = ledgered(&ex, &g.id).await.into_iter().map(|e| e.operation).collect();
    assert_eq!(
        operations,
        [
            "request_grant",
            "pass_review",
            "reject_grant",
            "appeal_grant",
            "overturn_appeal"
        ]
    );
}
