//! The index's first layout, kept only to move it into chunks: per event `ai/e/<node>\0<index>`
//! (its leaf), `ai/t/<time>\0<node>\0<index>`, and `ai/<f>/<value>\0<time>\0<node>\0<index>`
//! per field value. Its counts (`ac/`) and held marks (`ai/n/`) are the same in both layouts.

use crate::ledger::AuditEvent;
use crate::store::{Batch, Store, StoreError};

use super::store::{corrupt, time_text};

const EVENTS: &[u8] = b"ai/e/";
/// Events moved per commit.
const STEP: usize = 2_000;

/// Every first-layout key of an event: the event's, its time entry, one per field value.
pub(super) fn keys(event: &AuditEvent, node: &str, index: u64) -> Vec<Vec<u8>> {
    let tail = format!("{}\0{node}\0{index:020}", time_text(event.time_ms));
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
    let mut keys = vec![
        format!("ai/e/{node}\0{index:020}").into_bytes(),
        format!("ai/t/{tail}").into_bytes(),
    ];
    keys.extend(
        fields
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(field, value)| format!("ai/{field}/{value}\0{tail}").into_bytes()),
    );
    keys
}

/// One node's events, (index, leaf) each.
type NodeEvents = (String, Vec<(u64, Vec<u8>)>);

/// Counts and held marks: the same in both layouts, copied as they are.
const KEPT: [&[u8]; 2] = [b"ac/", b"ai/n/"];

/// Moves a first-layout index out of `store` into `target`: its counts and held marks copied,
/// then every event through `write` (which stores it in the new layout, counts untouched, and
/// skips what it holds already) with its first-layout keys deleted after, then the counts and
/// marks deleted. Returns how many events were moved. Safe to stop at any point and run again
/// (nothing is added to the index until it returns).
pub(super) fn migrate<S: Store + ?Sized, T: Store + ?Sized>(
    store: &S,
    target: &T,
    write: impl Fn(&str, &[(u64, Vec<u8>)]) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut kept = Vec::new();
    for prefix in KEPT {
        kept.extend(store.scan_prefix(prefix)?);
    }
    if kept.is_empty() {
        return Ok(0);
    }
    let mut copy = Batch::default();
    for (key, value) in &kept {
        copy.put(key.clone(), value.clone());
    }
    target.commit(copy)?;
    let mut end = EVENTS.to_vec();
    end.push(0xff);
    let mut moved = 0;
    loop {
        let page = store.range(EVENTS, &end, STEP)?;
        if page.is_empty() {
            break;
        }
        let mut by_node: Vec<NodeEvents> = Vec::new();
        let mut old_keys = Batch::default();
        for (key, bytes) in page {
            let tail = std::str::from_utf8(&key[EVENTS.len()..]).map_err(|e| corrupt(&key, e))?;
            let (node, index) = tail.split_once('\0').ok_or_else(|| corrupt(&key, "not an event key"))?;
            let index: u64 = index.parse().map_err(|e| corrupt(&key, e))?;
            let event: AuditEvent = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            for old in keys(&event, node, index) {
                old_keys.delete(old);
            }
            match by_node.last_mut() {
                Some((n, events)) if n == node => events.push((index, bytes)),
                _ => by_node.push((node.to_string(), vec![(index, bytes)])),
            }
        }
        for (node, events) in &by_node {
            write(node, events)?;
            moved += events.len() as u64;
        }
        // After the new layout holds them: a crash in between moves nothing twice.
        store.commit(old_keys)?;
    }
    let mut done = Batch::default();
    for (key, _) in kept {
        done.delete(key);
    }
    store.commit(done)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::audit_index::{AuditIndex, AuditQuery, CountBy, StoreAuditIndex};
    use crate::ledger::{AuditEvent, Decision};
    use crate::store::{Batch, MemStore, Store};

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_796_000_000_000 + i as i64 * 1000,
            node: "js.gongan".into(),
            principal: "spiffe://exchange.test/dept/js.scjg/system".into(),
            department: if i.is_multiple_of(2) { "js.scjg" } else { "js.rsj" }.into(),
            operation: "get".into(),
            dataset: "js.gongan/population".into(),
            schema_version: 1,
            fields: vec!["name".into()],
            keys: vec![format!("k{i}")],
            count: 1,
            purpose: "business-licensing".into(),
            case_id: String::new(),
            decision: Decision::Allow,
            reason: String::new(),
            grant_id: "g-000001".into(),
            served_sha256: String::new(),
            withheld_until: 0,
        }
    }

    #[test]
    fn the_first_layout_is_moved_into_chunks_with_nothing_lost_or_counted_twice() {
        let store = MemStore::new();
        // The first layout, as a registry of the previous release wrote it.
        let mut batch = Batch::default();
        for i in 0..300 {
            let e = event(i);
            let bytes = serde_json::to_vec(&e).unwrap();
            let keys = super::keys(&e, "js.gongan", i);
            batch.put(keys[0].clone(), bytes);
            for k in &keys[1..] {
                batch.put(k.clone(), Vec::new());
            }
        }
        batch.put(b"ai/n/js.gongan".to_vec(), b"300".to_vec());
        batch.put(b"ac/c/js.scjg\x002026-11-29".to_vec(), b"150".to_vec());
        store.commit(batch).unwrap();

        let target = Arc::new(MemStore::new());
        let (index, moved) = StoreAuditIndex::open_moving(target.clone(), &store).unwrap();
        assert_eq!(moved, 300);
        assert!(store.scan_prefix(b"a").unwrap().is_empty(), "nothing is left behind");
        assert_eq!(index.held("js.gongan").unwrap(), 300);
        let found = index
            .search(
                &AuditQuery {
                    record_key: Some("k123".into()),
                    ..Default::default()
                },
                None,
                10,
            )
            .unwrap();
        assert_eq!(found.events.len(), 1);
        assert_eq!(found.events[0].event, event(123));
        assert_eq!(index.read("js.gongan", 0, 1000).unwrap().len(), 300);
        let counts = index.counts(CountBy::Consumer, "", "").unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].count, 150, "counts are not added again");
        // Opening again finds nothing left to move, and keeps what was moved.
        let (index, moved) = StoreAuditIndex::open_moving(target, &store).unwrap();
        assert_eq!(moved, 0);
        assert_eq!(index.held("js.gongan").unwrap(), 300);
        assert_eq!(index.counts(CountBy::Consumer, "", "").unwrap()[0].count, 150);
    }
}
