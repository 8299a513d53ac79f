//! The catalog: datasets and their schema versions, each checked against the ones before.

use super::*;

/// A dataset with its schema versions, oldest first.
#[derive(Debug, Clone)]
pub struct DatasetWithVersions {
    /// The dataset.
    pub dataset: Dataset,
    /// Its versions.
    pub versions: Vec<SchemaVersion>,
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

/// A stored schema version, parsed.
pub(super) struct DatasetSchemaVersion {
    pub(super) version: u32,
    pub(super) schema: DatasetSchema,
}

impl State {
    /// Registers a dataset (without a schema: publish version 1 next).
    pub async fn register_dataset(&self, p: &Principal, mut dataset: Dataset) -> Result<Dataset, CoreError> {
        catalog::validate(&dataset)?;
        authz::manage_dataset(p, dataset.owner())?;
        self.write(p, "register_dataset", |tx| {
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
            let t = self.now();
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
        self.write(p, "update_dataset", |tx| {
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
            dataset.updated_at = self.now();
            dataset.revision = tx.next_revision(Kind::Dataset, &dataset.id)?;
            tx.put(dataset_key(&dataset.id), &dataset)?;
            Ok(dataset)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, dataset = %d.id, revision = d.revision, "dataset updated"))
    }

    pub(super) fn dataset(&self, id: &str) -> Result<Dataset, CoreError> {
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

    pub(super) fn parsed_versions(&self, dataset: &Dataset) -> Result<Vec<DatasetSchemaVersion>, CoreError> {
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
            let t = self.now();
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
        self.write(p, "publish_schema", |tx| {
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
                created_at: self.now(),
            };
            tx.put(version_key(&dataset.id, version), &stored)?;
            tx.event.schema_version = version;
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
}
