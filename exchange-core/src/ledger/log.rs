//! The ledger's files, written by one [`Ledger`] and read by any number of [`LedgerReader`]s.
//!
//! **Durability.** A group's leaves are appended to `events` and `fdatasync`ed before anything
//! is acknowledged; that file is the truth. `hashes` and `offsets` are derived from it: they are
//! appended after it without a sync of their own, and synced before each checkpoint is signed,
//! so that everything a checkpoint covers is on disk. Opening trusts them up to the signed
//! checkpoint and derives the rest again from `events` (at most about a second of events, or all
//! of them when the derived files are gone), cutting off a torn last line, which was never
//! acknowledged.
//!
//! **Tampering found at open.** A checkpoint not signed by the server's key, an `events` file
//! shorter than the checkpoint says (entries cut off the end), or stored hashes whose root is not
//! the signed one: the ledger refuses to open, naming what it found. Changed entries inside the
//! signed part are found by [`super::verify_dir`], which rehashes every leaf.
//!
//! **Failures.** After a failed write the files' state is unknown, so the ledger refuses every
//! later group ([`LedgerError::Broken`]) until it is opened again (which recovers as above).

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, Write as _};
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::tlog::{self, Checkpoint, Frontier, HashReader, LogKey, ProofFile};

use super::{encode, tampered, AuditEvent, LedgerError};

/// Leaf `i` is line `i`.
pub(crate) const EVENTS: &str = "events";
/// Stored hashes at Go's stored-hash index, 32 bytes each.
pub(crate) const HASHES: &str = "hashes";
/// Leaf `i`'s offset in `events`, 8 bytes little-endian each.
pub(crate) const OFFSETS: &str = "offsets";
/// The last signed checkpoint.
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// How many leaves from the start were pruned (retention): their bytes are gone from `events`
/// (a hole punched in the file, so offsets stay), their hashes stay in `hashes`.
pub(crate) const PRUNED: &str = "pruned";

/// The frontier of the first `size` leaves of the ledger in `dir`, from its hash file, and
/// where leaf `size` starts in `events` (for checking a ledger whose first leaves were pruned).
pub(crate) fn start_after_pruned(dir: &Path, size: u64) -> Result<(Frontier, u64), LedgerError> {
    let hashes = File::open(dir.join(HASHES)).map_err(|e| io(&dir.join(HASHES), e))?;
    let offsets = File::open(dir.join(OFFSETS)).map_err(|e| io(&dir.join(OFFSETS), e))?;
    let frontier = Frontier::read(size, &FileHashes(&hashes)).map_err(|e| io(&dir.join(HASHES), e))?;
    let offset = read_u64(&offsets, size * 8).map_err(|e| io(&dir.join(OFFSETS), e))?;
    Ok((frontier, offset))
}

/// Reads the `pruned` file (0 when nothing was pruned).
pub(crate) fn read_pruned(dir: &Path) -> Result<u64, LedgerError> {
    let path = dir.join(PRUNED);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| io(&path, format!("{:?} is not a number of pruned entries", text.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(&path, e)),
    }
}

/// Re-derived hashes and offsets are written in chunks of this many leaves at open.
const REDERIVE_CHUNK: u64 = 65_536;

fn io(path: &Path, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Stored hashes read from the `hashes` file.
struct FileHashes<'a>(&'a File);

impl HashReader for FileHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&index| {
                let mut hash = [0u8; 32];
                self.0
                    .read_exact_at(&mut hash, index * 32)
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
                Ok(tlog::Hash(hash))
            })
            .collect()
    }
}

/// What readers see: the committed size and root, the end of `events`, the last checkpoint.
#[derive(Debug, Clone)]
struct Published {
    size: u64,
    end: u64,
    root: tlog::Hash,
    checkpoint: Option<Checkpoint>,
    pruned: u64,
}

/// What opening had to repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Bytes of a torn, unacknowledged last line cut off.
    pub cut_bytes: u64,
    /// Leaves whose hashes and offsets were derived again from `events`.
    pub rederived: u64,
}

/// An open ledger, positioned for appending.
pub struct Ledger {
    dir: PathBuf,
    key: LogKey,
    events: File,
    hashes: File,
    offsets: File,
    size: u64,
    end: u64,
    frontier: Frontier,
    checkpoint: Option<Checkpoint>,
    broken: Option<String>,
    recovered: Recovered,
    published: Arc<RwLock<Published>>,
    pruned: u64,
}

/// Leaves staged for one commit, numbered on from the ledger's size; nothing is on disk yet.
#[derive(Debug)]
pub struct Group {
    base: u64,
    size: u64,
    end: u64,
    frontier: Frontier,
    events: Vec<u8>,
    hashes: Vec<u8>,
    offsets: Vec<u8>,
}

impl Group {
    /// Adds `events`, all or none: when one cannot be encoded the group is left as it was.
    /// Returns the indexes they will have.
    pub fn stage(&mut self, events: &[AuditEvent]) -> Result<Range<u64>, LedgerError> {
        let leaves = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        self.stage_leaves(leaves.iter().map(Vec::as_slice))
    }

    fn stage_leaves<'a>(&mut self, leaves: impl IntoIterator<Item = &'a [u8]>) -> Result<Range<u64>, LedgerError> {
        let (size, end, frontier) = (self.size, self.end, self.frontier.clone());
        let lengths = (self.events.len(), self.hashes.len(), self.offsets.len());
        let staged = leaves.into_iter().try_for_each(|leaf| self.stage_leaf(leaf));
        if let Err(e) = staged {
            (self.size, self.end, self.frontier) = (size, end, frontier);
            self.events.truncate(lengths.0);
            self.hashes.truncate(lengths.1);
            self.offsets.truncate(lengths.2);
            return Err(e);
        }
        Ok(size..self.size)
    }

    fn stage_leaf(&mut self, leaf: &[u8]) -> Result<(), LedgerError> {
        if leaf.contains(&b'\n') {
            return Err(LedgerError::Encode("a leaf cannot hold a newline".into()));
        }
        for hash in self.frontier.push(tlog::leaf_hash(leaf)) {
            self.hashes.extend_from_slice(&hash.0);
        }
        self.offsets.extend_from_slice(&self.end.to_le_bytes());
        self.events.extend_from_slice(leaf);
        self.events.push(b'\n');
        self.end += leaf.len() as u64 + 1;
        self.size += 1;
        Ok(())
    }

    /// Whether nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.size == self.base
    }
}

fn open_append(path: &Path) -> Result<File, LedgerError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::datadir::FILE_MODE);
    options.open(path).map_err(|e| io(path, e))
}

fn len(file: &File, path: &Path) -> Result<u64, LedgerError> {
    Ok(file.metadata().map_err(|e| io(path, e))?.len())
}

fn read_u64(file: &File, at: u64) -> std::io::Result<u64> {
    let mut bytes = [0u8; 8];
    file.read_exact_at(&mut bytes, at)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Where the line starting at `start` ends (just past its newline), if it is complete.
fn line_end(file: &File, start: u64, file_len: u64) -> std::io::Result<Option<u64>> {
    let mut at = start;
    let mut buffer = vec![0u8; 64 * 1024];
    while at < file_len {
        let n = file.read_at(&mut buffer, at)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buffer[..n].iter().position(|&b| b == b'\n') {
            return Ok(Some(at + i as u64 + 1));
        }
        at += n as u64;
    }
    Ok(None)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash leaves the old
/// file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    let tmp = path.with_extension("new");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::datadir::FILE_MODE);
    let mut file = options.open(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// Reads the checkpoint file, checking it is signed by `key`.
fn read_checkpoint(dir: &Path, key: &LogKey) -> Result<Option<Checkpoint>, LedgerError> {
    let path = dir.join(CHECKPOINT);
    match std::fs::read(&path) {
        Ok(bytes) => key
            .verifier()
            .open_checkpoint(&bytes)
            .map(Some)
            .map_err(|e| LedgerError::Io {
                path,
                message: format!("{e} (a checkpoint this server's log key did not sign)"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path, e)),
    }
}

/// Under a server's `data_dir`: its ledger's directory.
pub const LEDGER_DIR: &str = "ledger";
/// Under a server's `data_dir`: the Ed25519 key its checkpoints are signed with, as Go's
/// private-key text (`PRIVATE+KEY+<origin>+<key id>+<base64>`), mode 0600.
pub const LOG_KEY_FILE: &str = "log.key";

impl Ledger {
    /// Opens the ledger a server keeps in `data_dir` ([`LEDGER_DIR`], signed with the key in
    /// [`LOG_KEY_FILE`], created for `origin` on first start); says whether the key was created.
    pub fn open_in(data_dir: &Path, origin: &str) -> Result<(Self, bool), LedgerError> {
        let key_path = data_dir.join(LOG_KEY_FILE);
        let (key, created) = LogKey::load_or_create(&key_path, origin).map_err(|e| io(&key_path, e))?;
        Ok((Self::open(&data_dir.join(LEDGER_DIR), key)?, created))
    }

    /// Opens (or creates, directory 0700 and files 0600: they name the people whose records were
    /// read) the ledger in `dir`, signed with `key`, recovering as the module describes.
    pub fn open(dir: &Path, key: LogKey) -> Result<Self, LedgerError> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), crate::datadir::DIR_MODE)
            .create(dir)
            .map_err(|e| io(dir, e))?;
        let (events_path, hashes_path, offsets_path) = (dir.join(EVENTS), dir.join(HASHES), dir.join(OFFSETS));
        let events = open_append(&events_path)?;
        let hashes = open_append(&hashes_path)?;
        let offsets = open_append(&offsets_path)?;
        let checkpoint = read_checkpoint(dir, &key)?;
        let signed = checkpoint.as_ref().map_or(0, |c| c.size);
        let pruned = read_pruned(dir)?;

        // Derived data beyond the checkpoint may not have reached the disk before a crash: keep
        // what the checkpoint covers (it was synced before signing), derive the rest again.
        let have_offsets = len(&offsets, &offsets_path)? / 8;
        let have_hashes = len(&hashes, &hashes_path)? / 32;
        let trusted = if have_offsets >= signed && have_hashes >= tlog::stored_hash_count(signed) {
            signed
        } else if pruned > 0 {
            // Pruned leaves cannot be hashed again: their hashes are the only record of them.
            return Err(io(
                &hashes_path,
                format!(
                    "the ledger's first {pruned} entries were pruned and its hash file does not cover its \
                     checkpoint; restore the hashes and offsets files from a backup"
                ),
            ));
        } else {
            0
        };
        offsets.set_len(trusted * 8).map_err(|e| io(&offsets_path, e))?;
        hashes
            .set_len(tlog::stored_hash_count(trusted) * 32)
            .map_err(|e| io(&hashes_path, e))?;
        let events_len = len(&events, &events_path)?;
        let start = match trusted {
            0 => 0,
            n => {
                let last = read_u64(&offsets, (n - 1) * 8).map_err(|e| io(&offsets_path, e))?;
                match line_end(&events, last, events_len).map_err(|e| io(&events_path, e))? {
                    Some(end) => end,
                    None => {
                        let have = std::fs::read(&events_path).map_err(|e| io(&events_path, e))?;
                        let lines = have.iter().filter(|&&b| b == b'\n').count() as u64;
                        return Err(cut_off(&events_path, signed, lines));
                    }
                }
            }
        };
        let frontier = Frontier::read(trusted, &FileHashes(&hashes)).map_err(|e| io(&hashes_path, e))?;
        let published = Arc::new(RwLock::new(Published {
            size: trusted,
            end: start,
            root: tlog::EMPTY_HASH,
            checkpoint: checkpoint.clone(),
            pruned,
        }));
        let mut ledger = Self {
            dir: dir.to_path_buf(),
            key,
            events,
            hashes,
            offsets,
            size: trusted,
            end: start,
            frontier,
            checkpoint,
            broken: None,
            recovered: Recovered::default(),
            published,
            pruned,
        };
        ledger.rederive(events_len)?;
        if ledger.size < signed {
            return Err(cut_off(&events_path, signed, ledger.size));
        }
        if let Some(checkpoint) = &ledger.checkpoint {
            let root =
                tlog::tree_hash(checkpoint.size, &FileHashes(&ledger.hashes)).map_err(|e| io(&hashes_path, e))?;
            if root != checkpoint.root {
                return Err(LedgerError::Io {
                    path: dir.to_path_buf(),
                    message: format!(
                        "the ledger's tree does not have the root its signed checkpoint of {} entries has; \
                         run `exchange verify-ledger` to find the entry that changed",
                        checkpoint.size
                    ),
                });
            }
        }
        ledger.publish();
        Ok(ledger)
    }

    /// Derives hashes and offsets for the leaves of `events` past the ledger's size, and cuts
    /// off a torn last line.
    fn rederive(&mut self, events_len: u64) -> Result<(), LedgerError> {
        let path = self.dir.join(EVENTS);
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        let mut reader = std::io::BufReader::new(file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(self.end)).map_err(|e| io(&path, e))?;
        // Only what the file held when opened (a device such as /dev/full reads on forever).
        let mut reader = std::io::Read::take(reader, events_len.saturating_sub(self.end));
        let mut group = self.group();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| io(&path, e))?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                self.recovered.cut_bytes = n as u64;
                break;
            }
            line.pop();
            group.stage_leaves([line.as_slice()])?;
            if group.size - group.base >= REDERIVE_CHUNK {
                self.apply_derived(group)?;
                group = self.group();
            }
        }
        self.apply_derived(group)?;
        if self.recovered.cut_bytes > 0 {
            self.events.set_len(self.end).map_err(|e| io(&path, e))?;
            self.events.sync_all().map_err(|e| io(&path, e))?;
        }
        debug_assert_eq!(self.end + self.recovered.cut_bytes, events_len);
        self.sync_derived()
    }

    /// Writes a group's hashes and offsets only (its leaves are already in `events`).
    fn apply_derived(&mut self, group: Group) -> Result<(), LedgerError> {
        if group.is_empty() {
            return Ok(());
        }
        let hashes_path = self.dir.join(HASHES);
        let offsets_path = self.dir.join(OFFSETS);
        self.hashes.write_all(&group.hashes).map_err(|e| io(&hashes_path, e))?;
        self.offsets
            .write_all(&group.offsets)
            .map_err(|e| io(&offsets_path, e))?;
        self.recovered.rederived += group.size - group.base;
        self.size = group.size;
        self.end = group.end;
        self.frontier = group.frontier;
        Ok(())
    }

    fn sync_derived(&self) -> Result<(), LedgerError> {
        self.hashes.sync_data().map_err(|e| io(&self.dir.join(HASHES), e))?;
        self.offsets.sync_data().map_err(|e| io(&self.dir.join(OFFSETS), e))
    }

    fn group(&self) -> Group {
        Group {
            base: self.size,
            size: self.size,
            end: self.end,
            frontier: self.frontier.clone(),
            events: Vec::new(),
            hashes: Vec::new(),
            offsets: Vec::new(),
        }
    }

    fn publish(&mut self) {
        let root = self.frontier.root();
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        *published = Published {
            size: self.size,
            end: self.end,
            root,
            checkpoint: self.checkpoint.clone(),
            pruned: self.pruned,
        };
    }

    /// What opening repaired.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// How many leaves are committed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The ledger directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key checkpoints are signed with.
    pub fn key(&self) -> &LogKey {
        &self.key
    }

    /// A reader of the committed log, for use on other threads while this ledger appends.
    pub fn reader(&self) -> Result<LedgerReader, LedgerError> {
        let open = |name: &str| {
            let path = self.dir.join(name);
            File::open(&path).map(Arc::new).map_err(|e| io(&path, e))
        };
        Ok(LedgerReader {
            events: open(EVENTS)?,
            hashes: open(HASHES)?,
            offsets: open(OFFSETS)?,
            verifier: self.key.verifier(),
            published: self.published.clone(),
        })
    }

    /// Starts a group at the committed size; refused once a write has failed.
    pub fn begin(&self) -> Result<Group, LedgerError> {
        self.check_writable()?;
        Ok(self.group())
    }

    fn check_writable(&self) -> Result<(), LedgerError> {
        match &self.broken {
            Some(why) => Err(LedgerError::Broken {
                path: self.dir.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends the group's leaves and returns their indexes once they are on disk. A failure
    /// leaves the ledger broken (see the module documentation).
    pub fn commit(&mut self, group: Group) -> Result<Range<u64>, LedgerError> {
        let range = group.base..group.size;
        if range.is_empty() {
            return Ok(range);
        }
        self.check_writable()?;
        if group.base != self.size {
            return Err(LedgerError::Stale {
                path: self.dir.clone(),
                begun_at: group.base,
                size: self.size,
            });
        }
        let written = self
            .events
            .write_all(&group.events)
            .and_then(|()| self.events.sync_data())
            .and_then(|()| self.hashes.write_all(&group.hashes))
            .and_then(|()| self.offsets.write_all(&group.offsets));
        if let Err(e) = written {
            self.broken = Some(e.to_string());
            return Err(LedgerError::Broken {
                path: self.dir.clone(),
                why: e.to_string(),
            });
        }
        self.size = group.size;
        self.end = group.end;
        self.frontier = group.frontier;
        self.publish();
        Ok(range)
    }

    /// Whether leaves were committed since the last checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        self.checkpoint.as_ref().map_or(self.size > 0, |c| c.size < self.size)
    }

    /// The checkpoint of the committed log: the last one when nothing was committed since, a
    /// newly signed one otherwise (after the derived files are synced, so that everything it
    /// covers survives a crash).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, LedgerError> {
        if let Some(last) = &self.checkpoint {
            if last.size == self.size {
                return Ok(last.clone());
            }
        }
        self.check_writable()?;
        self.sync_derived()?;
        let checkpoint = self
            .key
            .sign_checkpoint(self.size, self.frontier.root())
            .map_err(|e| io(&self.dir, e))?;
        write_atomically(&self.dir.join(CHECKPOINT), checkpoint.note.as_bytes())?;
        self.checkpoint = Some(checkpoint.clone());
        self.publish();
        Ok(checkpoint)
    }

    /// How many leaves from the start were pruned.
    pub fn pruned(&self) -> u64 {
        self.pruned
    }

    /// Prunes the leaves before `before` (retention): their bytes are removed from `events` (a
    /// hole punched in the file, so every later offset stays), their hashes stay, so every
    /// remaining leaf stays provable against every checkpoint. Only signed leaves, and never the
    /// last signed one, are pruned (the caller also keeps what is not yet shipped). Returns how
    /// many leaves are pruned now in all.
    pub fn prune(&mut self, before: u64) -> Result<u64, LedgerError> {
        self.check_writable()?;
        let signed = self.checkpoint.as_ref().map_or(0, |c| c.size);
        let before = before.min(signed.saturating_sub(1));
        if before <= self.pruned {
            return Ok(self.pruned);
        }
        // Everything the checkpoint covers is synced already; the prune record goes first, so a
        // crash leaves the leaves counted as pruned before their bytes go.
        let end = read_u64(&self.offsets, before * 8).map_err(|e| io(&self.dir.join(OFFSETS), e))?;
        write_atomically(&self.dir.join(PRUNED), format!("{before}\n").as_bytes())?;
        self.pruned = before;
        self.publish();
        rustix::fs::fallocate(
            &self.events,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            0,
            end,
        )
        .map_err(|e| {
            io(
                &self.dir.join(EVENTS),
                format!("cannot free the pruned entries' space: {e}"),
            )
        })?;
        self.events.sync_all().map_err(|e| io(&self.dir.join(EVENTS), e))?;
        Ok(before)
    }

    /// Moves the events of a first-form ledger (`audit.ledger`, a hash chain) into this one, as
    /// its first leaves byte for byte, and renames the old file `<name>.migrated`. Returns how
    /// many events moved (`None` when there is no old file). Refused when this ledger already
    /// holds other events.
    pub fn migrate_v1(&mut self, legacy: &Path) -> Result<Option<u64>, LedgerError> {
        if !legacy.exists() {
            return Ok(None);
        }
        let events = super::v1::read_events(legacy)?;
        let count = events.len() as u64;
        if self.size == 0 {
            let mut group = self.begin()?;
            group.stage_leaves(events.iter().map(Vec::as_slice))?;
            self.commit(group)?;
            self.checkpoint()?;
        } else {
            // A migration interrupted after its commit: the leaves must be the old events.
            let reader = self.reader()?;
            let same = self.size >= count && reader.leaves(0, count)? == events;
            if !same {
                return Err(io(
                    legacy,
                    format!(
                        "holds {count} events of an older ledger, but {} holds other events; move one of them away",
                        self.dir.display()
                    ),
                ));
            }
        }
        let mut migrated = legacy.as_os_str().to_owned();
        migrated.push(".migrated");
        std::fs::rename(legacy, &migrated).map_err(|e| io(legacy, e))?;
        Ok(Some(count))
    }
}

fn cut_off(events: &Path, signed: u64, have: u64) -> LedgerError {
    tampered(
        events,
        have,
        format!("cut off the end: the signed checkpoint covers {signed} entries, the file holds {have}"),
    )
}

/// Reads the committed log while its [`Ledger`] appends: leaves, roots, proofs.
#[derive(Clone)]
pub struct LedgerReader {
    events: Arc<File>,
    hashes: Arc<File>,
    offsets: Arc<File>,
    verifier: tlog::LogVerifier,
    published: Arc<RwLock<Published>>,
}

impl LedgerReader {
    fn published(&self) -> Published {
        self.published.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many leaves are committed.
    pub fn size(&self) -> u64 {
        self.published.read().unwrap_or_else(|p| p.into_inner()).size
    }

    /// The committed tree's root.
    pub fn root(&self) -> tlog::Hash {
        self.published.read().unwrap_or_else(|p| p.into_inner()).root
    }

    /// The last signed checkpoint, if one was signed.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.published().checkpoint
    }

    /// The verifier key of the log's checkpoints.
    pub fn verifier(&self) -> &tlog::LogVerifier {
        &self.verifier
    }

    fn check_size(&self, size: u64, what: &str) -> Result<(), LedgerError> {
        let have = self.size();
        if size > have {
            return Err(LedgerError::OutOfRange(format!(
                "{what}: the ledger holds {have} entries, not {size}"
            )));
        }
        Ok(())
    }

    /// How many leaves from the start were pruned (retention); they cannot be read.
    pub fn pruned(&self) -> u64 {
        self.published.read().unwrap_or_else(|p| p.into_inner()).pruned
    }

    /// Up to `count` leaves from index `from` (fewer at the end of the log).
    pub fn leaves(&self, from: u64, count: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        let published = self.published();
        if from < published.pruned {
            return Err(LedgerError::OutOfRange(format!(
                "entries before {} were pruned (retention); entry {from} is gone, its hash remains",
                published.pruned
            )));
        }
        let to = from.saturating_add(count).min(published.size);
        if from >= to {
            return Ok(Vec::new());
        }
        let read = || -> std::io::Result<Vec<Vec<u8>>> {
            let mut offsets = vec![0u8; ((to - from) * 8) as usize];
            self.offsets.read_exact_at(&mut offsets, from * 8)?;
            let start = u64::from_le_bytes(offsets[..8].try_into().expect("8 bytes"));
            let end = if to < published.size {
                read_u64(&self.offsets, to * 8)?
            } else {
                published.end
            };
            let mut bytes = vec![0u8; (end - start) as usize];
            self.events.read_exact_at(&mut bytes, start)?;
            Ok(bytes
                .split(|&b| b == b'\n')
                .take((to - from) as usize)
                .map(<[u8]>::to_vec)
                .collect())
        };
        read().map_err(|e| LedgerError::Io {
            path: PathBuf::from(EVENTS),
            message: e.to_string(),
        })
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<tlog::Hash, LedgerError> {
        self.check_size(size, "root")?;
        tlog::tree_hash(size, &FileHashes(&self.hashes)).map_err(|e| io(Path::new(HASHES), e))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<tlog::Hash>, LedgerError> {
        self.check_size(size, "inclusion proof")?;
        if index >= size {
            return Err(LedgerError::OutOfRange(format!(
                "inclusion proof: entry {index} is not in a tree of {size}"
            )));
        }
        tlog::prove_record(size, index, &FileHashes(&self.hashes)).map_err(|e| io(Path::new(HASHES), e))
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `size`.
    pub fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<tlog::Hash>, LedgerError> {
        self.check_size(size, "consistency proof")?;
        if old == 0 || old > size {
            return Err(LedgerError::OutOfRange(format!(
                "consistency proof: from {old} to {size} (the old size must be 1 to the new size)"
            )));
        }
        tlog::prove_tree(size, old, &FileHashes(&self.hashes)).map_err(|e| io(Path::new(HASHES), e))
    }

    /// Leaf `index`'s C2SP tlog-proof file against `checkpoint` (which must cover it).
    pub fn proof_file(&self, index: u64, checkpoint: &Checkpoint) -> Result<ProofFile, LedgerError> {
        let leaf = self
            .leaves(index, 1)?
            .pop()
            .ok_or_else(|| LedgerError::OutOfRange(format!("entry {index} is not in the ledger")))?;
        Ok(ProofFile {
            leaf,
            index,
            proof: self.inclusion_proof(index, checkpoint.size)?,
            checkpoint: checkpoint.note.clone(),
        })
    }
}
