//! Nodes' audit ledgers, shipped to the registry: every event once, in order, checked as a
//! C2SP witness checks a log.
//!
//! For each node the registry keeps the events it accepted in the [`AuditIndex`] (the leaves
//! byte for byte, searchable) and a [`ShipMeta`] (`ship/<dept>`): the pinned verifier key, how many
//! events it holds, the frontier of their tree (so it computes their root without reading them
//! again), the last checkpoint it accepted, and why it refuses the node, once it does.
//!
//! A batch `[from, end)` is accepted when: its key is the pinned one; `from` is the size held;
//! the checkpoint is signed by that key for the node's origin and covers `end`; the root the
//! registry computes over the events it holds plus the batch leads, by the batch proof, to the
//! checkpoint's root; and the checkpoint is consistent with the last one accepted. A checkpoint
//! that fails either proof, or is smaller than what the registry holds, means the node's history
//! changed: the registry records the refusal in its own ledger (with the checkpoint, signed
//! evidence) and refuses that node from then on, keeping everything it accepted.

use std::collections::HashMap;
use std::sync::Arc;

use exchange_core::audit_index::{read_events, AuditIndex, Located};
use exchange_core::clock::Clock;
use exchange_core::identity::Principal;
use exchange_core::ledger::{node_origin, EventView};
use exchange_core::store::{Batch, Store};
use exchange_core::tlog::{self, Frontier, LogVerifier};
use exchange_core::{authz, CoreError, ValidationError};
use serde::{Deserialize, Serialize};

use crate::alerts::Alerts;
use crate::ledger::RegistryLedger;
use crate::state::{decode, encode};
use exchange_core::alert::Alert;

/// What the registry holds of one node's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipMeta {
    /// The department.
    pub department: String,
    /// The pinned verifier key.
    pub vkey: String,
    /// Events held.
    pub size: u64,
    /// Their tree's frontier ([`Frontier::to_text`]).
    pub frontier: String,
    /// The last checkpoint accepted (a signed note) and its size.
    pub checkpoint: String,
    /// Its size.
    pub checkpoint_size: u64,
    /// Its root (base64), kept apart from the note: after a key rotation the note no longer
    /// opens with the pinned key, and it need not, having been checked when it was accepted.
    pub checkpoint_root: String,
    /// Why the node is refused, once it is.
    #[serde(default)]
    pub refused: String,
    /// When, Unix seconds.
    #[serde(default)]
    pub refused_at: i64,
}

/// What a node last told the registry of itself (`health/<dept>`), and when each of its datasets
/// was last seen to change: what the early warning judges silent nodes, lagging ones and stale
/// datasets by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub department: String,
    /// When it last called, Unix milliseconds.
    pub reported_at_ms: i64,
    /// Events its ledger held then, shipped or not.
    pub ledger_size: u64,
    /// Its datasets, by id.
    pub datasets: std::collections::BTreeMap<String, Freshness>,
}

/// Where a dataset's change feed stood at its node's last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// Its last change-feed sequence (0: no records yet).
    pub sequence: u64,
    /// When the registry first saw that sequence, Unix seconds: within a few seconds of the
    /// change while the node reports (a dataset first reported counts from then).
    pub changed_at: i64,
}

/// What a node says of itself with a call.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// Events in its ledger.
    pub ledger_size: u64,
    /// Each dataset's last sequence.
    pub datasets: Vec<(String, u64)>,
}

/// One batch a node ships.
#[derive(Debug, Clone, Default)]
pub struct ShipBatch {
    /// The node's verifier key.
    pub vkey: String,
    /// The index of the first event.
    pub from_index: u64,
    /// The leaves.
    pub events: Vec<Vec<u8>>,
    /// The node's latest signed checkpoint.
    pub checkpoint: String,
    /// From `from_index + events.len()` to the checkpoint's size.
    pub batch_proof: Vec<Vec<u8>>,
    /// From the last accepted checkpoint's size to this checkpoint's.
    pub accepted_proof: Vec<Vec<u8>>,
    /// How the node stands (none from nodes older than reports).
    pub report: Option<NodeReport>,
}

/// At most this many events are read back in one call.
pub const MAX_READ: usize = 1000;

fn meta_key(department: &str) -> Vec<u8> {
    format!("ship/{department}").into_bytes()
}

fn health_key(department: &str) -> Vec<u8> {
    format!("health/{department}").into_bytes()
}

/// What the registry holds of every node's ledger.
pub(crate) fn all_metas(store: &dyn Store) -> Result<Vec<ShipMeta>, CoreError> {
    store.scan_prefix(b"ship/")?.iter().map(|(k, v)| decode(k, v)).collect()
}

/// What `department`'s node last reported, if it ever did.
fn stored_health(store: &dyn Store, department: &str) -> Result<Option<NodeHealth>, CoreError> {
    let key = health_key(department);
    store.get(&key)?.map(|bytes| decode(&key, &bytes)).transpose()
}

/// The last change-feed sequence of `dataset` its node reported, if it did.
pub(crate) fn latest_sequence(store: &dyn Store, dataset: &str) -> Result<Option<u64>, CoreError> {
    let health = stored_health(store, exchange_core::catalog::owner_of(dataset))?;
    Ok(health.and_then(|h| h.datasets.get(dataset).map(|f| f.sequence)))
}

/// Whether `dataset` has records, as its node last reported; true when its node never reported
/// (a node older than reports, or none: not known to be empty).
pub(crate) fn published(store: &dyn Store, dataset: &str) -> Result<bool, CoreError> {
    let health = stored_health(store, exchange_core::catalog::owner_of(dataset))?;
    Ok(health.is_none_or(|h| h.datasets.get(dataset).is_some_and(|f| f.sequence > 0)))
}

/// Every node's last report.
pub(crate) fn all_health(store: &dyn Store) -> Result<Vec<NodeHealth>, CoreError> {
    store
        .scan_prefix(b"health/")?
        .iter()
        .map(|(k, v)| decode(k, v))
        .collect()
}

fn save(store: &dyn Store, meta: &ShipMeta, mut batch: Batch) -> Result<(), CoreError> {
    batch.put(meta_key(&meta.department), encode(meta)?);
    Ok(store.commit(batch)?)
}

/// The shipped ledgers.
pub struct Shipping {
    store: Arc<dyn Store>,
    index: Arc<dyn AuditIndex>,
    ledger: Arc<RegistryLedger>,
    trust_domain: String,
    clock: Clock,
    /// One batch at a time per node.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The early warning, shown every batch accepted and every refusal.
    alerts: Arc<Alerts>,
}

impl Shipping {
    /// Shipping over `store` (for each node's [`ShipMeta`]) and `index` (for the events),
    /// recording pins, rotations and refusals in `ledger`.
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<dyn AuditIndex>,
        ledger: Arc<RegistryLedger>,
        trust_domain: &str,
        clock: Clock,
        alerts: Arc<Alerts>,
    ) -> Self {
        Self {
            store,
            index,
            ledger,
            trust_domain: trust_domain.to_string(),
            clock,
            locks: std::sync::Mutex::new(HashMap::new()),
            alerts,
        }
    }

    /// `department`'s health after a call reporting `report` now: a dataset's sequence that
    /// moved is stamped with the time.
    fn health(&self, department: &str, report: Option<&NodeReport>) -> Result<NodeHealth, CoreError> {
        let mut health = stored_health(&*self.store, department)?.unwrap_or_else(|| NodeHealth {
            department: department.to_string(),
            ..NodeHealth::default()
        });
        let now_ms = self.clock.now_ms();
        health.reported_at_ms = now_ms;
        if let Some(report) = report {
            health.ledger_size = report.ledger_size;
            let owned = |id: &str| exchange_core::catalog::owner_of(id) == department && id.contains('/');
            for (dataset, sequence) in report.datasets.iter().filter(|(d, _)| owned(d)) {
                let seen = health.datasets.entry(dataset.clone()).or_default();
                if *sequence != seen.sequence {
                    *seen = Freshness {
                        sequence: *sequence,
                        changed_at: if *sequence == 0 { 0 } else { now_ms.div_euclid(1000) },
                    };
                }
            }
        }
        Ok(health)
    }

    fn save_health(&self, health: &NodeHealth) -> Result<(), CoreError> {
        let mut batch = Batch::default();
        batch.put(health_key(&health.department), encode(health)?);
        Ok(self.store.commit(batch)?)
    }

    fn lock(&self, department: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(department.to_string()).or_default().clone()
    }

    /// What the registry holds of `department`'s ledger (an empty one when nothing was shipped).
    pub fn meta(&self, department: &str) -> Result<ShipMeta, CoreError> {
        let key = meta_key(department);
        match self.store.get(&key)? {
            Some(bytes) => decode(&key, &bytes),
            None => Ok(ShipMeta {
                department: department.to_string(),
                ..ShipMeta::default()
            }),
        }
    }

    /// The last change-feed sequence of `dataset` its node reported, if it did.
    pub fn latest_sequence(&self, dataset: &str) -> Result<Option<u64>, CoreError> {
        latest_sequence(&*self.store, dataset)
    }

    /// [`Shipping::meta`] for a caller who may see it.
    pub fn get(&self, who: &Principal, department: &str) -> Result<ShipMeta, CoreError> {
        authz::see_node_ledger(who, department)?;
        self.meta(department)
    }

    /// Shipped events of `department` from `from`, with their indexes.
    pub fn read(&self, who: &Principal, department: &str, from: u64, limit: usize) -> Result<Vec<Located>, CoreError> {
        authz::read_shipped_events(who)?;
        Ok(self.index.read(department, from, limit.clamp(1, MAX_READ))?)
    }

    fn event(
        &self,
        who: &Principal,
        operation: &str,
        department: &str,
        reason: String,
    ) -> exchange_core::ledger::AuditEvent {
        let mut event = crate::ledger::event(
            self.clock.now_ms(),
            who.uri(&self.trust_domain),
            &who.department,
            operation,
        );
        event.keys = vec![department.to_string()];
        event.reason = reason;
        event
    }

    fn save(&self, meta: &ShipMeta, batch: Batch) -> Result<(), CoreError> {
        save(&*self.store, meta, batch)
    }

    /// Takes one batch from the caller's node (see the module documentation); returns what the
    /// registry then holds.
    pub async fn ship(&self, who: &Principal, batch: ShipBatch) -> Result<ShipMeta, CoreError> {
        authz::ship_ledger(who)?;
        let department = who.department.clone();
        let lock = self.lock(&department);
        let _held = lock.lock().await;
        let mut meta = self.meta(&department)?;
        let origin = node_origin(&self.trust_domain, &department);
        if meta.vkey.is_empty() {
            let key = LogVerifier::parse(&batch.vkey).map_err(|e| ValidationError::new("vkey", e.to_string()))?;
            if key.name() != origin {
                return Err(ValidationError::new(
                    "vkey",
                    format!(
                        "the key is named {:?}; {department}'s node signs as {origin:?}",
                        key.name()
                    ),
                )
                .into());
            }
            meta.vkey = key.text().to_string();
            self.ledger
                .record(vec![self.event(who, "pin_log_key", &department, meta.vkey.clone())])
                .await?;
            self.save(&meta, Batch::default())?;
            tracing::info!(department = %department, vkey = %meta.vkey, "pinned a node's log key");
        } else if batch.vkey.trim() != meta.vkey {
            return Err(CoreError::FailedPrecondition(format!(
                "{department}'s node presents the log key {:?}, not the one the registry pinned ({:?}); \
                 nothing was taken. If the key was replaced on purpose, an admin pins the new one \
                 (exchange dept rotate-log-key)",
                batch.vkey.trim(),
                meta.vkey
            )));
        }
        let health = self.health(&department, batch.report.as_ref())?;
        if !meta.refused.is_empty() {
            self.save_health(&health)?;
            return Err(refused(&meta));
        }
        if batch.events.is_empty() && batch.checkpoint.is_empty() {
            self.save_health(&health)?;
            return Ok(meta);
        }
        let verifier = LogVerifier::parse(&meta.vkey).map_err(|e| CoreError::Unavailable(e.to_string()))?;
        let checkpoint = verifier
            .open_checkpoint(batch.checkpoint.as_bytes())
            .map_err(|e| ValidationError::new("checkpoint", format!("{e} (the pinned key is {})", meta.vkey)))?;
        if batch.from_index != meta.size {
            return Err(CoreError::FailedPrecondition(format!(
                "the registry holds {} events of {department}'s ledger; ship from index {} (not {})",
                meta.size, meta.size, batch.from_index
            )));
        }
        let end = meta.size + batch.events.len() as u64;
        if end > checkpoint.size {
            return Err(ValidationError::new(
                "checkpoint",
                format!("it covers {} events; the batch ends at {end}", checkpoint.size),
            )
            .into());
        }
        let mut frontier = if meta.size == 0 {
            Frontier::default()
        } else {
            Frontier::from_text(&meta.frontier).map_err(|e| CoreError::Unavailable(e.to_string()))?
        };
        for (i, event) in batch.events.iter().enumerate() {
            // Read in place, not kept: the index reads it so again as it stores it. An event
            // the registry could not read back later is refused now, whole batch and all.
            let unreadable = match EventView::parse(event) {
                Err(e) => Some(e.to_string()),
                Ok(_) if event.contains(&b'\n') => Some("it spans more than one line".to_string()),
                Ok(_) => None,
            };
            if let Some(why) = unreadable {
                return Err(ValidationError::new(
                    "events",
                    format!(
                        "event {} is not one line of an audit event: {why}",
                        meta.size + i as u64
                    ),
                )
                .into());
            }
            frontier.push(tlog::leaf_hash(event));
        }
        if let Err(why) = self.check_history(&meta, &checkpoint, end, &frontier, &batch) {
            self.save_health(&health)?;
            return Err(self.refuse(who, meta, &checkpoint, why).await);
        }
        // The events first, then the size that says they are held: after a crash in between the
        // node ships them again, and the index takes each (node, index) once.
        let events: Vec<(u64, Vec<u8>)> = (meta.size..).zip(batch.events).collect();
        meta.size = end;
        meta.frontier = frontier.to_text();
        meta.checkpoint_root = tlog::base64(&checkpoint.root.0);
        meta.checkpoint = checkpoint.note;
        meta.checkpoint_size = checkpoint.size;
        // Thousands of index entries and a flush: off the async threads, which serve everyone.
        let (index, store, held) = (self.index.clone(), self.store.clone(), meta.clone());
        let alerts = self.alerts.clone();
        let raised = tokio::task::spawn_blocking(move || -> Result<Vec<Alert>, CoreError> {
            // Read once (checked above) for the index and the early warning alike.
            let read = read_events(&department, &events)?;
            index.add_read(&department, &read)?;
            let mut batch = Batch::default();
            batch.put(health_key(&department), encode(&health)?);
            save(&*store, &held, batch)?;
            Ok(alerts.observe(&department, read.iter().map(|(_, _, view)| view)))
        })
        .await
        .map_err(|e| CoreError::Unavailable(format!("shipping task failed: {e}")))??;
        // The batch is taken whatever becomes of its alerts: a failure to raise one is logged,
        // not a reason for the node to ship again.
        if let Err(e) = self.alerts.raise(raised).await {
            tracing::error!(error = %e, "could not raise the alerts of a shipped batch");
        }
        Ok(meta)
    }

    /// Why `checkpoint` is not a continuation of what the registry holds, if it is not.
    fn check_history(
        &self,
        meta: &ShipMeta,
        checkpoint: &tlog::Checkpoint,
        end: u64,
        frontier: &Frontier,
        batch: &ShipBatch,
    ) -> Result<(), String> {
        if checkpoint.size < meta.checkpoint_size || checkpoint.size < meta.size {
            return Err(format!(
                "its checkpoint of {} events is smaller than the {} events (checkpoint of {}) the registry accepted: \
                 its ledger was cut or rewritten",
                checkpoint.size, meta.size, meta.checkpoint_size
            ));
        }
        let root = frontier.root();
        let extends = if end == checkpoint.size {
            (root == checkpoint.root)
                .then_some(())
                .ok_or_else(|| "the events do not have the checkpoint's root".to_string())
        } else if end == 0 {
            Ok(())
        } else {
            tlog::verify_consistency(end, checkpoint.size, &root.0, &checkpoint.root.0, &batch.batch_proof)
                .map_err(|e| format!("the events held and shipped are not a prefix of its checkpoint ({e})"))
        };
        extends?;
        if meta.checkpoint_size > 0 {
            let accepted = tlog::parse_hash(&meta.checkpoint_root)
                .map_err(|e| format!("the root accepted before is unreadable ({e})"))?;
            tlog::verify_consistency(
                meta.checkpoint_size,
                checkpoint.size,
                &accepted.0,
                &checkpoint.root.0,
                &batch.accepted_proof,
            )
            .map_err(|e| {
                format!(
                    "its checkpoint does not extend the one accepted before, of {} events ({e})",
                    meta.checkpoint_size
                )
            })?;
        }
        Ok(())
    }

    /// Records that `department`'s node is refused from now on, with the checkpoint as evidence.
    async fn refuse(
        &self,
        who: &Principal,
        mut meta: ShipMeta,
        checkpoint: &tlog::Checkpoint,
        why: String,
    ) -> CoreError {
        let department = meta.department.clone();
        meta.refused = format!("its history changed: {why}");
        meta.refused_at = self.clock.now();
        tracing::error!(department = %department, reason = %meta.refused, "refused a node's audit ledger");
        let mut event = self.event(who, "refuse_ledger", &department, meta.refused.clone());
        event.decision = exchange_core::ledger::Decision::Deny;
        event.fields = vec![checkpoint.note.clone()];
        if let Err(e) = self.ledger.record(vec![event]).await {
            return e;
        }
        if let Err(e) = self.save(&meta, Batch::default()) {
            return e;
        }
        let alert = exchange_core::alert::refused_ledger(&department, &meta.refused, meta.refused_at, meta.size);
        if let Err(e) = self.alerts.raise(vec![alert]).await {
            tracing::error!(error = %e, "could not raise the alert of a refused ledger");
        }
        refused(&meta)
    }

    /// Pins `vkey` for `department`'s node in place of the key pinned before.
    pub async fn rotate(
        &self,
        who: &Principal,
        department: &str,
        vkey: &str,
        reason: &str,
    ) -> Result<ShipMeta, CoreError> {
        authz::manage_departments(who)?;
        let key = LogVerifier::parse(vkey).map_err(|e| ValidationError::new("vkey", e.to_string()))?;
        let origin = node_origin(&self.trust_domain, department);
        if key.name() != origin {
            return Err(
                ValidationError::new("vkey", format!("the key is named {:?}, not {origin:?}", key.name())).into(),
            );
        }
        if reason.trim().is_empty() {
            return Err(ValidationError::new("reason", "say why the key is rotated (it is recorded)").into());
        }
        let lock = self.lock(department);
        let _held = lock.lock().await;
        let mut meta = self.meta(department)?;
        let before = std::mem::replace(&mut meta.vkey, key.text().to_string());
        self.ledger
            .record(vec![self.event(
                who,
                "rotate_log_key",
                department,
                format!("{reason} (from {before} to {})", meta.vkey),
            )])
            .await?;
        self.save(&meta, Batch::default())?;
        Ok(meta)
    }
}

fn refused(meta: &ShipMeta) -> CoreError {
    CoreError::FailedPrecondition(format!(
        "the registry refuses {}'s audit ledger since {}: {}. It keeps the {} events it accepted; the node's \
         operator and the data authority must find out what happened to the ledger",
        meta.department, meta.refused_at, meta.refused, meta.size
    ))
}

/// A node's shipping state as the code of 2026-12-01.2 (the set that introduced it) stores it:
/// it decodes as written, and today's code still writes it so (ARCHITECTURE.md, "stored types
/// evolve").
#[cfg(test)]
mod stored_fixtures {
    use super::*;

    const SHIP_META: &[u8] = include_bytes!("../fixtures/stored/2026-12-01.2/ship_meta.json");

    fn ship_meta() -> ShipMeta {
        ShipMeta {
            department: "js.gongan".into(),
            vkey: "exchange.example/node/js.gongan+c3a0a4e0+AbCsq3bWREVGCYfQXzt4KQPaUo8wYu1gWXMJCwiThwcP".into(),
            size: 3,
            frontier: "3 3:bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0= 2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            checkpoint: "exchange.example/node/js.gongan\n3\nAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n\n— exchange.example/node/js.gongan w6Ck4A==\n".into(),
            checkpoint_size: 3,
            checkpoint_root: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            refused: String::new(),
            refused_at: 0,
        }
    }

    #[test]
    fn the_ship_meta_of_2026_12_01_2_decodes_and_is_what_this_code_writes() {
        assert_eq!(serde_json::from_slice::<ShipMeta>(SHIP_META).unwrap(), ship_meta());
        assert_eq!(
            Frontier::from_text(&ship_meta().frontier).unwrap().size(),
            3,
            "a real frontier"
        );
        let today = encode(&ship_meta()).unwrap();
        assert!(
            today == SHIP_META,
            "this code writes a ShipMeta the newest fixture set does not have; add a set with:\n{}",
            String::from_utf8_lossy(&today)
        );
    }
}
