//! Storage behind a trait, so the engine can change without the services noticing.
//!
//! A [`Store`] is an ordered map of byte keys to byte values with atomic, durable batches:
//! [`Store::commit`] returns only once every write of the batch is on disk, so a caller may
//! acknowledge after it (Architecture Invariant: nothing acknowledged is lost). Callers lay out
//! their tables as key prefixes. Every engine passes [`conformance::run`].
//!
//! Engines: [`SledStore`] (records, change feeds, the registry's state), [`LsmStore`] (fjall:
//! the registry's index of shipped events) and [`MemStore`] (tests and tools).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

pub mod conformance;
mod lsm;

pub use lsm::LsmStore;

/// A storage failure. Nothing of a failed commit is visible or acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, corruption).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored value could not be decoded.
    #[error("stored value under {key:?} is corrupt: {message}")]
    Corrupt {
        /// The key, lossily decoded for the message.
        key: String,
        /// What failed.
        message: String,
    },
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

impl Write {
    /// The key written.
    pub fn key(&self) -> &[u8] {
        match self {
            Write::Put(key, _) | Write::Delete(key) => key,
        }
    }
}

/// Writes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
}

impl Batch {
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push(Write::Put(key.into(), value.into()));
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.push(Write::Delete(key.into()));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What [`Store::visit_range`] calls with each entry, lent: key and value.
pub type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'v;

/// An ordered, durable key-value store.
pub trait Store: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError>;

    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// Calls `visit` with each of the entries [`Store::range`] gives, in key order, lent rather
    /// than copied where the engine can: a scan that keeps part of each entry (a Query keeps a
    /// stored record without its header) then copies it once.
    fn visit_range(&self, start: &[u8], end: &[u8], limit: usize, visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        for (key, value) in self.range(start, end, limit)? {
            visit(&key, &value)?;
        }
        Ok(())
    }

    /// Applies the batch atomically and returns once it is durable. Blocking: async callers run
    /// it on a blocking thread.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
}

/// The sled engine. One tree; atomic batches; `flush` (never the async flush, which deadlocks in
/// sled 0.34.7 under concurrency) after each batch.
pub struct SledStore {
    db: sled::Db,
    /// Serialises flushes: a batch waiting here is usually made durable by the flush ahead of it,
    /// so concurrent commits share disk syncs instead of queueing one each (group commit).
    flush_lock: Mutex<()>,
}

/// fjall's background threads unless a server says otherwise: two, one flushing while the other
/// compacts. With one, flushes wait behind long compactions and a node loading 10 million
/// records peaked at 928 MiB (with two: 164 MiB, at 55,800 instead of 79,700 records/s;
/// BENCHMARKS.md).
pub const DEFAULT_BACKGROUND_WORKERS: usize = 2;

/// How a server runs its store: the `[store]` table of its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The most memory, in MiB, sled keeps as its page cache (its own default is 1024). Default
    /// 64: enough to keep the keys and recent records of a busy node in memory, small enough to
    /// keep a node under 256 MiB while it imports or serves (see BENCHMARKS.md for what was
    /// measured). Raise it for datasets read at random across more than that. The same
    /// setting sizes fjall's block cache.
    pub cache_mib: u64,
    /// The engine (nodes): unset, the one the store's directory already holds, and fjall for a
    /// new store (it publishes, streams and idles better than sled: BENCHMARKS.md).
    pub engine: Option<Engine>,
    /// fjall's background threads, which flush memtables and compact tables (sled ignores it).
    /// Unset: [`DEFAULT_BACKGROUND_WORKERS`], or the server's own default (the registry's index
    /// of shipped events takes one).
    pub background_workers: Option<usize>,
}

impl StoreConfig {
    /// Refuses settings no engine can run with.
    fn check(&self) -> Result<(), StoreError> {
        if self.cache_mib == 0 {
            return Err(StoreError::Engine(
                "store.cache_mib is 0: give the store's cache at least 1 MiB (the default is 64)".into(),
            ));
        }
        if let Some(workers) = self.background_workers.filter(|n| !(1..=4).contains(n)) {
            return Err(StoreError::Engine(format!(
                "store.background_workers is {workers}: give it 1 to 4 (the default is {DEFAULT_BACKGROUND_WORKERS})"
            )));
        }
        Ok(())
    }

    /// fjall's background threads: the setting, else `default`.
    pub fn background_workers_or(&self, default: usize) -> usize {
        self.background_workers.unwrap_or(default)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_mib: 64,
            engine: None,
            background_workers: None,
        }
    }
}

/// A store's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// [`LsmStore`].
    Fjall,
    /// [`SledStore`].
    Sled,
}

impl Engine {
    /// Its name in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fjall => "fjall",
            Engine::Sled => "sled",
        }
    }

    /// The engine whose store is in directory `path`, if any.
    pub fn in_dir(path: &Path) -> Option<Engine> {
        if path.join("conf").exists() || path.join("db").exists() {
            Some(Engine::Sled)
        } else if path.join("version").exists() {
            Some(Engine::Fjall)
        } else {
            None
        }
    }
}

/// Keys [`copy_all`] copies: every key below sixteen 0xff bytes, which is every key the exchange
/// writes (they begin with an ASCII prefix such as `rec/`).
const COPY_END: [u8; 16] = [0xff; 16];

/// Copies every entry of `from` into `to`, 10,000 at a time, each batch committed durably;
/// returns how many were copied.
pub fn copy_all(from: &dyn Store, to: &dyn Store) -> Result<u64, StoreError> {
    const PAGE: usize = 10_000;
    let mut start = Vec::new();
    let mut copied = 0u64;
    loop {
        let page = from.range(&start, &COPY_END, PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(copied);
        };
        start = last.clone();
        start.push(0);
        let full = page.len() == PAGE;
        let mut batch = Batch::default();
        for (key, value) in page {
            batch.put(key, value);
            copied += 1;
        }
        to.commit(batch)?;
        if !full {
            return Ok(copied);
        }
    }
}

/// Whether `a` and `b` hold the same entries (read in pages, in key order).
pub fn same_entries(a: &dyn Store, b: &dyn Store) -> Result<bool, StoreError> {
    const PAGE: usize = 10_000;
    let mut start = Vec::new();
    loop {
        let (left, right) = (a.range(&start, &COPY_END, PAGE)?, b.range(&start, &COPY_END, PAGE)?);
        if left != right {
            return Ok(false);
        }
        match left.last() {
            Some((last, _)) if left.len() == PAGE => {
                start = last.clone();
                start.push(0);
            }
            _ => return Ok(true),
        }
    }
}

/// Opens (or creates) the store in directory `path` with the engine `config` names, or the one
/// the directory holds, or fjall for a new store; refuses an engine that is not the directory's.
pub fn open(path: &Path, config: StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let found = Engine::in_dir(path);
    let engine = match (config.engine, found) {
        (Some(wanted), Some(found)) if wanted != found => {
            return Err(StoreError::Engine(format!(
                "store.engine = \"{}\" but {} holds a {} store: remove the setting to go on with {}, \
                 or move the store to {} first (exchange node --config FILE --convert-store {}, the node stopped)",
                wanted.name(),
                path.display(),
                found.name(),
                found.name(),
                wanted.name(),
                wanted.name()
            )))
        }
        (Some(wanted), _) => wanted,
        (None, Some(found)) => found,
        (None, None) => Engine::Fjall,
    };
    Ok(match engine {
        Engine::Fjall => Arc::new(LsmStore::open_with(path, config)?),
        Engine::Sled => Arc::new(SledStore::open_with(path, config)?),
    })
}

impl SledStore {
    /// Whether `name` is one of the files or directories sled keeps in its directory.
    pub fn owns(name: &str) -> bool {
        matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
    }

    /// Opens (or creates) the store in directory `path` with the default [`StoreConfig`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreConfig::default())
    }

    /// Opens (or creates) the store in directory `path`.
    pub fn open_with(path: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        config.check()?;
        // sled's lock on its directory outlives the last handle for a moment (its flusher thread
        // lets go of the files after the Db is dropped), so a store reopened in the same process
        // (a server restarted in place) may find it still held: wait a little before saying
        // another process has it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            let opened = sled::Config::new()
                .path(path)
                .cache_capacity(config.cache_mib.saturating_mul(1024 * 1024))
                .open();
            match opened {
                Ok(db) => break db,
                // sled says it is locked only in its message.
                Err(sled::Error::Io(io)) if io.to_string().starts_with("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Engine(format!(
                            "cannot open {}: another process has it open (is a server already running on this data directory?)",
                            path.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(StoreError::Engine(format!("cannot open {}: {e}", path.display()))),
            }
        };
        Ok(Self {
            db,
            flush_lock: Mutex::new(()),
        })
    }
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn collect(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    iter.take(limit)
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine))
        .collect()
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        collect(self.db.scan_prefix(prefix), usize::MAX)
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        collect(self.db.range(start..end), limit)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for write in batch.writes {
            match write {
                Write::Put(k, v) => sled_batch.insert(k, v),
                Write::Delete(k) => sled_batch.remove(k),
            }
        }
        self.db.apply_batch(sled_batch).map_err(engine)?;
        let _guard = self.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.db.flush().map_err(engine)?;
        Ok(())
    }
}

/// An in-memory engine: durable only as long as the process, for tests and tools.
#[derive(Default)]
pub struct MemStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for write in batch.writes {
            match write {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_passes_the_conformance_suite() {
        conformance::run(&MemStore::new());
    }

    #[test]
    fn a_store_another_process_has_open_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        // sled's lock is per process too: a second open here is refused the same way.
        let err = SledStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("another process has it open"), "{err}");
    }

    #[test]
    fn a_store_with_no_cache_is_refused_saying_which_setting() {
        let dir = tempfile::tempdir().unwrap();
        let err = SledStore::open_with(
            dir.path(),
            StoreConfig {
                cache_mib: 0,
                ..StoreConfig::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("store.cache_mib is 0"), "{err}");
        let err = LsmStore::open_with(
            &dir.path().join("lsm"),
            StoreConfig {
                background_workers: Some(0),
                ..StoreConfig::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("store.background_workers is 0"), "{err}");
    }

    #[test]
    fn a_store_opens_with_the_engine_its_directory_holds_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let with = |engine| StoreConfig {
            engine,
            ..StoreConfig::default()
        };
        let (new, old) = (dir.path().join("new"), dir.path().join("old"));
        let put = |store: Arc<dyn Store>| {
            let mut batch = Batch::default();
            batch.put(b"k".to_vec(), b"v".to_vec());
            store.commit(batch).unwrap();
        };
        // A new store is fjall; an existing sled store stays sled.
        put(open(&new, with(None)).unwrap());
        assert_eq!(Engine::in_dir(&new), Some(Engine::Fjall));
        put(open(&old, with(Some(Engine::Sled))).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(Engine::in_dir(&old), Some(Engine::Sled));
        assert_eq!(open(&old, with(None)).unwrap().get(b"k").unwrap(), Some(b"v".to_vec()));
        let err = open(&new, with(Some(Engine::Sled))).err().unwrap().to_string();
        assert!(
            err.contains("store.engine = \"sled\"") && err.contains("holds a fjall store"),
            "{err}"
        );
        assert_eq!(
            open(&new, with(Some(Engine::Fjall))).unwrap().get(b"k").unwrap(),
            Some(b"v".to_vec())
        );
    }

    #[test]
    fn a_copy_holds_every_entry_across_pages_and_a_difference_is_seen() {
        let from = MemStore::new();
        let mut batch = Batch::default();
        // More than a page of copy_all, keys of every prefix, one key a prefix of another.
        for i in 0..25_000u32 {
            batch.put(format!("rec/ds\0{i:06}").into_bytes(), i.to_be_bytes().to_vec());
        }
        batch.put(b"seq/ds".to_vec(), b"{}".to_vec());
        batch.put(b"seq/ds2".to_vec(), b"{}".to_vec());
        from.commit(batch).unwrap();
        let to = MemStore::new();
        assert_eq!(copy_all(&from, &to).unwrap(), 25_002);
        assert!(same_entries(&from, &to).unwrap());
        let mut batch = Batch::default();
        batch.put([&b"rec/ds\0"[..], b"012345"].concat(), b"changed".to_vec());
        to.commit(batch).unwrap();
        assert!(!same_entries(&from, &to).unwrap());
    }

    #[test]
    fn sled_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run(&SledStore::open(dir.path()).unwrap());
    }

    #[test]
    fn sled_store_keeps_commits_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            batch.put(b"k".to_vec(), b"v".to_vec());
            store.commit(batch).unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
    }
}
