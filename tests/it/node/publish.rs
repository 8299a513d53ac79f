//! Publishing: valid records stored, every error of the others named, positions across a stream.

use exchange_core::identity::Role;
use exchange_proto::node::v1 as npb;
use serde_json::{json, Value};
use tonic::Code;

use super::*;
use crate::harness::*;

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
