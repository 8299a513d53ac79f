//! [`LsmStore`]: the [`Store`] on fjall, a log-structured merge tree, for write-heavy tables that
//! outgrow memory (the registry's index of shipped events). A commit is one fjall write batch
//! appended to its journal and `fdatasync`ed before it returns.

use std::path::Path;

use fjall::config::{CompressionPolicy, PartitioningPolicy, PinningPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Batch, Entry, Store, StoreConfig, StoreError, Visitor, Write};

/// The fjall engine: one database with one keyspace.
pub struct LsmStore {
    db: Database,
    keyspace: Keyspace,
}

fn engine(e: fjall::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl LsmStore {
    /// Opens (or creates) the store in directory `path`; `config.cache_mib` is fjall's block
    /// cache (its memtable adds up to 16 MiB before it is flushed).
    pub fn open_with(path: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        Self::open_tuned(path, config, 16)
    }

    /// [`LsmStore::open_with`] for an index written far more than it is read (the registry's
    /// index of shipped events, an entry per record key read): memtables of 32 MiB, so that
    /// half as many tables are flushed and merged into the next level. Measured beside 16 MiB
    /// in `exchange bench` (BENCHMARKS.md, 2026-12-04): the registry's compaction took up to
    /// half of the two cores while a node streamed a million records. fjall keeps a store's
    /// tuning from its creation, so an index created before keeps 16 MiB.
    pub fn open_index(path: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        Self::open_tuned(path, config, 32)
    }

    fn open_tuned(path: &Path, config: StoreConfig, memtable_mib: u64) -> Result<Self, StoreError> {
        config.check()?;
        let db = Database::builder(path)
            .cache_size(config.cache_mib << 20)
            // Threads that flush and compact in the background, two by default: fjall keeps
            // its first worker for flushes, so the memtables waiting for a flush stay few while
            // another worker compacts. (fjall 3.1.13 spun that first worker on its queue
            // meanwhile; vendor/fjall has the fix, see vendor/README.md.)
            .worker_threads(config.background_workers_or(super::DEFAULT_BACKGROUND_WORKERS))
            // Memtables not yet flushed live in memory until their journal is released: at
            // fjall's default of 512 MiB of journal, a load that outpaces the flushing worker
            // grows the process by as much. 64 MiB (the least fjall takes) bounds that, and
            // writes wait for the flush instead (measured by `exchange bench --bulk`).
            .max_journaling_size(64 << 20)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StoreError::Engine(format!(
                    "the store in {} is in use: another process has it open",
                    path.display()
                )),
                e => engine(e),
            })?;
        let keyspace = db
            .keyspace("store", || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable_mib << 20)
                    // Every level compressed: fjall leaves its first two levels uncompressed,
                    // and at a few million records they hold most of the data (JSON shrinks to
                    // about half under lz4, which costs little beside the fsync).
                    .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
                    .index_block_pinning_policy(PinningPolicy::all(false))
                    .filter_block_pinning_policy(PinningPolicy::all(false))
                    .index_block_partitioning_policy(PartitioningPolicy::all(true))
                    .filter_block_partitioning_policy(PartitioningPolicy::all(true))
            })
            .map_err(engine)?;
        // What the journal held at open was replayed into one memtable, which stays in memory
        // until enough new writes rotate it (a node restarted after a bulk load idled at 250 MiB
        // on 10 million records): seal it now, so a background worker flushes it to a table.
        keyspace.rotate_memtable().map_err(engine)?;
        Ok(Self { db, keyspace })
    }

    /// Opens (or creates) the store in directory `path` with the default [`StoreConfig`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreConfig::default())
    }
}

fn collect(iter: fjall::Iter, limit: usize) -> Result<Vec<Entry>, StoreError> {
    iter.take(limit)
        .map(|guard| {
            guard
                .into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(engine)
        })
        .collect()
}

impl Store for LsmStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.keyspace.get(key).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        collect(self.keyspace.prefix(prefix), usize::MAX)
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        collect(self.keyspace.range(start..end), limit)
    }

    fn visit_range(&self, start: &[u8], end: &[u8], limit: usize, visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        for guard in self.keyspace.range(start..end).take(limit) {
            let (key, value) = guard.into_inner().map_err(engine)?;
            visit(&key, &value)?;
        }
        Ok(())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        // One write batch takes one sequence number for all its writes, so two writes of one
        // key in it would be ambiguous: the last one wins, as in order. A stable sort keeps
        // each key's writes in order (no tree of them: an index batch holds hundreds of keys).
        let mut all = batch.writes;
        if all.is_empty() {
            return Ok(());
        }
        all.sort_by(|a, b| a.key().cmp(b.key()));
        let mut writes = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut all = all.into_iter().peekable();
        while let Some(write) = all.next() {
            if all.peek().is_some_and(|next| next.key() == write.key()) {
                continue;
            }
            match write {
                Write::Put(key, value) => writes.insert(&self.keyspace, key, value),
                Write::Delete(key) => writes.remove(&self.keyspace, key),
            }
        }
        writes.commit().map_err(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsm_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(&LsmStore::open(dir.path()).unwrap());
    }

    #[test]
    fn lsm_store_keeps_commits_across_reopen_and_refuses_a_second_opener() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LsmStore::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            batch.put(b"k".to_vec(), b"v".to_vec());
            batch.put(b"gone".to_vec(), b"v".to_vec());
            batch.delete(b"gone".to_vec());
            store.commit(batch).unwrap();
            let err = LsmStore::open(dir.path()).err().unwrap();
            assert!(err.to_string().contains("another process has it open"), "{err}");
        }
        let store = LsmStore::open(dir.path()).unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.get(b"gone").unwrap(), None);
    }
}
