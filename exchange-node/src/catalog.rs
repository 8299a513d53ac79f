//! The node's view of the registry: its department's datasets with their compiled schema
//! versions, and the grants on them. Kept durably (`reg/...` keys) so the node goes on serving
//! with the last known grants while the registry is unreachable, and in memory for every read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use exchange_core::catalog::{Dataset, SchemaVersion};
use exchange_core::grant::Grant;
use exchange_core::schema::{self, DatasetSchema, Validator};
use exchange_core::store::{Batch, Store, StoreError};
use serde::{Deserialize, Serialize};

const REVISION: &[u8] = b"reg/revision";
/// The registry's history fingerprint at that revision, sent back when resuming.
const HISTORY: &[u8] = b"reg/history";
/// Set when the registry was found behind this view (restored from an older backup): its
/// revision numbers no longer name the changes this view holds, so the node must not resume by
/// them until an operator resets the view (`exchange node --resync-registry-view`).
const DIVERGED: &[u8] = b"reg/diverged";

fn dataset_key(id: &str) -> Vec<u8> {
    format!("reg/ds/{id}").into_bytes()
}

fn grant_key(id: &str) -> Vec<u8> {
    format!("reg/grant/{id}").into_bytes()
}

/// A schema version, parsed and compiled once.
pub(crate) struct Compiled {
    pub(crate) version: u32,
    pub(crate) schema: DatasetSchema,
    pub(crate) validator: Validator,
}

/// A dataset the node serves.
pub(crate) struct NodeDataset {
    pub(crate) dataset: Dataset,
    pub(crate) versions: BTreeMap<u32, Arc<Compiled>>,
}

impl NodeDataset {
    /// The latest version, if any was published.
    pub(crate) fn latest(&self) -> Option<Arc<Compiled>> {
        self.versions.values().next_back().cloned()
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredDataset {
    dataset: Dataset,
    versions: Vec<SchemaVersion>,
}

/// Records how far the view has followed the registry, in the batch of the change itself.
fn put_position(batch: &mut Batch, revision: u64, history: &str) {
    batch.put(REVISION.to_vec(), revision.to_string().into_bytes());
    batch.put(HISTORY.to_vec(), history.as_bytes().to_vec());
}

#[derive(Default)]
struct View {
    datasets: HashMap<String, Arc<NodeDataset>>,
    /// Grants by dataset id.
    grants: HashMap<String, Vec<Grant>>,
    revision: u64,
    history: String,
}

impl View {
    fn advance(&mut self, revision: u64, history: &str) {
        if revision >= self.revision {
            self.revision = revision;
            self.history = history.to_string();
        }
    }
}

/// The node's view, shared by the sync task (writer) and the service (readers).
pub(crate) struct Catalog {
    store: Arc<dyn Store>,
    view: RwLock<View>,
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    }
}

fn compile(dataset: &Dataset, versions: &[SchemaVersion]) -> NodeDataset {
    let mut compiled = BTreeMap::new();
    for v in versions {
        // The registry accepted these schemas; one that fails here (a format this build does not
        // know, say) is skipped with a log line rather than taking the node down.
        match schema::load_stored_schema(&v.schema_json, &dataset.key_field) {
            Ok(parsed) => match schema::compile(&parsed.schema) {
                Ok(validator) => {
                    compiled.insert(
                        v.version,
                        Arc::new(Compiled {
                            version: v.version,
                            schema: parsed,
                            validator,
                        }),
                    );
                }
                Err(e) => {
                    tracing::error!(dataset = %dataset.id, version = v.version, error = %e, "schema does not compile")
                }
            },
            Err(e) => tracing::error!(dataset = %dataset.id, version = v.version, error = %e, "schema does not parse"),
        }
    }
    NodeDataset {
        dataset: dataset.clone(),
        versions: compiled,
    }
}

impl Catalog {
    /// Loads the view kept in `store`.
    pub(crate) fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let mut view = View::default();
        if let Some(bytes) = store.get(REVISION)? {
            view.revision = serde_json::from_slice(&bytes).map_err(|e| corrupt(REVISION, e))?;
        }
        if let Some(bytes) = store.get(HISTORY)? {
            view.history = String::from_utf8_lossy(&bytes).into_owned();
        }
        for (key, bytes) in store.scan_prefix(b"reg/ds/")? {
            let stored: StoredDataset = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            let node_dataset = compile(&stored.dataset, &stored.versions);
            view.datasets.insert(stored.dataset.id.clone(), Arc::new(node_dataset));
        }
        for (key, bytes) in store.scan_prefix(b"reg/grant/")? {
            let grant: Grant = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            view.grants.entry(grant.dataset_id.clone()).or_default().push(grant);
        }
        for grants in view.grants.values_mut() {
            grants.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Ok(Self {
            store,
            view: RwLock::new(view),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The last registry revision applied.
    pub(crate) fn revision(&self) -> u64 {
        self.read().revision
    }

    /// The registry's history fingerprint at [`Catalog::revision`].
    pub(crate) fn history(&self) -> String {
        self.read().history.clone()
    }

    /// A dataset the node serves.
    pub(crate) fn dataset(&self, id: &str) -> Option<Arc<NodeDataset>> {
        self.read().datasets.get(id).cloned()
    }

    /// Every dataset the node serves, by id.
    pub(crate) fn datasets(&self) -> Vec<Arc<NodeDataset>> {
        let mut all: Vec<_> = self.read().datasets.values().cloned().collect();
        all.sort_by(|a, b| a.dataset.id.cmp(&b.dataset.id));
        all
    }

    /// The grants of `consumer` on `dataset`.
    pub(crate) fn grants(&self, dataset: &str, consumer: &str) -> Vec<Grant> {
        self.read()
            .grants
            .get(dataset)
            .map(|gs| gs.iter().filter(|g| g.consumer_id == consumer).cloned().collect())
            .unwrap_or_default()
    }

    /// Applies a dataset from the registry at `revision`, durably first.
    pub(crate) fn apply_dataset(
        &self,
        (revision, history): (u64, &str),
        dataset: Dataset,
        versions: Vec<SchemaVersion>,
    ) -> Result<(), StoreError> {
        let stored = StoredDataset { dataset, versions };
        let mut batch = Batch::default();
        batch.put(
            dataset_key(&stored.dataset.id),
            serde_json::to_vec(&stored).map_err(|e| corrupt(b"dataset", e))?,
        );
        put_position(&mut batch, revision, history);
        self.store.commit(batch)?;
        let compiled = compile(&stored.dataset, &stored.versions);
        let mut view = self.write();
        view.datasets.insert(stored.dataset.id.clone(), Arc::new(compiled));
        view.advance(revision, history);
        Ok(())
    }

    /// Applies a grant from the registry at `revision`, durably first.
    pub(crate) fn apply_grant(&self, (revision, history): (u64, &str), grant: Grant) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put(
            grant_key(&grant.id),
            serde_json::to_vec(&grant).map_err(|e| corrupt(b"grant", e))?,
        );
        put_position(&mut batch, revision, history);
        self.store.commit(batch)?;
        let mut view = self.write();
        let grants = view.grants.entry(grant.dataset_id.clone()).or_default();
        match grants.iter_mut().find(|g| g.id == grant.id) {
            Some(existing) => *existing = grant,
            None => {
                grants.push(grant);
                grants.sort_by(|a, b| a.id.cmp(&b.id));
            }
        }
        view.advance(revision, history);
        Ok(())
    }

    /// Why the view stopped following the registry, if it did.
    pub(crate) fn diverged(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(DIVERGED)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Records, durably, that the registry was found behind this view.
    pub(crate) fn mark_diverged(&self, why: &str) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put(DIVERGED.to_vec(), why.as_bytes().to_vec());
        self.store.commit(batch)
    }

    /// Records that the view is complete up to `revision` (a caught-up marker).
    pub(crate) fn mark_revision(&self, (revision, history): (u64, &str)) -> Result<(), StoreError> {
        // Also at the same revision when the view has no fingerprint yet (kept from before
        // fingerprints), so the next resume is checked.
        let fills_in = revision == self.revision() && self.history().is_empty() && !history.is_empty();
        if revision < self.revision() || (revision == self.revision() && !fills_in) {
            return Ok(());
        }
        let mut batch = Batch::default();
        put_position(&mut batch, revision, history);
        self.store.commit(batch)?;
        self.write().advance(revision, history);
        Ok(())
    }
}

/// Forgets a node's view of the registry (datasets, schema versions, grants, revision and any
/// divergence), so the node replays the registry's current state from revision 0 when it next
/// connects. Records, the change feed and the audit ledger are not touched.
pub(crate) fn reset_view(store: &dyn Store) -> Result<usize, StoreError> {
    let mut batch = Batch::default();
    let mut forgotten = 0;
    for (key, _) in store.scan_prefix(b"reg/")? {
        batch.delete(key);
        forgotten += 1;
    }
    if !batch.is_empty() {
        store.commit(batch)?;
    }
    Ok(forgotten)
}
