//! What every server offers the same way, because both are built by one assembly: health,
//! reflection in both versions clients speak, listing only the server's own services, and data
//! directories nobody else can read.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use exchange_core::identity::Role;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::harness::*;

/// Asks a server's reflection service, in version `$v` (`v1` or `v1alpha`: the two have the
/// same messages in different packages), one question, and returns its answer or its error.
macro_rules! reflect {
    ($v:ident, $channel:expr, $request:expr) => {{
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some($request),
        };
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        match responses.message().await {
            Err(status) => Err(status.message().to_string()),
            Ok(response) => match response.unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                    names.sort();
                    Ok(names)
                }
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    Ok(vec![format!("{} files", files.file_descriptor_proto.len())])
                }
                Some(MessageResponse::ErrorResponse(e)) => Err(e.error_message),
                other => panic!("unexpected reflection response {other:?}"),
            },
        }
    }};
}

async fn services_v1(channel: Channel) -> Vec<String> {
    reflect!(v1, channel, MessageRequest::ListServices(String::new())).unwrap()
}

/// The version Python's grpcio-reflection speaks.
async fn services_v1alpha(channel: Channel) -> Vec<String> {
    reflect!(v1alpha, channel, MessageRequest::ListServices(String::new())).unwrap()
}

/// Whether a client can fetch the file that defines `symbol`.
async fn describes(channel: Channel, symbol: &str) -> bool {
    reflect!(v1alpha, channel, MessageRequest::FileContainingSymbol(symbol.into())).is_ok()
}

async fn serving(channel: Channel, service: &str) -> i32 {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

fn listed(own: &str) -> Vec<String> {
    let mut names: Vec<String> = [
        own,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .map(String::from)
    .to_vec();
    names.sort();
    names
}

#[tokio::test]
async fn both_servers_serve_health_and_both_reflection_versions_listing_only_their_own_services() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let node = TestNode::start(&ex, "js.gongan").await;
    let registry = channel_with(&ex.ca, &ex.endpoint, Some(&ex.issue("js.dsj", Role::Admin))).await;
    let node_channel = node.channel(&ex, "js.scjg", Role::System).await;

    let registry_api = "exchange.registry.v1.Registry";
    let node_api = "exchange.node.v1.Node";
    assert_eq!(services_v1(registry.clone()).await, listed(registry_api));
    assert_eq!(services_v1alpha(registry.clone()).await, listed(registry_api));
    assert_eq!(services_v1(node_channel.clone()).await, listed(node_api));
    assert_eq!(services_v1alpha(node_channel.clone()).await, listed(node_api));

    // What is listed can be described; the other server's API cannot.
    assert!(describes(node_channel.clone(), node_api).await);
    assert!(describes(registry.clone(), registry_api).await);
    assert!(!describes(node_channel.clone(), registry_api).await);
    assert!(!describes(registry.clone(), node_api).await);

    let serving_status = ServingStatus::Serving as i32;
    assert_eq!(serving(registry.clone(), registry_api).await, serving_status);
    assert_eq!(serving(registry, "").await, serving_status);
    assert_eq!(serving(node_channel.clone(), node_api).await, serving_status);
}

#[tokio::test]
async fn health_and_reflection_refuse_a_caller_without_a_certificate_on_both_servers() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let node = TestNode::start(&ex, "js.gongan").await;
    for endpoint in [&ex.endpoint, &node.endpoint] {
        let anonymous = channel_with(&ex.ca, endpoint, None).await;
        let health = HealthClient::new(anonymous.clone())
            .check(HealthCheckRequest { service: String::new() })
            .await;
        assert_status(health, tonic::Code::Unauthenticated, "no client certificate");
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let listed = ServerReflectionClient::new(anonymous)
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await;
        assert_status(
            listed.map(|_| ()),
            tonic::Code::Unauthenticated,
            "no client certificate",
        );
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every directory and file under `dir` that others could read or change, with its mode.
fn open_to_others(dir: &Path) -> Vec<String> {
    let mut open = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let m = mode(&path);
        if m & 0o077 != 0 {
            open.push(format!("{} {m:o}", path.display()));
        }
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    open
}

#[tokio::test]
async fn data_directories_and_every_file_in_them_are_private() {
    let mut ex = TestExchange::start().await;
    ex.seed().await;
    let mut node = TestNode::start(&ex, "js.gongan").await;
    node.wait_current(&ex, 1).await;
    // A read puts a citizen's id number in the ledger.
    let mut client = node.client(&ex, "js.gongan", Role::System).await;
    client
        .get(exchange_proto::node::v1::GetRequest {
            dataset_id: "js.gongan/population".into(),
            keys: vec!["320102198801010012".into()],
            purpose: "self-check".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let registry_dir = ex.dir.path().join("data");
    assert!(node.data_dir.join("ledger/events").exists());
    assert!(node.data_dir.join("log.key").exists());
    assert_eq!(open_to_others(&registry_dir), Vec::<String>::new());
    assert_eq!(open_to_others(&node.data_dir), Vec::<String>::new());
    assert_eq!(mode(&node.data_dir), 0o700);
    assert_eq!(mode(&node.data_dir.join("ledger/events")), 0o600);
    assert_eq!(mode(&node.data_dir.join("log.key")), 0o600);

    // Left readable by an operator (a copy, an older version): tightened at the next start.
    node.stop().await;
    ex.stop_registry().await;
    for dir in [&registry_dir, &node.data_dir] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ledger = node.data_dir.join("ledger/events");
    std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o644)).unwrap();
    ex.start_registry().await;
    node.serve_again().await;
    node.wait_current(&ex, 1).await;
    assert_eq!(open_to_others(&registry_dir), Vec::<String>::new());
    assert_eq!(open_to_others(&node.data_dir), Vec::<String>::new());
}
