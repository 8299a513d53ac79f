//! The early warning end to end: denied reads shipped by a node raise one alert per hour, which
//! admins and auditors list and watch and an admin acknowledges with a note, both on the
//! registry's record; as the clock moves, a dataset that stopped changing, a node that stopped
//! reporting and a request past its due date raise theirs, and each clears when it is mended.

use std::time::Duration;

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use super::*;
use crate::harness::*;

fn quick(config: &mut registry::Config) {
    config.alerts.check_every_secs = 1;
    config.alerts.denied_reads_per_hour = 3;
}

async fn alerts(client: &mut Client, rule: pb::AlertRule) -> Vec<pb::Alert> {
    let request = pb::ListAlertsRequest {
        rule: rule as i32,
        ..Default::default()
    };
    client.list_alerts(request).await.unwrap().into_inner().alerts
}

/// Waits (up to ten seconds) until the registry lists `n` alerts of `rule`.
async fn wait_alerts(client: &mut Client, rule: pb::AlertRule, n: usize) -> Vec<pb::Alert> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = alerts(client, rule).await;
        if found.len() >= n {
            assert_eq!(found.len(), n, "{found:?}");
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} {rule:?} alerts not raised: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rules_of(alerts: &[pb::Alert]) -> Vec<pb::AlertRule> {
    let mut rules: Vec<_> = alerts.iter().map(|a| a.rule()).collect();
    rules.sort();
    rules
}

#[tokio::test]
async fn denied_reads_raise_one_alert_an_hour_that_admins_watch_and_acknowledge() {
    let (ex, node, keys, _) = setup_configured(quick).await;
    let mut auditor = ex.client("js.dsj", Role::Auditor).await;
    let mut watching = auditor
        .watch_alerts(pb::WatchAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut reader = node.client(&ex, "js.scjg", Role::System).await;
    // Allowed reads and two denials: quiet.
    for purpose in ["business-licensing", "marketing", "marketing", "business-licensing"] {
        let _ = reader.get(get(&keys[..1], &["name"], purpose)).await;
    }
    wait_shipped(&node, &ex).await;
    let mut admin = ex.admin().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = admin.list_alerts(pb::ListAlertsRequest::default()).await.unwrap();
    assert!(listed.into_inner().alerts.is_empty(), "nothing to warn of yet");

    // The third denial within the hour raises it; a fourth raises nothing more.
    for _ in 0..2 {
        let denied = reader.get(get(&keys[..1], &["name"], "marketing")).await;
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    }
    wait_shipped(&node, &ex).await;
    let raised = wait_alerts(&mut auditor, pb::AlertRule::DeniedReads, 1).await;
    let alert = &raised[0];
    assert_eq!(
        (alert.department_id.as_str(), alert.observed, alert.threshold),
        ("js.scjg", 3, 3)
    );
    assert_eq!(alert.state(), pb::AlertState::Open);
    assert!(alert.summary.contains("had 3 reads denied"), "{}", alert.summary);
    let streamed = tokio::time::timeout(Duration::from_secs(5), watching.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(streamed, *alert, "watchers get it as it is raised");

    // Only admins and auditors see alerts; only admins acknowledge, with a note.
    let mut scjg = ex.client("js.scjg", Role::System).await;
    assert_status(
        scjg.list_alerts(pb::ListAlertsRequest::default()).await,
        Code::PermissionDenied,
        "only admins and auditors",
    );
    let ack = |note: &str| pb::AcknowledgeAlertRequest {
        alert_id: alert.id.clone(),
        note: note.into(),
    };
    assert_status(
        auditor.acknowledge_alert(ack("seen")).await,
        Code::PermissionDenied,
        "only an admin",
    );
    assert_status(
        admin.acknowledge_alert(ack(" ")).await,
        Code::InvalidArgument,
        "say what was found",
    );
    let acknowledged = admin
        .acknowledge_alert(ack("js.scjg's system sent a wrong purpose after an upgrade; fixed"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acknowledged.state(), pb::AlertState::Acknowledged);
    assert!(
        acknowledged.acknowledged_by.ends_with("/admin"),
        "{}",
        acknowledged.acknowledged_by
    );
    assert_status(
        admin.acknowledge_alert(ack("again")).await,
        Code::FailedPrecondition,
        "acknowledged already",
    );
    let open = admin
        .list_alerts(pb::ListAlertsRequest {
            state: pb::AlertState::Open as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(open.alerts.is_empty());
    assert_status(
        admin
            .get_alert(pb::GetAlertRequest {
                alert_id: "a-999999".into(),
            })
            .await,
        Code::NotFound,
        "no alert a-999999",
    );
    assert_status(
        auditor
            .watch_alerts(pb::WatchAlertsRequest {
                after_id: "a-999999".into(),
            })
            .await,
        Code::OutOfRange,
        "no alert a-999999 yet: the latest is a-000001",
    );

    // A fourth denial in the same hour: still one alert. The next hour counts again.
    let _ = reader.get(get(&keys[..1], &["name"], "marketing")).await;
    ex.clock.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        let _ = reader.get(get(&keys[..1], &["name"], "marketing")).await;
    }
    wait_shipped(&node, &ex).await;
    let raised = wait_alerts(&mut auditor, pb::AlertRule::DeniedReads, 2).await;
    assert_ne!(raised[0].key, raised[1].key);

    // Both steps are on the registry's record, under the alert's id.
    let steps: Vec<(String, String)> = case_events(&ex, &alert.id)
        .await
        .into_iter()
        .map(|e| (e.operation, e.reason))
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0].0, "raise_alert");
    assert!(
        steps[0].1.starts_with("denied_reads: js.scjg had 3 reads denied"),
        "{}",
        steps[0].1
    );
    assert_eq!(
        steps[1],
        (
            "acknowledge_alert".to_string(),
            "js.scjg's system sent a wrong purpose after an upgrade; fixed".to_string()
        )
    );
}

#[tokio::test]
async fn stale_datasets_silent_nodes_and_overdue_requests_alert_as_the_clock_moves() {
    let (ex, node, _, _) = setup_configured(quick).await;
    let mut admin = ex.admin().await;
    let mut gongan = ex.client("js.gongan", Role::System).await;
    // The owner declares how often the dataset changes (a frequency must be one of the names).
    let mut dataset = gongan
        .get_dataset(pb::GetDatasetRequest {
            id: "js.gongan/population".into(),
        })
        .await
        .unwrap()
        .into_inner();
    dataset.update_frequency = "每日".into();
    assert_status(
        gongan
            .update_dataset(pb::UpdateDatasetRequest {
                dataset: Some(dataset.clone()),
            })
            .await,
        Code::InvalidArgument,
        "use one of realtime, hourly, daily",
    );
    dataset.update_frequency = "daily".into();
    gongan
        .update_dataset(pb::UpdateDatasetRequest { dataset: Some(dataset) })
        .await
        .unwrap();
    wait_shipped(&node, &ex).await;
    // The node reports its new records within a second or so (and the rules run every second);
    // a request on them is then due in 5 working days (10 while the data is not published).
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A request nobody decides.
    let mut rsj = ex.client("js.rsj", Role::System).await;
    let pending = rsj
        .request_grant(grant_request("js.gongan/population", &["name"]))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = admin.list_alerts(pb::ListAlertsRequest::default()).await.unwrap();
    assert!(all.into_inner().alerts.is_empty(), "all is well so far");

    // Ten days later: the daily dataset has not changed, the node has not reported (by the
    // registry's clock) and the request is past its five working days.
    ex.clock.advance(Duration::from_secs(10 * 86_400));
    let stale = wait_alerts(&mut admin, pb::AlertRule::StaleDataset, 1).await;
    assert_eq!(
        (stale[0].department_id.as_str(), stale[0].dataset_id.as_str()),
        ("js.gongan", "js.gongan/population")
    );
    assert!(stale[0].summary.contains("declared daily"), "{}", stale[0].summary);
    let overdue = wait_alerts(&mut admin, pb::AlertRule::Overdue, 1).await;
    assert_eq!(
        (overdue[0].subject.as_str(), overdue[0].department_id.as_str()),
        (pending.id.as_str(), "js.gongan")
    );
    // Its node reports once a minute of real time: by the registry's clock, ten days ago.
    let silent = wait_alerts(&mut admin, pb::AlertRule::NodeSilent, 1).await;
    assert!(silent[0].summary.contains("has not reported"), "{}", silent[0].summary);

    // The owner publishes: its node reports the change within seconds, and the stale
    // condition clears; were it to go stale again, that would be another alert.
    let mut owner = node.client(&ex, "js.gongan", Role::System).await;
    owner
        .publish(publish_request(vec![upsert(&person("320102", 9, "赵六"))]))
        .await
        .unwrap();
    gongan
        .reject_grant(pb::DecideGrantRequest {
            grant_id: pending.id.clone(),
            reason: "js.rsj has no legal basis for names".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    ex.clock.advance(Duration::from_secs(37 * 3600));
    let stale = wait_alerts(&mut admin, pb::AlertRule::StaleDataset, 2).await;
    assert_ne!(stale[0].key, stale[1].key, "a second stale spell, after a change");
    assert_eq!(
        alerts(&mut admin, pb::AlertRule::Overdue).await.len(),
        1,
        "decided: no more"
    );
    // The node reported the change, so its silence cleared too: 37 hours on, a second one.
    wait_alerts(&mut admin, pb::AlertRule::NodeSilent, 2).await;
    let every = admin.list_alerts(pb::ListAlertsRequest::default()).await.unwrap();
    use pb::AlertRule::*;
    assert_eq!(
        rules_of(&every.into_inner().alerts),
        [StaleDataset, StaleDataset, NodeSilent, NodeSilent, Overdue],
        "and nothing else"
    );
}
