//! Rows 1, 4 and 8: audited Gets against a bare call returning the same reply, the same Gets with
//! the ledger off, and the registry ingesting the events the Gets write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;
use tonic::transport::Channel;

use super::exchange::{get_request, Exchange, PURPOSE};
use super::load::{closed_loop, thousands, Measured};
use super::{Row, Shape};
use crate::output::status_error;

/// Gets of random keys for `seconds` over `channels`.
pub(crate) async fn gets(channels: &[Channel], shape: &Shape, keys: &Arc<Vec<String>>, seconds: f64) -> Measured {
    let keys = keys.clone();
    closed_loop(channels, shape.in_flight, seconds, move |channel, n| {
        // A fixed stride through the keys: every call a different record, no two runs alike.
        let key = keys[(n.wrapping_mul(7919)) % keys.len()].clone();
        async move {
            let mut client = NodeClient::new(channel);
            client
                .get(get_request(key, PURPOSE))
                .await
                .is_ok_and(|r| r.into_inner().records.len() == 1)
        }
    })
    .await
}

/// What the node said about its ledger and shipping.
async fn ledger_status(owner: &mut NodeClient<Channel>) -> anyhow::Result<(u64, u64)> {
    let status = owner
        .status(npb::StatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    Ok((status.audit_entries, status.audit_shipped))
}

/// Rows 1, 4 and 8. `node` and `baseline` are the consumer's channels to the node and to the
/// baseline server.
pub(crate) async fn run(
    ex: &Exchange,
    node: &[Channel],
    baseline: &[Channel],
    owner: &mut NodeClient<Channel>,
    keys: &Arc<Vec<String>>,
    shape: &Shape,
) -> anyhow::Result<Vec<Row>> {
    let seconds = shape.seconds;
    let warm = (seconds / 5.0).clamp(0.2, 1.0);
    gets(baseline, shape, keys, warm).await;
    let bare = gets(baseline, shape, keys, seconds).await;

    ex.ledger.set_on(false);
    gets(node, shape, keys, warm).await;
    let off = gets(node, shape, keys, seconds).await;
    ex.ledger.set_on(true);
    gets(node, shape, keys, warm).await;

    // Ledger on: the node writes an event per Get and ships them; watch the registry keep up.
    let (entries_before, shipped_before) = ledger_status(owner).await?;
    let sampler = {
        let mut owner = owner.clone();
        tokio::spawn(async move {
            let mut max_lag = 0u64;
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < deadline {
                if let Ok((entries, shipped)) = ledger_status(&mut owner).await {
                    max_lag = max_lag.max(entries.saturating_sub(shipped));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            max_lag
        })
    };
    let on = gets(node, shape, keys, seconds).await;
    let (entries_after, shipped_after) = ledger_status(owner).await?;
    let max_lag = sampler.await.unwrap_or(u64::MAX);
    let lag_at_end = entries_after.saturating_sub(shipped_after);
    let drain_started = Instant::now();
    let drained = loop {
        let (entries, shipped) = ledger_status(owner).await?;
        if shipped >= entries {
            break Some(drain_started.elapsed());
        }
        if drain_started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let ratio = on.rate() / bare.rate().max(1.0);
    let p99_ratio = on.p99_ms / bare.p99_ms.max(1e-6);
    let row1 = Row {
        number: 1,
        what: format!(
            "authorized, audited Get of one key (3 fields, 1 masked), {} in flight over {} connections",
            shape.in_flight,
            node.len()
        ),
        measured: on.describe("req"),
        baseline: format!(
            "{} (a bare tonic Get returning the same reply bytes, same mTLS)",
            bare.describe("req")
        ),
        target: "≥ 65 % of baseline, p99 ≤ 1.5 × baseline p99".into(),
        outcome: format!("{:.0} % of baseline, p99 {:.1} ×", 100.0 * ratio, p99_ratio),
        met: ratio >= 0.65 && p99_ratio <= 1.5 && on.errors == 0,
        figures: vec![
            ("requests_per_s".into(), on.rate()),
            ("p50_ms".into(), on.p50_ms),
            ("p99_ms".into(), on.p99_ms),
            ("baseline_requests_per_s".into(), bare.rate()),
            ("baseline_p99_ms".into(), bare.p99_ms),
        ],
    };
    let slower = 1.0 - on.rate() / off.rate().max(1.0);
    let row4 = Row {
        number: 4,
        what: "row 1 with the ledger on (events durable before the reply, shipped to the registry)".into(),
        measured: on.describe("req"),
        baseline: format!("{} (ledger off, a switch only the bench has)", off.describe("req")),
        target: "≤ 10 % slower".into(),
        outcome: format!("{:.0} % slower", 100.0 * slower),
        met: slower <= 0.10 && on.errors == 0,
        figures: vec![
            ("ledger_on_requests_per_s".into(), on.rate()),
            ("ledger_off_requests_per_s".into(), off.rate()),
            ("ledger_off_p99_ms".into(), off.p99_ms),
        ],
    };
    let written = entries_after.saturating_sub(entries_before) as f64 / on.seconds;
    let ingested = shipped_after.saturating_sub(shipped_before) as f64 / on.seconds;
    let drained_text = match drained {
        Some(d) => format!("caught up {:.1} s after the load stopped", d.as_secs_f64()),
        None => "not caught up 60 s after the load stopped".into(),
    };
    let row8 = Row {
        number: 8,
        what: "shipping: events the registry ingests (signature, consistency proofs, index) during row 1".into(),
        measured: format!(
            "{} events/s ingested; lag at most {} events, {} at the end, {drained_text}",
            thousands(ingested),
            thousands(max_lag as f64),
            thousands(lag_at_end as f64)
        ),
        baseline: format!("{} events/s written by the node", thousands(written)),
        target: "the registry keeps up: lag stays bounded".into(),
        outcome: format!(
            "ingested {:.0} % of the node's rate",
            100.0 * ingested / written.max(1.0)
        ),
        // Bounded: the lag never exceeded about two seconds of the node's events, and the
        // registry caught up soon after.
        met: drained.is_some_and(|d| d < Duration::from_secs(5)) && (max_lag as f64) <= 2.0 * written.max(1.0),
        figures: vec![
            ("ingested_events_per_s".into(), ingested),
            ("written_events_per_s".into(), written),
            ("max_lag_events".into(), max_lag as f64),
            ("drain_seconds".into(), drained.map_or(-1.0, |d| d.as_secs_f64())),
        ],
    };
    Ok(vec![row1, row4, row8])
}
