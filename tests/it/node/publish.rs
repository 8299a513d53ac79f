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

fn import_batch(id: &str, batch: u64, changes: Vec<npb::Change>) -> npb::ImportBatch {
    npb::ImportBatch {
        import_id: id.into(),
        batch,
        publish: Some(publish_request(changes)),
    }
}

/// Sends `batches` on one Import stream; returns the acknowledgements and the status it ended with.
async fn import(client: &mut Node, batches: Vec<npb::ImportBatch>) -> (Vec<npb::ImportAck>, Option<tonic::Status>) {
    let mut stream = match client.import(tokio_stream::iter(batches)).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut acks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(ack)) => acks.push(ack),
            Ok(None) => return (acks, None),
            Err(status) => return (acks, Some(status)),
        }
    }
}

#[tokio::test]
async fn an_import_sent_again_after_a_lost_acknowledgement_stores_each_batch_once() {
    let (ex, node, _, _) = setup().await;
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    let batch = |b: u64| -> Vec<npb::Change> {
        (0..50)
            .map(|i| upsert(&person("320102", (b * 50 + i) as u32 % 1000, "甲")))
            .collect()
    };
    let mut with_bad = batch(2);
    let mut bad = person("320102", 999, "坏");
    bad["age"] = json!("thirty");
    with_bad[7] = upsert(&bad);
    let (acks, ended) = import(
        &mut owner,
        vec![
            import_batch("load-a", 1, batch(1)),
            import_batch("load-a", 2, with_bad.clone()),
        ],
    )
    .await;
    assert!(ended.is_none(), "{ended:?}");
    let summary: Vec<(u64, bool, u64, u64)> = acks
        .iter()
        .map(|a| {
            let r = a.result.as_ref().unwrap();
            (a.batch, a.already_stored, r.accepted, r.rejected)
        })
        .collect();
    assert_eq!(summary, vec![(1, false, 50, 0), (2, false, 49, 1)]);
    let second = acks[1].result.as_ref().unwrap();
    assert_eq!(second.rejections[0].position, 7, "positions count within the batch");
    // What the setup published came before.
    let base = acks[0].result.as_ref().unwrap().first_sequence - 1;
    assert_eq!((second.first_sequence, second.last_sequence), (base + 51, base + 99));

    // The client never saw batch 2's acknowledgement and resumes from batch 2: it is
    // recognised (its rejection listed again), and batch 3 is stored after it.
    let (acks, ended) = import(
        &mut owner,
        vec![import_batch("load-a", 2, with_bad), import_batch("load-a", 3, batch(3))],
    )
    .await;
    assert!(ended.is_none(), "{ended:?}");
    assert!(acks[0].already_stored);
    assert_eq!(acks[0].result.as_ref().unwrap().rejections[0].position, 7);
    assert_eq!(
        acks[0].result.as_ref().unwrap().first_sequence,
        0,
        "nothing stored again"
    );
    assert!(!acks[1].already_stored);
    assert_eq!(acks[1].result.as_ref().unwrap().first_sequence, base + 100);
    let mut owner_node = owner;
    let status = owner_node.status(npb::StatusRequest {}).await.unwrap().into_inner();
    let population = &status.datasets[0];
    assert_eq!(
        population.last_sequence,
        base + 149,
        "every change of the three batches once"
    );

    // A gap is refused, with what to send; so is a second import on the same stream.
    let (acks, ended) = import(&mut owner_node, vec![import_batch("load-a", 5, batch(5))]).await;
    assert!(acks.is_empty());
    assert_status(
        Err::<(), _>(ended.unwrap()),
        Code::FailedPrecondition,
        "batch 5 came after batch 3; send batch 4 next",
    );
    let (acks, ended) = import(
        &mut owner_node,
        vec![import_batch("load-b", 1, batch(6)), import_batch("load-c", 2, batch(7))],
    )
    .await;
    assert_eq!(acks.len(), 1, "the first batch is acknowledged before the error");
    assert_status(
        Err::<(), _>(ended.unwrap()),
        Code::InvalidArgument,
        "one import a stream",
    );
    let (_, ended) = import(&mut owner_node, vec![import_batch("no spaces", 1, batch(8))]).await;
    assert_status(Err::<(), _>(ended.unwrap()), Code::InvalidArgument, "import_id");

    // Only the owner imports.
    let mut other = node.client(&ex, "js.scjg", Role::System).await;
    let (acks, ended) = import(&mut other, vec![import_batch("x", 1, batch(9))]).await;
    assert!(acks.is_empty());
    assert_status(
        Err::<(), _>(ended.unwrap()),
        Code::PermissionDenied,
        "only js.gongan's system or node may",
    );
}
