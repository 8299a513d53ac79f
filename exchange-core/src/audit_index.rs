//! The registry's store of shipped audit events and its indexes, for auditors: search by time
//! range, consumer department, provider (node), dataset, purpose, decision, grant, case id and
//! record key, in any combination, paged in a stable order; and counts per department, dataset
//! and decision per day.
//!
//! [`AuditIndex`] is the interface, with one conformance suite ([`conformance::run`]) so that
//! another engine (a distributed one) can take the place of [`StoreAuditIndex`], which keeps
//! events in chunks in a [`Store`](crate::store::Store) with one index entry per chunk and value
//! (its layout is in the `store` module). A search scans the index of the most selective filter
//! it has and checks the others on each event; it examines at most [`SCAN_BUDGET`] events per
//! call and then returns what it found with a cursor, so one call's cost is bounded whatever
//! the query.

use crate::closed_set::closed_set;
use crate::ledger::{AuditEvent, Decision, EventView};
use crate::store::StoreError;

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
        /// The node that served and the decision, `js.gongan/allow`: reads of other
        /// departments each node served and denied (counted from the release that added it on;
        /// a department's reads of its own data are not counted here).
        ProviderDecision = "provider_decision",
    }
}

impl CountBy {
    fn dim(self) -> &'static str {
        match self {
            CountBy::Consumer => "c",
            CountBy::Provider => "p",
            CountBy::Dataset => "d",
            CountBy::Decision => "x",
            CountBy::ProviderDecision => "pd",
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
    fn add(&self, node: &str, events: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.add_read(node, &read_events(node, events)?)
    }

    /// [`AuditIndex::add`] of events already read: each (index, leaf, the leaf read in place).
    fn add_read(&self, node: &str, events: &[Leaf<'_>]) -> Result<(), StoreError>;

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

/// An event to store: its index, its leaf bytes and the leaf read in place.
pub type Leaf<'a> = (u64, &'a [u8], EventView<'a>);

/// `events` of `node` (index, leaf), each with its leaf read in place, as
/// [`AuditIndex::add_read`] takes them; a leaf that is not an event is corrupt.
pub fn read_events<'a>(node: &str, events: &'a [(u64, Vec<u8>)]) -> Result<Vec<Leaf<'a>>, StoreError> {
    events
        .iter()
        .map(|(index, bytes)| Ok((*index, bytes.as_slice(), store::view(node, *index, bytes)?)))
        .collect()
}

/// Events a search examines at most per call (it finishes the chunk it is in).
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

mod store;
mod v1;

pub use store::{StoreAuditIndex, CHUNK_EVENTS, CHUNK_SPAN_MS};

pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_index_passes_the_conformance_suite_over_memory_sled_and_fjall() {
        conformance::run(&StoreAuditIndex::new(
            std::sync::Arc::new(crate::store::MemStore::new()),
        ));
        let dir = tempfile::tempdir().unwrap();
        let sled = crate::store::SledStore::open(&dir.path().join("store")).unwrap();
        conformance::run(&StoreAuditIndex::new(std::sync::Arc::new(sled)));
        let lsm = crate::store::LsmStore::open(&dir.path().join("lsm")).unwrap();
        conformance::run(&StoreAuditIndex::new(std::sync::Arc::new(lsm)));
    }

    #[test]
    fn days_are_civil_dates_in_utc() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_000_000_000), "2026-11-30");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(-1), "1969-12-31");
    }
}
