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
    let appeal = overturned.appeal.unwrap();
    assert_eq!(appeal.outcome, pb::AppealOutcome::Overturned as i32);
    assert_eq!(appeal.rejected_for, "names are not needed to register a company");
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

fn demand(provider: &str) -> pb::RaiseDemandRequest {
    pb::RaiseDemandRequest {
        provider_id: provider.into(),
        title: "不动产登记信息".into(),
        fields: vec!["owner_name".into()],
        purpose: "business-licensing".into(),
        legal_basis: "《优化营商环境条例》".into(),
        expires_at: exchange_core::now() + 30 * DAY,
    }
}

async fn demands_waiting(client: &mut Client) -> Vec<String> {
    let request = pb::ListDemandsRequest {
        waiting_for_me: true,
        ..Default::default()
    };
    let listed = client.list_demands(request).await.unwrap().into_inner();
    listed.demands.into_iter().map(|d| d.id).collect()
}

#[tokio::test]
async fn a_demand_is_answered_by_registering_a_dataset_or_escalates_when_overdue() {
    let ex = TestExchange::start_configured(|config| config.grants.review = true).await;
    // Monday 28 September 2026: 10 working days reach over National Day to Friday 16 October.
    ex.clock.set(beijing("2026-09-28", 9));
    ex.seed().await;
    let mut admin = ex.admin().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let mut zrzy = ex.client("js.zrzy", Role::System).await;
    let mut gongan = ex.client("js.gongan", Role::System).await;

    let asked = consumer.raise_demand(demand("js.zrzy")).await.unwrap().into_inner();
    assert_eq!(
        (asked.id.as_str(), asked.state),
        ("d-000001", pb::DemandState::Open as i32)
    );
    assert_eq!(asked.due_at, beijing("2026-10-17", 0));
    let other = consumer.raise_demand(demand("js.gongan")).await.unwrap().into_inner();
    assert_status(
        consumer.raise_demand(demand("js.nowhere")).await,
        Code::InvalidArgument,
        "js.nowhere is not a registered department",
    );
    assert_status(
        admin.raise_demand(demand("js.zrzy")).await,
        Code::PermissionDenied,
        "node or system",
    );
    assert_eq!(demands_waiting(&mut zrzy).await, vec![asked.id.clone()]);
    assert!(demands_waiting(&mut admin).await.is_empty(), "nothing overdue yet");
    // A department neither asking nor asked does not see the demand.
    assert_status(
        gongan
            .get_demand(pb::GetDemandRequest {
                demand_id: asked.id.clone(),
            })
            .await,
        Code::NotFound,
        "does not exist",
    );

    // Saturday 17 October: both are overdue, so they wait for the data authority too.
    ex.clock.set(beijing("2026-10-17", 9));
    assert_eq!(
        demands_waiting(&mut admin).await,
        vec![asked.id.clone(), other.id.clone()]
    );
    let refused = admin
        .refuse_demand(pb::RefuseDemandRequest {
            demand_id: other.id.clone(),
            reason: "public security holds no real-estate records".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(refused.decided_in_place && refused.state == pb::DemandState::Refused as i32);

    // The department asked registers a dataset for it and answers: a grant request follows.
    zrzy.register_dataset(pb::RegisterDatasetRequest {
        dataset: Some(dataset("js.zrzy/real-estate", pb::Classification::Conditional, "id")),
    })
    .await
    .unwrap();
    zrzy.publish_schema(pb::PublishSchemaRequest {
        dataset_id: "js.zrzy/real-estate".into(),
        schema_json: person_schema().to_string(),
    })
    .await
    .unwrap();
    let answer = |dataset: &str| pb::AnswerDemandRequest {
        demand_id: asked.id.clone(),
        dataset_id: dataset.into(),
        fields: vec!["name".into()],
    };
    assert_status(
        zrzy.answer_demand(answer("js.gongan/population")).await,
        Code::InvalidArgument,
        "is not js.zrzy's",
    );
    let answered = zrzy
        .answer_demand(answer("js.zrzy/real-estate"))
        .await
        .unwrap()
        .into_inner();
    let (d, g) = (answered.demand.unwrap(), answered.grant.unwrap());
    assert_eq!(d.state, pb::DemandState::Answered as i32);
    assert_eq!(
        (d.grant_id.as_str(), d.dataset_id.as_str()),
        (g.id.as_str(), "js.zrzy/real-estate")
    );
    assert_eq!(
        (g.consumer_id.as_str(), g.state),
        ("js.scjg", pb::GrantState::Requested as i32)
    );
    assert_eq!(g.fields, ["id", "name"]);
    assert!(
        g.requested_by.ends_with("/dept/js.scjg/system"),
        "the request is the consumer's"
    );
    assert_eq!(g.demand_id, d.id, "the grant names the demand it answers");
    assert_eq!(stage(&g), pb::GrantStage::Review, "on the usual path");
    assert_status(
        zrzy.answer_demand(answer("js.zrzy/real-estate")).await,
        Code::FailedPrecondition,
        "is answered already",
    );
    assert!(demands_waiting(&mut zrzy).await.is_empty() && demands_waiting(&mut admin).await.is_empty());

    // On the record: raised, refused in the provider's place, answered.
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let mut operations = Vec::new();
    for id in [&asked.id, &other.id] {
        let request = pb::SearchAuditEventsRequest {
            provider_id: "registry".into(),
            record_key: id.clone(),
            limit: 100,
            ..Default::default()
        };
        let page = auditor.search_audit_events(request).await.unwrap().into_inner();
        for e in page.events {
            let e: AuditEvent = serde_json::from_slice(&e.event).unwrap();
            operations.push((e.keys[0].clone(), e.operation, e.reason));
        }
    }
    let ops: Vec<(&str, &str)> = operations.iter().map(|(k, o, _)| (k.as_str(), o.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("d-000001", "raise_demand"),
            ("d-000001", "answer_demand"),
            ("d-000002", "raise_demand"),
            ("d-000002", "refuse_demand")
        ]
    );
    assert_eq!(
        operations[3].2,
        "in the provider's place: public security holds no real-estate records"
    );
}
