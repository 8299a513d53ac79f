//! Shipping: a node's audit ledger reaches the registry, every event once and in order, through
//! outages; a node whose history changed is refused, and the refusal is on the registry's record.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_core::ledger::{AuditEvent, Decision};
use exchange_core::tlog::LogKey;
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use super::*;
use crate::harness::*;

/// Every event the registry holds of js.gongan's ledger, read as an auditor.
async fn shipped(ex: &TestExchange) -> Vec<(u64, AuditEvent)> {
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let mut all = Vec::new();
    loop {
        let page = auditor
            .read_shipped_events(pb::ReadShippedEventsRequest {
                department_id: "js.gongan".into(),
                from_index: all.last().map_or(0, |(i, _)| i + 1),
                limit: 2,
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        if page.is_empty() {
            return all;
        }
        for e in page {
            assert_eq!(e.node, "js.gongan");
            all.push((e.index, serde_json::from_slice(&e.event).unwrap()));
        }
    }
}

/// What the registry says it holds of js.gongan's ledger, asked by `dept` in `role`.
async fn shipped_ledger(ex: &TestExchange, dept: &str, role: Role) -> pb::ShippedLedger {
    ex.client(dept, role)
        .await
        .get_shipped_ledger(pb::GetShippedLedgerRequest {
            department_id: "js.gongan".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn node_events(node: &TestNode) -> Vec<(u64, AuditEvent)> {
    exchange_node::read_ledger(&node.data_dir)
        .unwrap()
        .into_iter()
        .map(|e| (e.index, e.event))
        .collect()
}

/// The registry's own ledger, read from its files while it runs.
fn registry_events(ex: &TestExchange) -> Vec<AuditEvent> {
    let data = ex.dir.path().join("data");
    let key = LogKey::from_text(&std::fs::read_to_string(data.join("log.key")).unwrap()).unwrap();
    let (_, entries) = exchange_core::ledger::read_verified(&data.join("ledger"), &key.verifier()).unwrap();
    entries.into_iter().map(|e| e.event).collect()
}

#[tokio::test]
async fn every_event_reaches_the_registry_once_in_order_through_an_outage() {
    let (mut ex, node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    for _ in 0..3 {
        consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    }
    let status = wait_shipped(&node, &ex).await;
    assert_eq!(status.audit_entries, 3);
    assert_eq!(shipped(&ex).await, node_events(&node));
    let held = shipped_ledger(&ex, "js.gongan", Role::System).await;
    assert_eq!(
        (held.size, held.vkey.as_str()),
        (3, status.log_vkey.as_str()),
        "the key is pinned"
    );
    assert!(held.refused.is_empty());

    // The registry is down: reads go on, the ledger keeps every event, the lag shows.
    ex.stop_registry().await;
    for _ in 0..5 {
        consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = node_status(&node, &ex).await;
        if status.audit_entries == 8 && !status.ship_error.is_empty() {
            assert_eq!(status.audit_shipped, 3, "{status:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ex.start_registry().await;
    wait_shipped(&node, &ex).await;
    let at_registry = shipped(&ex).await;
    assert_eq!(at_registry, node_events(&node), "nothing lost, nothing twice, in order");
    assert_eq!(at_registry.len(), 8);
    // The key was pinned once, on the registry's record.
    let pins: Vec<_> = registry_events(&ex)
        .into_iter()
        .filter(|e| e.operation == "pin_log_key")
        .collect();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].keys, ["js.gongan"]);
}

#[tokio::test]
async fn only_nodes_ship_and_only_auditors_and_admins_read_what_was_shipped() {
    let (ex, node, _, _) = setup().await;
    let mut system = ex.client("js.gongan", Role::System).await;
    assert_status(
        system.ship_ledger(pb::ShipLedgerRequest::default()).await,
        Code::PermissionDenied,
        "only a department's node ships its own",
    );
    assert_status(
        system
            .read_shipped_events(pb::ReadShippedEventsRequest {
                department_id: "js.gongan".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "only admins and auditors",
    );
    let mut stranger = ex.client("js.scjg", Role::System).await;
    assert_status(
        stranger
            .get_shipped_ledger(pb::GetShippedLedgerRequest {
                department_id: "js.gongan".into(),
            })
            .await,
        Code::PermissionDenied,
        "may not read js.gongan's audit ledger",
    );
    drop(node);
}

#[tokio::test]
async fn a_node_whose_history_changed_is_refused_and_the_refusal_is_recorded() {
    let (ex, mut node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    for _ in 0..4 {
        consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    }
    wait_shipped(&node, &ex).await;
    let before = shipped(&ex).await;

    // Its operator throws the ledger away and starts another with the same key: a rewritten
    // history, signed by the pinned key.
    node.stop().await;
    std::fs::remove_dir_all(node.data_dir.join("ledger")).unwrap();
    node.serve_again().await;
    node.wait_current(&ex, 1).await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    for _ in 0..6 {
        consumer
            .get(get(&keys, &["phone"], "business-licensing"))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = node_status(&node, &ex).await;
        if status.ship_error.contains("refuses") {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "not refused: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.ship_error.contains("its history changed"),
        "{}",
        status.ship_error
    );
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let held = shipped_ledger(&ex, "js.dsj", Role::Auditor).await;
    assert!(held.refused.contains("its history changed"), "{held:?}");
    assert_eq!(
        shipped(&ex).await,
        before,
        "everything accepted is kept, nothing of the new history taken"
    );
    let refusals: Vec<_> = registry_events(&ex)
        .into_iter()
        .filter(|e| e.operation == "refuse_ledger")
        .collect();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].decision, Decision::Deny);
    assert_eq!(refusals[0].keys, ["js.gongan"]);
    assert!(
        refusals[0].fields[0].starts_with("exchange.test/node/js.gongan\n"),
        "the checkpoint is kept as evidence"
    );
    // And the data authority is warned at once.
    let alerts = auditor
        .list_alerts(pb::ListAlertsRequest {
            rule: pb::AlertRule::RefusedLedger as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].department_id, "js.gongan");
    assert!(
        alerts[0].summary.contains("its history changed"),
        "{}",
        alerts[0].summary
    );
}

#[tokio::test]
async fn a_batch_holding_an_event_the_registry_cannot_read_is_refused_whole() {
    let (ex, node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    wait_shipped(&node, &ex).await;
    let before = shipped(&ex).await;
    let held = shipped_ledger(&ex, "js.dsj", Role::Auditor).await;

    // A node (or whoever holds its certificate and key) ships a well-signed batch whose second
    // event is JSON but not an audit event.
    let key = LogKey::from_text(std::fs::read_to_string(node.data_dir.join("log.key")).unwrap().trim()).unwrap();
    let good = exchange_core::ledger::encode(&before.last().unwrap().1).unwrap();
    let checkpoint = key
        .sign_checkpoint(held.size + 2, exchange_core::tlog::Hash([7; 32]))
        .unwrap();
    let mut as_node = ex.client("js.gongan", Role::Node).await;
    assert_status(
        as_node
            .ship_ledger(pb::ShipLedgerRequest {
                vkey: held.vkey.clone(),
                from_index: held.size,
                events: vec![good, br#"{"time_ms":1,"node":"js.gongan"}"#.to_vec()],
                checkpoint: checkpoint.note,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &format!(
            "event {} is not one line of an audit event: missing field",
            held.size + 1
        ),
    );
    assert_eq!(shipped(&ex).await, before, "nothing of the batch taken");
    drop(node);
}

#[tokio::test]
async fn another_log_key_is_refused_until_an_admin_rotates_the_pin() {
    let (ex, mut node, keys, _) = setup().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    wait_shipped(&node, &ex).await;

    // The operator replaces the key, keeping the history (the old key's checkpoint goes).
    node.stop().await;
    let (key, text) = LogKey::generate("exchange.test/node/js.gongan").unwrap();
    std::fs::write(node.data_dir.join("log.key"), format!("{text}\n")).unwrap();
    std::fs::remove_file(node.data_dir.join("ledger/checkpoint")).unwrap();
    node.serve_again().await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = node_status(&node, &ex).await;
        if status.ship_error.contains("not the one the registry pinned") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not refused: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut admin = ex.admin().await;
    assert_status(
        admin
            .rotate_log_key(pb::RotateLogKeyRequest {
                department_id: "js.gongan".into(),
                vkey: key.vkey().into(),
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "say why",
    );
    admin
        .rotate_log_key(pb::RotateLogKeyRequest {
            department_id: "js.gongan".into(),
            vkey: key.vkey().into(),
            reason: "key replaced after a disk failure".into(),
        })
        .await
        .unwrap();
    node.restart().await;
    wait_shipped(&node, &ex).await;
    assert_eq!(
        shipped(&ex).await,
        node_events(&node),
        "the same history, under the new key"
    );
    let rotations: Vec<_> = registry_events(&ex)
        .into_iter()
        .filter(|e| e.operation == "rotate_log_key")
        .collect();
    assert_eq!(rotations.len(), 1);
    assert!(rotations[0].reason.starts_with("key replaced after a disk failure"));
}

#[tokio::test]
async fn events_past_their_retention_are_pruned_once_shipped_and_the_rest_stays_provable() {
    let (ex, mut node, keys, _) = setup().await;
    node.stop().await;
    node.set_retention_days(1);
    node.serve_again().await;
    node.wait_current(&ex, 1).await;
    let mut consumer = node.client(&ex, "js.scjg", Role::System).await;
    let mut old = Vec::new();
    for _ in 0..3 {
        let reply = consumer.get(get(&keys, &["name"], "business-licensing")).await.unwrap();
        old.push(reply.into_inner().receipt.unwrap().index);
    }
    wait_shipped(&node, &ex).await;
    // Two days on, a new read; once it is shipped the old ones are past their retention.
    ex.clock.advance(Duration::from_secs(2 * 86_400));
    let new = consumer
        .get(get(&keys, &["name"], "business-licensing"))
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap()
        .index;
    wait_shipped(&node, &ex).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match consumer.prove_event(npb::ProveEventRequest { index: old[0] }).await {
            Err(status) if status.code() == Code::NotFound && status.message().contains("pruned") => break,
            other => assert!(tokio::time::Instant::now() < deadline, "not pruned: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for index in &old {
        assert_status(
            consumer.prove_event(npb::ProveEventRequest { index: *index }).await,
            Code::NotFound,
            "were pruned (retention)",
        );
    }
    // The new read is provable against the latest checkpoint, which extends the old ones.
    let proof = consumer
        .prove_event(npb::ProveEventRequest { index: new })
        .await
        .unwrap()
        .into_inner();
    let vkey = exchange_core::tlog::LogVerifier::parse(&node_status(&node, &ex).await.log_vkey).unwrap();
    exchange_core::tlog::ProofFile::parse(&proof.proof_file)
        .unwrap()
        .verify(&vkey)
        .unwrap();
    // The node keeps counting them, and the registry (two years' retention) still holds them all.
    assert_eq!(node_status(&node, &ex).await.audit_entries, 4);
    assert_eq!(shipped(&ex).await.len(), 4);
    // The pruned ledger still verifies offline.
    let (verified, entries) = exchange_node::read_ledger_with(&node.data_dir, &vkey).unwrap();
    assert_eq!((verified.pruned, entries.len()), (3, 1));
}
