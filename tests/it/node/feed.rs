//! The change feed: resumed without gap or duplicate, ended by a revocation.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;
use serde_json::Value;
use tonic::Code;

use super::*;
use crate::harness::*;

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
        withhold_until: 0,
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
