//! Department nodes: validated publish, authorized reads with projection and masking, row
//! filters, revocation, registry outages, the change feed, the audit of every read, correction
//! requests on records read, the early warning over what nodes ship and report, and the
//! scoreboard of how departments serve. Helpers shared by the themes are here; each theme has
//! its file.

mod alerts;
mod auditing;
mod corrections;
mod denials;
mod feed;
mod publish;
mod reads;
mod receipts;
mod registry_view;
mod scoreboard;
mod shipping;

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_core::ledger::Decision;
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;
use serde_json::{json, Value};

use crate::harness::*;

/// A valid resident id number in region `region` with sequence `n`.
pub(super) fn id_number(region: &str, n: u32) -> String {
    let first17 = format!("{region}19900101{n:03}");
    let check = exchange_core::formats::id_number_check_char(&first17).unwrap();
    format!("{first17}{check}")
}

pub(super) fn person(region: &str, n: u32, name: &str) -> Value {
    json!({"id": id_number(region, n), "name": name, "region_code": region, "phone": "13812345678", "age": 30})
}

pub(super) fn upsert(record: &Value) -> npb::Change {
    npb::Change {
        op: Some(npb::change::Op::Upsert(serde_json::to_vec(record).unwrap())),
    }
}

pub(super) fn publish_request(changes: Vec<npb::Change>) -> npb::PublishRequest {
    npb::PublishRequest {
        dataset_id: "js.gongan/population".into(),
        schema_version: 0,
        changes,
        atomic: false,
    }
}

pub(super) fn get(keys: &[String], fields: &[&str], purpose: &str) -> npb::GetRequest {
    npb::GetRequest {
        dataset_id: "js.gongan/population".into(),
        keys: keys.to_vec(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purpose: purpose.into(),
        case_id: "case-42".into(),
        withhold_until: 0,
    }
}

/// The reads in a node's audit ledger, in order: (department, operation, allowed). Read while
/// the node runs: only synced entries are there, and every acknowledged read's entry is.
pub(super) fn audited(node: &TestNode) -> Vec<(String, String, bool)> {
    exchange_node::read_ledger(&node.data_dir)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.event.department,
                e.event.operation,
                e.event.decision == Decision::Allow,
            )
        })
        .collect()
}

pub(super) fn read(department: &str, operation: &str, allowed: bool) -> (String, String, bool) {
    (department.into(), operation.into(), allowed)
}

/// The record keys a node's ledger says it served to `department` by Subscribe, in order.
pub(super) fn subscribed_keys(node: &TestNode, department: &str) -> Vec<String> {
    exchange_node::read_ledger(&node.data_dir)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.department == department && e.event.operation == "subscribe")
        .filter(|e| e.event.decision == Decision::Allow)
        .flat_map(|e| e.event.keys)
        .collect()
}

/// The node's status, asked with its own certificate.
pub(super) async fn node_status(node: &TestNode, ex: &TestExchange) -> npb::NodeStatus {
    let mut own = node.client(ex, &node.department, Role::Node).await;
    own.status(npb::StatusRequest {}).await.unwrap().into_inner()
}

/// Waits (up to ten seconds) until the registry holds every event of the node's ledger.
pub(super) async fn wait_shipped(node: &TestNode, ex: &TestExchange) -> npb::NodeStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = node_status(node, ex).await;
        if status.audit_shipped == status.audit_entries && status.ship_error.is_empty() {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "not shipped: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of the registry's ledger whose case is `case_id` (a request's or an alert's id), in
/// order, as an auditor finds them.
pub(super) async fn case_events(ex: &TestExchange, case_id: &str) -> Vec<exchange_core::ledger::AuditEvent> {
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let page = auditor
        .search_audit_events(pb::SearchAuditEventsRequest {
            provider_id: "registry".into(),
            case_id: case_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    page.events
        .iter()
        .map(|e| serde_json::from_slice(&e.event).unwrap())
        .collect()
}

pub(super) fn records(response: &npb::GetResponse) -> Vec<Value> {
    response
        .records
        .iter()
        .map(|r| serde_json::from_slice(&r.json).unwrap())
        .collect()
}

/// js.gongan (the dataset owner) approves grant `id`.
pub(super) async fn approve(ex: &TestExchange, id: &str) -> pb::Grant {
    let mut gongan = ex.client("js.gongan", Role::System).await;
    gongan
        .approve_grant(pb::DecideGrantRequest {
            grant_id: id.into(),
            reason: "ok".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A registry with the seeded datasets, js.gongan's node with people in Nanjing (3201xx) and
/// Suzhou (3205xx), and an approved grant for js.scjg on name, region_code and phone for
/// business-licensing, limited to Nanjing. Returns the keys and the grant id.
pub(super) async fn setup() -> (TestExchange, TestNode, Vec<String>, String) {
    setup_configured(|_| {}).await
}

/// [`setup`] with the registry's configuration changed by `configure`.
pub(super) async fn setup_configured(
    configure: fn(&mut registry::Config),
) -> (TestExchange, TestNode, Vec<String>, String) {
    let ex = TestExchange::start_configured(configure).await;
    ex.seed().await;
    let mut scjg = ex.client("js.scjg", Role::System).await;
    let mut request = grant_request("js.gongan/population", &["name", "region_code", "phone"]);
    request.row_filter = "region_code STARTS WITH \"3201\"".into();
    let g = scjg.request_grant(request).await.unwrap().into_inner();
    let approved = approve(&ex, &g.id).await;
    let node = TestNode::start(&ex, "js.gongan").await;
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    node.wait_current(&ex, approved.revision).await;
    let people = [
        person("320102", 1, "张三"),
        person("320102", 2, "李四"),
        person("320506", 3, "王五"),
    ];
    let reply = owner
        .publish(publish_request(people.iter().map(upsert).collect()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.accepted, 3);
    let keys = people.iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    (ex, node, keys, g.id)
}

pub(super) fn query(limit: u32, page_token: &str) -> npb::QueryRequest {
    npb::QueryRequest {
        dataset_id: "js.gongan/population".into(),
        filter: String::new(),
        fields: vec!["region_code".into()],
        purpose: "business-licensing".into(),
        case_id: String::new(),
        limit,
        page_token: page_token.into(),
        withhold_until: 0,
    }
}

/// The messages of one query: (keys of each message, its next page token).
pub(super) async fn query_messages(node: &mut Node, request: npb::QueryRequest) -> Vec<(Vec<String>, String)> {
    query_records(node, request)
        .await
        .into_iter()
        .map(|(records, token)| (records.into_iter().map(|r| r.key).collect(), token))
        .collect()
}

/// The messages of one query: (records of each message, its next page token).
pub(super) async fn query_records(node: &mut Node, request: npb::QueryRequest) -> Vec<(Vec<npb::Record>, String)> {
    let mut stream = node.query(request).await.unwrap().into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        messages.push((message.records, message.next_page_token));
    }
    messages
}

pub(super) fn masked_id(id: &str) -> String {
    exchange_core::mask::mask_str(exchange_core::mask::Sensitivity::IdNumber, id)
}

/// A key pseudonym: opaque, telling nothing of the id number it stands for.
pub(super) fn is_pseudonym(key: &str) -> bool {
    use base64::Engine as _;
    let Some(encoded) = key.strip_prefix('~') else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .is_ok_and(|bytes| bytes.len() == 16)
}
