//! Who may call: identity comes from the verified client certificate only.

use exchange_core::identity::{Principal, Role};
use exchange_proto::registry::v1 as pb;
use exchange_transport::pki::{Ca, CertSpec};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn a_caller_without_a_certificate_is_unauthenticated() {
    let ex = TestExchange::start().await;
    let mut anonymous = ex.client_with(None).await;
    assert_status(
        anonymous.list_departments(pb::ListDepartmentsRequest::default()).await,
        Code::Unauthenticated,
        "no client certificate",
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_unauthenticated() {
    let ex = TestExchange::start().await;
    let other = Ca::generate(TRUST_DOMAIN, 30).unwrap();
    let foreign = other
        .issue(&CertSpec::for_principal(Principal::new("js.dsj", Role::Admin), 30))
        .unwrap();
    let mut client = ex.client_with(Some(&foreign)).await;
    assert_status(
        client.who_am_i(pb::WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "not issued by this exchange's CA",
    );
}

#[tokio::test]
async fn an_expired_certificate_is_unauthenticated() {
    let ex = TestExchange::start().await;
    let mut spec = CertSpec::for_principal(Principal::new("js.dsj", Role::Admin), 30);
    spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = ex.ca.issue(&spec).unwrap();
    let mut client = ex.client_with(Some(&expired)).await;
    assert_status(
        client.who_am_i(pb::WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "expired",
    );
}

#[tokio::test]
async fn an_identity_in_another_trust_domain_is_unauthenticated() {
    let ex = TestExchange::start().await;
    let mut other = Ca::load(ex.dir.path()).unwrap();
    other.trust_domain = "other.exchange".into();
    let foreign = other
        .issue(&CertSpec::for_principal(Principal::new("js.dsj", Role::Admin), 30))
        .unwrap();
    let mut client = ex.client_with(Some(&foreign)).await;
    assert_status(
        client.who_am_i(pb::WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "not in trust domain \"exchange.test\"",
    );
}

#[tokio::test]
async fn a_server_certificate_is_not_a_client_identity() {
    let ex = TestExchange::start().await;
    let server_only = ex
        .ca
        .issue(&CertSpec::for_server("no-identity", 30).serving(vec!["x.test".into()], vec![]))
        .unwrap();
    let mut client = ex.client_with(Some(&server_only)).await;
    assert_status(
        client.who_am_i(pb::WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "client authentication",
    );
}

#[tokio::test]
async fn an_unregistered_department_is_permission_denied() {
    let ex = TestExchange::start().await;
    let mut stranger = ex.client("js.unknown", Role::System).await;
    assert_status(
        stranger.list_departments(pb::ListDepartmentsRequest::default()).await,
        Code::PermissionDenied,
        "department js.unknown is not registered",
    );
}

#[tokio::test]
async fn whoami_reads_the_certificate() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut node = ex.client("js.gongan", Role::Node).await;
    let me = node.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!(me.department_id, "js.gongan");
    assert_eq!(me.role, pb::Role::Node as i32);
    assert_eq!(me.uri, "spiffe://exchange.test/dept/js.gongan/node");
    assert!(me.department_registered);
    assert!(me.certificate_not_after > exchange_core::now());
    // Admins act for the data authority, which need not be a registered member.
    let me = ex
        .admin()
        .await
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!me.department_registered);
}

#[tokio::test]
async fn roles_are_enforced_with_a_message_saying_who_may() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    assert_status(
        auditor
            .register_department(pb::RegisterDepartmentRequest {
                department: Some(department("js.x", pb::Level::Province, "320000", "")),
            })
            .await,
        Code::PermissionDenied,
        "only an admin may",
    );
    assert_status(
        auditor
            .publish_schema(pb::PublishSchemaRequest {
                dataset_id: "js.gongan/population".into(),
                schema_json: person_schema().to_string(),
            })
            .await,
        Code::PermissionDenied,
        "auditors read everything and change nothing",
    );
    // Auditors read everything.
    let all = auditor.list_grants(pb::ListGrantsRequest::default()).await.unwrap();
    assert!(all.into_inner().grants.is_empty());
    let mut other_node = ex.client("js.scjg", Role::Node).await;
    assert_status(
        other_node
            .register_dataset(pb::RegisterDatasetRequest {
                dataset: Some(dataset("js.gongan/stolen", pb::Classification::Open, "id")),
            })
            .await,
        Code::PermissionDenied,
        "only js.gongan's node or system, or an admin, may",
    );
    let mut system = ex.client("js.gongan", Role::System).await;
    assert_status(
        system
            .register_department(pb::RegisterDepartmentRequest {
                department: Some(department("js.y", pb::Level::Province, "320000", "")),
            })
            .await,
        Code::PermissionDenied,
        "only an admin may",
    );
}

#[tokio::test]
async fn clients_check_that_the_registry_is_the_registry() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    // A department's node holds a valid exchange certificate for "localhost" too; told to expect
    // the registry there, a client refuses it (as every node does when it calls the registry).
    let node = TestNode::start(&ex, "js.gongan").await;
    let issued = ex.issue("js.scjg", Role::System);
    let config = exchange_transport::client::ClientConfig {
        endpoint: node.endpoint.clone(),
        tls: exchange_transport::tls::TlsFiles {
            ca_pem: ex.ca.cert_pem.clone(),
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.clone(),
        },
        server_identity: Some(exchange_core::identity::registry_uri(TRUST_DOMAIN)),
    };
    let err = exchange_transport::client::connect(&config).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "names spiffe://{TRUST_DOMAIN}/dept/js.gongan/node, not spiffe://{TRUST_DOMAIN}/registry"
        )),
        "{err}"
    );
    // The registry's own certificate names it, and the same check passes.
    let config = exchange_transport::client::ClientConfig {
        endpoint: ex.endpoint.clone(),
        ..config
    };
    let mut registry = exchange_proto::registry::v1::registry_client::RegistryClient::new(
        exchange_transport::client::connect(&config).await.unwrap(),
    );
    registry.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
}
