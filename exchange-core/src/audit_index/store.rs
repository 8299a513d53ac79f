//! [`StoreAuditIndex`]: the shipped events and their indexes in a [`Store`], in chunks.
//!
//! Events are kept in chunks of up to [`CHUNK_EVENTS`] consecutive events of one node, spanning
//! at most [`CHUNK_SPAN_MS`], as shipping delivers them; and each index holds one entry per
//! chunk and value, naming the chunk's events that have it. A node shipping at full rate costs
//! an entry per chunk for most fields instead of an entry per event and field; only the values
//! that differ from event to event (record keys, often case ids) have about one each.
//!
//! Keys:
//! - `ab/<node>\0<last:020>`: a chunk, keyed by its last index (see [`encode_chunk`]);
//! - `aj/<f>/<value>\0<min_time:020>\0<node>\0<last:020>` for the time index (`f` = `t`, value
//!   empty) and each field `f` (`c` consumer, `p` provider, `d` dataset, `u` purpose, `x`
//!   decision, `g` grant, `k` case id, `r` one per record key): the chunk's latest event time
//!   (8 bytes, big-endian) then the positions in the chunk of its events with that value (a byte
//!   each);
//! - `ac/<dim>/<value>\0<yyyy-mm-dd>`: how many events per value and day (UTC);
//! - `ai/n/<node>`: one past the highest index held of the node.
//!
//! `<time>` is Unix milliseconds as 20 decimal digits. A search scans the index of its most
//! selective filter in chunk order and merges: a chunk's events are final once a chunk starting
//! later has been read, so results come in (time, node, index) order. Resuming from a cursor
//! reads the index from [`CHUNK_SPAN_MS`] before it (chunks that began earlier may hold later
//! events), skipping chunks that end before it by their latest time.
//!
//! The first layout (`ai/e/`, one index entry per event and field) is moved into this one by
//! [`StoreAuditIndex::open_moving`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::{day_of, AuditIndex, AuditQuery, Count, CountBy, Leaf, Located, SearchPage, SCAN_BUDGET};
use crate::ledger::{AuditEvent, EventView};
use crate::store::{Batch, Store, StoreError};

/// Events in a chunk at most (positions are one byte).
pub const CHUNK_EVENTS: usize = 128;
/// The most time between a chunk's earliest and latest event.
pub const CHUNK_SPAN_MS: i64 = 2_000;
/// Chunk encodings this build reads.
const CHUNK_V1: u8 = 1;

pub(super) fn time_text(time_ms: i64) -> String {
    format!("{:020}", time_ms.max(0))
}

fn chunk_key(node: &str, last: u64) -> Vec<u8> {
    format!("ab/{node}\0{last:020}").into_bytes()
}

fn held_key(node: &str) -> Vec<u8> {
    format!("ai/n/{node}").into_bytes()
}

pub(super) fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: why.to_string(),
    }
}

/// A chunk: a version byte, then per event its index (8 bytes, big-endian), its length (4
/// bytes) and its leaf bytes, in index order.
fn encode_chunk(events: &[(u64, &[u8])]) -> Vec<u8> {
    let size: usize = events.iter().map(|(_, b)| 12 + b.len()).sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(CHUNK_V1);
    for (index, bytes) in events {
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The (index, leaf) entries of a chunk.
fn decode_chunk<'a>(key: &[u8], bytes: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, StoreError> {
    match bytes.first() {
        Some(&CHUNK_V1) => {}
        Some(other) => {
            return Err(corrupt(
                key,
                format!("chunk encoding {other} is not one this build reads"),
            ))
        }
        None => return Err(corrupt(key, "empty chunk")),
    }
    let mut entries = Vec::new();
    let mut rest = &bytes[1..];
    while !rest.is_empty() {
        if rest.len() < 12 {
            return Err(corrupt(key, "chunk entry cut short"));
        }
        let index = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")) as usize;
        let Some(leaf) = rest.get(12..12 + len) else {
            return Err(corrupt(key, "chunk entry cut short"));
        };
        entries.push((index, leaf));
        rest = &rest[12 + len..];
    }
    Ok(entries)
}

/// Where an event is in search order.
type Pos = (i64, String, u64);

fn pos_text(pos: &Pos) -> String {
    format!("{}\0{}\0{:020}", time_text(pos.0), pos.1, pos.2)
}

fn parse_pos(text: &str) -> Option<Pos> {
    let mut parts = text.split('\0');
    let time = parts.next()?.parse().ok()?;
    let node = parts.next()?.to_string();
    let index = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((time, node, index))
}

/// `bytes` of event `index` of `node`, read in place (a leaf that is not an event is corrupt).
pub(super) fn view<'a>(node: &str, index: u64, bytes: &'a [u8]) -> Result<EventView<'a>, StoreError> {
    EventView::parse(bytes).map_err(|e| corrupt(format!("event {index} of {node}").as_bytes(), e))
}

/// The index entries of one chunk of `node`'s events, keyed as stored, with their values.
fn postings(node: &str, events: &[&Leaf<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let min_time = events.iter().map(|(_, _, e)| e.time_ms).min().unwrap_or(0);
    let max_time = events.iter().map(|(_, _, e)| e.time_ms).max().unwrap_or(0);
    let last = events.last().map_or(0, |(i, _, _)| *i);
    // Every (field, value, position), sorted: a Query's events name hundreds of record keys
    // each, already in key order, and a stable sort merges such runs in few passes.
    let mut all: Vec<(&str, &str, u8)> = Vec::with_capacity(events.iter().map(|(_, _, e)| 8 + e.keys.len()).sum());
    for (position, (_, _, event)) in events.iter().enumerate() {
        let position = position as u8;
        let fields = [
            ("t", ""),
            ("c", &*event.department),
            ("p", node),
            ("d", &*event.dataset),
            ("u", &*event.purpose),
            ("x", event.decision.as_str()),
            ("g", &*event.grant_id),
            ("k", &*event.case_id),
        ];
        let keys = event.keys.iter().map(|k| ("r", &**k));
        for (field, value) in fields.into_iter().chain(keys) {
            if !value.is_empty() || field == "t" {
                all.push((field, value, position));
            }
        }
    }
    all.sort();
    // An event naming one record key twice is listed once.
    all.dedup();
    // Built by hand: a query's event names hundreds of record keys, an entry each.
    let tail = format!("{}\0{node}\0{last:020}", time_text(min_time));
    all.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1))
        .map(|list| {
            let (field, value, _) = list[0];
            let mut key = Vec::with_capacity(5 + field.len() + value.len() + tail.len());
            key.extend_from_slice(b"aj/");
            key.extend_from_slice(field.as_bytes());
            key.push(b'/');
            key.extend_from_slice(value.as_bytes());
            key.push(0);
            key.extend_from_slice(tail.as_bytes());
            let mut v = Vec::with_capacity(8 + list.len());
            v.extend_from_slice(&max_time.to_be_bytes());
            v.extend(list.iter().map(|(_, _, position)| position));
            (key, v)
        })
        .collect()
}

/// Cuts a node's events (in index order) into chunks.
fn chunks<'l, 'a>(events: Vec<&'l Leaf<'a>>) -> Vec<Vec<&'l Leaf<'a>>> {
    let mut out: Vec<Vec<&'l Leaf<'a>>> = Vec::new();
    let mut span = (i64::MAX, i64::MIN);
    for event in events {
        let time = event.2.time_ms;
        let fits = out
            .last()
            .is_some_and(|chunk| chunk.len() < CHUNK_EVENTS && span.1.max(time) - span.0.min(time) <= CHUNK_SPAN_MS);
        if fits {
            span = (span.0.min(time), span.1.max(time));
            out.last_mut().expect("a chunk").push(event);
        } else {
            span = (time, time);
            out.push(vec![event]);
        }
    }
    out
}

/// The day counters `events` of `node` add to: (key, how many).
fn day_counts(node: &str, events: &[&Leaf<'_>]) -> BTreeMap<Vec<u8>, u64> {
    // Keyed by what varies, formatted once per key: a batch holds a few days and values.
    let mut counts: BTreeMap<(&str, &str, i64), u64> = BTreeMap::new();
    for (_, _, event) in events {
        let decision = event.decision.as_str();
        let day = event.time_ms.div_euclid(86_400_000);
        // `pd` counts reads of other departments only: what a node served in sharing.
        let shared = if event.department == node { "" } else { decision };
        for (dim, value) in [
            ("c", &*event.department),
            ("p", node),
            ("d", &*event.dataset),
            ("x", decision),
            ("pd", shared),
        ] {
            if !value.is_empty() {
                *counts.entry((dim, value, day)).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|((dim, value, day), n)| {
            let day = day_of(day * 86_400_000);
            let key = match dim {
                "pd" => format!("ac/pd/{node}/{value}\0{day}"),
                _ => format!("ac/{dim}/{value}\0{day}"),
            };
            (key.into_bytes(), n)
        })
        .collect()
}

/// Puts a chunk of `node`'s events and its index entries into `batch`.
fn put_chunk(batch: &mut Batch, node: &str, chunk: &[&Leaf<'_>]) {
    let Some(last) = chunk.last().map(|(i, _, _)| *i) else {
        return;
    };
    let leaves: Vec<(u64, &[u8])> = chunk.iter().map(|(i, b, _)| (*i, *b)).collect();
    batch.put(chunk_key(node, last), encode_chunk(&leaves));
    for (key, value) in postings(node, chunk) {
        batch.put(key, value);
    }
}

/// [`AuditIndex`] over a [`Store`] (sled at the registry).
pub struct StoreAuditIndex<S: ?Sized> {
    /// Events a search examines at most per call ([`SCAN_BUDGET`]; tests lower it).
    budget: usize,
    /// Adds and prunes are serialised: counters are read, added to and written back.
    adding: Mutex<()>,
    store: Arc<S>,
}

impl<S: Store + ?Sized> StoreAuditIndex<S> {
    /// The index kept in `store`, which holds no index of the first layout (a new store, or
    /// one [`open`](Self::open) has moved).
    pub fn new(store: Arc<S>) -> Self {
        Self {
            budget: SCAN_BUDGET,
            adding: Mutex::new(()),
            store,
        }
    }

    /// The index kept in `store`, first moving into it the index `previous` holds in the first
    /// layout (one entry per event and field; the registry kept it in its own store before):
    /// its events into chunks, its counts and held marks as they are. Returns the index and how
    /// many events were moved. Stopped at any point, it goes on where it was when run again.
    pub fn open_moving<P: Store + ?Sized>(store: Arc<S>, previous: &P) -> Result<(Self, u64), StoreError> {
        let index = Self::new(store);
        let moved = super::v1::migrate(previous, &*index.store, |node, events| index.write(node, events, false))?;
        Ok((index, moved))
    }

    /// Calls `visit` with each event of `node` held from index `from` on, in index order, as
    /// (index, leaf), until it returns false.
    fn walk(
        &self,
        node: &str,
        from: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // Chunks are keyed by their last index: the first at or after `from` holds it or what follows.
        let mut start = chunk_key(node, from);
        let end = format!("ab/{node}\x01").into_bytes();
        loop {
            let page = self.store.range(&start, &end, 16)?;
            let Some((last_key, _)) = page.last() else {
                return Ok(());
            };
            start = last_key.clone();
            start.push(0);
            for (key, bytes) in &page {
                for (index, leaf) in decode_chunk(key, bytes)? {
                    if index >= from && !visit(index, leaf)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The indexes held of `node` from `from` to before `to`.
    fn held_between(&self, node: &str, from: u64, to: u64) -> Result<BTreeSet<u64>, StoreError> {
        let mut found = BTreeSet::new();
        self.walk(node, from, |index, _| {
            if index >= to {
                return Ok(false);
            }
            found.insert(index);
            Ok(true)
        })?;
        Ok(found)
    }

    /// Stores `events` of `node` in chunks with their index entries (and counts them, unless
    /// moving them from the first layout, whose counts stay as they are).
    fn write(&self, node: &str, events: &[(u64, Vec<u8>)], count: bool) -> Result<(), StoreError> {
        self.write_read(node, &super::read_events(node, events)?, count)
    }

    /// [`Self::write`] of events already read.
    fn write_read(&self, node: &str, events: &[Leaf<'_>], count: bool) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        let held_before = self.held(node)?;
        let low = events.iter().map(|(i, _, _)| *i).min().unwrap_or(0);
        let held = events.iter().map(|(i, _, _)| i + 1).max().unwrap_or(0).max(held_before);
        // Only an index below what is held can have been added before (a node's events come in
        // order): the look-up is for shipping again after a crash.
        let already = if low < held_before {
            self.held_between(node, low, held_before)?
        } else {
            BTreeSet::new()
        };
        let mut fresh: BTreeMap<u64, &Leaf<'_>> = BTreeMap::new();
        for leaf in events {
            if !already.contains(&leaf.0) {
                fresh.insert(leaf.0, leaf);
            }
        }
        let fresh: Vec<&Leaf<'_>> = fresh.into_values().collect();
        let counts = if count {
            day_counts(node, &fresh)
        } else {
            BTreeMap::new()
        };
        for chunk in chunks(fresh) {
            put_chunk(&mut batch, node, &chunk);
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
            batch.put(held_key(node), held.to_string().into_bytes());
        }
        self.store.commit(batch)
    }

    /// The stored bytes of the chunk an index entry names, and its key.
    fn chunk_bytes(&self, node: &str, last: u64) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let key = chunk_key(node, last);
        let bytes = self
            .store
            .get(&key)?
            .ok_or_else(|| corrupt(&key, "indexed but not stored"))?;
        Ok((key, bytes))
    }
}

fn parse(key: &[u8], leaf: &[u8]) -> Result<AuditEvent, StoreError> {
    serde_json::from_slice(leaf).map_err(|e| corrupt(key, e))
}

/// The (min_time, node, last) an index entry's tail names.
fn entry_of<'k>(key: &[u8], tail: &'k [u8]) -> Result<(i64, &'k str, u64), StoreError> {
    let text = std::str::from_utf8(tail).map_err(|e| corrupt(key, e))?;
    let mut parts = text.split('\0');
    let (Some(time), Some(node), Some(last), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(corrupt(key, "not an index entry"));
    };
    match (time.parse(), last.parse()) {
        (Ok(time), Ok(last)) => Ok((time, node, last)),
        _ => Err(corrupt(key, "not an index entry")),
    }
}

/// An index entry's value: the chunk's latest time and the positions listed.
fn entry_value<'v>(key: &[u8], value: &'v [u8]) -> Result<(i64, &'v [u8]), StoreError> {
    if value.len() < 8 {
        return Err(corrupt(key, "index entry value cut short"));
    }
    Ok((i64::from_be_bytes(value[..8].try_into().expect("8 bytes")), &value[8..]))
}

/// Moves buffered events before `before` (in search order) into `page`, up to `limit`; true
/// when the page is full.
fn emit(buffer: &mut BTreeMap<Pos, Located>, page: &mut SearchPage, limit: usize, before: Option<i64>) -> bool {
    while let Some(entry) = buffer.first_entry() {
        if before.is_some_and(|t| entry.key().0 >= t) {
            return false;
        }
        let (pos, found) = entry.remove_entry();
        page.events.push(found);
        if page.events.len() == limit {
            page.next = Some(pos_text(&pos));
            return true;
        }
    }
    false
}

impl<S: Store + ?Sized> AuditIndex for StoreAuditIndex<S> {
    fn add_read(&self, node: &str, events: &[Leaf<'_>]) -> Result<(), StoreError> {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        self.write_read(node, events, true)
    }

    fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = b"aj/t/\0".to_vec();
        let mut end = prefix.clone();
        end.extend_from_slice(time_text(before_ms).as_bytes());
        let mut removed = 0;
        loop {
            let entries = self.store.range(&prefix, &end, 64)?;
            if entries.is_empty() {
                return Ok(removed);
            }
            let mut batch = Batch::default();
            for (key, _) in &entries {
                let (_, node, last) = entry_of(key, &key[prefix.len()..])?;
                let (chunk_key, bytes) = self.chunk_bytes(node, last)?;
                let chunk = decode_chunk(&chunk_key, &bytes)?
                    .into_iter()
                    .map(|(index, leaf)| Ok((index, leaf, view(node, index, leaf)?)))
                    .collect::<Result<Vec<Leaf<'_>>, StoreError>>()?;
                let all: Vec<&Leaf<'_>> = chunk.iter().collect();
                for (posting, _) in postings(node, &all) {
                    batch.delete(posting);
                }
                batch.delete(chunk_key);
                // What is left begins at or after the cut, so this scan does not meet it again.
                let (gone, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, _, e)| e.time_ms < before_ms);
                removed += gone.len() as u64;
                if !kept.is_empty() {
                    put_chunk(&mut batch, node, &kept);
                }
            }
            self.store.commit(batch)?;
        }
    }

    fn held(&self, node: &str) -> Result<u64, StoreError> {
        let key = held_key(node);
        match self.store.get(&key)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse().map_err(|e| corrupt(&key, e)),
            None => Ok(0),
        }
    }

    fn read(&self, node: &str, from: u64, count: usize) -> Result<Vec<Located>, StoreError> {
        let mut out = Vec::new();
        if count == 0 {
            return Ok(out);
        }
        self.walk(node, from, |index, leaf| {
            out.push(Located {
                node: node.to_string(),
                index,
                bytes: leaf.to_vec(),
                event: parse(&chunk_key(node, index), leaf)?,
            });
            Ok(out.len() < count)
        })?;
        Ok(out)
    }

    fn search(&self, query: &AuditQuery, cursor: Option<&str>, limit: usize) -> Result<SearchPage, StoreError> {
        let after: Option<Pos> = match cursor {
            Some(text) => Some(parse_pos(text).ok_or_else(|| corrupt(text.as_bytes(), "not a search cursor"))?),
            None => None,
        };
        let prefix = match query.scan_field() {
            Some((field, value)) => format!("aj/{field}/{value}\0"),
            None => "aj/t/\0".to_string(),
        };
        // Events before `lower` are not wanted (the range, or the cursor).
        let lower = query.from_ms.unwrap_or(0).max(after.as_ref().map_or(0, |p| p.0));
        let mut start = format!("{prefix}{}", time_text(lower.saturating_sub(CHUNK_SPAN_MS))).into_bytes();
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
        let mut buffer: BTreeMap<Pos, Located> = BTreeMap::new();
        let mut examined = 0;
        loop {
            let entries = self.store.range(&start, &end, 256)?;
            let Some((last_key, _)) = entries.last() else {
                emit(&mut buffer, &mut page, limit, None);
                return Ok(page);
            };
            start = last_key.clone();
            start.push(0);
            for (key, value) in &entries {
                let (min_time, node, last) = entry_of(key, &key[prefix.len()..])?;
                // Every chunk still to come begins at or after this one: what is buffered
                // before it is final.
                if emit(&mut buffer, &mut page, limit, Some(min_time)) {
                    return Ok(page);
                }
                let (max_time, positions) = entry_value(key, value)?;
                if max_time < lower {
                    continue;
                }
                // Over budget, stop before a chunk that begins after where this call began, so
                // that the next call starts later (it always makes progress).
                if examined >= self.budget && min_time > lower {
                    page.next = Some(pos_text(&(min_time, String::new(), 0)));
                    return Ok(page);
                }
                // Only the events the entry lists are parsed.
                let (chunk_key, bytes) = self.chunk_bytes(node, last)?;
                let entries = decode_chunk(&chunk_key, &bytes)?;
                for &position in positions {
                    let Some(&(index, leaf)) = entries.get(position as usize) else {
                        return Err(corrupt(key, "names an event its chunk does not hold"));
                    };
                    examined += 1;
                    let event = parse(&chunk_key, leaf)?;
                    let pos = (event.time_ms, node.to_string(), index);
                    if after.as_ref().is_some_and(|a| &pos <= a) || !query.matches(node, &event) {
                        continue;
                    }
                    buffer.insert(
                        pos,
                        Located {
                            node: node.to_string(),
                            index,
                            bytes: leaf.to_vec(),
                            event,
                        },
                    );
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::Decision;
    use crate::store::MemStore;

    fn event(node: usize, i: u64) -> AuditEvent {
        AuditEvent {
            // Three nodes whose chunks overlap in time, each node's clock a little off.
            time_ms: 1_796_000_000_000 + i as i64 * 300 + node as i64 * 170,
            node: format!("js.n{node}"),
            principal: String::new(),
            department: format!("js.c{}", i % 4),
            operation: "get".into(),
            dataset: format!("js.n{node}/d"),
            schema_version: 1,
            fields: vec![],
            keys: vec![format!("k{}", i % 97)],
            count: 1,
            purpose: "p".into(),
            case_id: String::new(),
            decision: if i % 50 == 7 { Decision::Deny } else { Decision::Allow },
            reason: String::new(),
            grant_id: String::new(),
            served_sha256: String::new(),
            withheld_until: 0,
        }
    }

    /// Searches page by page on an index that examines only a few events per call: every page
    /// is in order, nothing is missed or repeated, and paging always ends.
    #[test]
    fn a_search_over_budget_goes_on_where_it_stopped_and_always_makes_progress() {
        let mut index = StoreAuditIndex::new(Arc::new(MemStore::new()));
        index.budget = 40;
        let mut all = Vec::new();
        for node in 0..3 {
            let events: Vec<(u64, Vec<u8>)> = (0..400u64)
                .map(|i| (i, serde_json::to_vec(&event(node, i)).unwrap()))
                .collect();
            for batch in events.chunks(150) {
                index.add(&format!("js.n{node}"), batch).unwrap();
            }
            all.extend((0..400u64).map(|i| (event(node, i), format!("js.n{node}"), i)));
        }
        for query in [
            AuditQuery::default(),
            AuditQuery {
                decision: Some(Decision::Deny),
                ..Default::default()
            },
            AuditQuery {
                record_key: Some("k5".into()),
                consumer: Some("js.c1".into()),
                ..Default::default()
            },
            AuditQuery {
                from_ms: Some(1_796_000_000_000 + 30_000),
                to_ms: Some(1_796_000_000_000 + 60_000),
                consumer: Some("js.c2".into()),
                ..Default::default()
            },
        ] {
            let mut want: Vec<(i64, String, u64)> = all
                .iter()
                .filter(|(e, node, _)| query.matches(node, e))
                .map(|(e, node, i)| (e.time_ms, node.clone(), *i))
                .collect();
            want.sort();
            for limit in [1, 7, 1000] {
                let mut got = Vec::new();
                let mut cursor: Option<String> = None;
                let mut calls = 0;
                loop {
                    calls += 1;
                    assert!(calls < 10_000, "{query:?}: paging never ended");
                    let page = index.search(&query, cursor.as_deref(), limit).unwrap();
                    got.extend(page.events.iter().map(|e| (e.event.time_ms, e.node.clone(), e.index)));
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                assert_eq!(got, want, "{query:?} in pages of {limit}");
            }
        }
    }

    #[test]
    fn a_chunk_has_one_entry_per_field_value_listing_its_events_once_each() {
        let mut first = event(1, 0);
        first.keys = vec!["k2".into(), "k1".into(), "k2".into()];
        first.grant_id = "g-1".into();
        let mut second = event(1, 1);
        second.keys = vec!["k1".into()];
        let leaves: Vec<(u64, Vec<u8>)> = [first, second]
            .iter()
            .enumerate()
            .map(|(i, e)| (10 + i as u64, crate::ledger::encode(e).unwrap()))
            .collect();
        let read: Vec<Leaf<'_>> = leaves
            .iter()
            .map(|(i, b)| (*i, b.as_slice(), EventView::parse(b).unwrap()))
            .collect();
        let max = (1_796_000_000_000i64 + 300 + 170).to_be_bytes();
        let got: Vec<(String, Vec<u8>)> = postings("js.n1", &read.iter().collect::<Vec<_>>())
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(v[..8], max, "the chunk's latest time");
                (String::from_utf8(k).unwrap().replace('\0', "|"), v[8..].to_vec())
            })
            .collect();
        // The earliest time and the last index, 20 digits each.
        let tail = "|00000001796000000170|js.n1|00000000000000000011";
        let want: Vec<(String, Vec<u8>)> = [
            ("c/js.c0", vec![0]),
            ("c/js.c1", vec![1]),
            ("d/js.n1/d", vec![0, 1]),
            ("g/g-1", vec![0]),
            ("p/js.n1", vec![0, 1]),
            ("r/k1", vec![0, 1]),
            ("r/k2", vec![0]),
            ("t/", vec![0, 1]),
            ("u/p", vec![0, 1]),
            ("x/allow", vec![0, 1]),
        ]
        .into_iter()
        .map(|(k, v)| (format!("aj/{k}{tail}"), v))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn chunks_are_cut_by_count_and_by_time_span() {
        let event = |time_ms: i64| AuditEvent {
            time_ms,
            ..self::event(0, 0)
        };
        let cut = |times: &[i64]| -> Vec<usize> {
            let leaves: Vec<(u64, Vec<u8>)> = times
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u64, crate::ledger::encode(&event(*t)).unwrap()))
                .collect();
            let events: Vec<Leaf<'_>> = leaves
                .iter()
                .map(|(i, b)| (*i, b.as_slice(), EventView::parse(b).unwrap()))
                .collect();
            chunks(events.iter().collect()).iter().map(Vec::len).collect()
        };
        assert_eq!(cut(&vec![5; 300]), vec![128, 128, 44]);
        assert_eq!(cut(&[0, 1000, 2000, 2001, 5000]), vec![3, 1, 1]);
        // A clock stepping back stays within one chunk's span as long as it is short.
        assert_eq!(cut(&[1000, 0, 1500, 2001]), vec![3, 1]);
        assert!(cut(&[]).is_empty());
    }
}
