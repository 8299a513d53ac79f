//! What changed since a revision, in its current state: what Watch replays and follows.

use super::*;

/// What [`State::changes_since`] found.
#[derive(Debug)]
pub struct Changes {
    /// Each change's revision, history fingerprint and current state.
    pub items: Vec<(u64, String, WatchItem)>,
    /// The last revision examined.
    pub last: u64,
    /// The history fingerprint at `last`.
    pub history: String,
}

/// One item of a watch stream.
#[derive(Debug, Clone)]
pub enum WatchItem {
    /// A dataset's current state, versions included.
    Dataset(Box<DatasetWithVersions>),
    /// A grant's current state.
    Grant(Box<Grant>),
}

impl State {
    /// The history fingerprint at `revision` ("" for 0, or for a log entry written before
    /// fingerprints were kept).
    fn history_at(&self, revision: u64) -> Result<String, CoreError> {
        if revision == 0 {
            return Ok(String::new());
        }
        Ok(self
            .get::<LogEntry>(&log_key(revision))?
            .map(|e| e.history)
            .unwrap_or_default())
    }

    /// Refuses, with OUT_OF_RANGE, a watcher resuming from `revision` whose history fingerprint
    /// there differs from this registry's, or names a revision this registry has no entry for:
    /// the registry was restored from an older backup and has since given that number to another
    /// change (or to none). Call with writes held, so the answer cannot go stale.
    fn check_history(&self, revision: u64, history: &str) -> Result<(), CoreError> {
        if revision == 0 || history.is_empty() {
            return Ok(());
        }
        let restored = || {
            CoreError::OutOfRange(format!(
                "revision {revision} names another change in this registry than in your view: was it restored from an older backup? Watch again from revision 0"
            ))
        };
        match self.get::<LogEntry>(&log_key(revision))? {
            // A watcher's revision always names an entry it was sent.
            None => Err(restored()),
            // Written before fingerprints were kept: nothing to compare.
            Some(entry) if entry.history.is_empty() => Ok(()),
            Some(entry) if entry.history != history => Err(restored()),
            Some(_) => Ok(()),
        }
    }

    /// The current state of what changed after revision `after` and concerns the datasets of
    /// `department` (every department when `None`), up to `limit` log entries. Returns the items
    /// with their revisions and history fingerprints, and the last revision examined with its
    /// fingerprint.
    pub async fn changes_since(
        &self,
        department: Option<&str>,
        after: u64,
        expected_history: Option<&str>,
        limit: usize,
    ) -> Result<Changes, CoreError> {
        // A write applies its batch before its flush returns, and a watcher must never pass on
        // (and a node never keep) a change that a crash in that window would undo. The bound is
        // the last revision whose commit succeeded, published after its flush: log entries up to
        // it are on disk and never rewritten. An item is sent only in the state its own entry
        // wrote (`revision == entry`), so a newer state a write in progress has applied but not
        // flushed makes the item wait for that write's entry, and is never sent early. Reading
        // needs no lock, then: with one, a hundred watchers woken by a change held the next
        // write behind all of their reads (a grant decision's p99 rose 4.6 × in the bench).
        // Only the history check of a resuming watcher holds writes, so its answer cannot go
        // stale.
        let _writes_held = match expected_history {
            Some(history) if after != 0 && !history.is_empty() => Some(self.writer.lock().await),
            _ => None,
        };
        let committed = *self.revision.borrow();
        if after > committed {
            return Err(CoreError::OutOfRange(format!(
                "revision {after} is beyond this registry's latest, {committed}: was it restored from an older backup? Watch again from revision 0"
            )));
        }
        if let Some(history) = expected_history {
            self.check_history(after, history)?;
        }
        let entries = self.store.range(&log_key(after + 1), &log_key(committed + 1), limit)?;
        let mut items = Vec::new();
        let mut last = after;
        let mut last_history = None;
        for (key, value) in entries {
            let entry: LogEntry = decode(&key, &value)?;
            let revision = std::str::from_utf8(&key[4..])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    CoreError::Store(exchange_core::store::StoreError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        message: "not a revision".into(),
                    })
                })?;
            last = revision;
            let history = entry.history.clone();
            last_history = Some(entry.history);
            let concerns = |dataset_id: &str| department.is_none_or(|d| catalog::owner_of(dataset_id) == d);
            match entry.kind {
                // Nodes follow datasets and grants; a demand answered sends its grant.
                Kind::Department | Kind::Demand | Kind::Correction => {}
                Kind::Dataset => {
                    if concerns(&entry.id) {
                        let with = self.get_dataset(&entry.id)?;
                        // A later log entry will send this dataset again in its newer state.
                        if with.dataset.revision == revision {
                            items.push((revision, history, WatchItem::Dataset(Box::new(with))));
                        }
                    }
                }
                Kind::Grant => {
                    let g = self.grant(&entry.id)?;
                    if concerns(&g.dataset_id) && g.revision == revision {
                        items.push((revision, history, WatchItem::Grant(Box::new(g))));
                    }
                }
            }
        }
        let history = match last_history {
            Some(history) => history,
            None => self.history_at(last)?,
        };
        Ok(Changes { items, last, history })
    }
}
