//! The node's records, change feed and audit ledger in the store, and the writer that commits
//! them in groups.
//!
//! Keys (`\0` separates a dataset id from what follows, so prefixes are exact):
//! - `rec/<dataset>\0<key>` → [`StoredRecord`] (sequence, schema version, JSON)
//! - `chg/<dataset>\0<sequence: 8 bytes big-endian>` → [`StoredChange`]
//! - `seq/<dataset>` → the dataset's [`Counters`]: last sequence number and record count
//!
//! The audit ledger is a file of its own, appended and synced per group (`ledger_file`).
//!
//! **Group commit.** Every durable write goes through one writer thread. It takes every job
//! waiting in its queue, writes them all in one atomic batch, flushes once, and only then answers
//! each job. Concurrent reads therefore share a disk sync instead of queueing one each (a flush
//! per request caps near 17,000/s on our hardware, see MEASURED.md), and a reply never comes
//! before its audit event or records are on disk. The writer also owns the sequence counters and
//! the ledger's chain head, so numbering and chaining follow commit order exactly.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

use exchange_core::ledger::{AuditEvent, Chain};
use exchange_core::store::{Batch, Store, StoreError};

use crate::ledger_file::LedgerFile;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub(crate) sequence: u64,
    pub(crate) schema_version: u32,
    pub(crate) json: Vec<u8>,
}

impl StoredRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.json.len());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.json);
        out
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() < 12 {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                message: "record shorter than its header".into(),
            });
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[..8]);
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[8..12]);
        Ok(Self {
            sequence: u64::from_be_bytes(seq),
            schema_version: u32::from_be_bytes(version),
            json: bytes[12..].to_vec(),
        })
    }
}

/// A dataset's counters, kept under `seq/<dataset>` in the same batch as its changes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Counters {
    /// The last sequence number given.
    pub(crate) seq: u64,
    /// How many records it holds now.
    pub(crate) records: u64,
}

/// One change of the feed: the record after it (none for a delete) and before it, so a
/// subscriber's row filter can tell "left my filter" from "never in it".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredChange {
    pub(crate) sequence: u64,
    pub(crate) key: String,
    pub(crate) schema_version: u32,
    pub(crate) after: Option<String>,
    pub(crate) before: Option<String>,
}

pub(crate) fn record_key(dataset: &str, key: &str) -> Vec<u8> {
    let mut k = format!("rec/{dataset}\0").into_bytes();
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn records_prefix(dataset: &str) -> Vec<u8> {
    format!("rec/{dataset}\0").into_bytes()
}

fn change_key(dataset: &str, sequence: u64) -> Vec<u8> {
    let mut k = format!("chg/{dataset}\0").into_bytes();
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn seq_key(dataset: &str) -> Vec<u8> {
    format!("seq/{dataset}").into_bytes()
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    }
}

/// Reads a record.
pub(crate) fn get_record(store: &dyn Store, dataset: &str, key: &str) -> Result<Option<StoredRecord>, StoreError> {
    let k = record_key(dataset, key);
    store.get(&k)?.map(|bytes| StoredRecord::decode(&k, &bytes)).transpose()
}

/// Reads up to `limit` records of a dataset, in key order, starting after `after_key` (exclusive).
pub(crate) fn scan_records(
    store: &dyn Store,
    dataset: &str,
    after_key: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, StoredRecord)>, StoreError> {
    let prefix = records_prefix(dataset);
    let start = match after_key {
        Some(k) => {
            let mut s = record_key(dataset, k);
            s.push(0);
            s
        }
        None => prefix.clone(),
    };
    let mut end = format!("rec/{dataset}").into_bytes();
    end.push(1);
    store
        .range(&start, &end, limit)?
        .into_iter()
        .map(|(k, v)| {
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            StoredRecord::decode(&k, &v).map(|r| (key, r))
        })
        .collect()
}

/// Reads up to `limit` changes of a dataset after sequence `after`, up to and including
/// `committed`: the writer applies a batch before its flush returns, and a change a crash could
/// still undo must not reach a subscriber (its sequence number could be given again).
pub(crate) fn changes_after(
    store: &dyn Store,
    dataset: &str,
    after: u64,
    committed: u64,
    limit: usize,
) -> Result<Vec<StoredChange>, StoreError> {
    if after >= committed {
        return Ok(Vec::new());
    }
    let start = change_key(dataset, after.saturating_add(1));
    let end = change_key(dataset, committed.saturating_add(1));
    store
        .range(&start, &end, limit)?
        .into_iter()
        .map(|(k, v)| serde_json::from_slice(&v).map_err(|e| corrupt(&k, e)))
        .collect()
}

/// A change to store: a record (validated already) or a delete.
pub(crate) struct NewChange {
    pub(crate) key: String,
    pub(crate) json: Option<Vec<u8>>,
}

enum Job {
    Publish {
        dataset: String,
        schema_version: u32,
        changes: Vec<NewChange>,
        reply: oneshot::Sender<Result<(u64, u64), StoreError>>,
    },
    Audit {
        events: Vec<AuditEvent>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Finish what is queued before it, then exit (releasing the store).
    Stop,
}

/// The handle to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::SyncSender<Job>,
    feeds: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    chain: Arc<Mutex<Chain>>,
    /// Records per dataset, as of the last commit.
    counts: Arc<Mutex<HashMap<String, u64>>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// How many jobs one group commit takes at most.
const GROUP_LIMIT: usize = 4096;

fn stopped() -> StoreError {
    StoreError::Engine("the node's writer has stopped".into())
}

impl Writer {
    /// Starts the writer thread over `store` and the ledger file at `ledger`, reading the counters
    /// and the chain head they hold.
    pub(crate) fn start(store: Arc<dyn Store>, ledger: &std::path::Path) -> Result<Self, StoreError> {
        let (ledger, chain) = LedgerFile::open(ledger).map_err(|e| StoreError::Engine(e.to_string()))?;
        let mut seqs: HashMap<String, Counters> = HashMap::new();
        for (key, bytes) in store.scan_prefix(b"seq/")? {
            let dataset = String::from_utf8_lossy(&key[4..]).into_owned();
            let counters: Counters = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            seqs.insert(dataset, counters);
        }
        let feeds: Arc<Mutex<HashMap<String, watch::Sender<u64>>>> = Arc::new(Mutex::new(
            seqs.iter().map(|(d, c)| (d.clone(), watch::channel(c.seq).0)).collect(),
        ));
        let chain = Arc::new(Mutex::new(chain));
        let counts: Arc<Mutex<HashMap<String, u64>>> =
            Arc::new(Mutex::new(seqs.iter().map(|(d, c)| (d.clone(), c.records)).collect()));
        let thread_counts = counts.clone();
        let (tx, rx) = mpsc::sync_channel(GROUP_LIMIT);
        let thread_feeds = feeds.clone();
        let thread_chain = chain.clone();
        let thread = std::thread::Builder::new()
            .name("node-writer".into())
            .spawn(move || run(store, ledger, rx, seqs, thread_chain, thread_feeds, thread_counts))
            .map_err(|e| StoreError::Engine(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            jobs: tx,
            feeds,
            chain,
            counts,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Commits what is queued, stops the thread and waits for it, so the store is released
    /// when the node returns from `run`.
    pub(crate) async fn stop(&self) {
        let _ = self.submit(Job::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn submit(&self, job: Job) -> Result<(), StoreError> {
        let jobs = self.jobs.clone();
        // The queue is bounded; wait for room off the async threads rather than blocking them.
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(job)) => tokio::task::spawn_blocking(move || jobs.send(job))
                .await
                .map_err(|_| stopped())?
                .map_err(|_| stopped()),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    /// Stores changes of one dataset durably; returns the first and last sequence given.
    pub(crate) async fn publish(
        &self,
        dataset: &str,
        schema_version: u32,
        changes: Vec<NewChange>,
    ) -> Result<(u64, u64), StoreError> {
        if changes.is_empty() {
            return Ok((0, 0));
        }
        let (reply, done) = oneshot::channel();
        self.submit(Job::Publish {
            dataset: dataset.to_string(),
            schema_version,
            changes,
            reply,
        })
        .await?;
        done.await.map_err(|_| stopped())?
    }

    /// Appends audit events to the ledger durably.
    pub(crate) async fn audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.submit(Job::Audit { events, reply }).await?;
        done.await.map_err(|_| stopped())?
    }

    /// A receiver of a dataset's last sequence number, changing on every commit.
    pub(crate) fn feed(&self, dataset: &str) -> watch::Receiver<u64> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds
            .entry(dataset.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// How many records a dataset holds, as of the last commit.
    pub(crate) fn records(&self, dataset: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(dataset).copied().unwrap_or(0)
    }

    /// The ledger's length and head.
    pub(crate) fn ledger_head(&self) -> Chain {
        self.chain.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn run(
    store: Arc<dyn Store>,
    mut ledger: LedgerFile,
    jobs: mpsc::Receiver<Job>,
    mut seqs: HashMap<String, Counters>,
    chain: Arc<Mutex<Chain>>,
    feeds: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    counts: Arc<Mutex<HashMap<String, u64>>>,
) {
    let mut stopping = false;
    // After a failed ledger write the file's state is unknown; appending more could break the
    // chain, so every later read is refused until the node restarts and reopens the file.
    let mut ledger_broken: Option<String> = None;
    while let Ok(first) = jobs.recv() {
        if matches!(first, Job::Stop) {
            return;
        }
        let mut group = vec![first];
        while group.len() < GROUP_LIMIT {
            match jobs.try_recv() {
                Ok(Job::Stop) => {
                    stopping = true;
                    break;
                }
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let saved_seqs = seqs.clone();
        let mut head = chain.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut batch = Batch::default();
        let mut audit_lines: Vec<Vec<u8>> = Vec::new();
        // Records written earlier in this group, for the before-images of later changes.
        let mut overlay: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut results: Vec<Result<(u64, u64), StoreError>> = Vec::with_capacity(group.len());
        let mut touched: Vec<String> = Vec::new();
        for job in &group {
            // Each job is staged on its own and joins the group only whole, so a job that fails
            // while staging leaves nothing of itself in the commit.
            let mut local = Batch::default();
            let result = match job {
                Job::Publish {
                    dataset,
                    schema_version,
                    changes,
                    ..
                } => {
                    let saved = seqs.get(dataset).copied();
                    let mut written = HashMap::new();
                    let staged = stage_publish(
                        &*store,
                        &mut local,
                        &overlay,
                        &mut written,
                        &mut seqs,
                        dataset,
                        *schema_version,
                        changes,
                    );
                    match staged {
                        Ok(range) => {
                            overlay.extend(written);
                            touched.push(dataset.clone());
                            Ok(range)
                        }
                        Err(e) => {
                            match saved {
                                Some(seq) => seqs.insert(dataset.clone(), seq),
                                None => seqs.remove(dataset),
                            };
                            Err(e)
                        }
                    }
                }
                Job::Stop => Ok((0, 0)),
                Job::Audit { events, .. } => match &ledger_broken {
                    Some(why) => Err(StoreError::Engine(why.clone())),
                    None => {
                        let mut staged_head = head.clone();
                        stage_audit(&mut audit_lines, &mut staged_head, events).map(|()| {
                            head = staged_head;
                            (0, 0)
                        })
                    }
                },
            };
            if result.is_ok() {
                batch.writes.append(&mut local.writes);
            }
            results.push(result);
        }
        // The ledger first: an audited read is acknowledged only once its event is on disk.
        let audited = if audit_lines.is_empty() {
            Ok(())
        } else {
            ledger.append(&audit_lines).map_err(|e| {
                let why = format!("{e}; restart the node");
                tracing::error!(error = %why, "audit ledger write failed; refusing reads until restart");
                ledger_broken = Some(why.clone());
                StoreError::Engine(why)
            })
        };
        if audited.is_ok() {
            *chain.lock().unwrap_or_else(|p| p.into_inner()) = head;
        }
        let committed = if batch.is_empty() { Ok(()) } else { store.commit(batch) };
        match &committed {
            Ok(()) => {
                let mut feeds = feeds.lock().unwrap_or_else(|p| p.into_inner());
                let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                for dataset in touched {
                    if let Some(c) = seqs.get(&dataset) {
                        counts.insert(dataset.clone(), c.records);
                        // A dataset first published since start has no feed yet: make one, so
                        // Status and later subscribers see its sequence.
                        feeds
                            .entry(dataset)
                            .or_insert_with(|| watch::channel(0).0)
                            .send_replace(c.seq);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "group commit failed; no change of it was acknowledged");
                seqs = saved_seqs;
            }
        }
        for (job, result) in group.into_iter().zip(results) {
            match job {
                Job::Publish { reply, .. } => {
                    let result = match &committed {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Engine(e.to_string())),
                    };
                    let _ = reply.send(result);
                }
                Job::Audit { reply, .. } => {
                    let result = match &audited {
                        Ok(()) => result.map(|_| ()),
                        Err(e) => Err(StoreError::Engine(e.to_string())),
                    };
                    let _ = reply.send(result);
                }
                Job::Stop => {}
            }
        }
        if stopping {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stage_publish(
    store: &dyn Store,
    batch: &mut Batch,
    overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    written: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    seqs: &mut HashMap<String, Counters>,
    dataset: &str,
    schema_version: u32,
    changes: &[NewChange],
) -> Result<(u64, u64), StoreError> {
    let counters = seqs.entry(dataset.to_string()).or_default();
    let first = counters.seq + 1;
    for change in changes {
        counters.seq += 1;
        let seq = counters.seq;
        let rk = record_key(dataset, &change.key);
        let before = match written.get(&rk).or_else(|| overlay.get(&rk)) {
            Some(current) => current.clone(),
            None => store
                .get(&rk)?
                .map(|bytes| StoredRecord::decode(&rk, &bytes))
                .transpose()?
                .map(|r| r.json),
        };
        match (&before, &change.json) {
            (None, Some(_)) => counters.records += 1,
            (Some(_), None) => counters.records = counters.records.saturating_sub(1),
            _ => {}
        }
        let stored_change = StoredChange {
            sequence: seq,
            key: change.key.clone(),
            schema_version,
            after: change.json.as_ref().map(|j| String::from_utf8_lossy(j).into_owned()),
            before: before.map(|b| String::from_utf8_lossy(&b).into_owned()),
        };
        batch.put(
            change_key(dataset, seq),
            serde_json::to_vec(&stored_change).map_err(|e| corrupt(b"change", e))?,
        );
        match &change.json {
            Some(json) => {
                let record = StoredRecord {
                    sequence: seq,
                    schema_version,
                    json: json.clone(),
                };
                batch.put(rk.clone(), record.encode());
            }
            None => batch.delete(rk.clone()),
        }
        written.insert(rk, change.json.clone());
    }
    batch.put(
        seq_key(dataset),
        serde_json::to_vec(&*counters).map_err(|e| corrupt(b"counters", e))?,
    );
    Ok((first, counters.seq))
}

fn stage_audit(lines: &mut Vec<Vec<u8>>, chain: &mut Chain, events: &[AuditEvent]) -> Result<(), StoreError> {
    let mut staged = Vec::with_capacity(events.len());
    for event in events {
        staged.push(chain.append_encoded(event).map_err(|e| corrupt(b"audit", e))?);
    }
    lines.append(&mut staged);
    Ok(())
}

#[cfg(test)]
mod tests;
