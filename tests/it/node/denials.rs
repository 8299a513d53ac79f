//! Every refusal: its status and reason, on the record; revocation and expiry enforced.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_core::ledger::Decision;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use super::*;
use crate::harness::*;

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

/// Nothing is served off the record: a node that cannot write its ledger refuses reads, saying
/// it is the ledger, and goes on taking its own department's records.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_node_that_cannot_write_its_ledger_serves_nothing_and_says_why() {
    let (ex, mut node, keys, _) = setup().await;
    node.stop().await;
    // Every write to /dev/full fails with "no space left on device". (A fresh ledger: the old
    // one's checkpoint would rightly refuse an events file emptier than it signed.)
    let ledger = node.data_dir.join("ledger");
    std::fs::remove_dir_all(&ledger).unwrap();
    std::fs::create_dir(&ledger).unwrap();
    std::os::unix::fs::symlink("/dev/full", ledger.join("events")).unwrap();
    node.serve_again().await;
    node.wait_current(&ex, 1).await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    for _ in 0..2 {
        assert_status(
            consumer.get(get(&keys, &[], "business-licensing")).await,
            Code::Unavailable,
            "audit ledger",
        );
    }
    assert_status(
        consumer.get(get(&keys, &[], "tax-audit")).await,
        Code::Unavailable,
        "audited reads are refused until the server is restarted",
    );
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    let reply = owner
        .publish(publish_request(vec![upsert(&person("320102", 9, "赵六"))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.accepted, 1);
}
