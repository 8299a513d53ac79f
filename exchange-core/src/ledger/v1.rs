//! The ledger's first form, written until the Merkle log replaced it: `audit.ledger`, one JSON
//! entry `{"seq":n,"event":{...},"hash":"<hex>"}` a line, with
//! `hash(n) = SHA-256(hash(n-1) ‖ n as 8 big-endian bytes ‖ event JSON)` and `hash(0)` all zeros.
//! It is read only to move its events into the Merkle log ([`super::Ledger::migrate_v1`]); its
//! events become the log's first leaves byte for byte, so every one stays provable.

use std::io::BufRead as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{parse_hex, Hash, LedgerError};

/// An entry as read back from its line: the event's stored bytes are kept as they are.
#[derive(serde::Deserialize)]
struct StoredEntry<'a> {
    seq: u64,
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
    hash: &'a str,
}

/// The hash of entry `seq` given the previous hash and the event's JSON.
fn chain(prev: &Hash, seq: u64, event_json: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(event_json);
    h.finalize().into()
}

/// Reads a first-form ledger, verifies its chain, and returns each event's stored bytes in
/// order. A torn last line (never acknowledged) is left out.
pub(crate) fn read_events(path: &Path) -> Result<Vec<Vec<u8>>, LedgerError> {
    let io = |e: std::io::Error| LedgerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Only what the file holds now (a device such as /dev/full reads on forever).
    let len = file.metadata().map_err(io)?.len();
    let mut reader = std::io::BufReader::new(std::io::Read::take(file, len));
    let mut head = [0u8; 32];
    let mut events = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        line.pop();
        let index = events.len() as u64;
        let tampered = |why: String| super::tampered(path, index, why);
        let stored: StoredEntry<'_> =
            serde_json::from_slice(&line).map_err(|e| tampered(format!("not a ledger entry: {e}")))?;
        if stored.seq != index + 1 {
            return Err(tampered(format!(
                "found entry {} where {} should be (dropped or reordered)",
                stored.seq,
                index + 1
            )));
        }
        head = chain(&head, stored.seq, stored.event.get().as_bytes());
        if parse_hex(stored.hash) != Some(head) {
            return Err(tampered(
                "hash does not match its event and predecessor (changed)".into(),
            ));
        }
        events.push(stored.event.get().as_bytes().to_vec());
    }
    Ok(events)
}

/// Writes a first-form ledger of `events` (tests build old data directories with it).
#[cfg(test)]
pub(crate) fn write(events: &[super::AuditEvent]) -> Vec<u8> {
    let mut head = [0u8; 32];
    let mut file = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let json = serde_json::to_vec(event).unwrap();
        let seq = i as u64 + 1;
        head = chain(&head, seq, &json);
        file.extend_from_slice(format!("{{\"seq\":{seq},\"event\":").as_bytes());
        file.extend_from_slice(&json);
        file.extend_from_slice(format!(",\"hash\":\"{}\"}}\n", super::hex(&head)).as_bytes());
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::event;

    fn file(events: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.ledger");
        let all: Vec<_> = (0..events as u64).map(event).collect();
        std::fs::write(&path, write(&all)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_first_form_ledger_reads_as_its_event_bytes() {
        let (_dir, path) = file(3);
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[1], serde_json::to_vec(&event(1)).unwrap());
    }

    #[test]
    fn a_changed_or_dropped_first_form_entry_is_refused() {
        let (_dir, path) = file(4);
        let text = std::fs::read_to_string(&path).unwrap();
        let changed = text.replacen("\"decision\":\"allow\"", "\"decision\":\"deny\"", 1);
        std::fs::write(&path, changed).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(err.contains("ledger entry 0") && err.contains("changed"), "{err}");

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(read_events(&path)
            .unwrap_err()
            .to_string()
            .contains("dropped or reordered"));
    }
}
