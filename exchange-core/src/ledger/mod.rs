//! The audit ledger: an append-only, hash-chained log of access decisions.
//!
//! Entry `n` stores its event and `hash(n) = SHA-256(hash(n-1) || n as 8 big-endian bytes ||
//! event JSON)`, with `hash(0)` (before the first entry) all zeros. Changing, dropping or
//! reordering any entry changes every hash after it, so [`verify_lines`] detects it
//! (Architecture Invariant: no silent tampering). The hash covers the event's JSON exactly as
//! the entry stores it, and verification reads those bytes back rather than encoding the event
//! again, so an event type that gains a field (with a default) still verifies every old entry.
//!
//! # Layout
//! - this module: [`AuditEvent`], [`Entry`], the chain ([`Chain`]) and its verification.
//! - `file`: [`Ledger`], the append-only file a server keeps its entries in, committed a group
//!   of events at a time.

mod file;

pub use file::{read_verified, Group, Ledger, LedgerError};

use serde::{Deserialize, Serialize};

use crate::closed_set::closed_set;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash before the first entry.
pub const GENESIS: Hash = [0; 32];

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
}

/// At most this many keys are kept in one event; `count` says how many were served.
pub const MAX_KEYS_PER_EVENT: usize = 1000;

/// An entry as stored: its position, its event and its chained hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, ...
    pub seq: u64,
    /// The event.
    pub event: AuditEvent,
    /// `hash(seq)`, hex.
    pub hash: String,
}

/// The hash of entry `seq` given the previous hash and the event's JSON.
pub fn chain(prev: &Hash, seq: u64, event_json: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(event_json);
    h.finalize().into()
}

/// Lower-case hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
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

/// Appends events to a chain, keeping its head.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The last entry's sequence number (0 when empty).
    pub seq: u64,
    /// The last entry's hash ([`GENESIS`] when empty).
    pub head: Hash,
}

impl Default for Chain {
    fn default() -> Self {
        Self { seq: 0, head: GENESIS }
    }
}

impl Chain {
    /// The entry `event` becomes, advancing the head.
    pub fn append(&mut self, event: AuditEvent) -> Result<Entry, serde_json::Error> {
        let json = serde_json::to_vec(&event)?;
        self.seq += 1;
        self.head = chain(&self.head, self.seq, &json);
        Ok(Entry {
            seq: self.seq,
            event,
            hash: hex(&self.head),
        })
    }

    /// Appends `event` and returns its entry already encoded as the JSON of an [`Entry`], with
    /// the event encoded once for both the hash and the line (writers on the hot path use this).
    pub fn append_encoded(&mut self, event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
        let json = serde_json::to_vec(event)?;
        self.seq += 1;
        self.head = chain(&self.head, self.seq, &json);
        let mut line = Vec::with_capacity(json.len() + 110);
        line.extend_from_slice(format!("{{\"seq\":{},\"event\":", self.seq).as_bytes());
        line.extend_from_slice(&json);
        line.extend_from_slice(format!(",\"hash\":\"{}\"}}", hex(&self.head)).as_bytes());
        Ok(line)
    }
}

/// Why a ledger does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {seq}: {why}")]
pub struct VerifyError {
    /// The first entry found wrong.
    pub seq: u64,
    /// What is wrong with it.
    pub why: String,
}

/// An entry as read back from its line: the event's stored bytes are kept as they are.
#[derive(Deserialize)]
struct StoredEntry<'a> {
    seq: u64,
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
    hash: &'a str,
}

/// Recomputes the chain over stored entry lines (each the JSON of an [`Entry`], in stored
/// order) and returns the entries and the head, or the first entry that was changed, dropped,
/// reordered or is not an entry at all.
pub fn verify_lines<L: AsRef<[u8]>>(lines: impl IntoIterator<Item = L>) -> Result<(Vec<Entry>, Hash), VerifyError> {
    let mut head = GENESIS;
    let mut entries: Vec<Entry> = Vec::new();
    for line in lines {
        let expected_seq = entries.len() as u64 + 1;
        let unreadable = |e: serde_json::Error| VerifyError {
            seq: expected_seq,
            why: format!("not a ledger entry: {e}"),
        };
        let stored: StoredEntry<'_> = serde_json::from_slice(line.as_ref()).map_err(unreadable)?;
        if stored.seq != expected_seq {
            return Err(VerifyError {
                seq: expected_seq,
                why: format!(
                    "found entry {} where {expected_seq} should be (dropped or reordered)",
                    stored.seq
                ),
            });
        }
        head = chain(&head, stored.seq, stored.event.get().as_bytes());
        if parse_hex(stored.hash) != Some(head) {
            return Err(VerifyError {
                seq: stored.seq,
                why: "hash does not match its event and predecessor (changed)".into(),
            });
        }
        let event: AuditEvent = serde_json::from_str(stored.event.get()).map_err(unreadable)?;
        entries.push(Entry {
            seq: stored.seq,
            event,
            hash: stored.hash.to_string(),
        });
    }
    Ok((entries, head))
}

/// [`verify_lines`] over entries held in memory (encoded as a ledger stores them); returns the
/// number of entries and the head.
pub fn verify(entries: impl IntoIterator<Item = Entry>) -> Result<(u64, Hash), VerifyError> {
    let mut lines = Vec::new();
    for entry in entries {
        let line = serde_json::to_vec(&entry).map_err(|e| VerifyError {
            seq: entry.seq,
            why: format!("event cannot be encoded: {e}"),
        })?;
        lines.push(line);
    }
    let (entries, head) = verify_lines(lines)?;
    Ok((entries.len() as u64, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_800_000_000_000 + n as i64,
            node: "js.gongan".into(),
            principal: "spiffe://exchange.test/dept/js.scjg/system".into(),
            department: "js.scjg".into(),
            operation: "get".into(),
            dataset: "js.gongan/population".into(),
            schema_version: 1,
            fields: vec!["id_number".into(), "name".into()],
            keys: vec![format!("key-{n}")],
            count: 1,
            purpose: "business-licensing".into(),
            case_id: String::new(),
            decision: Decision::Allow,
            reason: "grant g-000001".into(),
            grant_id: "g-000001".into(),
        }
    }

    fn ledger(n: u64) -> Vec<Entry> {
        let mut chain = Chain::default();
        (1..=n).map(|i| chain.append(event(i)).unwrap()).collect()
    }

    #[test]
    fn an_untouched_ledger_verifies() {
        let entries = ledger(5);
        let (count, head) = verify(entries.clone()).unwrap();
        assert_eq!(count, 5);
        assert_eq!(hex(&head), entries[4].hash);
        assert_eq!(parse_hex(&entries[4].hash), Some(head));
        assert_eq!(verify(Vec::new()).unwrap(), (0, GENESIS));
    }

    #[test]
    fn encoded_entries_are_the_entries() {
        let mut by_value = Chain::default();
        let mut encoded = Chain::default();
        for n in 1..=3 {
            let entry = by_value.append(event(n)).unwrap();
            let line = encoded.append_encoded(&event(n)).unwrap();
            assert_eq!(serde_json::from_slice::<Entry>(&line).unwrap(), entry);
            assert_eq!(line, serde_json::to_vec(&entry).unwrap());
        }
    }

    #[test]
    fn entries_verify_over_their_stored_bytes_not_a_re_encoding() {
        // Stored with its fields in another order (as a writer of another version might): the
        // entry verifies against the bytes it stored, which a re-encoding would not reproduce.
        let json = serde_json::to_vec(&serde_json::to_value(event(1)).unwrap()).unwrap();
        assert_ne!(json, serde_json::to_vec(&event(1)).unwrap());
        let hash = hex(&chain(&GENESIS, 1, &json));
        let line = format!(
            "{{\"seq\":1,\"event\":{},\"hash\":\"{hash}\"}}",
            String::from_utf8(json).unwrap()
        );
        let (entries, head) = verify_lines([line.as_bytes()]).unwrap();
        assert_eq!(hex(&head), hash);
        assert_eq!(entries[0].event, event(1));

        // The same bytes with a space added are a changed entry.
        let spaced = line.replacen("\"node\":", "\"node\": ", 1);
        assert_eq!(verify_lines([spaced.as_bytes()]).unwrap_err().seq, 1);
        assert!(verify_lines([b"not json".as_slice()])
            .unwrap_err()
            .why
            .contains("not a ledger entry"));
    }

    #[test]
    fn changing_dropping_or_reordering_is_detected() {
        let mut changed = ledger(5);
        changed[2].event.decision = Decision::Deny;
        assert_eq!(verify(changed).unwrap_err().seq, 3);

        let mut dropped = ledger(5);
        dropped.remove(1);
        assert_eq!(verify(dropped).unwrap_err().seq, 2);

        let mut reordered = ledger(5);
        reordered.swap(1, 2);
        assert_eq!(verify(reordered).unwrap_err().seq, 2);

        // Renumbering after a drop does not help: the hashes no longer chain.
        let mut renumbered = ledger(5);
        renumbered.remove(1);
        for (i, e) in renumbered.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert_eq!(verify(renumbered).unwrap_err().seq, 2);
    }
}
