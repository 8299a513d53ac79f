//! Reads under a grant: projected, masked, row-filtered; large queries paged and audited.

use exchange_core::identity::Role;
use exchange_core::ledger::Decision;
use exchange_proto::node::v1 as npb;
use serde_json::Value;
use tonic::Code;

use super::*;
use crate::harness::*;

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
            withhold_until: 0,
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
