//! The node's records and change feed in the store: how they are laid out and read. They are
//! written only by the `writer`.
//!
//! Keys (`\0` separates a dataset id from what follows, so prefixes are exact):
//! - `rec/<dataset>\0<key>` → [`StoredRecord`] (sequence, schema version, JSON)
//! - `chg/<dataset>\0<sequence: 8 bytes big-endian>` → [`StoredChange`]
//! - `seq/<dataset>` → the dataset's [`Counters`]: last sequence number and record count
//! - `imp/<dataset>\0<import id>` → the import's [`ImportMark`]: the last batch it stored
//!
//! The audit ledger is not in the store: it is a file of its own (`exchange_core::ledger::Ledger`).

use exchange_core::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// A record as stored: its sequence (8 bytes, big-endian), its schema version (4 bytes,
/// big-endian), then the record's compact JSON, which always starts with `{`. That first byte is
/// the encoding's mark: a later encoding of records (a binary one, say) starts with another byte
/// below `{`, so the stores written before it stay readable beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub(crate) sequence: u64,
    pub(crate) schema_version: u32,
    pub(crate) json: Vec<u8>,
}

impl StoredRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.json.len());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.json);
        out
    }

    /// Decodes a record as stored; the JSON is copied once, without the header (a Query reads
    /// each record lent by the store: see [`scan_records`]).
    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() < 12 {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                message: "record shorter than its header".into(),
            });
        }
        if bytes.get(12).is_some_and(|&first| first != b'{') {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                message: format!("record encoding {:#04x} is not one this build reads", bytes[12]),
            });
        }
        let (seq, rest) = bytes.split_at(8);
        let (version, json) = rest.split_at(4);
        Ok(Self {
            sequence: u64::from_be_bytes(seq.try_into().expect("8 bytes")),
            schema_version: u32::from_be_bytes(version.try_into().expect("4 bytes")),
            json: json.to_vec(),
        })
    }
}

/// A dataset's counters, kept under `seq/<dataset>` in the same batch as its changes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Counters {
    /// The last sequence number given.
    pub(crate) seq: u64,
    /// How many records it holds now.
    pub(crate) records: u64,
}

/// One change of the feed: the record after it (none for a delete) and before it, so a
/// subscriber's row filter can tell "left my filter" from "never in it".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredChange {
    pub(crate) sequence: u64,
    pub(crate) key: String,
    pub(crate) schema_version: u32,
    pub(crate) after: Option<String>,
    pub(crate) before: Option<String>,
}

/// Where a resumable import stands, committed in the same batch as each of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImportMark {
    /// The last batch stored (batches count from 1).
    pub(crate) batch: u64,
}

impl ImportMark {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))
    }
}

pub(crate) fn import_key(dataset: &str, import_id: &str) -> Vec<u8> {
    format!("imp/{dataset}\0{import_id}").into_bytes()
}

pub(crate) fn record_key(dataset: &str, key: &str) -> Vec<u8> {
    let mut k = format!("rec/{dataset}\0").into_bytes();
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn records_prefix(dataset: &str) -> Vec<u8> {
    format!("rec/{dataset}\0").into_bytes()
}

pub(crate) fn change_key(dataset: &str, sequence: u64) -> Vec<u8> {
    let mut k = format!("chg/{dataset}\0").into_bytes();
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

pub(crate) fn seq_key(dataset: &str) -> Vec<u8> {
    format!("seq/{dataset}").into_bytes()
}

pub(crate) fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    }
}

/// Reads a record.
pub(crate) fn get_record(store: &dyn Store, dataset: &str, key: &str) -> Result<Option<StoredRecord>, StoreError> {
    let k = record_key(dataset, key);
    store.get(&k)?.map(|bytes| StoredRecord::decode(&k, &bytes)).transpose()
}

/// Reads up to `limit` records of a dataset, in key order, starting after `after_key` (exclusive).
pub(crate) fn scan_records(
    store: &dyn Store,
    dataset: &str,
    after_key: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, StoredRecord)>, StoreError> {
    let prefix = records_prefix(dataset);
    let start = match after_key {
        Some(k) => {
            let mut s = record_key(dataset, k);
            s.push(0);
            s
        }
        None => prefix.clone(),
    };
    let mut end = format!("rec/{dataset}").into_bytes();
    end.push(1);
    let mut records = Vec::with_capacity(limit.min(4096));
    store.visit_range(&start, &end, limit, &mut |k, v| {
        let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        records.push((key, StoredRecord::decode(k, v)?));
        Ok(())
    })?;
    Ok(records)
}

/// Reads up to `limit` changes of a dataset after sequence `after`, up to and including
/// `committed`: the writer applies a batch before its flush returns, and a change a crash could
/// still undo must not reach a subscriber (its sequence number could be given again).
pub(crate) fn changes_after(
    store: &dyn Store,
    dataset: &str,
    after: u64,
    committed: u64,
    limit: usize,
) -> Result<Vec<StoredChange>, StoreError> {
    if after >= committed {
        return Ok(Vec::new());
    }
    let start = change_key(dataset, after.saturating_add(1));
    let end = change_key(dataset, committed.saturating_add(1));
    store
        .range(&start, &end, limit)?
        .into_iter()
        .map(|(k, v)| serde_json::from_slice(&v).map_err(|e| corrupt(&k, e)))
        .collect()
}

/// A change to store: a record (validated already) or a delete.
pub(crate) struct NewChange {
    pub(crate) key: String,
    pub(crate) json: Option<Vec<u8>>,
}
