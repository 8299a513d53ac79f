//! Correction requests: a consumer questions a record it was served, never one its grant hides;
//! the owner corrects it and names the change, which the consumer then reads; overdue requests
//! wait for the data authority; every step is in the registry's ledger under the request's id.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use super::*;
use crate::harness::*;

fn question(key: &str, fields: &[&str], sequence: u64) -> pb::RaiseCorrectionRequest {
    pb::RaiseCorrectionRequest {
        dataset_id: "js.gongan/population".into(),
        key: key.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        sequence,
        problem: "姓名应为 张山".into(),
        evidence: "户口簿 第0012345号".into(),
    }
}

fn answer(id: &str, outcome: pb::CorrectionState, sequence: u64, note: &str) -> pb::AnswerCorrectionRequest {
    pb::AnswerCorrectionRequest {
        correction_id: id.into(),
        outcome: outcome as i32,
        corrected_sequence: sequence,
        answer: note.into(),
    }
}

async fn waiting(client: &mut Client) -> Vec<String> {
    let request = pb::ListCorrectionsRequest {
        waiting_for_me: true,
        ..Default::default()
    };
    let listed = client.list_corrections(request).await.unwrap().into_inner();
    listed.corrections.into_iter().map(|c| c.id).collect()
}

#[tokio::test]
async fn a_record_read_is_questioned_corrected_and_read_again_and_nothing_hidden_can_be() {
    let (ex, node, keys, grant) = setup().await;
    let (nanjing, suzhou) = (&keys[0], &keys[2]);
    let mut scjg = ex.client("js.scjg", Role::System).await;
    let mut gongan = ex.client("js.gongan", Role::System).await;

    // Nothing read yet: nothing to question.
    assert_status(
        scjg.raise_correction(question(nanjing, &["name"], 1)).await,
        Code::FailedPrecondition,
        "question a record you have been served",
    );
    // One read asks for a Nanjing record and a Suzhou one the grant's row filter hides.
    let mut reader = node.client(&ex, "js.scjg", Role::System).await;
    let both = [nanjing.clone(), suzhou.clone()];
    let read = reader
        .get(get(&both, &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.missing_keys, std::slice::from_ref(suzhou));
    let questioned = read.records[0].sequence;
    wait_shipped(&node, &ex).await;

    // The hidden record cannot be questioned: the answer would tell what the grant does not.
    assert_status(
        scjg.raise_correction(question(suzhou, &["name"], 3)).await,
        Code::FailedPrecondition,
        "no read by js.scjg of record",
    );
    // Nor a field the read did not serve, though the grant allows it.
    assert_status(
        scjg.raise_correction(question(nanjing, &["name", "phone"], questioned))
            .await,
        Code::InvalidArgument,
        "phone never served to js.scjg",
    );
    // Only the consumer's node or system raises; the owner corrects by publishing.
    assert_status(
        ex.admin()
            .await
            .raise_correction(question(nanjing, &["name"], questioned))
            .await,
        Code::PermissionDenied,
        "may not question records",
    );
    let c = scjg
        .raise_correction(question(nanjing, &["name"], questioned))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (c.id.as_str(), c.provider_id.as_str(), c.grant_id.as_str(), c.state),
        (
            "c-000001",
            "js.gongan",
            grant.as_str(),
            pb::CorrectionState::Open as i32
        )
    );
    assert!(c.due_at > c.created_at && !c.overdue);
    assert_status(
        scjg.raise_correction(question(nanjing, &["name"], questioned)).await,
        Code::AlreadyExists,
        "c-000001 on this record is open already",
    );

    // Both sides see it, the owner as waiting for it; a third department does not.
    assert_eq!(waiting(&mut gongan).await, ["c-000001"]);
    assert!(waiting(&mut scjg).await.is_empty());
    let mut rsj = ex.client("js.rsj", Role::System).await;
    let hidden = rsj.get_correction(pb::GetCorrectionRequest {
        correction_id: c.id.clone(),
    });
    assert_status(hidden.await, Code::NotFound, "correction c-000001 does not exist");
    assert_status(
        rsj.answer_correction(answer(&c.id, pb::CorrectionState::Confirmed, 0, ""))
            .await,
        Code::NotFound,
        "does not exist",
    );
    assert_status(
        scjg.answer_correction(answer(&c.id, pb::CorrectionState::Confirmed, 0, ""))
            .await,
        Code::PermissionDenied,
        "may not answer correction requests addressed to js.gongan",
    );

    // The owner publishes the corrected record and names that change.
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    let mut fixed = person("320102", 1, "张山");
    fixed["id"] = nanjing.as_str().into();
    let published = owner
        .publish(publish_request(vec![upsert(&fixed)]))
        .await
        .unwrap()
        .into_inner();
    assert_status(
        gongan
            .answer_correction(answer(&c.id, pb::CorrectionState::Corrected, questioned, ""))
            .await,
        Code::InvalidArgument,
        "is not after the version questioned",
    );
    assert_status(
        gongan
            .answer_correction(answer(&c.id, pb::CorrectionState::Unspecified, 0, ""))
            .await,
        Code::InvalidArgument,
        "corrected, confirmed or rejected",
    );
    // A change its node has not reported is not one to name: past the last sequence reported.
    assert_status(
        gongan
            .answer_correction(answer(&c.id, pb::CorrectionState::Corrected, 5000, ""))
            .await,
        Code::FailedPrecondition,
        "is past the last change of js.gongan/population its node reported",
    );
    // The node reports the new sequence within a second or so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let corrected = loop {
        let named = answer(
            &c.id,
            pb::CorrectionState::Corrected,
            published.last_sequence,
            "户籍信息已更正",
        );
        match gongan.answer_correction(named).await {
            Ok(corrected) => break corrected.into_inner(),
            Err(e) if e.code() == Code::FailedPrecondition && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(
        (
            corrected.state,
            corrected.corrected_sequence,
            corrected.decided_in_place
        ),
        (pb::CorrectionState::Corrected as i32, published.last_sequence, false)
    );
    assert!(waiting(&mut gongan).await.is_empty());
    // The consumer reads the change the answer names (the name masked, as its grant says; the
    // owner sees it in full).
    let again = reader
        .get(get(std::slice::from_ref(nanjing), &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.records[0].sequence, corrected.corrected_sequence);
    let own = owner
        .get(get(std::slice::from_ref(nanjing), &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (own.records[0].sequence, &records(&own)[0]["name"]),
        (corrected.corrected_sequence, &"张山".into())
    );

    // A request left unanswered past its due date waits for the data authority, which answers
    // in the owner's place.
    let second = reader
        .get(get(&keys[1..2], &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner();
    wait_shipped(&node, &ex).await;
    let late = scjg
        .raise_correction(question(&keys[1], &["name"], second.records[0].sequence))
        .await
        .unwrap()
        .into_inner();
    let mut admin = ex.admin().await;
    assert!(waiting(&mut admin).await.is_empty(), "not overdue yet");
    ex.clock.advance(Duration::from_secs(20 * 86_400));
    assert_eq!(waiting(&mut admin).await, std::slice::from_ref(&late.id));
    let listed = scjg
        .list_corrections(pb::ListCorrectionsRequest {
            state: pb::CorrectionState::Open as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.corrections.iter().all(|c| c.overdue) && listed.corrections.len() == 1);
    let confirmed = admin
        .answer_correction(answer(&late.id, pb::CorrectionState::Confirmed, 0, "与户籍底册一致"))
        .await
        .unwrap()
        .into_inner();
    assert!(confirmed.decided_in_place && !confirmed.overdue);
    assert_status(
        gongan
            .answer_correction(answer(&late.id, pb::CorrectionState::Rejected, 0, "late"))
            .await,
        Code::FailedPrecondition,
        "is confirmed already",
    );

    // The registry's ledger holds each step, found by the request's id as its case.
    let events = case_events(&ex, &c.id).await;
    let steps: Vec<(String, String)> = events.iter().map(|e| (e.operation.clone(), e.keys.join(","))).collect();
    let step = |op: &str| (op.to_string(), nanjing.clone());
    assert_eq!(steps, [step("raise_correction"), step("answer_correction")]);
    assert_eq!(
        events[1].reason,
        format!("corrected at sequence {}: 户籍信息已更正", published.last_sequence)
    );
}
