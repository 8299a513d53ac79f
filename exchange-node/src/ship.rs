//! Shipping the audit ledger to the registry: every event once, in order, in batches, resuming
//! from the size the registry says it holds.
//!
//! The node's ledger is the buffer: while the registry is down nothing is lost and nothing
//! accumulates in memory (a batch is read from the ledger files when it is sent). Only signed
//! events are shipped: each batch carries the latest checkpoint and the consistency proofs that
//! tie the batch and that checkpoint to what the registry accepted before, so the registry
//! checks everything it takes. A refusal (another key pinned, or a history the registry says
//! changed) is shown in `Status` and retried slowly; it needs people, not retries.
//!
//! **Retention.** Once the registry holds them, events older than `[audit] retention_days` are
//! pruned from the node's ledger (their hashes stay, so the rest stays provable); the shipper
//! does it after a batch is taken, and when it starts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use exchange_core::clock::Clock;
use exchange_core::ledger::{AuditConfig, AuditEvent, LedgerReader};

use crate::writer::Writer;
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use tokio::sync::watch;

/// At most this many events per batch. Smaller batches keep the registry's indexing from
/// stalling other work for long (measured with a co-located registry: 2,000 gave a p99 of 120 ms
/// to audited reads, 500 gave 37 ms, 200 gave 26 ms with a higher median; see BENCHMARKS.md).
const BATCH_EVENTS: u64 = 500;
/// And at most about this many bytes.
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How often to look for newly signed events.
const POLL: Duration = Duration::from_millis(200);
/// How long to wait after the registry refused the ledger before asking again.
const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// With nothing to ship, the node still reports this often: the registry takes a node it has
/// not heard from in `alerts.node_silent_minutes` for silent.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// A dataset's new records are reported when nothing else is shipped, at most this often (a
/// correction names a change only once it is reported).
const REPORT_CHANGES_EVERY: Duration = Duration::from_secs(1);

/// How shipping is going, for `Status`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShipStatus {
    /// Events the registry holds.
    pub(crate) shipped: u64,
    /// The last failure, until a batch goes through.
    pub(crate) error: String,
}

pub(crate) type SharedShip = Arc<Mutex<ShipStatus>>;

fn set(status: &SharedShip, update: impl FnOnce(&mut ShipStatus)) {
    update(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
}

/// What shipping needs besides the registry's address: the ledger, and for retention the writer
/// (which prunes) and the clock.
pub(crate) struct Shipper {
    pub(crate) ledger: LedgerReader,
    pub(crate) writer: Writer,
    pub(crate) clock: Clock,
    pub(crate) audit: AuditConfig,
    pub(crate) status: SharedShip,
}

impl Shipper {
    /// What the node says of itself with each call (the registry's early warning reads it).
    fn report(&self) -> pb::NodeReport {
        pb::NodeReport {
            ledger_size: self.ledger.size(),
            datasets: self
                .writer
                .sequences()
                .into_iter()
                .map(|(dataset_id, sequence)| pb::DatasetSequence { dataset_id, sequence })
                .collect(),
        }
    }

    /// Prunes the shipped events older than the retention period.
    async fn prune(&self, shipped: u64) {
        let Some(cutoff) = self.audit.cutoff_ms(self.clock.now_ms()) else {
            return;
        };
        let mut before = self.ledger.pruned();
        // This runs after every shipped batch, and the oldest event kept is nearly always within
        // its retention: one event read says so; only then are they read a thousand at a time.
        let mut chunk = 1;
        while before < shipped {
            let Ok(leaves) = self.ledger.leaves(before, (shipped - before).min(chunk)) else {
                return;
            };
            chunk = 1000;
            let old = leaves
                .iter()
                .take_while(|leaf| serde_json::from_slice::<AuditEvent>(leaf).is_ok_and(|e| e.time_ms < cutoff))
                .count() as u64;
            before += old;
            if old < leaves.len() as u64 || leaves.is_empty() {
                break;
            }
        }
        if before > self.ledger.pruned() {
            match self.writer.prune(before).await {
                Ok(pruned) => tracing::info!(
                    pruned,
                    "pruned audit events past their retention (the registry holds them)"
                ),
                Err(e) => tracing::error!(error = %e, "could not prune the audit ledger"),
            }
        }
    }
}

/// Ships until `stop`.
pub(crate) async fn run(client: ClientConfig, shipper: Shipper, mut stop: watch::Receiver<bool>) {
    let status = shipper.status.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            outcome = ship_once(&client, &shipper) => outcome,
            _ = stop.wait_for(|&s| s) => return,
        };
        let wait = match outcome {
            Err(status_error) if status_error.code() == tonic::Code::FailedPrecondition => {
                tracing::error!(
                    error = status_error.message(),
                    "the registry does not take this node's audit ledger"
                );
                set(&status, |s| s.error = status_error.message().to_string());
                REFUSED_RETRY
            }
            Err(e) => {
                tracing::warn!(error = e.message(), retry_in = ?backoff, "cannot ship the audit ledger; it waits in the node's ledger");
                set(&status, |s| s.error = format!("{:?}: {}", e.code(), e.message()));
                backoff
            }
            Ok(()) => backoff,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {},
            _ = stop.wait_for(|&s| s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn ship_once(client: &ClientConfig, shipper: &Shipper) -> Result<(), tonic::Status> {
    let (ledger, status) = (&shipper.ledger, &shipper.status);
    let channel = connect(client)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut registry = RegistryClient::new(channel);
    let vkey = ledger.verifier().text().to_string();
    let mut held = registry
        .ship_ledger(pb::ShipLedgerRequest {
            vkey: vkey.clone(),
            report: Some(shipper.report()),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut reported = (std::time::Instant::now(), shipper.report().datasets);
    set(status, |s| {
        s.shipped = held.size;
        s.error.clear();
    });
    shipper.prune(held.size).await;
    loop {
        let Some(checkpoint) = ledger.checkpoint().filter(|c| c.size > held.size) else {
            let report = shipper.report();
            let since = reported.0.elapsed();
            if since >= REPORT_EVERY || (since >= REPORT_CHANGES_EVERY && report.datasets != reported.1) {
                reported = (std::time::Instant::now(), report.datasets.clone());
                held = registry
                    .ship_ledger(pb::ShipLedgerRequest {
                        vkey: vkey.clone(),
                        report: Some(report),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        let mut events = ledger
            .leaves(held.size, BATCH_EVENTS.min(checkpoint.size - held.size))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let mut bytes = 0;
        if let Some(cut) = events.iter().position(|e| {
            bytes += e.len();
            bytes > BATCH_BYTES
        }) {
            events.truncate(cut.max(1));
        }
        let end = held.size + events.len() as u64;
        let proof = |from: u64| -> Result<Vec<Vec<u8>>, tonic::Status> {
            if from == 0 || from >= checkpoint.size {
                return Ok(Vec::new());
            }
            Ok(ledger
                .consistency_proof(from, checkpoint.size)
                .map_err(|e| tonic::Status::internal(e.to_string()))?
                .into_iter()
                .map(|h| h.0.to_vec())
                .collect())
        };
        let request = pb::ShipLedgerRequest {
            vkey: vkey.clone(),
            from_index: held.size,
            batch_proof: proof(end)?,
            accepted_proof: proof(held.checkpoint_size)?,
            events,
            checkpoint: checkpoint.note.clone(),
            report: Some(shipper.report()),
        };
        reported.0 = std::time::Instant::now();
        held = registry.ship_ledger(request).await?.into_inner();
        set(status, |s| {
            s.shipped = held.size;
            s.error.clear();
        });
        shipper.prune(held.size).await;
    }
}
