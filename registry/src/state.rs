//! The registry's state and rules, over a [`Store`]. Transport-free: the gRPC service in
//! `service.rs` converts messages and calls these methods with the caller's principal.
//!
//! Writes are serialised by one lock and each is committed durably before it returns, so an
//! acknowledged change survives a crash (registry writes are admin-paced; one writer is plenty).
//! Every change gets the next registry *revision* and a line in the change log, which is what
//! `Watch` replays and follows.
//!
//! Keys: `dept/<id>`, `ds/<dataset>`, `sv/<dataset>/<version:010>`, `grant/<id>`,
//! `log/<revision:020>`, `meta/revision`, `meta/grant_seq`.

use std::sync::Arc;

use exchange_core::catalog::{self, Classification, Dataset, SchemaVersion};
use exchange_core::compat;
use exchange_core::department::{self, Department, Level};
use exchange_core::error::SchemaError;
use exchange_core::grant::{self, Grant, GrantLimits, GrantRequest, GrantState};
use exchange_core::identity::Principal;
use exchange_core::schema::{self, DatasetSchema};
use exchange_core::store::{Batch, Store, StoreError};
use exchange_core::{authz, now, CoreError, ValidationError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

const META_REVISION: &[u8] = b"meta/revision";
/// The history fingerprint at the latest revision (see [`LogEntry::history`]).
const META_HISTORY: &[u8] = b"meta/history";
const META_GRANT_SEQ: &[u8] = b"meta/grant_seq";

fn dept_key(id: &str) -> Vec<u8> {
    format!("dept/{id}").into_bytes()
}
fn dataset_key(id: &str) -> Vec<u8> {
    format!("ds/{id}").into_bytes()
}
fn versions_prefix(id: &str) -> Vec<u8> {
    format!("sv/{id}/").into_bytes()
}
fn version_key(id: &str, version: u32) -> Vec<u8> {
    format!("sv/{id}/{version:010}").into_bytes()
}
fn grant_key(id: &str) -> Vec<u8> {
    format!("grant/{id}").into_bytes()
}
/// An update that names the revision it read is refused if the object changed since (say, a
/// node announced its endpoint between an admin's read and write); 0 names none.
fn unchanged_since(what: &str, id: &str, read: u64, now: u64) -> Result<(), CoreError> {
    if read == 0 || read == now {
        return Ok(());
    }
    Err(CoreError::Aborted(format!(
        "{what} {id} changed since you read it (revision {read}, now {now}): read it again and retry"
    )))
}

fn log_key(revision: u64) -> Vec<u8> {
    format!("log/{revision:020}").into_bytes()
}

/// What changed at a revision, in the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Department,
    Dataset,
    Grant,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    kind: Kind,
    id: String,
    /// A fingerprint of the registry's history up to this revision: SHA-256 over the previous
    /// one, this revision, kind, id and the time it was taken. A registry restored from an older
    /// backup and written to again gives the same revision numbers to other changes, with other
    /// fingerprints, so a node resuming from a revision can tell it is not the history it knows.
    #[serde(default)]
    history: String,
}

/// The next link of the history fingerprint chain.
fn history_link(previous: &str, revision: u64, kind: Kind, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hash = Sha256::new();
    hash.update(previous.as_bytes());
    hash.update(revision.to_be_bytes());
    hash.update(format!("{kind:?}\0{id}\0").as_bytes());
    hash.update(nanos.to_be_bytes());
    exchange_core::ledger::hex(&hash.finalize().into())
}

/// The latest revision and its history fingerprint, held under the write lock.
struct Head {
    revision: u64,
    history: String,
}

/// A dataset with its schema versions, oldest first.
#[derive(Debug, Clone)]
pub struct DatasetWithVersions {
    /// The dataset.
    pub dataset: Dataset,
    /// Its versions.
    pub versions: Vec<SchemaVersion>,
}

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

/// The outcome of checking a candidate schema version.
#[derive(Debug, Clone, Default)]
pub struct SchemaCheck {
    /// Whether publishing it now would succeed.
    pub accepted: bool,
    /// The version number it would get.
    pub version: u32,
    /// Why the schema is invalid, if it is.
    pub errors: Vec<String>,
    /// Compatibility rules it breaks.
    pub incompatibilities: Vec<compat::Incompatibility>,
    /// Active grants it would break: (grant id, consumer, field, reason).
    pub broken_grants: Vec<(String, String, String, String)>,
}

/// Filters for listing grants; empty strings and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct GrantQuery {
    /// Only this consumer's grants.
    pub consumer_id: String,
    /// Only grants on this dataset.
    pub dataset_id: String,
    /// Only grants on datasets this department owns.
    pub owner_id: String,
    /// Only grants in this state now.
    pub state: Option<GrantState>,
}

/// Filters for searching the catalog; empty strings and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct DatasetQuery {
    /// Owner department.
    pub owner_id: String,
    /// Domain, exactly.
    pub domain: String,
    /// Classification.
    pub classification: Option<Classification>,
    /// Case-insensitive substring of id, title, description or a tag.
    pub text: String,
}

/// The pending writes of one registry change.
struct Tx {
    batch: Batch,
    revision: u64,
    history: String,
}

impl Tx {
    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), CoreError> {
        self.batch.put(key, encode(value)?);
        Ok(())
    }

    /// Takes the next revision for a change of `kind` `id` and logs it.
    fn next_revision(&mut self, kind: Kind, id: &str) -> Result<u64, CoreError> {
        self.revision += 1;
        self.history = history_link(&self.history, self.revision, kind, id);
        let entry = LogEntry {
            kind,
            id: id.to_string(),
            history: self.history.clone(),
        };
        self.batch.put(log_key(self.revision), encode(&entry)?);
        Ok(self.revision)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CoreError> {
    serde_json::to_vec(value)
        .map_err(|e| CoreError::Store(exchange_core::store::StoreError::Engine(format!("cannot encode: {e}"))))
}

/// The registry's state.
pub struct State {
    store: Arc<dyn Store>,
    /// Held for the whole of a write; holds the current revision and history.
    writer: Arc<Mutex<Head>>,
    revision: watch::Sender<u64>,
    limits: GrantLimits,
}

impl State {
    /// Opens the state over `store`.
    pub fn open(store: Arc<dyn Store>, limits: GrantLimits) -> Result<Self, CoreError> {
        let revision = match store.get(META_REVISION)? {
            Some(bytes) => decode::<u64>(META_REVISION, &bytes)?,
            None => 0,
        };
        let history = match store.get(META_HISTORY)? {
            Some(bytes) => decode::<String>(META_HISTORY, &bytes)?,
            None => String::new(),
        };
        Ok(Self {
            store,
            writer: Arc::new(Mutex::new(Head { revision, history })),
            revision: watch::channel(revision).0,
            limits,
        })
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, CoreError> {
        self.store.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, CoreError> {
        self.store
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Runs `change` under the write lock and commits what it wrote durably.
    async fn write<R>(&self, change: impl FnOnce(&mut Tx) -> Result<R, CoreError>) -> Result<R, CoreError> {
        let mut current = self.writer.clone().lock_owned().await;
        let mut tx = Tx {
            batch: Batch::default(),
            revision: current.revision,
            history: current.history.clone(),
        };
        let result = change(&mut tx)?;
        if tx.batch.is_empty() {
            return Ok(result);
        }
        let revision = tx.revision;
        let history = tx.history.clone();
        tx.put(META_REVISION.to_vec(), &revision)?;
        tx.put(META_HISTORY.to_vec(), &history)?;
        let store = self.store.clone();
        let batch = std::mem::take(&mut tx.batch);
        let published = self.revision.clone();
        // The commit, and taking its revision, finish even if the caller goes away (a client
        // cancelling drops this future): otherwise the next write would reuse the revision of
        // a change already on disk and overwrite its log entry, which Watch replays.
        let committing = tokio::spawn(async move {
            let committed = tokio::task::spawn_blocking(move || store.commit(batch))
                .await
                .map_err(|e| StoreError::Engine(format!("commit task failed: {e}")))
                .and_then(|r| r);
            // Taken even when the commit failed: sled may have applied the batch before its flush
            // failed and persist it with a later flush, and its log entry must not be overwritten
            // by the next write. A failed write leaves at worst an unused revision.
            *current = Head { revision, history };
            if committed.is_ok() {
                published.send_replace(revision);
            }
            committed
        });
        committing
            .await
            .map_err(|e| StoreError::Engine(format!("commit task failed: {e}")))??;
        Ok(result)
    }

    /// The latest committed revision, and a receiver that changes whenever it does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    // ---- departments ----

    /// Whether `id` is a registered department.
    pub fn is_member(&self, id: &str) -> Result<bool, CoreError> {
        Ok(self.store.get(&dept_key(id))?.is_some())
    }

    /// Registers a department.
    pub async fn register_department(&self, p: &Principal, mut dept: Department) -> Result<Department, CoreError> {
        authz::manage_departments(p)?;
        self.write(|tx| {
            if self.get::<Department>(&dept_key(&dept.id))?.is_some() {
                return Err(CoreError::AlreadyExists(format!(
                    "department {} is already registered",
                    dept.id
                )));
            }
            let parent = self.parent_of(&dept)?;
            department::validate(&dept, parent.as_ref())?;
            let t = now();
            dept.created_at = t;
            dept.updated_at = t;
            dept.revision = tx.next_revision(Kind::Department, &dept.id)?;
            tx.put(dept_key(&dept.id), &dept)?;
            Ok(dept)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, department = %d.id, revision = d.revision, "department registered"))
    }

    fn parent_of(&self, dept: &Department) -> Result<Option<Department>, CoreError> {
        match &dept.parent_id {
            Some(parent) => self.get(&dept_key(parent)),
            None => Ok(None),
        }
    }

    /// Replaces a department's updatable fields.
    pub async fn update_department(&self, p: &Principal, mut dept: Department) -> Result<Department, CoreError> {
        authz::manage_departments(p)?;
        self.write(|tx| {
            let old: Department = self
                .get(&dept_key(&dept.id))?
                .ok_or_else(|| CoreError::not_found(format!("department {} is not registered", dept.id)))?;
            unchanged_since("department", &dept.id, dept.revision, old.revision)?;
            let parent = self.parent_of(&dept)?;
            department::validate(&dept, parent.as_ref())?;
            // Its children must still fit under it (a level above theirs, a region holding theirs):
            // a child that fitted the department as it was must fit it as it will be. One
            // registered under older rules that never fitted does not block the update.
            for child in self.scan::<Department>(b"dept/")? {
                if child.parent_id.as_deref() != Some(dept.id.as_str()) {
                    continue;
                }
                if department::validate(&child, Some(&old)).is_err() {
                    continue;
                }
                if let Err(e) = department::validate(&child, Some(&dept)) {
                    let field = if e.field == "parent_id" { "level" } else { "region_code" };
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "child department {} would no longer fit under it: {}",
                            child.id, e.message
                        ),
                    )
                    .into());
                }
            }
            dept.created_at = old.created_at;
            dept.updated_at = now();
            dept.revision = tx.next_revision(Kind::Department, &dept.id)?;
            tx.put(dept_key(&dept.id), &dept)?;
            Ok(dept)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, department = %d.id, revision = d.revision, "department updated"))
    }

    /// Sets the node endpoint of the caller's own department; a repeat of the current endpoint
    /// writes nothing (nodes announce on every connect).
    pub async fn announce_node(&self, p: &Principal, endpoint: String) -> Result<Department, CoreError> {
        authz::announce_node(p)?;
        let current = self.get_department(&p.department)?;
        if current.node_endpoint.as_deref() == Some(endpoint.as_str()) {
            return Ok(current);
        }
        self.write(|tx| {
            // Read again under the writer lock, so a concurrent admin update is not undone.
            let mut dept = self.get_department(&p.department)?;
            // Only the endpoint changes, so only it is checked: a department registered under
            // older rules still announces its node.
            department::check_endpoint(&endpoint)?;
            dept.node_endpoint = Some(endpoint.clone());
            dept.updated_at = now();
            dept.revision = tx.next_revision(Kind::Department, &dept.id)?;
            tx.put(dept_key(&dept.id), &dept)?;
            Ok(dept)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, department = %d.id, endpoint = d.node_endpoint.as_deref().unwrap_or(""), "node announced"))
    }

    /// One department.
    pub fn get_department(&self, id: &str) -> Result<Department, CoreError> {
        self.get(&dept_key(id))?
            .ok_or_else(|| CoreError::not_found(format!("department {id} is not registered")))
    }

    /// Departments, optionally only the children of `parent` or those at `level`.
    pub fn list_departments(&self, parent: Option<&str>, level: Option<Level>) -> Result<Vec<Department>, CoreError> {
        Ok(self
            .scan::<Department>(b"dept/")?
            .into_iter()
            .filter(|d| parent.is_none_or(|p| d.parent_id.as_deref() == Some(p)))
            .filter(|d| level.is_none_or(|l| d.level == l))
            .collect())
    }

    // ---- catalog ----

    /// Registers a dataset (without a schema: publish version 1 next).
    pub async fn register_dataset(&self, p: &Principal, mut dataset: Dataset) -> Result<Dataset, CoreError> {
        catalog::validate(&dataset)?;
        authz::manage_dataset(p, dataset.owner())?;
        self.write(|tx| {
            if !self.is_member(dataset.owner())? {
                return Err(ValidationError::new(
                    "dataset id",
                    format!("owner {} is not a registered department", dataset.owner()),
                )
                .into());
            }
            if self.get::<Dataset>(&dataset_key(&dataset.id))?.is_some() {
                return Err(CoreError::AlreadyExists(format!(
                    "dataset {} already exists",
                    dataset.id
                )));
            }
            let t = now();
            dataset.latest_version = 0;
            dataset.created_at = t;
            dataset.updated_at = t;
            dataset.revision = tx.next_revision(Kind::Dataset, &dataset.id)?;
            tx.put(dataset_key(&dataset.id), &dataset)?;
            Ok(dataset)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, dataset = %d.id, revision = d.revision, "dataset registered"))
    }

    /// Replaces a dataset's descriptive fields; the key field cannot change.
    pub async fn update_dataset(&self, p: &Principal, update: Dataset) -> Result<Dataset, CoreError> {
        catalog::validate(&update)?;
        authz::manage_dataset(p, update.owner())?;
        self.write(|tx| {
            let mut dataset = self.dataset(&update.id)?;
            unchanged_since("dataset", &dataset.id, update.revision, dataset.revision)?;
            if update.key_field != dataset.key_field {
                return Err(ValidationError::new(
                    "key_field",
                    format!(
                        "cannot change from \"{}\"; register a new dataset instead",
                        dataset.key_field
                    ),
                )
                .into());
            }
            dataset.title = update.title;
            dataset.description = update.description;
            dataset.domain = update.domain;
            dataset.classification = update.classification;
            dataset.update_frequency = update.update_frequency;
            dataset.steward = update.steward;
            dataset.tags = update.tags;
            dataset.compatibility = update.compatibility;
            dataset.updated_at = now();
            dataset.revision = tx.next_revision(Kind::Dataset, &dataset.id)?;
            tx.put(dataset_key(&dataset.id), &dataset)?;
            Ok(dataset)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, dataset = %d.id, revision = d.revision, "dataset updated"))
    }

    fn dataset(&self, id: &str) -> Result<Dataset, CoreError> {
        // A malformed id is a mistake to explain, not a dataset that happens not to exist.
        catalog::check_dataset_id(id)?;
        self.get(&dataset_key(id))?
            .ok_or_else(|| CoreError::not_found(format!("dataset {id} does not exist")))
    }

    /// A dataset with its schema versions.
    pub fn get_dataset(&self, id: &str) -> Result<DatasetWithVersions, CoreError> {
        let dataset = self.dataset(id)?;
        let versions = self.scan(&versions_prefix(id))?;
        Ok(DatasetWithVersions { dataset, versions })
    }

    /// Datasets matching every given filter.
    pub fn search_datasets(&self, query: &DatasetQuery) -> Result<Vec<Dataset>, CoreError> {
        let text = query.text.to_lowercase();
        Ok(self
            .scan::<Dataset>(b"ds/")?
            .into_iter()
            .filter(|d| query.owner_id.is_empty() || d.owner() == query.owner_id)
            .filter(|d| query.domain.is_empty() || d.domain == query.domain)
            .filter(|d| query.classification.is_none_or(|c| d.classification == c))
            .filter(|d| text.is_empty() || d.matches_text(&text))
            .collect())
    }

    // ---- schemas ----

    /// Every check `PublishSchema` makes, without storing anything.
    fn prepare_version(
        &self,
        dataset: &Dataset,
        text: &str,
    ) -> Result<(DatasetSchema, u32, Vec<DatasetSchemaVersion>), CoreError> {
        let candidate = schema::parse_dataset_schema(text, &dataset.key_field)?;
        let version = dataset.latest_version + 1;
        let previous = self.parsed_versions(dataset)?;
        let refs: Vec<(u32, &serde_json::Value)> = previous.iter().map(|v| (v.version, &v.schema.schema)).collect();
        let problems = compat::check(dataset.compatibility, version, &candidate.schema, &refs);
        if !problems.is_empty() {
            return Err(SchemaError::Incompatible {
                version,
                mode: dataset.compatibility.to_string(),
                problems,
            }
            .into());
        }
        Ok((candidate, version, previous))
    }

    fn parsed_versions(&self, dataset: &Dataset) -> Result<Vec<DatasetSchemaVersion>, CoreError> {
        self.scan::<SchemaVersion>(&versions_prefix(&dataset.id))?
            .into_iter()
            .map(|v| {
                let schema = schema::load_stored_schema(&v.schema_json, &dataset.key_field).map_err(|e| {
                    CoreError::Store(exchange_core::store::StoreError::Corrupt {
                        key: format!("sv/{}/{}", dataset.id, v.version),
                        message: e.to_string(),
                    })
                })?;
                Ok(DatasetSchemaVersion {
                    version: v.version,
                    schema,
                })
            })
            .collect()
    }

    /// Whether a candidate schema would be accepted, and which active grants it would break.
    pub fn check_schema(&self, p: &Principal, dataset_id: &str, text: &str) -> Result<SchemaCheck, CoreError> {
        let dataset = self.dataset(dataset_id)?;
        authz::check_schema(p, dataset.owner())?;
        let mut check = SchemaCheck {
            version: dataset.latest_version + 1,
            ..SchemaCheck::default()
        };
        let (candidate, previous) = match self.prepare_version(&dataset, text) {
            Ok((candidate, _, previous)) => (candidate, previous),
            Err(CoreError::Schema(SchemaError::Invalid(errors))) => {
                check.errors = errors;
                return Ok(check);
            }
            Err(CoreError::Schema(SchemaError::Incompatible { problems, .. })) => {
                check.incompatibilities = problems;
                // Still report broken grants: the author wants the whole picture.
                let candidate = schema::parse_dataset_schema(text, &dataset.key_field)?;
                (candidate, self.parsed_versions(&dataset)?)
            }
            Err(other) => return Err(other),
        };
        check.accepted = check.incompatibilities.is_empty();
        if let Some(latest) = previous.last() {
            let t = now();
            for g in self.scan::<Grant>(b"grant/")? {
                if g.dataset_id == dataset.id && g.is_active(t) {
                    for (field, reason) in g.broken_by(&latest.schema, &candidate) {
                        check
                            .broken_grants
                            .push((g.id.clone(), g.consumer_id.clone(), field, reason));
                    }
                }
            }
        }
        Ok(check)
    }

    /// Publishes the next schema version of a dataset.
    pub async fn publish_schema(
        &self,
        p: &Principal,
        dataset_id: &str,
        text: &str,
    ) -> Result<SchemaVersion, CoreError> {
        self.write(|tx| {
            let mut dataset = self.dataset(dataset_id)?;
            authz::manage_dataset(p, dataset.owner())?;
            let (candidate, version, _) = self.prepare_version(&dataset, text)?;
            // Publishing the latest schema again would only add a version to every consumer's view.
            if dataset.latest_version > 0 {
                let latest: Option<SchemaVersion> = self.get(&version_key(&dataset.id, dataset.latest_version))?;
                let same = latest
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(&l.schema_json).ok())
                    .is_some_and(|l| l == candidate.schema);
                if same {
                    return Err(CoreError::AlreadyExists(format!(
                        "version {} of {} already has this schema; nothing was published",
                        dataset.latest_version, dataset.id
                    )));
                }
            }
            let stored = SchemaVersion {
                dataset_id: dataset.id.clone(),
                version,
                schema_json: text.to_string(),
                sensitive_fields: candidate.sensitive_fields,
                created_at: now(),
            };
            tx.put(version_key(&dataset.id, version), &stored)?;
            dataset.latest_version = version;
            dataset.updated_at = stored.created_at;
            dataset.revision = tx.next_revision(Kind::Dataset, &dataset.id)?;
            tx.put(dataset_key(&dataset.id), &dataset)?;
            Ok(stored)
        })
        .await
        .inspect(|v| tracing::info!(by = %p, dataset = %v.dataset_id, version = v.version, "schema version published"))
    }

    /// One schema version; 0 means the latest.
    pub fn get_schema(&self, dataset_id: &str, version: u32) -> Result<SchemaVersion, CoreError> {
        let dataset = self.dataset(dataset_id)?;
        if dataset.latest_version == 0 {
            return Err(CoreError::not_found(format!(
                "dataset {dataset_id} has no schema version yet"
            )));
        }
        let version = if version == 0 { dataset.latest_version } else { version };
        self.get(&version_key(dataset_id, version))?.ok_or_else(|| {
            CoreError::not_found(format!(
                "dataset {dataset_id} has no version {version}; the latest is {}",
                dataset.latest_version
            ))
        })
    }

    // ---- grants ----

    /// Requests a grant; approved at once for unconditional and open datasets.
    pub async fn request_grant(&self, p: &Principal, uri: &str, mut request: GrantRequest) -> Result<Grant, CoreError> {
        if request.consumer_id.is_empty() {
            request.consumer_id = p.department.clone();
        }
        authz::request_grant(p, &request.consumer_id)?;
        self.write(|tx| {
            if !self.is_member(&request.consumer_id)? {
                return Err(ValidationError::new(
                    "consumer_id",
                    format!("{} is not a registered department", request.consumer_id),
                )
                .into());
            }
            let dataset = self.dataset(&request.dataset_id)?;
            if dataset.latest_version == 0 {
                return Err(CoreError::FailedPrecondition(format!(
                    "dataset {} has no schema version yet; its owner must publish one first",
                    dataset.id
                )));
            }
            let latest = self
                .parsed_versions(&dataset)?
                .pop()
                .ok_or_else(|| CoreError::not_found(format!("dataset {} has no schema", dataset.id)))?;
            let mut g = grant::new_grant(request, &dataset, &latest.schema, self.limits, uri, now())?;
            let seq = self.get::<u64>(META_GRANT_SEQ)?.unwrap_or(0) + 1;
            tx.put(META_GRANT_SEQ.to_vec(), &seq)?;
            g.id = format!("g-{seq:06}");
            g.revision = tx.next_revision(Kind::Grant, &g.id)?;
            tx.put(grant_key(&g.id), &g)?;
            Ok(g)
        })
        .await
        .inspect(|g| {
            tracing::info!(by = %p, grant = %g.id, dataset = %g.dataset_id, consumer = %g.consumer_id, state = %g.state, "grant requested")
        })
    }

    /// Approves, rejects or revokes a grant.
    pub async fn decide_grant(
        &self,
        p: &Principal,
        uri: &str,
        id: &str,
        to: GrantState,
        reason: &str,
    ) -> Result<Grant, CoreError> {
        self.write(|tx| {
            let mut g = self.grant(id)?;
            let owner = catalog::owner_of(&g.dataset_id).to_string();
            match to {
                GrantState::Revoked => authz::revoke_grant(p, &owner, &g.consumer_id)?,
                _ => authz::decide_grant(p, &owner)?,
            }
            g.decide(to, uri, reason, now())?;
            g.revision = tx.next_revision(Kind::Grant, &g.id)?;
            tx.put(grant_key(&g.id), &g)?;
            Ok(g)
        })
        .await
        .inspect(|g| tracing::info!(by = %p, grant = %g.id, state = %g.state, reason = %g.reason, "grant decided"))
    }

    fn grant(&self, id: &str) -> Result<Grant, CoreError> {
        self.get(&grant_key(id))?
            .ok_or_else(|| CoreError::not_found(format!("grant {id} does not exist")))
    }

    /// One grant, if the caller may see it.
    pub fn get_grant(&self, p: &Principal, id: &str) -> Result<Grant, CoreError> {
        let g = self.grant(id)?;
        if !authz::see_grant(p, catalog::owner_of(&g.dataset_id), &g.consumer_id) {
            // Same answer as a missing grant: ids of other departments' grants are not disclosed.
            return Err(CoreError::not_found(format!("grant {id} does not exist")));
        }
        Ok(g)
    }

    /// Grants matching the query that the caller may see.
    pub fn list_grants(&self, p: &Principal, query: &GrantQuery) -> Result<Vec<Grant>, CoreError> {
        let t = now();
        Ok(self
            .scan::<Grant>(b"grant/")?
            .into_iter()
            .filter(|g| authz::see_grant(p, catalog::owner_of(&g.dataset_id), &g.consumer_id))
            .filter(|g| query.consumer_id.is_empty() || g.consumer_id == query.consumer_id)
            .filter(|g| query.dataset_id.is_empty() || g.dataset_id == query.dataset_id)
            .filter(|g| query.owner_id.is_empty() || catalog::owner_of(&g.dataset_id) == query.owner_id)
            .filter(|g| query.state.is_none_or(|s| g.state_at(t) == s))
            .collect())
    }

    // ---- watch ----

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
        // Under the write lock, the store holds exactly what is committed: a write applies its
        // batch before its flush returns, and a watcher must never pass on (and a node never
        // keep) a change that a crash in that window would undo.
        // The lock keeps writes out while reading; the bound is the last revision whose commit
        // succeeded (a failed one took its number, but may not be on disk: it is not passed on).
        let _writes_held = self.writer.lock().await;
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
                Kind::Department => {}
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

/// A stored schema version, parsed.
struct DatasetSchemaVersion {
    version: u32,
    schema: DatasetSchema,
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, CoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        CoreError::Store(exchange_core::store::StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            message: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_core::identity::Role;
    use exchange_core::store::MemStore;

    fn state() -> State {
        State::open(
            Arc::new(MemStore::new()),
            GrantLimits {
                max_duration_secs: 86_400,
            },
        )
        .unwrap()
    }

    fn dept(id: &str) -> Department {
        Department {
            id: id.into(),
            name: id.into(),
            level: Level::Province,
            region_code: "320000".into(),
            parent_id: None,
            node_endpoint: None,
            created_at: 0,
            updated_at: 0,
            revision: 0,
        }
    }

    #[tokio::test]
    async fn changes_since_sends_each_object_once_in_its_latest_state() {
        let s = state();
        let admin = Principal::new("js.dsj", Role::Admin);
        s.register_department(&admin, dept("js.gongan")).await.unwrap();
        let dataset = Dataset {
            id: "js.gongan/population".into(),
            title: "t".into(),
            description: String::new(),
            domain: String::new(),
            classification: Classification::Open,
            update_frequency: String::new(),
            steward: String::new(),
            key_field: "id".into(),
            tags: vec![],
            compatibility: compat::CompatMode::Backward,
            latest_version: 0,
            created_at: 0,
            updated_at: 0,
            revision: 0,
        };
        s.register_dataset(&admin, dataset.clone()).await.unwrap();
        let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#;
        s.publish_schema(&admin, &dataset.id, schema).await.unwrap();

        // Registered at revision 2, then changed at 3: only the latest state is sent, at 3.
        let Changes { items, last, history } = s.changes_since(Some("js.gongan"), 0, None, 100).await.unwrap();
        assert_eq!(last, 3);
        assert_eq!(items.len(), 1);
        let (revision, item_history, WatchItem::Dataset(d)) = &items[0] else {
            panic!("expected the dataset");
        };
        assert_eq!(*revision, 3);
        assert_eq!(item_history, &history, "the dataset's change is the last one examined");
        assert_eq!(d.dataset.latest_version, 1);
        assert_eq!(d.versions.len(), 1);

        // Other departments see nothing of it; a resume after the last revision sees nothing new.
        assert!(s
            .changes_since(Some("js.scjg"), 0, None, 100)
            .await
            .unwrap()
            .items
            .is_empty());
        let resumed = s.changes_since(Some("js.gongan"), 3, None, 100).await.unwrap();
        assert!(resumed.items.is_empty());
        assert_eq!((resumed.last, resumed.history.as_str()), (3, history.as_str()));
        // Resuming with that fingerprint is fine; with another one (a history this registry
        // does not have) it is refused.
        assert!(s.changes_since(None, 3, Some(&history), 100).await.is_ok());
        let err = s.changes_since(None, 3, Some(&"0".repeat(64)), 100).await.unwrap_err();
        assert!(matches!(err, CoreError::OutOfRange(_)), "{err}");
        // Another revision's fingerprint does not match this one.
        let err = s.changes_since(None, 1, Some(&history), 100).await.unwrap_err();
        assert!(matches!(err, CoreError::OutOfRange(_)), "{err}");
        // A revision this registry never reached (a node ahead of a restored backup) is named.
        for beyond in [4, u64::MAX] {
            let err = s.changes_since(None, beyond, None, 100).await.unwrap_err();
            assert!(matches!(err, CoreError::OutOfRange(_)), "{err}");
            assert!(err.to_string().contains("beyond this registry's latest, 3"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_refused_write_changes_nothing_and_takes_no_revision() {
        let s = state();
        let admin = Principal::new("js.dsj", Role::Admin);
        let mut bad = dept("js.gongan");
        bad.region_code = "x".into();
        assert!(s.register_department(&admin, bad).await.is_err());
        assert_eq!(*s.subscribe().borrow(), 0);
        assert!(s.list_departments(None, None).unwrap().is_empty());
        s.register_department(&admin, dept("js.gongan")).await.unwrap();
        assert_eq!(*s.subscribe().borrow(), 1);
    }

    /// A store whose next commit applies its batch and then fails, as sled does when the batch is
    /// applied in memory but the flush fails.
    struct FlushFailsOnce {
        inner: MemStore,
        fail_next: std::sync::atomic::AtomicBool,
    }

    impl Store for FlushFailsOnce {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<exchange_core::store::Entry>, StoreError> {
            self.inner.scan_prefix(prefix)
        }
        fn range(
            &self,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<exchange_core::store::Entry>, StoreError> {
            self.inner.range(start, end, limit)
        }
        fn commit(&self, batch: Batch) -> Result<(), StoreError> {
            self.inner.commit(batch)?;
            match self.fail_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
                true => Err(StoreError::Engine("flush failed: disk error".into())),
                false => Ok(()),
            }
        }
    }

    fn flaky_state() -> (Arc<FlushFailsOnce>, State) {
        let store = Arc::new(FlushFailsOnce {
            inner: MemStore::new(),
            fail_next: std::sync::atomic::AtomicBool::new(false),
        });
        let state = State::open(
            store.clone(),
            GrantLimits {
                max_duration_secs: 86_400,
            },
        )
        .unwrap();
        (store, state)
    }

    #[tokio::test]
    async fn a_failed_commit_does_not_hand_its_revision_to_the_next_write() {
        let (store, s) = flaky_state();
        let admin = Principal::new("js.dsj", Role::Admin);
        store.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = s.register_department(&admin, dept("js.gongan")).await;
        assert!(matches!(failed, Err(CoreError::Store(_))), "{failed:?}");
        s.register_department(&admin, dept("js.scjg")).await.unwrap();
        // The batch that reported failure may still reach the disk; its log entry survives.
        assert_eq!(s.get_department("js.gongan").unwrap().revision, 1);
        assert_eq!(s.get_department("js.scjg").unwrap().revision, 2);
        assert!(store.get(&log_key(1)).unwrap().is_some() && store.get(&log_key(2)).unwrap().is_some());
    }

    #[tokio::test]
    async fn watch_does_not_pass_on_a_change_whose_commit_failed() {
        let (store, s) = flaky_state();
        let admin = Principal::new("js.dsj", Role::Admin);
        s.register_department(&admin, dept("js.gongan")).await.unwrap();
        store.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(s.register_department(&admin, dept("js.scjg")).await.is_err());
        // Revision 2 is in memory but was reported failed: a watcher stops before it.
        let last = s.changes_since(None, 0, None, 100).await.unwrap().last;
        assert_eq!(last, 1);
        assert!(matches!(
            s.changes_since(None, 2, None, 100).await,
            Err(CoreError::OutOfRange(_))
        ));
    }

    #[tokio::test]
    async fn a_write_whose_caller_goes_away_still_takes_its_revision() {
        let s = state();
        let admin = Principal::new("js.dsj", Role::Admin);
        // Polled once, then dropped while its commit runs: a client that cancels its call.
        let cancelled = futures_util::FutureExt::now_or_never(s.register_department(&admin, dept("js.gongan")));
        assert!(cancelled.is_none(), "the write was still committing when dropped");
        s.register_department(&admin, dept("js.scjg")).await.unwrap();
        // Both are stored, each under its own revision, and Watch replays both.
        let Changes { items, last, .. } = s.changes_since(None, 0, None, 100).await.unwrap();
        assert_eq!(last, 2);
        assert!(
            items.is_empty(),
            "departments are not watched, but their revisions are counted"
        );
        let ids: Vec<String> = s
            .list_departments(None, None)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["js.gongan", "js.scjg"]);
        assert_eq!(s.get_department("js.gongan").unwrap().revision, 1);
        assert_eq!(s.get_department("js.scjg").unwrap().revision, 2);
    }
}
