//! The audit ledger: every access decision, in an append-only Merkle log that anyone can verify
//! with open tools (Architecture Invariant: no silent tampering).
//!
//! # The log
//! - **Leaves.** Leaf `i` (zero-based) is the canonical encoding of the `i`-th audit event: the
//!   event as a JSON object in UTF-8, compact (no whitespace outside strings, so never a newline),
//!   its fields in the order [`AuditEvent`] declares them, fields added later left out while they
//!   hold their default (so old and new events read alike). The writer encodes each event exactly
//!   once; everything after it (hashes, proofs, verification, shipping) works on those stored
//!   bytes and never encodes the event again, so an event type that gains a field still proves
//!   every old leaf.
//! - **Tree.** The RFC 6962 Merkle tree over the leaves (`crate::tlog`).
//! - **Checkpoints.** C2SP `tlog-checkpoint` notes signed with the server's Ed25519 log key,
//!   origin `<trust domain>/node/<department>` for a node, `<trust domain>/registry` for the
//!   registry ([`node_origin`], [`registry_origin`]). A checkpoint is signed after commits at
//!   most once a second, and on demand; never per event.
//!
//! # Files (in the ledger directory, all 0600)
//! - `events`: leaf `i` is line `i` (each leaf followed by `\n`). Hashing each line of this file
//!   as a leaf gives the tree; nothing else is needed to check a checkpoint.
//! - `hashes`: the tree's stored hashes, 32 bytes each at Go's stored-hash index
//!   (`golang.org/x/mod/sumdb/tlog`): what proofs are made from. Derived from `events`.
//! - `offsets`: leaf `i`'s byte offset in `events`, 8 bytes little-endian at `8 i`. Derived.
//! - `checkpoint`: the last signed checkpoint.
//!
//! # Layout
//! - this module: [`AuditEvent`], origins, the error types.
//! - `log`: [`Ledger`] (the writer's side: group commit, checkpoints, recovery) and
//!   [`LedgerReader`] (events and proofs, read while the writer appends).
//! - `verify`: [`verify_dir`], the offline check that names the first broken entry.
//! - `export`: a range of events with a checkpoint and their proofs, in one file anyone checks
//!   offline ([`export::verify_export`]).
//! - `v1`: the first form (a hash chain in `audit.ledger`), read once to migrate it.

pub mod export;
mod log;
#[cfg(test)]
pub(crate) mod tests;
mod v1;
mod verify;

#[cfg(test)]
pub(crate) use v1::read_events as v1_events;

pub use log::{Group, Ledger, LedgerReader, Recovered, LEDGER_DIR, LOG_KEY_FILE};
pub use verify::{read_verified, verify_dir, Entry, Verified};

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::closed_set::closed_set;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

closed_set! {
    /// Allowed or denied.
    pub enum Decision ("decision", "decision") {
        /// The data was (or is about to be) sent.
        Allow = "allow",
        /// The request was refused.
        Deny = "deny",
    }
}

/// One access decision, allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, in Unix milliseconds.
    pub time_ms: i64,
    /// The node that decided (its department id).
    pub node: String,
    /// The caller's certificate URI.
    pub principal: String,
    /// The caller's department.
    pub department: String,
    /// `get`, `query` or `subscribe`.
    pub operation: String,
    /// The dataset read.
    pub dataset: String,
    /// The schema version the records were served under (0 when denied before that mattered).
    pub schema_version: u32,
    /// The fields served (or asked for, when denied).
    pub fields: Vec<String>,
    /// The record keys served (or asked for); capped, see `count`.
    pub keys: Vec<String>,
    /// How many records were served.
    pub count: u64,
    /// The purpose stated.
    pub purpose: String,
    /// The case id stated, if any.
    pub case_id: String,
    /// Allow or deny.
    pub decision: Decision,
    /// Why, for a denial; the rule that allowed, otherwise.
    pub reason: String,
    /// The grant relied on, if any.
    pub grant_id: String,
    /// Lower-case hex SHA-256 of exactly the bytes served (see the node's receipts); empty when
    /// nothing was served, and in events written before receipts existed.
    #[serde(default)]
    pub served_sha256: String,
    /// Unix seconds until which the reader asked that the read be withheld from the read
    /// record's access report (an investigative purpose of its grant); 0, and then left out of
    /// the encoding, when not withheld.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub withheld_until: i64,
}

/// An [`AuditEvent`] read in place: the same fields, required and defaulted alike, so it
/// accepts exactly the encodings an `AuditEvent` does, with its text borrowed from the encoding
/// (copied only where JSON escapes it). The registry reads every shipped event this way to
/// check and index it: an owned event is a dozen allocations per event.
#[derive(Debug, Deserialize)]
pub struct EventView<'a> {
    /// When, in Unix milliseconds.
    pub time_ms: i64,
    /// The node that decided.
    #[serde(borrow)]
    pub node: Cow<'a, str>,
    /// The caller's certificate URI.
    #[serde(borrow)]
    pub principal: Cow<'a, str>,
    /// The caller's department.
    #[serde(borrow)]
    pub department: Cow<'a, str>,
    /// `get`, `query` or `subscribe`.
    #[serde(borrow)]
    pub operation: Cow<'a, str>,
    /// The dataset read.
    #[serde(borrow)]
    pub dataset: Cow<'a, str>,
    /// The schema version served under.
    pub schema_version: u32,
    /// The fields served.
    #[serde(borrow)]
    pub fields: Vec<Cow<'a, str>>,
    /// The record keys served.
    #[serde(borrow)]
    pub keys: Vec<Cow<'a, str>>,
    /// How many records were served.
    pub count: u64,
    /// The purpose stated.
    #[serde(borrow)]
    pub purpose: Cow<'a, str>,
    /// The case id stated, if any.
    #[serde(borrow)]
    pub case_id: Cow<'a, str>,
    /// Allow or deny.
    pub decision: Decision,
    /// Why.
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    /// The grant relied on, if any.
    #[serde(borrow)]
    pub grant_id: Cow<'a, str>,
    /// See [`AuditEvent::served_sha256`].
    #[serde(borrow, default)]
    pub served_sha256: Cow<'a, str>,
    /// See [`AuditEvent::withheld_until`].
    #[serde(default)]
    pub withheld_until: i64,
}

impl<'a> EventView<'a> {
    /// Reads an event's encoding (a ledger leaf).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// How long audit events are kept: the `[audit]` table of a server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events older than this many days are pruned (a node's from its ledger once the registry
    /// holds them, the registry's from its index); their hashes and the checkpoints stay, so
    /// every remaining event stays provable. 0 keeps everything. Default 730 (two years).
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 730 }
    }
}

impl AuditConfig {
    /// The time before which events are pruned, in Unix milliseconds, or `None` to keep all.
    pub fn cutoff_ms(&self, now_ms: i64) -> Option<i64> {
        (self.retention_days > 0).then(|| now_ms - i64::from(self.retention_days) * 86_400_000)
    }
}

/// At most this many keys are kept in one event; `count` says how many were served.
pub const MAX_KEYS_PER_EVENT: usize = 1000;

/// The canonical encoding of an event: the bytes of its leaf.
pub fn encode(event: &AuditEvent) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(event).map_err(|e| LedgerError::Encode(e.to_string()))
}

/// The digest a receipt names (an event's `served_sha256`): lower-case hex SHA-256 over each
/// served record's JSON followed by a newline, in the order served, which is what a consumer
/// writing the records as JSON lines holds.
pub fn served_digest<'a>(served: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::Digest as _;
    let mut digest = sha2::Sha256::new();
    for json in served {
        digest.update(json);
        digest.update(b"\n");
    }
    hex(&digest.finalize().into())
}

/// The origin (and log key name) of a node's ledger.
pub fn node_origin(trust_domain: &str, department: &str) -> String {
    format!("{trust_domain}/node/{department}")
}

/// The origin (and log key name) of the registry's ledger.
pub fn registry_origin(trust_domain: &str) -> String {
    format!("{trust_domain}/registry")
}

/// Lower-case hex of a hash.
pub fn hex(hash: &Hash) -> String {
    // By table, not a `format!` per byte: every audited read writes one (2 % of a Get's CPU).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Parses lower- or upper-case hex into a hash.
pub fn parse_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The first entry found wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {index}: {why}")]
pub struct VerifyError {
    /// Its zero-based index (the leaf index).
    pub index: u64,
    /// What is wrong with it.
    pub why: String,
}

/// The error for a file whose entry `index` is wrong, and how.
pub(crate) fn tampered(path: &std::path::Path, index: u64, why: impl Into<String>) -> LedgerError {
    LedgerError::Tampered {
        path: path.to_path_buf(),
        error: VerifyError { index, why: why.into() },
    }
}

/// Why the ledger could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// A file could not be opened, read or written.
    #[error("audit ledger {path}: {message}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
    /// An event could not be encoded (nothing of its group was written).
    #[error("audit event cannot be encoded: {0}")]
    Encode(String),
    /// An earlier write failed; nothing more is appended until the ledger is opened again.
    #[error(
        "audit ledger {path} could not be written ({why}); audited reads are refused until the server is restarted"
    )]
    Broken {
        /// The ledger directory.
        path: std::path::PathBuf,
        /// The failure that broke it.
        why: String,
    },
    /// A group begun before another group was committed: its leaves would be misnumbered.
    #[error("audit ledger {path}: a group begun at size {begun_at} cannot be committed at size {size}")]
    Stale {
        /// The ledger directory.
        path: std::path::PathBuf,
        /// The size the group was begun at.
        begun_at: u64,
        /// The size now.
        size: u64,
    },
    /// The files do not match each other or the signed checkpoint.
    #[error("audit ledger {path}: {error}")]
    Tampered {
        /// The file found wrong.
        path: std::path::PathBuf,
        /// The first entry found wrong (in the message already, so not a source: it would print
        /// twice).
        error: VerifyError,
    },
    /// A proof or entry beyond the log was asked for.
    #[error("{0}")]
    OutOfRange(String),
}
