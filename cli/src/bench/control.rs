//! Rows 6 and 9: how fast a revocation reaches the node, and what watching nodes cost a grant
//! decision at the registry.

use std::time::{Duration, Instant};

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;

use super::exchange::{Exchange, REQUESTER, REVOKED};
use super::load::percentiles;
use super::Row;
use crate::output::status_error;

/// Row 6: `samples` times, a grant is approved and seen working, then revoked; the time from
/// sending the revocation to the node's first refusal.
pub(crate) async fn revocation(ex: &mut Exchange, samples: usize) -> anyhow::Result<Row> {
    let channel = ex.channel(REVOKED, Role::System).await?;
    let mut latencies = Vec::new();
    for n in 0..samples {
        let purpose = format!("revocation-{n}");
        let grant = ex.grant(REVOKED, &purpose).await?;
        ex.wait_until(&channel, &purpose, true, Duration::from_secs(10)).await?;
        let start = Instant::now();
        ex.admin
            .revoke_grant(pb::DecideGrantRequest {
                grant_id: grant,
                reason: "benchmark".into(),
            })
            .await
            .map_err(status_error)?;
        let refused = ex
            .wait_until(&channel, &purpose, false, Duration::from_secs(10))
            .await?;
        latencies.push(refused.duration_since(start).as_micros() as u64);
    }
    let (p50, p99) = percentiles(latencies);
    Ok(Row {
        number: 6,
        what: format!("revocation: RevokeGrant sent until the node refuses a Get ({samples} grants)"),
        measured: format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
        baseline: "—".into(),
        target: "p99 < 1 s (goal 100 ms)".into(),
        outcome: if p99 < 100.0 {
            "within the 100 ms goal".into()
        } else {
            format!("p99 {p99:.0} ms")
        },
        met: p99 < 1000.0,
        figures: vec![("p50_ms".into(), p50), ("p99_ms".into(), p99)],
    })
}

/// The departments whose nodes watch the registry in row 9.
pub(crate) fn watcher_departments(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("js.watch{n:03}")).collect()
}

/// `samples` grant approvals, each timed alone (the request before it is not).
async fn decisions(ex: &mut Exchange, samples: usize, round: &str) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::new();
    for n in 0..samples {
        let id = ex.request_grant(REQUESTER, &format!("decision-{round}-{n}")).await?;
        let start = Instant::now();
        ex.admin
            .approve_grant(pb::DecideGrantRequest {
                grant_id: id,
                reason: "benchmark".into(),
            })
            .await
            .map_err(status_error)?;
        latencies.push(start.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

/// Row 9: grant approvals with no node watching but the bench's own, then with one watch per
/// department of `watchers` (each its own node certificate and connection).
pub(crate) async fn grant_decisions(ex: &mut Exchange, watchers: &[String], samples: usize) -> anyhow::Result<Row> {
    decisions(ex, samples.min(5), "warm").await?;
    let alone = decisions(ex, samples, "alone").await?;
    let mut streams = Vec::new();
    for department in watchers {
        let mut client = RegistryClient::new(ex.channel_to(&ex.registry_url, department, Role::Node).await?);
        let mut stream = client
            .watch(pb::WatchRequest::default())
            .await
            .map_err(status_error)?
            .into_inner();
        streams.push(tokio::spawn(async move {
            let mut events = 0u64;
            while let Ok(Some(_)) = stream.message().await {
                events += 1;
            }
            events
        }));
    }
    // Let every watch send its first state before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let watched = decisions(ex, samples, "watched").await?;
    for stream in &streams {
        stream.abort();
    }
    let (a50, a99) = percentiles(alone);
    let (w50, w99) = percentiles(watched);
    let ratio = w99 / a99.max(1e-6);
    Ok(Row {
        number: 9,
        what: format!(
            "a grant decision (ApproveGrant) at the registry with {} nodes watching ({samples} decisions)",
            watchers.len()
        ),
        measured: format!("p50 {w50:.2} ms, p99 {w99:.2} ms"),
        baseline: format!("p50 {a50:.2} ms, p99 {a99:.2} ms with none watching"),
        target: "≤ 2 ×".into(),
        outcome: format!("p50 {:.1} ×, p99 {ratio:.1} ×", w50 / a50.max(1e-6)),
        met: ratio <= 2.0,
        figures: vec![
            ("watched_p50_ms".into(), w50),
            ("watched_p99_ms".into(), w99),
            ("alone_p50_ms".into(), a50),
            ("alone_p99_ms".into(), a99),
        ],
    })
}
