//! The node's view of the registry: served through outages, restored registries refused, the
//! endpoint announced, each department's datasets on its own node.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;
use serde_json::json;
use tonic::Code;

use super::*;
use crate::harness::*;

#[tokio::test]
async fn with_the_registry_down_the_node_serves_its_last_grants_and_catches_up_after() {
    let (mut ex, node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    ex.stop_registry().await;
    // Still served from the cached grant, and the status says the view is not current.
    consumer.get(get(&keys, &[], "business-licensing")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = node
            .client(&ex, "js.gongan", Role::Node)
            .await
            .status(npb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if !status.registry_connected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rsj = node.client(&ex, "js.rsj", Role::System).await;
    assert_status(
        rsj.get(get(&keys, &[], "business-licensing")).await,
        Code::PermissionDenied,
        "no grant",
    );
    use tonic_health::pb::health_check_response::ServingStatus;
    let health = tonic_health::pb::health_client::HealthClient::new(node.channel(&ex, "js.dsj", Role::Auditor).await);
    let view = |health: &tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>| {
        let mut health = health.clone();
        async move {
            let request = tonic_health::pb::HealthCheckRequest {
                service: "exchange.node.v1.RegistryView".into(),
            };
            health.check(request).await.unwrap().into_inner().status
        }
    };
    assert_eq!(view(&health).await, ServingStatus::NotServing as i32);

    ex.start_registry().await;
    let mut rsj_registry = ex.client("js.rsj", Role::System).await;
    let g = rsj_registry
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let mut owner = ex.client("js.gongan", Role::System).await;
    let approved = owner
        .approve_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            reason: "ok".into(),
        })
        .await
        .unwrap()
        .into_inner();
    node.wait_current(&ex, approved.revision).await;
    rsj.get(get(&keys, &[], "business-licensing")).await.unwrap();
    assert_eq!(view(&health).await, ServingStatus::Serving as i32);
    assert_eq!(
        audited(&node),
        [
            read("js.scjg", "get", true),
            read("js.rsj", "get", false),
            read("js.rsj", "get", true)
        ]
    );
}

/// Asserts the node has not followed a restored registry: not current, still at revision
/// `ahead`, and none of the grants approved since (js.rsj's) in force.
async fn assert_still_on_its_view(node: &TestNode, ex: &TestExchange, ahead: u64, keys: &[String]) {
    let now = node_status(node, ex).await;
    assert!(!now.registry_connected && now.registry_revision == ahead, "{now:?}");
    let mut reader = node.client(ex, "js.rsj", Role::System).await;
    assert_status(
        reader.get(get(keys, &[], "business-licensing")).await,
        Code::PermissionDenied,
        "no grant",
    );
}

/// Stops the registry, empties its data directory and seeds it again: a restore from an older
/// backup, as far as the nodes can tell.
async fn restore_registry_from_an_empty_backup(ex: &mut TestExchange) {
    ex.stop_registry().await;
    std::fs::remove_dir_all(ex.dir.path().join("data")).unwrap();
    ex.start_registry().await;
    ex.seed().await;
}

/// Requests and approves grants for js.rsj until the registry's revision passes `revision`;
/// returns the last revision.
async fn approve_rsj_grants_past(ex: &TestExchange, revision: u64) -> u64 {
    let mut rsj = ex.client("js.rsj", Role::System).await;
    let mut owner = ex.client("js.gongan", Role::System).await;
    let mut last = 0;
    while last <= revision {
        let g = rsj
            .request_grant(grant_request("js.gongan/population", &["name"]))
            .await
            .unwrap()
            .into_inner();
        last = owner
            .approve_grant(pb::DecideGrantRequest {
                grant_id: g.id,
                reason: "ok".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .revision;
    }
    last
}

/// Waits (up to ten seconds) until the node reports that it stopped following the registry,
/// and returns why.
async fn diverged(node: &TestNode, ex: &TestExchange) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = node_status(node, ex).await;
        if !status.registry_diverged.is_empty() {
            return status.registry_diverged;
        }
        assert!(tokio::time::Instant::now() < deadline, "never diverged: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_node_ahead_of_a_restored_registry_stops_following_it_until_resynchronised() {
    let (mut ex, mut node, keys, _) = setup().await;
    let ahead = node_status(&node, &ex).await.registry_revision;
    assert_eq!(node_status(&node, &ex).await.registry_diverged, "");
    // The registry comes back from an older backup (here: empty, then the same seed again).
    restore_registry_from_an_empty_backup(&mut ex).await;
    // The node reconnects, finds the registry behind its view, and says so.
    let why = diverged(&node, &ex).await;
    assert!(why.contains("older backup"), "{why}");
    // New decisions take the registry past the node's old revision: a node resuming by number
    // would now skip some of them and apply others. This one has stopped following: it keeps its
    // last view, says it is not current, applies nothing.
    let last = approve_rsj_grants_past(&ex, ahead + 2).await;
    assert_still_on_its_view(&node, &ex, ahead, &keys).await;
    // Restarting is not enough: the node remembers that the registry went back.
    node.restart().await;
    assert_eq!(node_status(&node, &ex).await.registry_diverged, why);
    assert_still_on_its_view(&node, &ex, ahead, &keys).await;
    // An operator resets the node's registry view; it replays the registry's current state.
    node.stop().await;
    assert!(exchange_node::reset_registry_view(&node.data_dir).unwrap() > 0);
    node.serve_again().await;
    node.wait_current(&ex, last).await;
    assert_eq!(node_status(&node, &ex).await.registry_diverged, "");
    let mut reader = node.client(&ex, "js.rsj", Role::System).await;
    reader.get(get(&keys, &[], "business-licensing")).await.unwrap();
}

#[tokio::test]
async fn a_node_that_was_down_during_a_registry_restore_still_notices_it() {
    let (mut ex, mut node, keys, _) = setup().await;
    let ahead = node_status(&node, &ex).await.registry_revision;
    node.stop().await;
    // While the node is down, the registry is restored and then passes the node's revision, so
    // the number alone looks like a normal resume.
    restore_registry_from_an_empty_backup(&mut ex).await;
    approve_rsj_grants_past(&ex, ahead + 2).await;
    node.serve_again().await;
    // The history at the node's revision is not the registry's: it does not follow.
    let why = diverged(&node, &ex).await;
    assert!(why.contains("older backup"), "{why}");
    assert_still_on_its_view(&node, &ex, ahead, &keys).await;
}

#[tokio::test]
async fn a_node_announces_where_it_serves_and_only_a_node_may() {
    let (ex, mut node, _, _) = setup().await;
    let mut admin = ex.client("js.dsj", Role::Admin).await;
    let endpoint = |d: pb::Department| d.node_endpoint;
    let dept = || pb::GetDepartmentRequest { id: "js.gongan".into() };
    assert_eq!(
        endpoint(admin.get_department(dept()).await.unwrap().into_inner()),
        node.endpoint
    );
    // Restarted on another port, it announces the new one as soon as it reconnects.
    let old = node.endpoint.clone();
    node.restart().await;
    assert_ne!(node.endpoint, old);
    node.wait_current(&ex, 0).await;
    assert_eq!(
        endpoint(admin.get_department(dept()).await.unwrap().into_inner()),
        node.endpoint
    );

    // Only a department's node announces, and only as an https:// URL.
    let announce = |url: &str| pb::AnnounceNodeRequest { endpoint: url.into() };
    let mut system = ex.client("js.gongan", Role::System).await;
    assert_status(
        system.announce_node(announce("https://elsewhere.example:7401")).await,
        Code::PermissionDenied,
        "only a department's node announces its own",
    );
    assert_status(
        admin.announce_node(announce("https://elsewhere.example:7401")).await,
        Code::PermissionDenied,
        "an admin sets it with a department update",
    );
    let mut as_node = ex.client("js.gongan", Role::Node).await;
    assert_status(
        as_node.announce_node(announce("http://10.0.0.1:7401")).await,
        Code::InvalidArgument,
        "must be an https:// URL",
    );
    assert_eq!(
        endpoint(admin.get_department(dept()).await.unwrap().into_inner()),
        node.endpoint
    );
}

#[tokio::test]
async fn each_node_serves_its_own_departments_datasets() {
    let (ex, gongan, keys, _) = setup().await;
    let scjg = TestNode::start(&ex, "js.scjg").await;
    let mut scjg_owner = scjg.client(&ex, "js.scjg", Role::System).await;
    let status = scjg_owner.status(npb::StatusRequest {}).await.unwrap().into_inner();
    scjg.wait_current(&ex, status.registry_revision).await;
    // A node's status is for its own department, admins and auditors.
    let mut other = scjg.client(&ex, "js.gongan", Role::System).await;
    assert_status(
        other.status(npb::StatusRequest {}).await,
        Code::PermissionDenied,
        "only js.scjg itself",
    );
    let company = json!({"id": id_number("320102", 500), "name": "南京测试有限公司"});
    let mut publish = publish_request(vec![upsert(&company)]);
    publish.dataset_id = "js.scjg/legal-persons".into();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while scjg_owner.publish(publish.clone()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scjg node never learned its dataset"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // js.gongan reads the company register at the scjg node under a grant (unconditional).
    let mut gongan_registry = ex.client("js.gongan", Role::System).await;
    let g = gongan_registry
        .request_grant(grant_request("js.scjg/legal-persons", &["name"]))
        .await
        .unwrap()
        .into_inner();
    let mut reader = scjg.client(&ex, "js.gongan", Role::System).await;
    scjg.wait_current(&ex, g.revision).await;
    let mut request = get(&[id_number("320102", 500)], &["name"], "business-licensing");
    request.dataset_id = "js.scjg/legal-persons".into();
    let got = reader.get(request.clone()).await.unwrap().into_inner();
    // The test schema marks "name" as a person's name, so it is masked for the consumer.
    assert_eq!(records(&got)[0]["name"], "南*******");
    // Each node serves only its own department's datasets.
    let mut wrong_node = gongan.client(&ex, "js.gongan", Role::System).await;
    assert_status(
        wrong_node.get(request).await,
        Code::NotFound,
        "not served by this node (js.gongan)",
    );
    let mut wrong = scjg.client(&ex, "js.scjg", Role::System).await;
    assert_status(
        wrong.get(get(&keys, &[], "business-licensing")).await,
        Code::NotFound,
        "not served by this node (js.scjg)",
    );
    // Each node's ledger holds the reads it answered, allowed or not.
    assert_eq!(
        audited(&scjg),
        [read("js.gongan", "get", true), read("js.scjg", "get", false)]
    );
    assert_eq!(audited(&gongan), [read("js.gongan", "get", false)]);
}
