//! The writer: the one thread that commits a node's records, change feed and audit events, in
//! groups.
//!
//! **Group commit.** Every durable write goes through the writer thread. It takes every job
//! waiting in its queue, stages each whole (a job that fails staging leaves nothing of itself in
//! the group), appends the group's audit events to the [`Ledger`] (one `fdatasync`), commits the
//! group's records in one store batch (one flush), and only then answers each job. Concurrent
//! reads therefore share a disk sync instead of queueing one each (a flush per request caps near
//! 17,000/s on our hardware), and a reply never comes before its audit event or records are on
//! disk. The writer owns the sequence counters and the ledger, so numbering follows commit order
//! exactly.
//!
//! **Checkpoints.** The writer also signs the ledger's checkpoints: after a commit when the last
//! one is a second old or more, after a quiet second when events came since, on demand
//! ([`Writer::checkpoint`]), and when it stops. Never per event: a signature per read would cost
//! more than the read.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_core::ledger::{AuditEvent, Group, Ledger, LedgerReader};
use exchange_core::store::{Batch, Store, StoreError};
use exchange_core::tlog::Checkpoint;
use exchange_core::CoreError;
use tokio::sync::{oneshot, watch};

use crate::records::{
    change_key, corrupt, import_key, record_key, seq_key, Counters, ImportMark, NewChange, StoredChange, StoredRecord,
};

type Reply<T> = oneshot::Sender<Result<T, CoreError>>;

/// The first and last sequence numbers a publish was given.
pub(crate) type Sequences = (u64, u64);

/// A batch's place in a resumable import: the mark committed with its changes, so a batch sent
/// again after a lost acknowledgement is recognised.
#[derive(Debug, Clone)]
pub(crate) struct ImportStep {
    pub(crate) id: String,
    pub(crate) batch: u64,
}

/// What a publish job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Its changes are durable under these sequence numbers ((0, 0) when it had none).
    Stored(Sequences),
    /// Its import had stored this batch before: nothing was written.
    AlreadyStored,
}

enum Job {
    Publish {
        dataset: String,
        schema_version: u32,
        changes: Vec<NewChange>,
        import: Option<ImportStep>,
        reply: Reply<Committed>,
    },
    Audit {
        events: Vec<AuditEvent>,
        reply: Reply<Range<u64>>,
    },
    /// Sign a checkpoint of everything committed before it (the last one if nothing was).
    Checkpoint { reply: Reply<Checkpoint> },
    /// Prune the ledger's leaves before an index (retention).
    Prune { before: u64, reply: Reply<u64> },
    /// Finish what is queued before it, then exit (releasing the store and the ledger).
    Stop,
}

/// What the handles read and the thread updates after each commit.
#[derive(Default)]
struct Shared {
    /// Each dataset's last committed sequence number, watched by subscriptions.
    feeds: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Records per dataset, as of the last commit.
    counts: Mutex<HashMap<String, u64>>,
}

impl Shared {
    fn feed(&self, dataset: &str) -> watch::Receiver<u64> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds
            .entry(dataset.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// The handle to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::SyncSender<Job>,
    shared: Arc<Shared>,
    ledger: LedgerReader,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// How many jobs one group commit takes at most.
const GROUP_LIMIT: usize = 4096;

/// While events flow, a checkpoint is signed at least this often.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What a write after the writer stopped gets (the node is shutting down): nothing was done.
pub(crate) fn stopped() -> CoreError {
    CoreError::Unavailable("the node is stopping; nothing was written: try again when it is back".into())
}

impl Writer {
    /// Starts the writer thread over `store` and `ledger`, reading the counters the store holds.
    pub(crate) fn start(store: Arc<dyn Store>, ledger: Ledger) -> Result<Self, StoreError> {
        let mut seqs: HashMap<String, Counters> = HashMap::new();
        for (key, bytes) in store.scan_prefix(b"seq/")? {
            let dataset = String::from_utf8_lossy(&key[4..]).into_owned();
            let counters: Counters = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            seqs.insert(dataset, counters);
        }
        let shared = Arc::new(Shared {
            feeds: Mutex::new(seqs.iter().map(|(d, c)| (d.clone(), watch::channel(c.seq).0)).collect()),
            counts: Mutex::new(seqs.iter().map(|(d, c)| (d.clone(), c.records)).collect()),
        });
        let reader = ledger
            .reader()
            .map_err(|e| StoreError::Engine(format!("cannot read the audit ledger: {e}")))?;
        let (tx, rx) = mpsc::sync_channel(GROUP_LIMIT);
        let thread = WriterThread {
            store,
            ledger,
            seqs,
            shared: shared.clone(),
            last_signed: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("node-writer".into())
            .spawn(move || thread.run(rx))
            .map_err(|e| StoreError::Engine(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            jobs: tx,
            shared,
            ledger: reader,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Commits what is queued, stops the thread and waits for it, so the store and the ledger
    /// are released when the node returns from `run`.
    pub(crate) async fn stop(&self) {
        let _ = self.submit(Job::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn submit(&self, job: Job) -> Result<(), CoreError> {
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
    ) -> Result<Sequences, CoreError> {
        if changes.is_empty() {
            return Ok((0, 0));
        }
        match self.queue_publish(dataset, schema_version, changes, None).await?.await {
            Ok(Ok(Committed::Stored(sequences))) => Ok(sequences),
            Ok(Ok(Committed::AlreadyStored)) => Ok((0, 0)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(stopped()),
        }
    }

    /// Queues changes of one dataset behind everything queued before (so jobs queued one after
    /// another commit in that order); the receiver answers once they are durable. With an
    /// import step, the batch's mark is committed with them, and a batch the import stored
    /// before is answered [`Committed::AlreadyStored`] without writing anything.
    pub(crate) async fn queue_publish(
        &self,
        dataset: &str,
        schema_version: u32,
        changes: Vec<NewChange>,
        import: Option<ImportStep>,
    ) -> Result<oneshot::Receiver<Result<Committed, CoreError>>, CoreError> {
        let (reply, done) = oneshot::channel();
        self.submit(Job::Publish {
            dataset: dataset.to_string(),
            schema_version,
            changes,
            import,
            reply,
        })
        .await?;
        Ok(done)
    }

    /// Appends audit events to the ledger durably; returns their indexes.
    pub(crate) async fn audit(&self, events: Vec<AuditEvent>) -> Result<Range<u64>, CoreError> {
        self.queue_audit(events).await?.await.map_err(|_| stopped())?
    }

    /// Queues audit events behind everything queued before; the receiver answers once they are
    /// durable (with their indexes). For a caller with more to do before it needs the answer.
    pub(crate) async fn queue_audit(
        &self,
        events: Vec<AuditEvent>,
    ) -> Result<oneshot::Receiver<Result<Range<u64>, CoreError>>, CoreError> {
        let (reply, done) = oneshot::channel();
        self.submit(Job::Audit { events, reply }).await?;
        Ok(done)
    }

    /// A checkpoint of everything committed so far, signed now if events came since the last.
    pub(crate) async fn checkpoint(&self) -> Result<Checkpoint, CoreError> {
        let (reply, done) = oneshot::channel();
        self.submit(Job::Checkpoint { reply }).await?;
        done.await.map_err(|_| stopped())?
    }

    /// A receiver of a dataset's last committed sequence number, changing on every commit.
    pub(crate) fn feed(&self, dataset: &str) -> watch::Receiver<u64> {
        self.shared.feed(dataset)
    }

    /// Every dataset's last committed sequence number, by dataset id.
    pub(crate) fn sequences(&self) -> Vec<(String, u64)> {
        let feeds = self.shared.feeds.lock().unwrap_or_else(|p| p.into_inner());
        let mut sequences: Vec<_> = feeds.iter().map(|(d, f)| (d.clone(), *f.borrow())).collect();
        sequences.sort();
        sequences
    }

    /// How many records a dataset holds, as of the last commit.
    pub(crate) fn records(&self, dataset: &str) -> u64 {
        let counts = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(dataset).copied().unwrap_or(0)
    }

    /// Prunes the ledger's leaves before `before` (only signed ones, never the last signed one);
    /// returns how many are pruned in all.
    pub(crate) async fn prune(&self, before: u64) -> Result<u64, CoreError> {
        let (reply, done) = oneshot::channel();
        self.submit(Job::Prune { before, reply }).await?;
        done.await.map_err(|_| stopped())?
    }

    /// The committed ledger: its size, root, last checkpoint, events and proofs.
    pub(crate) fn ledger(&self) -> &LedgerReader {
        &self.ledger
    }
}

/// What the writer thread owns.
struct WriterThread {
    store: Arc<dyn Store>,
    ledger: Ledger,
    /// Every dataset's counters, as staged so far (restored when a commit fails).
    seqs: HashMap<String, Counters>,
    shared: Arc<Shared>,
    /// When the last checkpoint was signed.
    last_signed: Instant,
}

/// What one group stages before its commit.
struct Staging {
    /// The store writes of every job staged whole.
    batch: Batch,
    /// The audit events of every job staged whole, or why the ledger takes none.
    audit: Result<Group, CoreError>,
    /// Records written earlier in this group, for the before-images of later changes.
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Datasets whose feeds and counts move when the group commits.
    touched: Vec<String>,
    /// Import marks written earlier in this group: the last batch of each import.
    marks: HashMap<Vec<u8>, u64>,
}

/// How a job staged: what it will be answered if its part of the commit succeeds.
enum Staged {
    Publish(Result<Committed, CoreError>),
    Audit(Result<Range<u64>, CoreError>),
    /// Answered after the commit.
    Checkpoint,
    /// Answered after the commit.
    Prune,
    Stop,
}

impl WriterThread {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            let wait = match self.ledger.checkpoint_due() {
                true => CHECKPOINT_EVERY.saturating_sub(self.last_signed.elapsed()),
                false => Duration::from_secs(3600),
            };
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.sign();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if matches!(first, Job::Stop) {
                break;
            }
            let mut group = vec![first];
            let mut stopping = false;
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
            self.commit_group(group);
            if self.ledger.checkpoint_due() && self.last_signed.elapsed() >= CHECKPOINT_EVERY {
                let _ = self.sign();
            }
            if stopping {
                break;
            }
        }
        // Leave everything committed under a signed checkpoint.
        if self.ledger.checkpoint_due() {
            let _ = self.sign();
        }
    }

    /// Signs a checkpoint of what is committed (or returns the last one if nothing is new).
    fn sign(&mut self) -> Result<Checkpoint, CoreError> {
        self.last_signed = Instant::now();
        self.ledger.checkpoint().map_err(|e| {
            tracing::error!(error = %e, "could not sign an audit ledger checkpoint");
            CoreError::from(e)
        })
    }

    fn commit_group(&mut self, group: Vec<Job>) {
        let saved_seqs = self.seqs.clone();
        let mut staging = Staging {
            batch: Batch::default(),
            audit: self.ledger.begin().map_err(CoreError::from),
            overlay: HashMap::new(),
            touched: Vec::new(),
            marks: HashMap::new(),
        };
        let staged: Vec<Staged> = group.iter().map(|job| self.stage(&mut staging, job)).collect();

        // The ledger first: an audited read is acknowledged only once its event is on disk.
        let audited = match staging.audit {
            Ok(events) => match self.ledger.commit(events) {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "audit ledger write failed; refusing audited reads until restart");
                    Err(CoreError::from(e))
                }
            },
            Err(e) => Err(e),
        };
        let committed = if staging.batch.is_empty() {
            Ok(())
        } else {
            self.store.commit(staging.batch)
        };
        match &committed {
            Ok(()) => self.publish_counters(staging.touched),
            Err(e) => {
                tracing::error!(error = %e, jobs = group.len(), "group commit failed; no change of it was acknowledged");
                self.seqs = saved_seqs;
            }
        }
        for (job, staged) in group.into_iter().zip(staged) {
            match (job, staged) {
                (Job::Publish { reply, .. }, Staged::Publish(result)) => {
                    let result = match &committed {
                        Ok(()) => result,
                        Err(e) => Err(CoreError::Store(e.clone())),
                    };
                    let _ = reply.send(result);
                }
                (Job::Audit { reply, .. }, Staged::Audit(result)) => {
                    let _ = reply.send(audited.clone().and(result));
                }
                (Job::Checkpoint { reply }, Staged::Checkpoint) => {
                    let _ = reply.send(self.sign());
                }
                (Job::Prune { before, reply }, Staged::Prune) => {
                    let _ = reply.send(self.ledger.prune(before).map_err(CoreError::from));
                }
                _ => {}
            }
        }
    }

    /// Stages one job whole into the group, or not at all.
    fn stage(&mut self, staging: &mut Staging, job: &Job) -> Staged {
        match job {
            Job::Publish {
                dataset,
                schema_version,
                changes,
                import,
                ..
            } => {
                let mark = match import {
                    None => None,
                    Some(step) => match self.import_mark(staging, dataset, step) {
                        Ok(Some(mark)) => Some(mark),
                        Ok(None) => return Staged::Publish(Ok(Committed::AlreadyStored)),
                        Err(e) => return Staged::Publish(Err(e)),
                    },
                };
                let saved = self.seqs.get(dataset).copied();
                let mut publish = PublishStaging {
                    store: &*self.store,
                    overlay: &staging.overlay,
                    batch: Batch::default(),
                    written: HashMap::new(),
                };
                let counters = self.seqs.entry(dataset.clone()).or_default();
                let staged = publish.stage(counters, dataset, *schema_version, changes);
                let PublishStaging { mut batch, written, .. } = publish;
                match staged {
                    Ok(range) => {
                        if let Some((key, batch)) = mark {
                            staging.batch.put(key.clone(), ImportMark { batch }.encode());
                            staging.marks.insert(key, batch);
                        }
                        staging.overlay.extend(written);
                        staging.batch.writes.append(&mut batch.writes);
                        staging.touched.push(dataset.clone());
                        Staged::Publish(Ok(Committed::Stored(range)))
                    }
                    Err(e) => {
                        match saved {
                            Some(counters) => self.seqs.insert(dataset.clone(), counters),
                            None => self.seqs.remove(dataset),
                        };
                        Staged::Publish(Err(e.into()))
                    }
                }
            }
            Job::Audit { events, .. } => Staged::Audit(match &mut staging.audit {
                Ok(group) => group.stage(events).map_err(CoreError::from),
                Err(e) => Err(e.clone()),
            }),
            Job::Checkpoint { .. } => Staged::Checkpoint,
            Job::Prune { .. } => Staged::Prune,
            Job::Stop => Staged::Stop,
        }
    }

    /// The mark an import's batch commits (its key and batch number), or `None` when the
    /// import holds this batch already; a batch that skips one is refused.
    fn import_mark(
        &self,
        staging: &Staging,
        dataset: &str,
        step: &ImportStep,
    ) -> Result<Option<(Vec<u8>, u64)>, CoreError> {
        let key = import_key(dataset, &step.id);
        let last = match staging.marks.get(&key) {
            Some(&batch) => batch,
            None => match self.store.get(&key)? {
                Some(bytes) => ImportMark::decode(&key, &bytes)?.batch,
                None => 0,
            },
        };
        if step.batch <= last {
            return Ok(None);
        }
        if step.batch != last + 1 {
            return Err(CoreError::FailedPrecondition(format!(
                "import {} of {dataset}: batch {} came after batch {last}; send batch {} next (resume from the last batch acknowledged)",
                step.id,
                step.batch,
                last + 1
            )));
        }
        Ok(Some((key, step.batch)))
    }

    /// After a commit: the feeds and counts of the datasets it wrote.
    fn publish_counters(&self, touched: Vec<String>) {
        let mut feeds = self.shared.feeds.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        for dataset in touched {
            if let Some(c) = self.seqs.get(&dataset) {
                counts.insert(dataset.clone(), c.records);
                // A dataset first published since start has no feed yet: make one, so Status and
                // later subscribers see its sequence.
                feeds
                    .entry(dataset)
                    .or_insert_with(|| watch::channel(0).0)
                    .send_replace(c.seq);
            }
        }
    }
}

/// One publish job being staged: its own batch, and the records it wrote so far (for the
/// before-images of its later changes), on top of what earlier jobs of the group wrote.
struct PublishStaging<'a> {
    store: &'a dyn Store,
    overlay: &'a HashMap<Vec<u8>, Option<Vec<u8>>>,
    batch: Batch,
    written: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl PublishStaging<'_> {
    /// The record under `rk` as the group has it so far.
    fn current(&self, rk: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(current) = self.written.get(rk).or_else(|| self.overlay.get(rk)) {
            return Ok(current.clone());
        }
        Ok(self
            .store
            .get(rk)?
            .map(|bytes| StoredRecord::decode(rk, &bytes))
            .transpose()?
            .map(|r| r.json))
    }

    fn stage(
        &mut self,
        counters: &mut Counters,
        dataset: &str,
        schema_version: u32,
        changes: &[NewChange],
    ) -> Result<Sequences, StoreError> {
        let first = counters.seq + 1;
        for change in changes {
            counters.seq += 1;
            let seq = counters.seq;
            let rk = record_key(dataset, &change.key);
            let before = self.current(&rk)?;
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
            self.batch.put(
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
                    self.batch.put(rk.clone(), record.encode());
                }
                None => self.batch.delete(rk.clone()),
            }
            self.written.insert(rk, change.json.clone());
        }
        self.batch.put(
            seq_key(dataset),
            serde_json::to_vec(&*counters).map_err(|e| corrupt(b"counters", e))?,
        );
        Ok((first, counters.seq))
    }
}

#[cfg(test)]
mod tests;
