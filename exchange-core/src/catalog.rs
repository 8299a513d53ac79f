//! The catalog: datasets, their classification and their compatibility mode.

use serde::{Deserialize, Serialize};

use crate::closed_set::closed_set;
use crate::compat::CompatMode;
use crate::department::check_department_id;
use crate::error::ValidationError;
use crate::UnixSeconds;

closed_set! {
    /// The national data-sharing classes, plus open data.
    pub enum Classification ("classification", "classification") {
        /// 无条件共享: any member may read; grants are approved at once.
        Unconditional = "unconditional",
        /// 有条件共享: needs a grant approved by the owner or an admin.
        Conditional = "conditional",
        /// 不予共享: never served to other departments; grant requests are refused.
        NotShared = "not_shared",
        /// 开放数据: public open data; grants are approved at once.
        Open = "open",
    }
}

closed_set! {
    /// How often a dataset is declared to change (`update_frequency`): what the early warning
    /// and the scoreboard judge its freshness against.
    pub enum Frequency ("update_frequency", "frequency") {
        /// Changes as things happen; judged as hourly.
        Realtime = "realtime",
        Hourly = "hourly",
        Daily = "daily",
        Weekly = "weekly",
        Monthly = "monthly",
        Quarterly = "quarterly",
        Yearly = "yearly",
        /// No rhythm to judge by: never stale.
        Irregular = "irregular",
    }
}

impl Frequency {
    /// The longest a dataset of this frequency goes unchanged on schedule, in seconds (none for
    /// irregular ones). Months and years are counted at their longest (31 and 366 days).
    pub fn period_secs(self) -> Option<i64> {
        const HOUR: i64 = 3600;
        const DAY: i64 = 24 * HOUR;
        match self {
            Frequency::Realtime | Frequency::Hourly => Some(HOUR),
            Frequency::Daily => Some(DAY),
            Frequency::Weekly => Some(7 * DAY),
            Frequency::Monthly => Some(31 * DAY),
            Frequency::Quarterly => Some(92 * DAY),
            Frequency::Yearly => Some(366 * DAY),
            Frequency::Irregular => None,
        }
    }
}

/// A dataset in the catalog. Its schema versions are stored beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// `owner/name`, e.g. `js.gongan/population`.
    pub id: String,
    /// Human title, e.g. `人口基础信息`.
    pub title: String,
    /// What it holds and how it is kept.
    pub description: String,
    /// Subject area, e.g. `population`.
    pub domain: String,
    /// Who may read it, and how grants are decided.
    pub classification: Classification,
    /// How often it changes, e.g. `daily`.
    pub update_frequency: String,
    /// Who answers for it.
    pub steward: String,
    /// The record key: a required string property of every schema version.
    pub key_field: String,
    /// Free tags for search.
    pub tags: Vec<String>,
    /// The rule new schema versions must follow.
    pub compatibility: CompatMode,
    /// The latest schema version, 0 before the first is published.
    pub latest_version: u32,
    /// When it was registered.
    pub created_at: UnixSeconds,
    /// When it last changed.
    pub updated_at: UnixSeconds,
    /// The registry revision of its last change (schema versions included).
    pub revision: u64,
}

impl Dataset {
    /// The owning department's id: everything before the `/`.
    pub fn owner(&self) -> &str {
        owner_of(&self.id)
    }

    /// Its declared frequency: none when left empty, or when stored before frequencies were
    /// checked and not one of their names.
    pub fn frequency(&self) -> Option<Frequency> {
        self.update_frequency.parse().ok()
    }

    /// Whether `text` (already lowercased) occurs in the id, title, description or tags.
    pub fn matches_text(&self, text: &str) -> bool {
        [&self.id, &self.title, &self.description]
            .into_iter()
            .chain(self.tags.iter())
            .any(|field| field.to_lowercase().contains(text))
    }
}

/// A published schema version as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// The dataset it belongs to.
    pub dataset_id: String,
    /// 1, 2, ...
    pub version: u32,
    /// The schema text exactly as published.
    pub schema_json: String,
    /// Its `x-sensitivity` annotations.
    pub sensitive_fields: Vec<crate::schema::SensitiveField>,
    /// When it was published.
    pub created_at: i64,
}

/// The owner part of a dataset id (the whole id if it has no `/`).
pub fn owner_of(dataset_id: &str) -> &str {
    dataset_id.split_once('/').map_or(dataset_id, |(owner, _)| owner)
}

/// Checks a dataset id: `owner/name`, the owner a valid department id, the name 1–64
/// lowercase letters, digits, `-` and `_`.
pub fn check_dataset_id(id: &str) -> Result<(), ValidationError> {
    let Some((owner, name)) = id.split_once('/') else {
        return Err(ValidationError::new(
            "dataset id",
            format!("\"{id}\" must be owner/name, e.g. \"js.gongan/population\""),
        ));
    };
    check_department_id(owner).map_err(|e| ValidationError::new("dataset id", e.message))?;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Err(ValidationError::new(
            "dataset id",
            format!("name \"{name}\" must be 1 to 64 lowercase letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

/// Checks a property name used as a key field or granted field: a JSON Schema property name
/// that can be written in row filters (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters).
pub fn check_field_name(field: &str, what: &str) -> Result<(), ValidationError> {
    let mut chars = field.chars();
    let ok = field.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            what,
            format!("\"{field}\" is not a field name (letters, digits and '_', not starting with a digit)"),
        ))
    }
}

/// Checks the descriptive fields of a dataset being registered or updated.
pub fn validate(dataset: &Dataset) -> Result<(), ValidationError> {
    check_dataset_id(&dataset.id)?;
    check_field_name(&dataset.key_field, "key_field")?;
    if dataset.title.trim().is_empty() {
        return Err(ValidationError::new("title", "must not be empty"));
    }
    for (field, value, max) in [
        ("title", &dataset.title, 200),
        ("description", &dataset.description, 4000),
        ("domain", &dataset.domain, 64),
        ("update_frequency", &dataset.update_frequency, 64),
        ("steward", &dataset.steward, 200),
    ] {
        if value.chars().count() > max {
            return Err(ValidationError::new(field, format!("must be at most {max} characters")));
        }
    }
    if !dataset.update_frequency.is_empty() {
        dataset.update_frequency.parse::<Frequency>()?;
    }
    if dataset.tags.len() > 32
        || dataset
            .tags
            .iter()
            .any(|t| t.trim().is_empty() || t.chars().count() > 64)
    {
        return Err(ValidationError::new("tags", "at most 32 tags, each 1 to 64 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_ids() {
        assert!(check_dataset_id("js.gongan/population").is_ok());
        assert!(check_dataset_id("js.scjg/legal-persons_v2").is_ok());
        for bad in [
            "population",
            "js.gongan/",
            "gongan/population",
            "js.gongan/Population",
            "js.gongan/a/b",
        ] {
            assert!(check_dataset_id(bad).is_err(), "{bad}");
        }
        assert_eq!(owner_of("js.gongan/population"), "js.gongan");
    }

    #[test]
    fn frequencies_are_checked_when_given_and_judged_when_known() {
        let mut dataset = crate::testing::population(Classification::Conditional);
        for (text, period) in [("", None), ("daily", Some(86_400)), ("irregular", None)] {
            dataset.update_frequency = text.into();
            assert!(validate(&dataset).is_ok(), "{text}");
            assert_eq!(dataset.frequency().and_then(Frequency::period_secs), period, "{text}");
        }
        dataset.update_frequency = "每日".into();
        let refused = validate(&dataset).unwrap_err();
        assert_eq!(refused.field, "update_frequency");
        assert!(
            refused.message.contains("use one of realtime, hourly, daily"),
            "{}",
            refused.message
        );
        // Stored before frequencies were checked: it still loads, and is not judged.
        assert_eq!(dataset.frequency(), None);
    }

    #[test]
    fn field_names() {
        assert!(check_field_name("id_number", "key_field").is_ok());
        for bad in ["", "1a", "a-b", "a.b", "名字"] {
            assert!(check_field_name(bad, "key_field").is_err(), "{bad}");
        }
    }
}
