//! The ledger's file: one JSON entry a line, appended and `fdatasync`ed one group at a time.
//!
//! The ledger is append-only by nature, so it lives in a plain file rather than in the store: an
//! append plus `fdatasync` costs a fraction of a millisecond on our machines, where a sled flush
//! costs several, and every audited read waits for one. A crash can leave a torn last line; its
//! entries were never acknowledged (the sync had not returned), so opening the file cuts it off.
//!
//! A writer stages the events of many requests into one [`Group`] ([`Ledger::begin`],
//! [`Group::stage`]) and makes them durable together ([`Ledger::commit`]). After a failed write
//! the file's state is unknown and appending more could break the chain, so the ledger refuses
//! every later group ([`LedgerError::Broken`]) until it is opened again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::{parse_hex, verify_lines, AuditEvent, Chain, Entry, StoredEntry, VerifyError};

/// Why the ledger could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be opened, read or written.
    #[error("audit ledger {path}: {message}")]
    Io {
        /// The ledger file.
        path: PathBuf,
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
        /// The ledger file.
        path: PathBuf,
        /// The failure that broke it.
        why: String,
    },
    /// A group begun before another group was committed: its entries would not chain.
    #[error("audit ledger {path}: a group begun at entry {begun_at} cannot be committed after entry {head}")]
    Stale {
        /// The ledger file.
        path: PathBuf,
        /// The head the group was begun at.
        begun_at: u64,
        /// The head now.
        head: u64,
    },
    /// The file's entries do not verify.
    #[error("audit ledger {path}: {error}")]
    Tampered {
        /// The ledger file.
        path: PathBuf,
        /// The first entry found wrong.
        #[source]
        error: VerifyError,
    },
}

fn io(path: &Path, message: impl std::fmt::Display) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// An open ledger, positioned for appending, with its chain head.
pub struct Ledger {
    file: File,
    path: PathBuf,
    head: Chain,
    /// Why the last write failed, when it did.
    broken: Option<String>,
    /// Bytes of a torn last line cut off when opening.
    cut: u64,
}

/// Events staged for one commit, chained on from the ledger's head; nothing is on disk yet.
#[derive(Debug)]
pub struct Group {
    /// The committed head the group chains on from.
    base: u64,
    head: Chain,
    lines: Vec<Vec<u8>>,
}

impl Group {
    /// Adds `events`, all or none: when one cannot be encoded the group is left as it was.
    pub fn stage(&mut self, events: &[AuditEvent]) -> Result<(), LedgerError> {
        let mut head = self.head.clone();
        let mut lines = Vec::with_capacity(events.len());
        for event in events {
            lines.push(
                head.append_encoded(event)
                    .map_err(|e| LedgerError::Encode(e.to_string()))?,
            );
        }
        self.head = head;
        self.lines.append(&mut lines);
        Ok(())
    }

    /// Whether nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl Ledger {
    /// Opens (or creates, mode 0600: it names the people whose records were read) the ledger at
    /// `path`, cuts off a torn last line, and reads the chain head from the last entry.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::datadir::FILE_MODE);
        let mut file = options.open(path).map_err(|e| io(path, e))?;
        let len = file.metadata().map_err(|e| io(path, e))?.len();
        let (complete, last) = last_complete_line(&mut file, len).map_err(|e| io(path, e))?;
        if complete < len {
            file.set_len(complete).map_err(|e| io(path, e))?;
            file.sync_all().map_err(|e| io(path, e))?;
        }
        let mut head = Chain::default();
        if let Some(line) = last {
            let entry: StoredEntry<'_> =
                serde_json::from_slice(&line).map_err(|e| io(path, format!("last entry: {e}")))?;
            head.seq = entry.seq;
            head.head = parse_hex(entry.hash).ok_or_else(|| io(path, "last entry has a malformed hash"))?;
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            head,
            broken: None,
            cut: len - complete,
        })
    }

    /// How many bytes of a torn, unacknowledged last line opening cut off (0 almost always).
    pub fn cut_at_open(&self) -> u64 {
        self.cut
    }

    /// The last committed entry's number and hash.
    pub fn head(&self) -> &Chain {
        &self.head
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a group at the committed head; refused once a write has failed.
    pub fn begin(&self) -> Result<Group, LedgerError> {
        self.check_writable()?;
        Ok(Group {
            base: self.head.seq,
            head: self.head.clone(),
            lines: Vec::new(),
        })
    }

    fn check_writable(&self) -> Result<(), LedgerError> {
        match &self.broken {
            Some(why) => Err(LedgerError::Broken {
                path: self.path.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends the group's entries and returns once they are on disk. A failure leaves the
    /// ledger broken (see the module documentation).
    pub fn commit(&mut self, group: Group) -> Result<(), LedgerError> {
        if group.lines.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        if group.base != self.head.seq {
            return Err(LedgerError::Stale {
                path: self.path.clone(),
                begun_at: group.base,
                head: self.head.seq,
            });
        }
        let mut buffer = Vec::with_capacity(group.lines.iter().map(|l| l.len() + 1).sum());
        for line in &group.lines {
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        }
        let written = self.file.write_all(&buffer).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.head = group.head;
                Ok(())
            }
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(LedgerError::Broken {
                    path: self.path.clone(),
                    why: e.to_string(),
                })
            }
        }
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

/// Reads the ledger at `path` and verifies it; returns its entries in order (a torn last line,
/// never acknowledged, is left out). Safe while a server appends: only complete lines are read.
/// A missing file is an empty ledger.
pub fn read_verified(path: &Path) -> Result<Vec<Entry>, LedgerError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path, e)),
    };
    let mut lines = Vec::new();
    let mut reader = BufReader::new(file);
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| io(path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        line.pop();
        lines.push(line);
    }
    let (entries, _) = verify_lines(&lines).map_err(|error| LedgerError::Tampered {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::super::Decision;
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

    fn commit(ledger: &mut Ledger, events: &[AuditEvent]) {
        let mut group = ledger.begin().unwrap();
        group.stage(events).unwrap();
        ledger.commit(group).unwrap();
    }

    #[test]
    fn commits_recover_the_head_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.ledger");
        let mut ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.head().seq, 0);
        let events: Vec<AuditEvent> = (1..=700).map(event).collect();
        commit(&mut ledger, &events[..300]);
        commit(&mut ledger, &events[300..]);
        let head = ledger.head().clone();
        assert_eq!(head.seq, 700);
        drop(ledger);
        let reopened = Ledger::open(&path).unwrap();
        assert_eq!((reopened.head().seq, reopened.head().head), (head.seq, head.head));
        assert_eq!(reopened.cut_at_open(), 0);
        drop(reopened);

        // A crash mid-write leaves half a line: it is cut, and the chain goes on from 700.
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(b"{\"seq\":701,\"event\":{\"ti").unwrap();
        drop(raw);
        let mut ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.cut_at_open(), 23);
        assert_eq!(ledger.head().seq, 700);
        commit(&mut ledger, &[event(1)]);
        let all = read_verified(&path).unwrap();
        assert_eq!(all.len(), 701);
        assert_eq!(all[700].event, event(1));
    }

    #[test]
    fn a_group_is_staged_whole_and_nothing_is_written_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.ledger");
        let mut ledger = Ledger::open(&path).unwrap();
        let mut group = ledger.begin().unwrap();
        group.stage(&[event(1), event(2)]).unwrap();
        group.stage(&[event(3)]).unwrap();
        assert_eq!(read_verified(&path).unwrap().len(), 0);
        assert_eq!(ledger.head().seq, 0);
        ledger.commit(group).unwrap();
        assert_eq!(ledger.head().seq, 3);
        let entries = read_verified(&path).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_group_begun_before_another_commit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("audit.ledger")).unwrap();
        let mut early = ledger.begin().unwrap();
        early.stage(&[event(1)]).unwrap();
        commit(&mut ledger, &[event(2)]);
        let err = ledger.commit(early).unwrap_err();
        assert!(
            matches!(
                err,
                LedgerError::Stale {
                    begun_at: 0,
                    head: 1,
                    ..
                }
            ),
            "{err}"
        );
        // Refusing it broke nothing: the ledger goes on.
        commit(&mut ledger, &[event(3)]);
        assert_eq!(read_verified(&dir.path().join("audit.ledger")).unwrap().len(), 2);
    }

    #[test]
    fn a_changed_file_is_reported_with_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.ledger");
        let mut ledger = Ledger::open(&path).unwrap();
        commit(&mut ledger, &[event(1), event(2), event(3)]);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let changed = format!(
            "{}\n{}\n{}\n",
            lines[0],
            lines[1].replace("\"get\"", "\"query\""),
            lines[2]
        );
        std::fs::write(&path, changed).unwrap();
        let err = read_verified(&path).unwrap_err();
        assert!(
            matches!(&err, LedgerError::Tampered { error, .. } if error.seq == 2),
            "{err}"
        );
        assert!(err.to_string().contains("ledger entry 2"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn after_a_failed_write_nothing_more_is_appended() {
        // Every write to /dev/full fails with "no space left on device".
        let mut ledger = Ledger::open(Path::new("/dev/full")).unwrap();
        let mut group = ledger.begin().unwrap();
        group.stage(&[event(1)]).unwrap();
        let err = ledger.commit(group).unwrap_err();
        assert!(matches!(err, LedgerError::Broken { .. }), "{err}");
        assert!(
            err.to_string().contains("refused until the server is restarted"),
            "{err}"
        );
        assert_eq!(ledger.head().seq, 0);
        assert!(matches!(ledger.begin(), Err(LedgerError::Broken { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let _umask = crate::testing::UMASK.lock().unwrap_or_else(|p| p.into_inner());
        // The common umask, under which other files are created readable by all.
        let before = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.ledger");
        let opened = Ledger::open(&path);
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        rustix::process::umask(before);
        opened.unwrap();
        let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("other"), 0o644, "the umask was 022");
        assert_eq!(mode("audit.ledger"), 0o600);
    }
}
