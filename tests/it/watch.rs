//! Watch: a node's view of its datasets and the grants on them, live and resumable; and restarts.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::watch_event::Event;
use tonic::Code;

use crate::harness::*;

type Events = tonic::Streaming<pb::WatchEvent>;

async fn next(events: &mut Events) -> pb::WatchEvent {
    tokio::time::timeout(Duration::from_secs(1), events.message())
        .await
        .expect("no watch event within one second")
        .unwrap()
        .expect("watch stream ended")
}

/// Reads events up to and including CaughtUp.
async fn until_caught_up(events: &mut Events) -> Vec<pb::WatchEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next(events).await;
        if matches!(event.event, Some(Event::CaughtUp(_))) {
            return seen;
        }
        seen.push(event);
    }
}

fn grant_of(event: &pb::WatchEvent) -> &pb::Grant {
    match &event.event {
        Some(Event::Grant(g)) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subscriber_sees_the_current_state_then_an_approval_and_a_revocation_within_a_second() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let pending = consumer
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    // Not the owner's: must not appear in js.gongan's watch.
    consumer
        .request_grant(grant_request("js.zrzy/places", &["name"]))
        .await
        .unwrap();

    let mut node = ex.client("js.gongan", Role::Node).await;
    let mut events = node.watch(pb::WatchRequest::default()).await.unwrap().into_inner();
    let snapshot = until_caught_up(&mut events).await;
    let datasets: Vec<&pb::Dataset> = snapshot
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Dataset(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(datasets.len(), 1, "{snapshot:?}");
    assert_eq!(datasets[0].id, "js.gongan/population");
    assert_eq!(
        datasets[0].versions.len(),
        1,
        "the dataset comes with its schema versions"
    );
    let grants: Vec<&pb::Grant> = snapshot
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Grant(g)) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].id, pending.id);
    assert_eq!(grants[0].state, pb::GrantState::Requested as i32);

    let mut owner = ex.client("js.gongan", Role::System).await;
    owner
        .approve_grant(pb::DecideGrantRequest {
            grant_id: pending.id.clone(),
            reason: "ok".into(),
        })
        .await
        .unwrap();
    let approved = next(&mut events).await;
    assert_eq!(grant_of(&approved).id, pending.id);
    assert_eq!(grant_of(&approved).state, pb::GrantState::Approved as i32);

    owner
        .revoke_grant(pb::DecideGrantRequest {
            grant_id: pending.id.clone(),
            reason: "case closed".into(),
        })
        .await
        .unwrap();
    let revoked = next(&mut events).await;
    assert_eq!(grant_of(&revoked).state, pb::GrantState::Revoked as i32);
    assert!(revoked.revision > approved.revision);

    // Resuming from the approval's revision gives the revocation, and nothing before it.
    let mut resumed = node
        .watch(pb::WatchRequest {
            from_revision: approved.revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let replay = until_caught_up(&mut resumed).await;
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(grant_of(&replay[0]).state, pb::GrantState::Revoked as i32);
}

#[tokio::test]
async fn watching_is_limited_to_ones_own_department() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut node = ex.client("js.gongan", Role::Node).await;
    let refused = node
        .watch(pb::WatchRequest {
            department_id: "js.scjg".into(),
            ..Default::default()
        })
        .await;
    assert_status(refused.map(|_| ()), Code::PermissionDenied, "only its own department");
    let refused = node
        .watch(pb::WatchRequest {
            all_departments: true,
            ..Default::default()
        })
        .await;
    assert_status(refused.map(|_| ()), Code::PermissionDenied, "only an admin or auditor");
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let mut all = auditor
        .watch(pb::WatchRequest {
            all_departments: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(until_caught_up(&mut all).await.len(), 4, "the four seeded datasets");
    // The data authority owns no datasets: an auditor's or admin's default is everything.
    let mut default = auditor.watch(pb::WatchRequest::default()).await.unwrap().into_inner();
    assert_eq!(until_caught_up(&mut default).await.len(), 4);
    let mut own = node.watch(pb::WatchRequest::default()).await.unwrap().into_inner();
    assert_eq!(
        until_caught_up(&mut own).await.len(),
        1,
        "a node's default is its own department"
    );
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let mut ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let g = consumer
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let mut admin = ex.admin().await;
    let before_departments = admin
        .list_departments(pb::ListDepartmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let before_datasets = admin
        .search_datasets(pb::SearchDatasetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut watch = admin
        .watch(pb::WatchRequest {
            all_departments: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let revision_before = until_caught_up(&mut watch).await.last().unwrap().revision;

    ex.restart().await;

    let mut admin = ex.admin().await;
    let after_departments = admin
        .list_departments(pb::ListDepartmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before_departments, after_departments);
    let after_datasets = admin
        .search_datasets(pb::SearchDatasetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before_datasets, after_datasets);
    let got = admin
        .get_grant(pb::GetGrantRequest { grant_id: g.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, g);
    // Revisions and grant ids continue where they were, never reused.
    let next_grant = consumer_after_restart(&ex).await;
    assert_ne!(next_grant.id, g.id);
    assert!(next_grant.revision > revision_before);
}

async fn consumer_after_restart(ex: &TestExchange) -> pb::Grant {
    let mut consumer = ex.client("js.scjg", Role::System).await;
    consumer
        .request_grant(grant_request("js.zrzy/places", &["name"]))
        .await
        .unwrap()
        .into_inner()
}
