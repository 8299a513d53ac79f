//! Offline verification of a ledger directory: every leaf rehashed, the tree rebuilt and checked
//! against the signed checkpoint, and the first broken entry named.
//!
//! The events are checked against the checkpoint's signature, which nobody can forge without the
//! log key. To say *which* entry broke, the stored hashes are used: when the leaf hashes the
//! `hashes` file holds rebuild the signed root, they are the leaves that were signed, and the
//! first event that differs from them is changed, dropped, swapped or inserted. When the file was
//! rewritten too, the entry cannot be located from this directory alone, and the report says so
//! (the registry's copy of the shipped events locates it).

use std::collections::VecDeque;
use std::io::{BufRead as _, Read as _};
use std::path::Path;

use crate::tlog::{self, Checkpoint, Frontier as Tree, LogVerifier};

use super::log::{read_pruned, start_after_pruned, CHECKPOINT, EVENTS, HASHES};
use super::{tampered as fail, AuditEvent, Decision, LedgerError};

/// What a verified ledger holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Complete entries in `events`.
    pub size: u64,
    /// The last signed checkpoint, which every entry before its size matches.
    pub checkpoint: Option<Checkpoint>,
    /// Bytes of a torn last line (never acknowledged; the server cuts them off when it opens).
    pub torn_bytes: u64,
    /// Entries that allowed a read (the rest denied one), of those not pruned.
    pub allowed: u64,
    /// Entries pruned from the start (retention): their hashes were taken from the hash file.
    pub pruned: u64,
}

/// Verifies the ledger in `dir` against checkpoints signed by `log` (the key the registry
/// pinned for this server, or the server's own key when checking its files locally).
pub fn verify_dir(dir: &Path, log: &LogVerifier) -> Result<Verified, LedgerError> {
    let io = |path: &Path, e: std::io::Error| LedgerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let events_path = dir.join(EVENTS);
    let hashes_path = dir.join(HASHES);
    let checkpoint_path = dir.join(CHECKPOINT);
    let checkpoint = match std::fs::read(&checkpoint_path) {
        Ok(note) => Some(log.open_checkpoint(&note).map_err(|e| LedgerError::Io {
            path: checkpoint_path.clone(),
            message: format!(
                "{e}: the checkpoint does not verify with {} (it was altered, or another key signed it)",
                log.text()
            ),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&checkpoint_path, e)),
    };
    let signed = checkpoint.as_ref().map_or(0, |c| c.size);
    let events = std::fs::File::open(&events_path).map_err(|e| io(&events_path, e))?;
    let mut events = std::io::BufReader::with_capacity(1 << 20, events);
    let mut stored = match std::fs::File::open(&hashes_path) {
        Ok(f) => Some(std::io::BufReader::with_capacity(1 << 20, f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&hashes_path, e)),
    };

    // Pruned entries (retention) are gone: the tree over them is taken from the hash file, and a
    // hash file that lies about them gives another root than the signed one.
    let pruned = read_pruned(dir)?;
    let (mut from_events, mut from_file) = (Tree::default(), Tree::default());
    if pruned > 0 {
        let (frontier, offset) = start_after_pruned(dir, pruned)?;
        (from_events, from_file) = (frontier.clone(), frontier);
        std::io::Seek::seek(&mut events, std::io::SeekFrom::Start(offset)).map_err(|e| io(&events_path, e))?;
        if let Some(stored) = stored.as_mut() {
            let at = tlog::stored_hash_index(0, pruned) * 32;
            std::io::Seek::seek(stored, std::io::SeekFrom::Start(at)).map_err(|e| io(&hashes_path, e))?;
        }
    }
    let mut file_agrees = stored.is_some();
    let mut signed_roots: Option<(tlog::Hash, tlog::Hash)> = None;
    // Leaf hashes from the first disagreement with the hash file on, a few of each.
    let mut first_difference: Option<u64> = None;
    let mut event_window: VecDeque<tlog::Hash> = VecDeque::new();
    let mut file_window: VecDeque<tlog::Hash> = VecDeque::new();
    let mut torn_bytes = 0;
    let mut allowed = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = events.read_until(b'\n', &mut line).map_err(|e| io(&events_path, e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            torn_bytes = n as u64;
            break;
        }
        line.pop();
        let index = from_events.size();
        match serde_json::from_slice::<AuditEvent>(&line) {
            Ok(event) if event.decision == Decision::Allow => allowed += 1,
            Ok(_) => {}
            Err(e) => return Err(fail(&events_path, index, format!("not an audit event ({e})"))),
        }
        let leaf = tlog::leaf_hash(&line);
        let mine = from_events.push(leaf);
        // Past the checkpoint the hash file may be mid-write (and is derived again at start).
        if index < signed && (file_agrees || first_difference.is_some()) {
            let mut theirs = vec![[0u8; 32]; mine.len()];
            let read = stored
                .as_mut()
                .map(|s| theirs.iter_mut().try_for_each(|h| s.read_exact(h)).is_ok());
            if read == Some(true) {
                let file_leaf = tlog::Hash(theirs[0]);
                from_file.push(file_leaf);
                if first_difference.is_none() && theirs.iter().zip(&mine).any(|(a, b)| *a != b.0) {
                    first_difference = Some(index);
                }
                if first_difference.is_some() && event_window.len() < 3 {
                    event_window.push_back(leaf);
                    file_window.push_back(file_leaf);
                }
            } else {
                file_agrees = false;
            }
        }
        if from_events.size() == signed {
            signed_roots = Some((from_events.root(), from_file.root()));
        }
    }
    let size = from_events.size();
    let Some(checkpoint) = checkpoint else {
        if let Some(index) = first_difference {
            return Err(fail(&hashes_path, index, "the hash file does not match this entry"));
        }
        return Ok(Verified {
            size,
            checkpoint: None,
            torn_bytes,
            allowed,
            pruned,
        });
    };
    if size < signed && first_difference.is_none() {
        return Err(fail(
            &events_path,
            size,
            format!("cut off the end: the signed checkpoint covers {signed} entries, the file holds {size}"),
        ));
    }
    // Entries are missing: read on in the hash file to the signed size, to see what it signed.
    while file_agrees && from_file.size() < signed {
        let index = from_file.size();
        let count = tlog::stored_hash_count(index + 1) - tlog::stored_hash_index(0, index);
        let mut theirs = vec![[0u8; 32]; count as usize];
        let read = stored
            .as_mut()
            .map(|s| theirs.iter_mut().try_for_each(|h| s.read_exact(h)).is_ok());
        if read != Some(true) {
            file_agrees = false;
            break;
        }
        from_file.push(tlog::Hash(theirs[0]));
        if file_window.len() < 3 {
            file_window.push_back(tlog::Hash(theirs[0]));
        }
        if from_file.size() == signed {
            signed_roots = Some((signed_roots.map_or(tlog::EMPTY_HASH, |r| r.0), from_file.root()));
        }
    }
    let (events_root, file_root) = signed_roots.unwrap_or((tlog::EMPTY_HASH, tlog::EMPTY_HASH));
    if size >= signed && events_root == checkpoint.root {
        if let Some(index) = first_difference {
            return Err(fail(
                &hashes_path,
                index,
                "the entries match the signed checkpoint but the hash file does not (the node's proofs would fail); \
                 stop the node and delete the hashes and offsets files: they are derived again at start",
            ));
        }
        return Ok(Verified {
            size,
            checkpoint: Some(checkpoint),
            torn_bytes,
            allowed,
            pruned,
        });
    }
    let index = first_difference.unwrap_or(0);
    if !file_agrees || file_root != checkpoint.root || first_difference.is_none() {
        return Err(fail(
            &events_path,
            index,
            format!(
                "the entries do not match the signed checkpoint of {signed} entries, and the hash file was rewritten \
                 as well, so the entry cannot be located here; compare with the events the registry holds"
            ),
        ));
    }
    // The hash file's leaves are the signed ones: compare the events with them.
    let e: Vec<_> = event_window.into_iter().collect();
    let a: Vec<_> = file_window.into_iter().collect();
    let why = if e.len() > 1 && a.len() > 1 && e[0] == a[1] && e[1] == a[0] {
        format!("swapped with entry {}", index + 1)
    } else if a.len() > 1 && (e.first() == a.get(1) || (e.is_empty() && size < signed)) {
        "dropped (the entry after it is in its place)".to_string()
    } else if e.len() > 1 && e.get(1) == a.first() {
        "inserted (it was not signed; the signed entry follows it)".to_string()
    } else {
        "changed (its hash is not the one the checkpoint signed)".to_string()
    };
    Err(fail(&events_path, index, why))
}

/// An entry read back: its index and its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The leaf index.
    pub index: u64,
    /// The event.
    pub event: AuditEvent,
}

/// [`verify_dir`], then every complete entry in order (for tests and small ledgers: it holds
/// them all in memory).
pub fn read_verified(dir: &Path, log: &LogVerifier) -> Result<(Verified, Vec<Entry>), LedgerError> {
    let verified = verify_dir(dir, log)?;
    let path = dir.join(EVENTS);
    let bytes = std::fs::read(&path).map_err(|e| LedgerError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let start = match verified.pruned {
        0 => 0,
        n => start_after_pruned(dir, n)?.1 as usize,
    };
    let entries = bytes[start.min(bytes.len())..]
        .split(|&b| b == b'\n')
        .take((verified.size - verified.pruned) as usize)
        .enumerate()
        .map(|(i, line)| {
            let i = i as u64 + verified.pruned;
            serde_json::from_slice(line)
                .map(|event| Entry { index: i, event })
                .map_err(|e| fail(&path, i, format!("not an audit event ({e})")))
        })
        .collect::<Result<_, _>>()?;
    Ok((verified, entries))
}
