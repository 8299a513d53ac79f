//! The registry's own audit ledger: the same Merkle log as a node's (`exchange_core::ledger`),
//! origin `<trust domain>/registry`, signed with the registry's log key. Every change at the
//! registry is an event in it, written before the change is committed: departments, datasets,
//! schema versions, grant requests and decisions, node log keys pinned and rotated, and node
//! ledgers refused for a changed history, and every auditor query. Its events are also indexed
//! (as node `registry`) beside the nodes' shipped events, so auditors search them alike.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_core::audit_index::AuditIndex;
use exchange_core::ledger::{AuditEvent, Decision, Ledger, LedgerReader};
use exchange_core::tlog::Checkpoint;
use exchange_core::CoreError;
use tokio::sync::watch;

/// While events flow, a checkpoint is signed at least this often.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Under the registry's `data_dir`: its ledger and its log key (beside sled's own files).
pub use exchange_core::ledger::{LEDGER_DIR, LOG_KEY_FILE};

struct Inner {
    ledger: Ledger,
    last_signed: Instant,
    index: Arc<dyn AuditIndex>,
}

/// The registry's own events are indexed under this node name.
pub const REGISTRY_NODE: &str = "registry";

/// The registry's ledger, shared by the state, shipping and the auditor API.
pub struct RegistryLedger {
    inner: Arc<Mutex<Inner>>,
    reader: LedgerReader,
}

impl RegistryLedger {
    /// Opens the ledger in `data_dir`, creating the log key named `origin` on first start, and
    /// indexes in `index` whatever of it a crash left unindexed.
    pub fn open(data_dir: &Path, origin: &str, index: Arc<dyn AuditIndex>) -> Result<Self, CoreError> {
        let (ledger, created) = Ledger::open_in(data_dir, origin)?;
        if created {
            tracing::info!(vkey = ledger.key().vkey(), "created the registry's log key");
        }
        if ledger.recovered().cut_bytes > 0 {
            tracing::warn!(
                cut = ledger.recovered().cut_bytes,
                "cut a torn, unacknowledged last ledger line"
            );
        }
        let reader = ledger.reader()?;
        let mut held = index.held(REGISTRY_NODE)?;
        while held < reader.size() {
            let leaves = reader.leaves(held, 1000)?;
            let events: Vec<(u64, Vec<u8>)> = (held..).zip(leaves).collect();
            index.add(REGISTRY_NODE, &events)?;
            held += events.len() as u64;
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                ledger,
                last_signed: Instant::now(),
                index,
            })),
            reader,
        })
    }

    /// The committed ledger: size, root, checkpoints, leaves, proofs.
    pub fn reader(&self) -> &LedgerReader {
        &self.reader
    }

    /// Appends `events` durably; returns their indexes.
    pub async fn record(&self, events: Vec<AuditEvent>) -> Result<Range<u64>, CoreError> {
        let inner = self.inner.clone();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut group = inner.ledger.begin()?;
            group.stage(&events)?;
            let range = inner.ledger.commit(group)?;
            // Indexed after it is on the record; a crash in between is caught up at open.
            let leaves = reader.leaves(range.start, range.end - range.start)?;
            let indexed: Vec<(u64, Vec<u8>)> = range.clone().zip(leaves).collect();
            inner.index.add(REGISTRY_NODE, &indexed)?;
            if inner.last_signed.elapsed() >= CHECKPOINT_EVERY {
                sign(&mut inner);
            }
            Ok(range)
        })
        .await
        .map_err(|e| CoreError::Unavailable(format!("ledger task failed: {e}")))?
    }

    /// A checkpoint of everything committed, signed now if events came since the last.
    pub async fn checkpoint(&self) -> Result<Checkpoint, CoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.last_signed = Instant::now();
            Ok(inner.ledger.checkpoint()?)
        })
        .await
        .map_err(|e| CoreError::Unavailable(format!("ledger task failed: {e}")))?
    }

    /// Signs a checkpoint within a second of the last event, until `stopping`, and once more
    /// then, so that everything committed is under a signed checkpoint.
    pub fn spawn_signer(self: &Arc<Self>, mut stopping: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                    _ = stopping.wait_for(|&s| s) => break,
                }
                this.sign_if_due().await;
            }
            this.sign_if_due().await;
        })
    }

    async fn sign_if_due(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.ledger.checkpoint_due() {
                sign(&mut inner);
            }
        })
        .await;
    }
}

fn sign(inner: &mut Inner) {
    inner.last_signed = Instant::now();
    if let Err(e) = inner.ledger.checkpoint() {
        tracing::error!(error = %e, "could not sign a registry ledger checkpoint");
    }
}

/// A registry event: `operation` on `subject` by `principal` (its certificate URI) of
/// `department`, allowed; the fields a node's read events use for datasets and grants are set by
/// the caller where they apply.
pub fn event(time_ms: i64, principal: String, department: &str, operation: &str) -> AuditEvent {
    AuditEvent {
        time_ms,
        node: "registry".into(),
        principal,
        department: department.to_string(),
        operation: operation.to_string(),
        dataset: String::new(),
        schema_version: 0,
        fields: Vec::new(),
        keys: Vec::new(),
        count: 0,
        purpose: String::new(),
        case_id: String::new(),
        decision: Decision::Allow,
        reason: String::new(),
        grant_id: String::new(),
        served_sha256: String::new(),
        withheld_until: 0,
    }
}
