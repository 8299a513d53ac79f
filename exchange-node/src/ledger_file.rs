//! The audit ledger's file: one JSON entry a line, appended and `fdatasync`ed per group commit.
//!
//! The ledger is append-only by nature, so it lives in a plain file rather than in sled: an
//! append plus `fdatasync` costs a fraction of a millisecond here, where a sled flush costs
//! several (see BENCHMARKS.md), and every audited read waits for one. A crash can leave a torn
//! last line; its entries were never acknowledged (the sync had not returned), so opening the
//! file cuts it off.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use exchange_core::ledger::{parse_hex, Chain, Entry};

/// Why the ledger file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("audit ledger {path}: {message}")]
pub(crate) struct LedgerFileError {
    path: PathBuf,
    message: String,
}

fn fail(path: &Path, message: impl std::fmt::Display) -> LedgerFileError {
    LedgerFileError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// An open ledger file, positioned for appending.
pub(crate) struct LedgerFile {
    file: File,
    path: PathBuf,
}

impl LedgerFile {
    /// Opens (or creates) the ledger, cuts off a torn last line, and returns the chain head.
    pub(crate) fn open(path: &Path) -> Result<(Self, Chain), LedgerFileError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| fail(path, e))?;
        let len = file.metadata().map_err(|e| fail(path, e))?.len();
        let (complete, last) = last_complete_line(&mut file, len).map_err(|e| fail(path, e))?;
        if complete < len {
            tracing::warn!(path = %path.display(), cut = len - complete, "cutting a torn, unacknowledged last ledger line");
            file.set_len(complete).map_err(|e| fail(path, e))?;
            file.sync_all().map_err(|e| fail(path, e))?;
        }
        let mut chain = Chain::default();
        if let Some(line) = last {
            let entry: Entry = serde_json::from_slice(&line).map_err(|e| fail(path, format!("last entry: {e}")))?;
            chain.seq = entry.seq;
            chain.head = parse_hex(&entry.hash).ok_or_else(|| fail(path, "last entry has a malformed hash"))?;
        }
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            chain,
        ))
    }

    /// Appends encoded entries (each the JSON of an [`Entry`], without its newline) and returns
    /// once they are on disk.
    pub(crate) fn append(&mut self, lines: &[Vec<u8>]) -> Result<(), LedgerFileError> {
        let mut buffer = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        }
        self.file.write_all(&buffer).map_err(|e| fail(&self.path, e))?;
        self.file.sync_data().map_err(|e| fail(&self.path, e))
    }
}

/// The length of the file up to its last newline, and the last complete line, reading backwards
/// from the end in growing windows (a ledger can be large; its head is at the end).
fn last_complete_line(file: &mut File, len: u64) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::with_capacity((len - start) as usize);
        std::io::Read::by_ref(file).take(len - start).read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok((0, None));
            }
            window *= 2;
            continue;
        };
        match tail[..end].iter().rposition(|&b| b == b'\n') {
            Some(begin) => return Ok((start + end as u64 + 1, Some(tail[begin + 1..end].to_vec()))),
            None if start == 0 => return Ok((end as u64 + 1, Some(tail[..end].to_vec()))),
            None => window *= 2,
        }
    }
}

/// Every entry of a ledger file, in order (a torn last line is ignored).
pub(crate) fn read_all(path: &Path) -> Result<Vec<Entry>, LedgerFileError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(path, e)),
    };
    let mut entries = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| fail(path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(entries);
        }
        let entry: Entry = serde_json::from_slice(&line[..n - 1])
            .map_err(|e| fail(path, format!("entry {}: {e}", entries.len() + 1)))?;
        entries.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use exchange_core::ledger::{verify, AuditEvent, Decision};

    use super::*;

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            time_ms: n as i64,
            node: "n".into(),
            principal: "p".into(),
            department: "d".into(),
            operation: "get".into(),
            dataset: "x/y".into(),
            schema_version: 1,
            fields: vec![],
            // The last entry is larger than the first read window, so the head is found only by
            // growing it.
            keys: vec!["k".repeat(if n == 700 { 100_000 } else { 10 })],
            count: 1,
            purpose: "p".into(),
            case_id: String::new(),
            decision: Decision::Allow,
            reason: String::new(),
            grant_id: String::new(),
        }
    }

    #[test]
    fn appends_recover_the_head_and_cut_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.ledger");
        let (mut file, mut chain) = LedgerFile::open(&path).unwrap();
        assert_eq!(chain.seq, 0);
        // Entries large enough that the head is found across several read windows.
        let lines: Vec<Vec<u8>> = (1..=700).map(|n| chain.append_encoded(&event(n)).unwrap()).collect();
        file.append(&lines[..300]).unwrap();
        file.append(&lines[300..]).unwrap();
        drop(file);
        let (_, reopened) = LedgerFile::open(&path).unwrap();
        assert_eq!((reopened.seq, reopened.head), (chain.seq, chain.head));

        // A crash mid-write leaves half a line: it is cut, and the chain goes on from 700.
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(b"{\"seq\":701,\"event\":{\"ti").unwrap();
        drop(raw);
        let (mut file, mut chain2) = LedgerFile::open(&path).unwrap();
        assert_eq!(chain2.seq, 700);
        let next = chain2.append_encoded(&event(1)).unwrap();
        file.append(std::slice::from_ref(&next)).unwrap();
        let all = read_all(&path).unwrap();
        assert_eq!(all.len(), 701);
        assert_eq!(verify(all).unwrap().0, 701);
    }
}
