//! The registry's state and rules, over a [`Store`]. Transport-free: the gRPC service in
//! `service.rs` converts messages and calls these methods with the caller's principal.
//!
//! Writes are serialised by one lock and each is committed durably before it returns, so an
//! acknowledged change survives a crash (registry writes are admin-paced; one writer is plenty).
//! Every change gets the next registry *revision* and a line in the change log, which is what
//! `Watch` replays and follows, and an event in the registry's ledger ([`RegistryLedger`]),
//! written before the change is committed: a change that cannot be recorded is not made.
//!
//! Keys: `dept/<id>`, `ds/<dataset>`, `sv/<dataset>/<version:010>`, `grant/<id>`,
//! `demand/<id>`, `correction/<id>`, `log/<revision:020>`, `meta/revision`, `meta/history`,
//! `meta/grant_seq`, `meta/demand_seq`, `meta/correction_seq`.
//!
//! # Layout
//! - this module: [`State`], the write path (one lock, one durable batch, one revision per
//!   change) and the change log.
//! - `departments`: members, their hierarchy and node endpoints.
//! - `datasets`: the catalog: datasets and their schema versions, with the compatibility check.
//! - `grants`: requests, decisions, revocations, listing.
//! - `demands`: data demands, answered by registering a dataset (becoming a grant request).
//! - `corrections`: correction requests on records a consumer was served.
//! - `changes`: what changed since a revision, for the Watch stream.

mod changes;
mod corrections;
mod datasets;
mod demands;
mod departments;
mod grants;

pub use changes::{Changes, WatchItem};
pub use corrections::CorrectionQuery;
pub use datasets::{DatasetQuery, DatasetWithVersions, SchemaCheck};
pub use demands::DemandQuery;
pub use grants::GrantQuery;

use std::sync::Arc;

use exchange_core::calendar::WorkingCalendar;
use exchange_core::catalog::{self, Classification, Dataset, SchemaVersion};
use exchange_core::clock::Clock;
use exchange_core::compat;
use exchange_core::department::{self, Department, Level};
use exchange_core::error::SchemaError;
use exchange_core::grant::{self, Grant, GrantLimits, GrantRequest, GrantState};
use exchange_core::identity::Principal;
use exchange_core::schema::{self, DatasetSchema};
use exchange_core::store::{Batch, Store, StoreError};
use exchange_core::{authz, CoreError, UnixSeconds, ValidationError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use crate::ledger::RegistryLedger;

const META_REVISION: &[u8] = b"meta/revision";
/// The history fingerprint at the latest revision (see [`LogEntry::history`]).
const META_HISTORY: &[u8] = b"meta/history";
const META_GRANT_SEQ: &[u8] = b"meta/grant_seq";
const META_DEMAND_SEQ: &[u8] = b"meta/demand_seq";
const META_CORRECTION_SEQ: &[u8] = b"meta/correction_seq";

fn dept_key(id: &str) -> Vec<u8> {
    format!("dept/{id}").into_bytes()
}
fn dataset_key(id: &str) -> Vec<u8> {
    format!("ds/{id}").into_bytes()
}
fn versions_prefix(id: &str) -> Vec<u8> {
    format!("sv/{id}/").into_bytes()
}
fn version_key(id: &str, version: u32) -> Vec<u8> {
    format!("sv/{id}/{version:010}").into_bytes()
}
fn grant_key(id: &str) -> Vec<u8> {
    format!("grant/{id}").into_bytes()
}
fn demand_key(id: &str) -> Vec<u8> {
    format!("demand/{id}").into_bytes()
}
fn correction_key(id: &str) -> Vec<u8> {
    format!("correction/{id}").into_bytes()
}
/// An update that names the revision it read is refused if the object changed since (say, a
/// node announced its endpoint between an admin's read and write); 0 names none.
fn unchanged_since(what: &str, id: &str, read: u64, now: u64) -> Result<(), CoreError> {
    if read == 0 || read == now {
        return Ok(());
    }
    Err(CoreError::Aborted(format!(
        "{what} {id} changed since you read it (revision {read}, now {now}): read it again and retry"
    )))
}

fn log_key(revision: u64) -> Vec<u8> {
    format!("log/{revision:020}").into_bytes()
}

/// What changed at a revision, in the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Department,
    Dataset,
    Grant,
    Demand,
    Correction,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    kind: Kind,
    id: String,
    /// A fingerprint of the registry's history up to this revision: SHA-256 over the previous
    /// one, this revision, kind, id and a random nonce. A registry restored from an older
    /// backup and written to again gives the same revision numbers to other changes, with other
    /// fingerprints, so a node resuming from a revision can tell it is not the history it knows.
    #[serde(default)]
    history: String,
}

/// The next link of the history fingerprint chain. A random nonce makes every link unique, so
/// a registry restored from a backup and given the same changes again (same ids, same times)
/// still writes another history than the one its nodes know.
fn history_link(previous: &str, revision: u64, kind: Kind, id: &str) -> Result<String, CoreError> {
    use ring::rand::SecureRandom as _;
    use sha2::{Digest, Sha256};
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CoreError::Store(StoreError::Engine("no randomness for the history fingerprint".into())))?;
    let mut hash = Sha256::new();
    hash.update(previous.as_bytes());
    hash.update(revision.to_be_bytes());
    hash.update(format!("{kind:?}\0{id}\0").as_bytes());
    hash.update(nonce);
    Ok(exchange_core::ledger::hex(&hash.finalize().into()))
}

/// The latest revision and its history fingerprint, held under the write lock.
struct Head {
    revision: u64,
    history: String,
}

/// The pending writes of one registry change, and its ledger event.
struct Tx {
    batch: Batch,
    revision: u64,
    history: String,
    /// What the change is, for the ledger; filled in by [`Tx::next_revision`] and the change.
    event: exchange_core::ledger::AuditEvent,
}

impl Tx {
    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), CoreError> {
        self.batch.put(key, encode(value)?);
        Ok(())
    }

    /// Takes the next revision for a change of `kind` `id` and logs it.
    fn next_revision(&mut self, kind: Kind, id: &str) -> Result<u64, CoreError> {
        self.revision += 1;
        self.history = history_link(&self.history, self.revision, kind, id)?;
        let entry = LogEntry {
            kind,
            id: id.to_string(),
            history: self.history.clone(),
        };
        self.batch.put(log_key(self.revision), encode(&entry)?);
        match kind {
            Kind::Department => self.event.keys.push(id.to_string()),
            Kind::Dataset => self.event.dataset = id.to_string(),
            Kind::Grant => self.event.grant_id = id.to_string(),
            Kind::Demand => self.event.keys.push(id.to_string()),
            // The change fills in its event itself: the record's key and the request as the case.
            Kind::Correction => {}
        }
        Ok(self.revision)
    }
}

/// A stored value's bytes (serde JSON), as every registry store key holds them.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CoreError> {
    serde_json::to_vec(value)
        .map_err(|e| CoreError::Store(exchange_core::store::StoreError::Engine(format!("cannot encode: {e}"))))
}

/// The registry's state.
pub struct State {
    store: Arc<dyn Store>,
    /// Held for the whole of a write; holds the current revision and history.
    writer: Arc<Mutex<Head>>,
    revision: watch::Sender<u64>,
    limits: GrantLimits,
    /// The time every change and expiry is decided by.
    clock: Clock,
    /// Where every change is recorded before it is committed.
    ledger: Arc<RegistryLedger>,
    trust_domain: String,
    /// Who acts on a request next and in how many working days.
    clocks: grant::Clocks,
    /// The working days those are counted on.
    calendar: WorkingCalendar,
}

impl State {
    /// Opens the state over `store`, reading the time from `clock` and recording every change
    /// in `ledger` (principals named by their URI in `trust_domain`).
    pub fn open(
        store: Arc<dyn Store>,
        limits: GrantLimits,
        clock: Clock,
        ledger: Arc<RegistryLedger>,
        trust_domain: &str,
    ) -> Result<Self, CoreError> {
        let revision = match store.get(META_REVISION)? {
            Some(bytes) => decode::<u64>(META_REVISION, &bytes)?,
            None => 0,
        };
        let history = match store.get(META_HISTORY)? {
            Some(bytes) => decode::<String>(META_HISTORY, &bytes)?,
            None => String::new(),
        };
        Ok(Self {
            store,
            writer: Arc::new(Mutex::new(Head { revision, history })),
            revision: watch::channel(revision).0,
            limits,
            clock,
            ledger,
            trust_domain: trust_domain.to_string(),
            clocks: grant::Clocks::default(),
            calendar: WorkingCalendar::from_config(&Default::default())
                .map_err(|e| CoreError::FailedPrecondition(format!("the default calendar: {e}")))?,
        })
    }

    /// The state with these request clocks, counted on `calendar` (by default: the review on, 2,
    /// 5 and 5 working days, China's calendar).
    pub fn with_clocks(mut self, clocks: grant::Clocks, calendar: WorkingCalendar) -> Self {
        self.clocks = clocks;
        self.calendar = calendar;
        self
    }

    /// An event of `operation` by the registry itself (retention), now.
    pub(crate) fn registry_event(&self, operation: &str) -> exchange_core::ledger::AuditEvent {
        crate::ledger::event(
            self.clock.now_ms(),
            exchange_core::identity::registry_uri(&self.trust_domain),
            crate::ledger::REGISTRY_NODE,
            operation,
        )
    }

    /// The time by the state's clock, Unix milliseconds.
    pub fn clock_now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The registry's ledger.
    pub fn ledger(&self) -> &Arc<RegistryLedger> {
        &self.ledger
    }

    /// An event of `operation` by `who`, now.
    pub(crate) fn event(&self, who: &Principal, operation: &str) -> exchange_core::ledger::AuditEvent {
        crate::ledger::event(
            self.clock.now_ms(),
            who.uri(&self.trust_domain),
            &who.department,
            operation,
        )
    }

    /// The time by the state's clock, Unix seconds.
    pub fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    /// The trust domain principals are named in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The working days request clocks count.
    pub fn calendar(&self) -> &WorkingCalendar {
        &self.calendar
    }

    /// Everything the early warning's rules on state look at, unfiltered (no caller: the
    /// registry itself looks).
    pub(crate) fn watched(&self) -> Result<Watched, CoreError> {
        Ok(Watched {
            departments: self.scan(b"dept/")?,
            datasets: self.scan(b"ds/")?,
            grants: self.scan(b"grant/")?,
            demands: self.scan(b"demand/")?,
            corrections: self.scan(b"correction/")?,
        })
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, CoreError> {
        self.store.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, CoreError> {
        self.store
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Runs `change` (an `operation` by `who`) under the write lock, records it in the ledger,
    /// and commits what it wrote durably.
    async fn write<R>(
        &self,
        who: &Principal,
        operation: &str,
        change: impl FnOnce(&mut Tx) -> Result<R, CoreError>,
    ) -> Result<R, CoreError> {
        let mut current = self.writer.clone().lock_owned().await;
        let mut tx = Tx {
            batch: Batch::default(),
            revision: current.revision,
            history: current.history.clone(),
            event: self.event(who, operation),
        };
        let result = change(&mut tx)?;
        if tx.batch.is_empty() {
            return Ok(result);
        }
        let event = std::mem::replace(&mut tx.event, self.event(who, operation));
        let revision = tx.revision;
        let history = tx.history.clone();
        tx.put(META_REVISION.to_vec(), &revision)?;
        tx.put(META_HISTORY.to_vec(), &history)?;
        let store = self.store.clone();
        let ledger = self.ledger.clone();
        let batch = std::mem::take(&mut tx.batch);
        let published = self.revision.clone();
        // The event, the commit, and taking its revision finish even if the caller goes away (a
        // client cancelling drops this future): otherwise the next write would reuse the
        // revision of a change already on disk and overwrite its log entry, which Watch replays,
        // or a recorded change would not be made.
        let committing = tokio::spawn(async move {
            // On the record first: a change whose event cannot be written is not made.
            ledger.record(vec![event]).await?;
            let committed = tokio::task::spawn_blocking(move || store.commit(batch))
                .await
                .map_err(|e| StoreError::Engine(format!("commit task failed: {e}")))
                .and_then(|r| r);
            // Taken even when the commit failed: sled may have applied the batch before its flush
            // failed and persist it with a later flush, and its log entry must not be overwritten
            // by the next write. A failed write leaves at worst an unused revision.
            *current = Head { revision, history };
            if committed.is_ok() {
                published.send_replace(revision);
            }
            committed.map_err(CoreError::from)
        });
        committing
            .await
            .map_err(|e| StoreError::Engine(format!("commit task failed: {e}")))??;
        Ok(result)
    }

    /// The latest committed revision, and a receiver that changes whenever it does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }
}

/// The registry's state as the early warning reads it.
pub(crate) struct Watched {
    pub(crate) departments: Vec<Department>,
    pub(crate) datasets: Vec<Dataset>,
    pub(crate) grants: Vec<Grant>,
    pub(crate) demands: Vec<exchange_core::demand::Demand>,
    pub(crate) corrections: Vec<exchange_core::correction::Correction>,
}

/// A stored value read back; bytes that do not decode are the store's corruption at `key`.
pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, CoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        CoreError::Store(exchange_core::store::StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            message: e.to_string(),
        })
    })
}

#[cfg(test)]
mod stored_fixtures;
#[cfg(test)]
mod tests;
