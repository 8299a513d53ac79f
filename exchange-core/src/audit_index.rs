//! The registry's store of shipped audit events and its indexes, for auditors: search by time
//! range, consumer department, provider (node), dataset, purpose, decision, grant, case id and
//! record key, in any combination, paged in a stable order; and counts per department, dataset
//! and decision per day.
//!
//! [`AuditIndex`] is the interface, with one conformance suite ([`conformance::run`]) so that
//! another engine (a distributed one) can take the place of [`StoreAuditIndex`], which keeps
//! everything in a [`Store`]:
//! - `ai/e/<node>\0<index:020>`: the event's bytes (its leaf, exactly as the node's ledger
//!   holds it);
//! - `ai/t/<time>\0<node>\0<index:020>`: every event in time order;
//! - `ai/<f>/<value>\0<time>\0<node>\0<index:020>` for each field `f` (`c` consumer, `p`
//!   provider, `d` dataset, `u` purpose, `x` decision, `g` grant, `k` case id, `r` one per record
//!   key): the same order within one value, so a filter is one range scan;
//! - `ac/<dim>/<value>\0<yyyy-mm-dd>`: how many events per value and day (UTC);
//! - `ai/n/<node>`: one past the highest index held of the node.
//!
//! `<time>` is the event's Unix milliseconds as 20 decimal digits. A search scans the index of
//! the most selective filter it has and checks the others on each event; it reads at most
//! [`SCAN_BUDGET`] index entries per call and then returns what it found with a cursor, so one
//! call's cost is bounded whatever the query.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::closed_set::closed_set;
use crate::ledger::{AuditEvent, Decision};
use crate::store::StoreError;
use crate::store::{Batch, Store};

/// A shipped event and where it is: its node's ledger and its index there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The node (department) whose ledger holds it.
    pub node: String,
    /// Its leaf index in that ledger.
    pub index: u64,
    /// The leaf, byte for byte.
    pub bytes: Vec<u8>,
    /// The event it encodes.
    pub event: AuditEvent,
}

/// What to search for; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Events at or after this time (Unix milliseconds).
    pub from_ms: Option<i64>,
    /// Events before this time.
    pub to_ms: Option<i64>,
    /// The department that read (or was refused).
    pub consumer: Option<String>,
    /// The node that served (or refused): the dataset owner's department.
    pub provider: Option<String>,
    /// The dataset.
    pub dataset: Option<String>,
    /// The purpose stated.
    pub purpose: Option<String>,
    /// Allowed or denied.
    pub decision: Option<Decision>,
    /// The grant relied on.
    pub grant: Option<String>,
    /// The case id stated.
    pub case_id: Option<String>,
    /// A record key read.
    pub record_key: Option<String>,
}

impl AuditQuery {
    /// Whether `event` (from `node`) matches every filter.
    pub fn matches(&self, node: &str, event: &AuditEvent) -> bool {
        let is = |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        self.from_ms.is_none_or(|t| event.time_ms >= t)
            && self.to_ms.is_none_or(|t| event.time_ms < t)
            && is(&self.consumer, &event.department)
            && is(&self.provider, node)
            && is(&self.dataset, &event.dataset)
            && is(&self.purpose, &event.purpose)
            && self.decision.is_none_or(|d| d == event.decision)
            && is(&self.grant, &event.grant_id)
            && is(&self.case_id, &event.case_id)
            && self
                .record_key
                .as_deref()
                .is_none_or(|k| event.keys.iter().any(|e| e == k))
    }

    /// The index to scan: the most selective filter given (a record key names few events, a
    /// decision many), or time order.
    fn scan_field(&self) -> Option<(&'static str, String)> {
        let text = |f: &Option<String>| f.clone();
        [
            ("r", text(&self.record_key)),
            ("g", text(&self.grant)),
            ("k", text(&self.case_id)),
            ("d", text(&self.dataset)),
            ("c", text(&self.consumer)),
            ("p", text(&self.provider)),
            ("u", text(&self.purpose)),
            ("x", self.decision.map(|d| d.to_string())),
        ]
        .into_iter()
        .find_map(|(field, value)| value.map(|v| (field, v)))
    }
}

/// One page of a search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// Matching events, in (time, node, index) order.
    pub events: Vec<Located>,
    /// Where to go on from, when the search did not reach the end (the page may be short: a
    /// search reads at most [`SCAN_BUDGET`] index entries per call).
    pub next: Option<String>,
}

closed_set! {
    /// What events are counted by.
    pub enum CountBy ("count", "counts by") {
        /// The department that read.
        Consumer = "consumer",
        /// The node that served.
        Provider = "provider",
        /// The dataset.
        Dataset = "dataset",
        /// Allowed or denied.
        Decision = "decision",
    }
}

impl CountBy {
    fn dim(self) -> &'static str {
        match self {
            CountBy::Consumer => "c",
            CountBy::Provider => "p",
            CountBy::Dataset => "d",
            CountBy::Decision => "x",
        }
    }
}

/// How many events one value had on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// The department, dataset or decision.
    pub value: String,
    /// The day, `yyyy-mm-dd` (UTC).
    pub day: String,
    /// How many events.
    pub count: u64,
}

/// The store of shipped events and its indexes.
pub trait AuditIndex: Send + Sync {
    /// Stores and indexes `events` of `node`'s ledger durably, all or none. An (node, index)
    /// already held is left as it is (shipping again after a crash counts nothing twice).
    fn add(&self, node: &str, events: &[(u64, Vec<u8>)]) -> Result<(), StoreError>;

    /// Up to `count` events of `node` with index `from` or more, in order (pruned ones are gone:
    /// page on from the last index read, plus one).
    fn read(&self, node: &str, from: u64, count: usize) -> Result<Vec<Located>, StoreError>;

    /// One past the highest index held of `node` (0 when none).
    fn held(&self, node: &str) -> Result<u64, StoreError>;

    /// Removes every event older than `before_ms` (retention) from the store and its indexes;
    /// the counts stay. Returns how many were removed.
    fn prune(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Matching events after `cursor` (a page's `next`), at most `limit`.
    fn search(&self, query: &AuditQuery, cursor: Option<&str>, limit: usize) -> Result<SearchPage, StoreError>;

    /// Counts per value of `by` and day, for days from `from_day` to `to_day` (inclusive,
    /// `yyyy-mm-dd`; either may be empty).
    fn counts(&self, by: CountBy, from_day: &str, to_day: &str) -> Result<Vec<Count>, StoreError>;
}

/// Index entries a search reads at most per call.
pub const SCAN_BUDGET: usize = 20_000;

/// The civil date (UTC) of Unix milliseconds, `yyyy-mm-dd` (Howard Hinnant's days-to-civil).
pub fn day_of(time_ms: i64) -> String {
    let days = time_ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn time_text(time_ms: i64) -> String {
    format!("{:020}", time_ms.max(0))
}

fn suffix(event: &AuditEvent, node: &str, index: u64) -> String {
    format!("{}\0{node}\0{index:020}", time_text(event.time_ms))
}

/// Every index entry of an event: its time entry and one per field value.
fn index_keys(event: &AuditEvent, node: &str, index: u64) -> Vec<Vec<u8>> {
    let tail = suffix(event, node, index);
    let decision = event.decision.to_string();
    let mut fields: Vec<(&str, &str)> = vec![
        ("c", &event.department),
        ("p", node),
        ("d", &event.dataset),
        ("u", &event.purpose),
        ("x", &decision),
        ("g", &event.grant_id),
        ("k", &event.case_id),
    ];
    fields.extend(event.keys.iter().map(|k| ("r", k.as_str())));
    let mut keys = vec![format!("ai/t/{tail}").into_bytes()];
    keys.extend(
        fields
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(field, value)| format!("ai/{field}/{value}\0{tail}").into_bytes()),
    );
    keys
}

/// The (node, index) an index entry names, from its `<time>\0<node>\0<index>` tail.
fn event_of<'k>(key: &[u8], tail: &'k [u8]) -> Result<(&'k str, u64), StoreError> {
    let mut parts = tail.split(|&b| b == 0).skip(1);
    let (Some(node), Some(index)) = (parts.next(), parts.next()) else {
        return Err(corrupt(key, "not an index key"));
    };
    let node = std::str::from_utf8(node).map_err(|e| corrupt(key, e))?;
    let index = std::str::from_utf8(index)
        .ok()
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| corrupt(key, "not an index key"))?;
    Ok((node, index))
}

fn event_key(node: &str, index: u64) -> Vec<u8> {
    format!("ai/e/{node}\0{index:020}").into_bytes()
}

fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: why.to_string(),
    }
}

/// [`AuditIndex`] over a [`Store`] (sled at the registry).
pub struct StoreAuditIndex<S: ?Sized> {
    store: std::sync::Arc<S>,
    /// Adds are serialised: counters are read, added to and written back.
    adding: Mutex<()>,
}

impl<S: Store + ?Sized> StoreAuditIndex<S> {
    /// The index kept in `store`.
    pub fn new(store: std::sync::Arc<S>) -> Self {
        Self {
            store,
            adding: Mutex::new(()),
        }
    }

    fn located(&self, node: &str, index: u64) -> Result<Located, StoreError> {
        let key = event_key(node, index);
        let bytes = self
            .store
            .get(&key)?
            .ok_or_else(|| corrupt(&key, "indexed but not stored"))?;
        decode(&key, node, index, bytes)
    }
}

/// A stored event, decoded, with where it is.
fn decode(key: &[u8], node: &str, index: u64, bytes: Vec<u8>) -> Result<Located, StoreError> {
    let event = serde_json::from_slice(&bytes).map_err(|e| corrupt(key, e))?;
    Ok(Located {
        node: node.to_string(),
        index,
        bytes,
        event,
    })
}

impl<S: Store + ?Sized> AuditIndex for StoreAuditIndex<S> {
    fn add(&self, node: &str, events: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Batch::default();
        let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let held_before = self.held(node)?;
        let mut held = held_before;
        for (index, bytes) in events {
            held = held.max(index + 1);
            let key = event_key(node, *index);
            // Only an index below what is held can have been added before (a node's events come
            // in order): the look-up is for shipping again after a crash.
            if *index < held_before && self.store.get(&key)?.is_some() {
                continue;
            }
            let event: AuditEvent = serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?;
            batch.put(key, bytes.clone());
            for index_key in index_keys(&event, node, *index) {
                batch.put(index_key, Vec::new());
            }
            let decision = event.decision.to_string();
            let day = day_of(event.time_ms);
            for (dim, value) in [
                ("c", event.department.as_str()),
                ("p", node),
                ("d", &event.dataset),
                ("x", &decision),
            ] {
                if !value.is_empty() {
                    *counts
                        .entry(format!("ac/{dim}/{value}\0{day}").into_bytes())
                        .or_default() += 1;
                }
            }
        }
        for (key, added) in counts {
            let before = match self.store.get(&key)? {
                Some(bytes) => String::from_utf8_lossy(&bytes)
                    .parse::<u64>()
                    .map_err(|e| corrupt(&key, e))?,
                None => 0,
            };
            batch.put(key, (before + added).to_string().into_bytes());
        }
        if held > held_before {
            batch.put(format!("ai/n/{node}").into_bytes(), held.to_string().into_bytes());
        }
        self.store.commit(batch)
    }

    fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let end = format!("ai/t/{}", time_text(before_ms)).into_bytes();
        let mut removed = 0;
        loop {
            let chunk = self.store.range(b"ai/t/", &end, 1000)?;
            if chunk.is_empty() {
                return Ok(removed);
            }
            let mut batch = Batch::default();
            for (key, _) in &chunk {
                let (node, index) = event_of(key, &key[b"ai/t/".len()..])?;
                let found = self.located(node, index)?;
                for index_key in index_keys(&found.event, node, index) {
                    batch.delete(index_key);
                }
                batch.delete(event_key(node, index));
                removed += 1;
            }
            self.store.commit(batch)?;
        }
    }

    fn held(&self, node: &str) -> Result<u64, StoreError> {
        let key = format!("ai/n/{node}").into_bytes();
        match self.store.get(&key)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse().map_err(|e| corrupt(&key, e)),
            None => Ok(0),
        }
    }

    fn read(&self, node: &str, from: u64, count: usize) -> Result<Vec<Located>, StoreError> {
        let start = event_key(node, from);
        let end = format!("ai/e/{node}\x01").into_bytes();
        self.store
            .range(&start, &end, count)?
            .into_iter()
            .map(|(key, bytes)| {
                let index = key
                    .rsplit(|&b| b == 0)
                    .next()
                    .and_then(|i| std::str::from_utf8(i).ok()?.parse().ok())
                    .ok_or_else(|| corrupt(&key, "not an event key"))?;
                decode(&key, node, index, bytes)
            })
            .collect()
    }

    fn search(&self, query: &AuditQuery, cursor: Option<&str>, limit: usize) -> Result<SearchPage, StoreError> {
        let prefix = match query.scan_field() {
            Some((field, value)) => format!("ai/{field}/{value}\0"),
            None => "ai/t/".to_string(),
        };
        let mut start = match cursor {
            Some(c) => {
                let mut key = format!("{prefix}{c}").into_bytes();
                key.push(0);
                key
            }
            None => format!("{prefix}{}", time_text(query.from_ms.unwrap_or(0))).into_bytes(),
        };
        let end = match query.to_ms {
            Some(t) => format!("{prefix}{}", time_text(t)).into_bytes(),
            None => {
                let mut end = prefix.clone().into_bytes();
                end.push(0xff);
                end
            }
        };
        let limit = limit.max(1);
        let mut page = SearchPage::default();
        let mut scanned = 0;
        while scanned < SCAN_BUDGET {
            let chunk = self.store.range(&start, &end, (SCAN_BUDGET - scanned).min(1000))?;
            if chunk.is_empty() {
                return Ok(page);
            }
            for (key, _) in &chunk {
                scanned += 1;
                let tail = &key[prefix.len()..];
                let (node, index) = event_of(key, tail)?;
                let found = self.located(node, index)?;
                if query.matches(node, &found.event) {
                    page.events.push(found);
                }
                if page.events.len() == limit {
                    page.next = Some(String::from_utf8_lossy(tail).into_owned());
                    return Ok(page);
                }
            }
            let last = &chunk.last().expect("not empty").0;
            start = last.clone();
            start.push(0);
        }
        // The budget ran out: say where to go on from.
        page.next = Some(String::from_utf8_lossy(&start[prefix.len()..start.len() - 1]).into_owned());
        Ok(page)
    }

    fn counts(&self, by: CountBy, from_day: &str, to_day: &str) -> Result<Vec<Count>, StoreError> {
        let prefix = format!("ac/{}/", by.dim());
        self.store
            .scan_prefix(prefix.as_bytes())?
            .into_iter()
            .map(|(key, value)| {
                let tail = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let (value_name, day) = tail.split_once('\0').ok_or_else(|| corrupt(&key, "not a count key"))?;
                let count = String::from_utf8_lossy(&value).parse().map_err(|e| corrupt(&key, e))?;
                Ok(Count {
                    value: value_name.to_string(),
                    day: day.to_string(),
                    count,
                })
            })
            .filter(|c| {
                c.as_ref().map_or(true, |c| {
                    (from_day.is_empty() || c.day.as_str() >= from_day)
                        && (to_day.is_empty() || c.day.as_str() <= to_day)
                })
            })
            .collect()
    }
}

pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_index_passes_the_conformance_suite_over_memory_and_sled() {
        conformance::run(&StoreAuditIndex::new(
            std::sync::Arc::new(crate::store::MemStore::new()),
        ));
        let dir = tempfile::tempdir().unwrap();
        let sled = crate::store::SledStore::open(&dir.path().join("store")).unwrap();
        conformance::run(&StoreAuditIndex::new(std::sync::Arc::new(sled)));
    }

    #[test]
    fn days_are_civil_dates_in_utc() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_000_000_000), "2026-11-30");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(-1), "1969-12-31");
    }
}
