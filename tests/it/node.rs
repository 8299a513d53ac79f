//! Department nodes: validated publish, authorized reads with projection and masking, row
//! filters, revocation, registry outages, the change feed, and the audit of every read.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_core::ledger::Decision;
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;
use serde_json::{json, Value};
use tonic::Code;

use crate::harness::*;
use crate::nodes::*;

/// A valid resident id number in region `region` with sequence `n`.
fn id_number(region: &str, n: u32) -> String {
    let first17 = format!("{region}19900101{n:03}");
    let check = exchange_core::formats::id_number_check_char(&first17).unwrap();
    format!("{first17}{check}")
}

fn person(region: &str, n: u32, name: &str) -> Value {
    json!({"id": id_number(region, n), "name": name, "region_code": region, "phone": "13812345678", "age": 30})
}

fn upsert(record: &Value) -> npb::Change {
    npb::Change {
        op: Some(npb::change::Op::Upsert(serde_json::to_vec(record).unwrap())),
    }
}

fn publish_request(changes: Vec<npb::Change>) -> npb::PublishRequest {
    npb::PublishRequest {
        dataset_id: "js.gongan/population".into(),
        schema_version: 0,
        changes,
        atomic: false,
    }
}

fn get(keys: &[String], fields: &[&str], purpose: &str) -> npb::GetRequest {
    npb::GetRequest {
        dataset_id: "js.gongan/population".into(),
        keys: keys.to_vec(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purpose: purpose.into(),
        case_id: "case-42".into(),
    }
}

/// The reads in a node's audit ledger, in order: (department, operation, allowed). Read while
/// the node runs: only synced entries are there, and every acknowledged read's entry is.
fn audited(node: &TestNode) -> Vec<(String, String, bool)> {
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

fn read(department: &str, operation: &str, allowed: bool) -> (String, String, bool) {
    (department.into(), operation.into(), allowed)
}

/// The record keys a node's ledger says it served to `department` by Subscribe, in order.
fn subscribed_keys(node: &TestNode, department: &str) -> Vec<String> {
    exchange_node::read_ledger(&node.data_dir)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.department == department && e.event.operation == "subscribe")
        .filter(|e| e.event.decision == Decision::Allow)
        .flat_map(|e| e.event.keys)
        .collect()
}

fn records(response: &npb::GetResponse) -> Vec<Value> {
    response
        .records
        .iter()
        .map(|r| serde_json::from_slice(&r.json).unwrap())
        .collect()
}

/// A registry with the seeded datasets, js.gongan's node with people in Nanjing (3201xx) and
/// Suzhou (3205xx), and an approved grant for js.scjg on name, region_code and phone for
/// business-licensing, limited to Nanjing. Returns the keys and the grant id.
async fn setup() -> (TestExchange, TestNode, Vec<String>, String) {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut scjg = ex.client("js.scjg", Role::System).await;
    let mut request = grant_request("js.gongan/population", &["name", "region_code", "phone"]);
    request.row_filter = "region_code STARTS WITH \"3201\"".into();
    let g = scjg.request_grant(request).await.unwrap().into_inner();
    let mut gongan = ex.client("js.gongan", Role::System).await;
    let approved = gongan
        .approve_grant(pb::DecideGrantRequest {
            grant_id: g.id.clone(),
            reason: "ok".into(),
        })
        .await
        .unwrap()
        .into_inner();
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

#[tokio::test]
async fn a_mixed_publish_stores_the_valid_records_and_names_every_error_of_the_others() {
    let (ex, node, _, _) = setup().await;
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    let good = person("320102", 10, "赵六");
    let mut bad_check_digit = person("320102", 11, "钱七");
    bad_check_digit["id"] = json!("320102199001010110");
    let mut two_errors = person("320102", 12, "孙八");
    two_errors["age"] = json!(-1);
    two_errors["region_code"] = json!("990000");
    let not_json = npb::Change {
        op: Some(npb::change::Op::Upsert(b"{\"id\": ".to_vec())),
    };
    let too_big = person("320102", 13, &"长".repeat(2000));
    let reply = owner
        .publish(publish_request(vec![
            upsert(&good),
            upsert(&bad_check_digit),
            upsert(&two_errors),
            not_json,
            upsert(&too_big),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.accepted, reply.rejected), (1, 4));
    let positions: Vec<u64> = reply.rejections.iter().map(|r| r.position).collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    assert_eq!(reply.rejections[0].key, "320102199001010110");
    assert_eq!(reply.rejections[0].errors[0].pointer, "/id");
    let pointers: Vec<&str> = reply.rejections[1].errors.iter().map(|e| e.pointer.as_str()).collect();
    assert!(
        pointers.contains(&"/age") && pointers.contains(&"/region_code"),
        "{pointers:?}"
    );
    assert!(reply.rejections[2].errors[0].message.contains("not JSON"));
    assert!(
        reply.rejections[3].errors[0].message.contains("the limit is 4096"),
        "{:?}",
        reply.rejections[3]
    );
    assert!(reply.first_sequence > 0 && reply.first_sequence == reply.last_sequence);

    let got = owner
        .get(get(
            &[id_number("320102", 10), id_number("320102", 12)],
            &[],
            "internal",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.records.len(), 1, "the rejected record stored nothing");
    assert_eq!(got.missing_keys, [id_number("320102", 12)]);

    // Atomic: one bad record and nothing is stored.
    let mut atomic = publish_request(vec![upsert(&person("320102", 20, "周九")), upsert(&bad_check_digit)]);
    atomic.atomic = true;
    let reply = owner.publish(atomic).await.unwrap().into_inner();
    assert_eq!((reply.accepted, reply.rejected), (0, 1));
    let got = owner
        .get(get(&[id_number("320102", 20)], &[], "internal"))
        .await
        .unwrap()
        .into_inner();
    assert!(got.records.is_empty());

    // A request over the message limit is refused naming the limit, and stores nothing.
    let filler = "长".repeat(1000);
    let big: Vec<npb::Change> = (100..200).map(|n| upsert(&person("320102", n, &filler[..]))).collect();
    let mut small_names = big.clone();
    for change in &mut small_names {
        if let Some(npb::change::Op::Upsert(json)) = &mut change.op {
            let mut record: Value = serde_json::from_slice(json).unwrap();
            record["name"] = json!("名");
            *json = serde_json::to_vec(&record).unwrap();
        }
    }
    let too_big = owner.publish(publish_request(big)).await;
    assert_status(too_big, Code::OutOfRange, "the limit is: 262144 bytes");
    let got = owner
        .get(get(&[id_number("320102", 100)], &[], "internal"))
        .await
        .unwrap()
        .into_inner();
    assert!(got.records.is_empty());
    assert_eq!(
        owner
            .publish(publish_request(small_names))
            .await
            .unwrap()
            .into_inner()
            .accepted,
        100
    );

    // Only the owner publishes.
    let mut other = node.client(&ex, "js.scjg", Role::System).await;
    let refused = other.publish(publish_request(vec![upsert(&good)])).await;
    assert_status(refused, Code::PermissionDenied, "only js.gongan's system or node may");
}

#[tokio::test]
async fn reads_are_projected_masked_and_filtered_by_the_grant() {
    let (ex, node, keys, grant) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let got = consumer
        .get(get(&keys, &["name", "phone"], "business-licensing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.grant_id, grant);
    // The grant's filter keeps Nanjing (3201); Suzhou's record is hidden.
    assert_eq!(got.missing_keys, [keys[2].clone()]);
    let served = records(&got);
    assert_eq!(served.len(), 2);
    let first = served[0].as_object().unwrap();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["id", "name", "phone"],
        "only asked fields and the key"
    );
    assert_eq!(first["name"], "张*");
    assert_eq!(first["phone"], "138****5678");
    assert_eq!(
        first["id"].as_str().unwrap(),
        format!("3201**********{}", &keys[0][14..])
    );

    // The owner reads its own data in clear, every field.
    let mut owner = node.client(&ex, "js.gongan", Role::Node).await;
    let own = owner
        .get(get(&keys[..1], &[], "internal-check"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(records(&own)[0], person("320102", 1, "张三"));

    // Query: the grant's filter AND the request's.
    let mut stream = consumer
        .query(npb::QueryRequest {
            dataset_id: "js.gongan/population".into(),
            filter: "name = \"李四\"".into(),
            fields: vec!["name".into()],
            purpose: "business-licensing".into(),
            case_id: String::new(),
            limit: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut queried = Vec::new();
    while let Some(batch) = stream.message().await.unwrap() {
        queried.extend(batch.records);
    }
    // The key field is masked for this reader, so the key is a pseudonym, not the id in clear.
    assert_eq!(queried.len(), 1);
    assert!(is_pseudonym(&queried[0].key), "{}", queried[0].key);

    // Each of those reads is in the ledger with exactly what it served.
    let mut node = node;
    node.stop().await;
    let ledger = exchange_node::read_ledger(&node.data_dir).unwrap();
    let reads: Vec<(&str, &str, u64)> = ledger
        .iter()
        .map(|e| (e.event.department.as_str(), e.event.operation.as_str(), e.event.count))
        .collect();
    assert_eq!(
        reads,
        [("js.scjg", "get", 2), ("js.gongan", "get", 1), ("js.scjg", "query", 1)]
    );
    assert_eq!(ledger[0].event.keys, keys[..2]);
    assert_eq!(ledger[0].event.fields, ["id", "name", "phone"]);
    assert_eq!(ledger[0].event.grant_id, grant);
    assert!(ledger.iter().all(|e| e.event.decision == Decision::Allow));
}

fn query(limit: u32, page_token: &str) -> npb::QueryRequest {
    npb::QueryRequest {
        dataset_id: "js.gongan/population".into(),
        filter: String::new(),
        fields: vec!["region_code".into()],
        purpose: "business-licensing".into(),
        case_id: String::new(),
        limit,
        page_token: page_token.into(),
    }
}

/// The messages of one query: (keys of each message, its next page token).
async fn query_messages(node: &mut Node, request: npb::QueryRequest) -> Vec<(Vec<String>, String)> {
    query_records(node, request)
        .await
        .into_iter()
        .map(|(records, token)| (records.into_iter().map(|r| r.key).collect(), token))
        .collect()
}

/// The messages of one query: (records of each message, its next page token).
async fn query_records(node: &mut Node, request: npb::QueryRequest) -> Vec<(Vec<npb::Record>, String)> {
    let mut stream = node.query(request).await.unwrap().into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        messages.push((message.records, message.next_page_token));
    }
    messages
}

fn masked_id(id: &str) -> String {
    exchange_core::mask::mask_str(exchange_core::mask::Sensitivity::IdNumber, id)
}

/// A key pseudonym: opaque, telling nothing of the id number it stands for.
fn is_pseudonym(key: &str) -> bool {
    use base64::Engine as _;
    let Some(encoded) = key.strip_prefix('~') else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .is_ok_and(|bytes| bytes.len() == 16)
}

#[tokio::test]
async fn a_large_query_streams_audited_messages_and_goes_on_after_its_limit() {
    let (ex, node, keys, _) = setup().await;
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    // 1,200 more people in Nanjing (the grant's filter) and 300 in Suzhou (hidden).
    let mut people: Vec<Value> = (0..600)
        .flat_map(|n| [person("320104", n, "周一"), person("320105", n, "吴二")])
        .collect();
    people.extend((10..310).map(|n| person("320506", n, "郑三")));
    let reply = owner
        .publish(publish_request(people.iter().map(upsert).collect()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.accepted, 1500);
    let mut visible: Vec<String> = people
        .iter()
        .filter(|p| p["region_code"].as_str().unwrap().starts_with("3201"))
        .map(|p| p["id"].as_str().unwrap().to_string())
        .chain(keys[..2].iter().cloned())
        .collect();
    visible.sort();
    assert_eq!(visible.len(), 1202);

    // A limit of 700 comes as 500 + 200, in key order, the last message with a token to go on.
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let first = query_messages(&mut consumer, query(700, "")).await;
    let sizes: Vec<(usize, bool)> = first.iter().map(|(k, t)| (k.len(), !t.is_empty())).collect();
    assert_eq!(sizes, [(500, false), (200, true)]);
    // The token hides where it stopped: the key is an id number, which this grant masks.
    let token = first[1].1.clone();
    assert!(!token.contains("3201"), "{token}");
    // Going on with it gives the rest: no gap, no duplicate.
    let rest = query_messages(&mut consumer, query(0, &token)).await;
    let sizes: Vec<(usize, bool)> = rest.iter().map(|(k, t)| (k.len(), !t.is_empty())).collect();
    assert_eq!(sizes, [(500, false), (2, false)]);
    // Keys are pseudonyms: one per record (masked ids would collide), none in clear.
    let all: Vec<String> = first.iter().chain(&rest).flat_map(|(k, _)| k.clone()).collect();
    assert_eq!(all.len(), visible.len());
    assert!(all.iter().all(|k| is_pseudonym(k)), "{:?}", &all[..3]);
    let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "no two records share a key");
    // The same records, paged again, come back in the same order under the same pseudonyms, and
    // each carries the masked id of the record it stands for (the ledger check below names them).
    let again = query_records(&mut consumer, query(0, "")).await;
    let records: Vec<npb::Record> = again.into_iter().flat_map(|(r, _)| r).collect();
    assert_eq!(records.iter().map(|r| r.key.clone()).collect::<Vec<_>>(), all);
    let ids: Vec<String> = records
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.json).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, visible.iter().map(|k| masked_id(k)).collect::<Vec<_>>());
    // A token is the node's own, for this reader and dataset only.
    assert_status(
        consumer.query(query(0, "c29tZXRoaW5nIGVsc2U")).await.map(|_| ()),
        Code::InvalidArgument,
        "field \"page_token\": not a token this node gave js.scjg",
    );
    // Nor for another query: a token names a position in one query's results.
    let mut other_query = query(0, &token);
    other_query.filter = "region_code = \"320104\"".into();
    assert_status(
        consumer.query(other_query).await.map(|_| ()),
        Code::InvalidArgument,
        "same purpose, fields and filter",
    );
    // A query that matches nothing is on the record too.
    let mut nothing = query(0, "");
    nothing.filter = "region_code = \"320999\"".into();
    assert!(query_messages(&mut consumer, nothing).await.is_empty());

    // The owner reads its keys in clear.
    let mut all_keys: Vec<String> = people
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .chain(keys.iter().cloned())
        .collect();
    all_keys.sort();
    let own = query_messages(&mut owner, query(3, "")).await;
    assert_eq!(own[0].0, all_keys[..3]);

    // Each message was audited with exactly its keys before it was sent.
    let mut node = node;
    node.stop().await;
    let ledger = exchange_node::read_ledger(&node.data_dir).unwrap();
    let queries: Vec<_> = ledger
        .iter()
        .filter(|e| e.event.operation == "query" && e.event.decision == Decision::Allow)
        .collect();
    assert!(ledger
        .iter()
        .any(|e| e.event.decision == Decision::Deny && e.event.reason.contains("page_token")));
    let counts: Vec<(&str, u64)> = queries
        .iter()
        .map(|e| (e.event.department.as_str(), e.event.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("js.scjg", 500),
            ("js.scjg", 200),
            ("js.scjg", 500),
            ("js.scjg", 2),
            ("js.scjg", 500),
            ("js.scjg", 500),
            ("js.scjg", 202),
            ("js.scjg", 0),
            ("js.gongan", 3)
        ]
    );
    // The ledger names the real keys, for "who read the record of person X": the paged query
    // and the one in a go, each exactly the visible records in order.
    let paged: Vec<String> = queries[..4].iter().flat_map(|e| e.event.keys.clone()).collect();
    assert_eq!(paged, visible);
    let whole: Vec<String> = queries[4..7].iter().flat_map(|e| e.event.keys.clone()).collect();
    assert_eq!(whole, visible);
}

#[tokio::test]
async fn each_denial_reason_is_permission_denied_and_audited() {
    let (mut ex, mut node, keys, grant) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut stranger = node.client(&ex, "js.rsj", Role::System).await;
    assert_status(
        stranger.get(get(&keys, &[], "business-licensing")).await,
        Code::PermissionDenied,
        "no grant",
    );
    assert_status(
        consumer.get(get(&keys, &[], "tax-audit")).await,
        Code::PermissionDenied,
        "purpose \"tax-audit\" not granted",
    );
    assert_status(
        consumer.get(get(&keys, &["age"], "business-licensing")).await,
        Code::PermissionDenied,
        "field \"age\" not granted",
    );
    assert_status(
        consumer.get(get(&keys, &[], "")).await,
        Code::InvalidArgument,
        "no purpose",
    );
    // A row filter reads what it tests: only granted fields, and masked ones for equality only.
    let mut filtered = query(0, "");
    filtered.filter = "phone STARTS WITH \"1381\"".into();
    assert_status(
        consumer.query(filtered.clone()).await,
        Code::PermissionDenied,
        "field \"phone\" is masked under grant",
    );
    filtered.filter = "name IN (\"张三\", \"李四\")".into();
    assert_status(
        consumer.query(filtered.clone()).await,
        Code::PermissionDenied,
        "filter it with = only",
    );
    filtered.filter = "age = \"30\"".into();
    assert_status(
        consumer.query(filtered.clone()).await,
        Code::PermissionDenied,
        "field \"age\" not granted",
    );
    filtered.filter = "region_code ~ \"3201\"".into();
    assert_status(
        consumer.query(filtered).await,
        Code::InvalidArgument,
        "field \"filter\"",
    );
    let too_many: Vec<String> = (0..1001).map(|n| n.to_string()).collect();
    assert_status(
        consumer.get(get(&too_many, &[], "business-licensing")).await,
        Code::InvalidArgument,
        "the limit is 1000",
    );

    let mut owner = ex.client("js.gongan", Role::System).await;
    let revoked = owner
        .revoke_grant(pb::DecideGrantRequest {
            grant_id: grant.clone(),
            reason: "case closed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    node.wait_current(&ex, revoked.revision).await;
    assert_status(
        consumer.get(get(&keys, &[], "business-licensing")).await,
        Code::PermissionDenied,
        "was revoked: case closed",
    );

    // An expired grant.
    let mut rsj = ex.client("js.rsj", Role::System).await;
    let mut short = grant_request("js.gongan/population", &["name"]);
    short.expires_at = ex.clock.now() + 60;
    let g = rsj.request_grant(short).await.unwrap().into_inner();
    let approved = owner
        .approve_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            reason: "short".into(),
        })
        .await
        .unwrap()
        .into_inner();
    node.wait_current(&ex, approved.revision).await;
    ex.clock.advance(Duration::from_secs(59));
    stranger.get(get(&keys, &[], "business-licensing")).await.unwrap();
    ex.clock.advance(Duration::from_secs(1));
    assert_status(
        stranger.get(get(&keys, &[], "business-licensing")).await,
        Code::PermissionDenied,
        "expired",
    );

    // Every read above is in the ledger, allowed or denied, with its reason.
    node.stop().await;
    ex.stop_registry().await;
    let ledger = exchange_node::read_ledger(&node.data_dir).unwrap();
    let denials: Vec<&str> = ledger
        .iter()
        .filter(|e| e.event.decision == Decision::Deny)
        .map(|e| e.event.reason.as_str())
        .collect();
    for fragment in [
        "no grant",
        "not granted",
        "field \"age\"",
        "no purpose",
        "is masked under grant",
        "field \"filter\"",
        "the limit is 1000",
        "revoked",
        "expired",
    ] {
        assert!(
            denials.iter().any(|d| d.contains(fragment)),
            "no denial with {fragment:?} in {denials:?}"
        );
    }
    let allowed: Vec<_> = ledger
        .iter()
        .filter(|e| e.event.decision == Decision::Allow && e.event.department == "js.rsj")
        .collect();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].event.purpose, "business-licensing");
    assert_eq!(allowed[0].event.case_id, "case-42");
    assert_eq!(allowed[0].event.keys.len(), 3);
}

#[tokio::test]
async fn a_revocation_is_enforced_within_a_second() {
    let (ex, node, keys, grant) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    consumer.get(get(&keys, &[], "business-licensing")).await.unwrap();
    let mut served = 1;
    let mut owner = ex.client("js.gongan", Role::System).await;
    owner
        .revoke_grant(pb::DecideGrantRequest {
            grant_id: grant,
            reason: "emergency".into(),
        })
        .await
        .unwrap();
    let revoked_at = tokio::time::Instant::now();
    loop {
        match consumer.get(get(&keys, &[], "business-licensing")).await {
            Err(status) if status.code() == Code::PermissionDenied => break,
            Ok(_) => {
                served += 1;
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "still served a second after the revocation"
                )
            }
            Err(other) => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every read served before the revocation took hold, and the refusal, are on the record.
    let mut expected = vec![read("js.scjg", "get", true); served];
    expected.push(read("js.scjg", "get", false));
    assert_eq!(audited(&node), expected);
}

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

async fn node_status(node: &TestNode, ex: &TestExchange) -> npb::NodeStatus {
    let mut own = node.client(ex, &node.department, Role::Node).await;
    own.status(npb::StatusRequest {}).await.unwrap().into_inner()
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

async fn collect(stream: &mut tonic::Streaming<npb::ChangeBatch>, want: usize) -> (Vec<npb::ChangeEvent>, u64) {
    let mut events = Vec::new();
    let mut cursor = 0;
    while events.len() < want {
        let batch = tokio::time::timeout(Duration::from_secs(2), stream.message())
            .await
            .expect("no change within two seconds")
            .unwrap()
            .unwrap();
        cursor = batch.cursor;
        events.extend(batch.events);
    }
    (events, cursor)
}

fn subscribe(after: u64) -> npb::SubscribeRequest {
    npb::SubscribeRequest {
        dataset_id: "js.gongan/population".into(),
        after_sequence: after,
        filter: String::new(),
        fields: vec!["name".into()],
        purpose: "business-licensing".into(),
        case_id: String::new(),
    }
}

#[tokio::test]
async fn the_change_feed_resumes_without_gap_or_duplicate_across_reconnects_and_restarts() {
    let (ex, mut node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut stream = consumer.subscribe(subscribe(0)).await.unwrap().into_inner();
    // Two of the three seeded people are in the grant's filter.
    let (first, cursor) = collect(&mut stream, 2).await;
    assert_eq!(first.len(), 2);
    assert_eq!(cursor, 3, "the cursor passes the filtered-out change");
    let masked: Value = match &first[0].change {
        Some(npb::change_event::Change::Upsert(json)) => serde_json::from_slice(json).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(masked["name"], "张*");
    // The event's key is a pseudonym (the id itself is masked in the record), the same one a
    // Query gives this reader for that record, so a copy kept from both stays consistent.
    assert!(is_pseudonym(&first[0].key), "{}", first[0].key);
    assert_eq!(masked["id"], masked_id(&keys[0]));
    let mut by_query = query(0, "");
    by_query.filter = format!("id = \"{}\"", keys[0]);
    assert_eq!(
        query_messages(&mut consumer, by_query).await[0].0,
        [first[0].key.clone()]
    );

    // Live: a new record arrives on the open stream.
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    owner
        .publish(publish_request(vec![upsert(&person("320102", 4, "陈十"))]))
        .await
        .unwrap();
    let (live, cursor) = collect(&mut stream, 1).await;
    assert_eq!(live[0].sequence, 4);
    drop(stream);

    // Changes while disconnected, then resume from the cursor: exactly those, in order.
    owner
        .publish(publish_request(vec![upsert(&person("320102", 5, "林一"))]))
        .await
        .unwrap();
    owner
        .publish(publish_request(vec![npb::Change {
            op: Some(npb::change::Op::DeleteKey(id_number("320102", 1))),
        }]))
        .await
        .unwrap();
    let mut resumed = consumer.subscribe(subscribe(cursor)).await.unwrap().into_inner();
    let (missed, cursor) = collect(&mut resumed, 2).await;
    assert_eq!(missed.iter().map(|e| e.sequence).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(missed[1].change, Some(npb::change_event::Change::Removed(true)));
    drop(resumed);

    // Across a node restart.
    node.restart().await;
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    owner
        .publish(publish_request(vec![upsert(&person("320102", 7, "黄二"))]))
        .await
        .unwrap();
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut after_restart = consumer.subscribe(subscribe(cursor)).await.unwrap().into_inner();
    let (events, _) = collect(&mut after_restart, 1).await;
    assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), [7]);
    // A cursor this node never gave is named, not waited on forever.
    assert_status(
        consumer.subscribe(subscribe(99)).await.map(|_| ()),
        Code::OutOfRange,
        "99 is past the last change of js.gongan/population (7)",
    );
    // Every change served is in the ledger under its real key, in order, across the restart too.
    // (A batch is audited before it is sent, so a stream the consumer had just dropped may have
    // audited one more batch that never reached it: the ledger may name a key twice, never miss one.)
    let served = [
        keys[0].clone(),
        keys[1].clone(),
        id_number("320102", 4),
        id_number("320102", 5),
        id_number("320102", 1),
        id_number("320102", 7),
    ];
    let audited = subscribed_keys(&node, "js.scjg");
    let mut rest = audited.iter();
    for key in &served {
        assert!(
            rest.any(|a| a == key),
            "{key} served but not audited in order: {audited:?}"
        );
    }
    assert!(audited.iter().all(|a| served.contains(a)), "{audited:?}");
}

#[tokio::test]
async fn a_publish_stream_counts_positions_across_its_messages() {
    let (ex, node, _, _) = setup().await;
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    let mut bad = person("320102", 31, "坏");
    bad["age"] = json!("thirty");
    let messages = vec![
        publish_request(vec![upsert(&person("320102", 30, "甲")), upsert(&bad)]),
        publish_request(vec![
            upsert(&person("320102", 32, "乙")),
            upsert(&person("320102", 33, "丙")),
        ]),
    ];
    let reply = owner
        .publish_stream(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.accepted, reply.rejected), (3, 1));
    assert_eq!(reply.rejections[0].position, 1);
    assert_eq!(reply.rejections[0].errors[0].pointer, "/age");
    assert_eq!(reply.last_sequence - reply.first_sequence, 2, "three stored changes");

    // A message that fails as a whole ends the stream; the error says what was stored before it.
    let mut unknown_version = publish_request(vec![upsert(&person("320102", 35, "丁"))]);
    unknown_version.schema_version = 9;
    let messages = vec![
        publish_request(vec![upsert(&person("320102", 34, "戊"))]),
        unknown_version,
    ];
    assert_status(
        owner.publish_stream(tokio_stream::iter(messages)).await,
        Code::FailedPrecondition,
        "has no schema version 9; known versions: 1; the messages before this one were stored: 1 changes accepted",
    );
}

#[tokio::test]
async fn a_revocation_ends_an_open_subscription() {
    let (ex, node, _, grant) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut stream = consumer.subscribe(subscribe(0)).await.unwrap().into_inner();
    collect(&mut stream, 2).await;
    let mut owner = ex.client("js.gongan", Role::System).await;
    owner
        .revoke_grant(pb::DecideGrantRequest {
            grant_id: grant,
            reason: "case closed".into(),
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("the subscription was still open a second after the revocation");
    assert_status(ended, Code::PermissionDenied, "was revoked: case closed");
    // Opened (allowed), one batch served, then refused: all three on the record.
    assert_eq!(
        audited(&node),
        [
            read("js.scjg", "subscribe", true),
            read("js.scjg", "subscribe", true),
            read("js.scjg", "subscribe", false)
        ]
    );
    assert_eq!(subscribed_keys(&node, "js.scjg").len(), 2);
}
