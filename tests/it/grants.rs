//! The grant state machine per classification, decisions, listing and expiry.

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use crate::harness::*;

fn state(g: &pb::Grant) -> pb::GrantState {
    pb::GrantState::try_from(g.state).unwrap()
}

#[tokio::test]
async fn unconditional_and_open_are_approved_at_once_not_shared_is_refused() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.rsj", Role::System).await;
    for dataset in ["js.scjg/legal-persons", "js.zrzy/places"] {
        let g = consumer
            .request_grant(grant_request(dataset, &["name"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&g), pb::GrantState::Approved, "{dataset}");
        assert!(g.reason.contains("approved automatically"), "{g:?}");
        assert_eq!(g.fields, ["id", "name"], "the key is always granted");
        assert_eq!(g.consumer_id, "js.rsj");
        assert_eq!(g.requested_by, "spiffe://exchange.test/dept/js.rsj/system");
    }
    assert_status(
        consumer
            .request_grant(grant_request("js.zrzy/secrets", &["name"]))
            .await,
        Code::FailedPrecondition,
        "not_shared",
    );
    let listed = consumer
        .list_grants(pb::ListGrantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.grants.len(), 2, "the refused request stored nothing");

    // A sensitive field in clear is the owner's decision, even on an unconditional dataset.
    let mut in_clear = grant_request("js.scjg/legal-persons", &["name"]);
    in_clear.clear_fields = vec!["name".into()];
    let g = consumer.request_grant(in_clear).await.unwrap().into_inner();
    assert_eq!(state(&g), pb::GrantState::Requested);
    assert!(g.reason.contains("name asked in clear"), "{g:?}");
    let mut owner = ex.client("js.scjg", Role::System).await;
    let approved = owner
        .approve_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            reason: "the tax bureau needs the legal name".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&approved), pb::GrantState::Approved);
}

#[tokio::test]
async fn conditional_waits_for_the_owner_who_approves_then_revokes() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let g = consumer
        .request_grant(grant_request("js.gongan/population", &["name", "region_code"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&g), pb::GrantState::Requested);
    let decide = |reason: &str| pb::DecideGrantRequest {
        grant_id: g.id.clone(),
        reason: reason.into(),
    };
    // The consumer cannot approve its own request; another department cannot either.
    assert_status(
        consumer.approve_grant(decide("")).await,
        Code::PermissionDenied,
        "only js.gongan's node or system",
    );
    let mut bystander = ex.client("js.rsj", Role::Node).await;
    assert_status(
        bystander.approve_grant(decide("")).await,
        Code::PermissionDenied,
        "may not decide",
    );
    let mut owner = ex.client("js.gongan", Role::Node).await;
    let approved = owner
        .approve_grant(decide("identity check"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&approved), pb::GrantState::Approved);
    assert_eq!(approved.decided_by, "spiffe://exchange.test/dept/js.gongan/node");
    assert_status(
        owner.reject_grant(decide("too late")).await,
        Code::FailedPrecondition,
        "because it is approved",
    );
    assert_status(owner.revoke_grant(decide("")).await, Code::InvalidArgument, "reason");
    let revoked = owner.revoke_grant(decide("case closed")).await.unwrap().into_inner();
    assert_eq!(state(&revoked), pb::GrantState::Revoked);
    assert_eq!(revoked.reason, "case closed");
    assert_status(
        owner.approve_grant(decide("")).await,
        Code::FailedPrecondition,
        "because it is revoked",
    );
}

#[tokio::test]
async fn conditional_can_be_rejected_and_a_consumer_may_withdraw_its_own() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let mut admin = ex.admin().await;
    let first = consumer
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let rejected = admin
        .reject_grant(pb::DecideGrantRequest {
            grant_id: first.id.clone(),
            reason: "no legal basis for phone numbers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&rejected), pb::GrantState::Rejected);
    let second = consumer
        .request_grant(grant_request("js.scjg/legal-persons", &["name"]))
        .await;
    assert_status(second, Code::InvalidArgument, "owns js.scjg/legal-persons");
    let third = consumer
        .request_grant(grant_request("js.zrzy/places", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let withdrawn = consumer
        .revoke_grant(pb::DecideGrantRequest {
            grant_id: third.id,
            reason: "no longer needed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&withdrawn), pb::GrantState::Revoked);
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let cases: Vec<(pb::RequestGrantRequest, Code, &str)> = vec![
        (
            grant_request("js.gongan/population", &["passport"]),
            Code::InvalidArgument,
            "\"passport\" is not a property",
        ),
        (
            pb::RequestGrantRequest {
                purposes: vec![],
                ..grant_request("js.gongan/population", &["name"])
            },
            Code::InvalidArgument,
            "purposes",
        ),
        (
            pb::RequestGrantRequest {
                expires_at: exchange_core::now() + 400 * DAY,
                ..grant_request("js.gongan/population", &["name"])
            },
            Code::InvalidArgument,
            "at most 365 days",
        ),
        (
            pb::RequestGrantRequest {
                row_filter: "region_code = ".into(),
                ..grant_request("js.gongan/population", &["name"])
            },
            Code::InvalidArgument,
            "row_filter",
        ),
        (
            pb::RequestGrantRequest {
                consumer_id: "js.rsj".into(),
                ..grant_request("js.gongan/population", &["name"])
            },
            Code::PermissionDenied,
            "only for its own department",
        ),
        (
            grant_request("js.gongan/nothing", &["name"]),
            Code::NotFound,
            "does not exist",
        ),
    ];
    for (request, code, fragment) in cases {
        assert_status(consumer.request_grant(request).await, code, fragment);
    }
    let listed = consumer
        .list_grants(pb::ListGrantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.grants.is_empty(),
        "refused requests stored something: {listed:?}"
    );
}

#[tokio::test]
async fn grants_are_listed_by_consumer_dataset_owner_and_state_to_those_who_may_see_them() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut scjg = ex.client("js.scjg", Role::System).await;
    let mut rsj = ex.client("js.rsj", Role::System).await;
    let mut filtered = grant_request("js.gongan/population", &["name", "region_code"]);
    filtered.row_filter = "region_code starts with '3201'".into();
    let a = scjg.request_grant(filtered).await.unwrap().into_inner();
    assert_eq!(
        a.row_filter, "region_code STARTS WITH \"3201\"",
        "filters are stored in canonical form"
    );
    let b = rsj
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let c = rsj
        .request_grant(grant_request("js.zrzy/places", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let list = |consumer: &str, dataset: &str, owner: &str, state: pb::GrantState| pb::ListGrantsRequest {
        consumer_id: consumer.into(),
        dataset_id: dataset.into(),
        owner_id: owner.into(),
        state: state as i32,
        waiting_for_me: false,
    };
    let ids = |r: pb::ListGrantsResponse| r.grants.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let all = auditor
        .list_grants(pb::ListGrantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(all), [a.id.as_str(), b.id.as_str(), c.id.as_str()]);
    let by_consumer = auditor
        .list_grants(list("js.rsj", "", "", pb::GrantState::Unspecified))
        .await
        .unwrap();
    assert_eq!(ids(by_consumer.into_inner()), [b.id.as_str(), c.id.as_str()]);
    let by_dataset = auditor
        .list_grants(list("", "js.gongan/population", "", pb::GrantState::Unspecified))
        .await
        .unwrap();
    assert_eq!(ids(by_dataset.into_inner()), [a.id.as_str(), b.id.as_str()]);
    let by_state = auditor
        .list_grants(list("", "", "", pb::GrantState::Approved))
        .await
        .unwrap();
    assert_eq!(ids(by_state.into_inner()), [c.id.as_str()]);
    let by_owner = auditor
        .list_grants(list("", "", "js.zrzy", pb::GrantState::Unspecified))
        .await
        .unwrap();
    assert_eq!(ids(by_owner.into_inner()), [c.id.as_str()]);
    // A department sees the grants it holds or gives, not others'.
    let mine = scjg.list_grants(pb::ListGrantsRequest::default()).await.unwrap();
    assert_eq!(ids(mine.into_inner()), [a.id.as_str()]);
    let owners = ex
        .client("js.gongan", Role::Node)
        .await
        .list_grants(pb::ListGrantsRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(owners.into_inner()), [a.id.as_str(), b.id.as_str()]);
    assert_status(
        scjg.get_grant(pb::GetGrantRequest { grant_id: b.id }).await,
        Code::NotFound,
        "does not exist",
    );
}

#[tokio::test]
async fn an_approved_grant_past_its_expiry_reads_as_expired() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let mut short = grant_request("js.zrzy/places", &["name"]);
    short.expires_at = ex.clock.now() + 60;
    let g = consumer.request_grant(short).await.unwrap().into_inner();
    assert_eq!(state(&g), pb::GrantState::Approved);
    // Still in force the second before it expires, expired at the second it does.
    ex.clock.advance(std::time::Duration::from_secs(59));
    let got = consumer
        .get_grant(pb::GetGrantRequest { grant_id: g.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&got), pb::GrantState::Approved);
    ex.clock.advance(std::time::Duration::from_secs(1));
    let got = consumer
        .get_grant(pb::GetGrantRequest { grant_id: g.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&got), pb::GrantState::Expired);
    let expired = consumer
        .list_grants(pb::ListGrantsRequest {
            state: pb::GrantState::Expired as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expired.grants.len(), 1);
    assert_status(
        consumer
            .revoke_grant(pb::DecideGrantRequest {
                grant_id: g.id,
                reason: "x".into(),
            })
            .await,
        Code::FailedPrecondition,
        "because it is expired",
    );
}
