//! Grants: who may read which fields of which dataset, for which purposes, until when.
//!
//! The state machine, by the dataset's classification:
//!
//! ```text
//! unconditional, open:  request ─▶ approved ─▶ revoked
//! conditional:          request ─▶ requested ─▶ approved ─▶ revoked
//!                                            └─▶ rejected
//! not_shared:           request refused; nothing stored
//! any approved or requested grant past its expiry reads as expired.
//! ```

use serde::{Deserialize, Serialize};

use crate::catalog::{check_field_name, Classification, Dataset};
use crate::closed_set::closed_set;
use crate::error::{CoreError, ValidationError};
use crate::filter::Filter;
use crate::schema::DatasetSchema;
use crate::UnixSeconds;

pub mod clock;
pub use clock::{Appeal, AppealOutcome, Clocks, Stage, Steps, WaitingFor};

/// `decided_by` of a grant approved by its dataset's class, with no person deciding.
pub const AUTO_APPROVER: &str = "registry";

closed_set! {
    /// The stored state of a grant. Expiry is not stored: see [`Grant::state_at`].
    pub enum GrantState ("state", "grant state") {
        /// Waiting for the owner or an admin.
        Requested = "requested",
        /// In force until it expires or is revoked.
        Approved = "approved",
        /// Refused by the owner or an admin.
        Rejected = "rejected",
        /// Withdrawn after approval (or withdrawn while still requested).
        Revoked = "revoked",
        /// Past its expiry; computed, never stored.
        Expired = "expired",
    }
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `g-000001`, unique in the registry.
    pub id: String,
    /// The department that may read.
    pub consumer_id: String,
    /// What it may read.
    pub dataset_id: String,
    /// Granted top-level properties; always includes the key field.
    pub fields: Vec<String>,
    /// Granted fields served unmasked despite an `x-sensitivity` annotation.
    pub clear_fields: Vec<String>,
    /// Only rows matching this filter (canonical text; empty = all rows).
    pub row_filter: String,
    /// Purpose codes a read must state one of.
    pub purposes: Vec<String>,
    /// Those of `purposes` that are investigative: a read for one of them may be withheld from
    /// the read record's access report until a date the reader sets (an investigation the
    /// person read about must not learn of too soon). Auditors always see such reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub investigative_purposes: Vec<String>,
    /// The law or document that allows the sharing.
    pub legal_basis: String,
    /// When it stops being in force.
    pub expires_at: UnixSeconds,
    /// Stored state.
    pub state: GrantState,
    /// Why it was approved, rejected or revoked.
    pub reason: String,
    /// Certificate URI of who requested it.
    pub requested_by: String,
    /// Certificate URI of who last decided on it.
    pub decided_by: String,
    /// When it was requested.
    pub created_at: UnixSeconds,
    /// When it last changed.
    pub updated_at: UnixSeconds,
    /// The registry revision of its last change.
    pub revision: u64,
    /// Who acts next and by when, the review and the appeal (see [`clock`]); empty for a grant
    /// that never waited for anyone.
    #[serde(flatten)]
    pub steps: Steps,
}

impl Grant {
    /// The state at time `now`: a requested or approved grant past its expiry is expired.
    pub fn state_at(&self, now: UnixSeconds) -> GrantState {
        match self.state {
            GrantState::Requested | GrantState::Approved if now >= self.expires_at => GrantState::Expired,
            state => state,
        }
    }

    /// Whether the grant is in force at `now`.
    pub fn is_in_force(&self, now: UnixSeconds) -> bool {
        self.state_at(now) == GrantState::Approved
    }

    /// Whether the grant still matters to a schema change (requested or approved, not expired).
    pub fn is_active(&self, now: UnixSeconds) -> bool {
        matches!(self.state_at(now), GrantState::Requested | GrantState::Approved)
    }

    /// Moves the grant to `to`, decided by `by` for `reason`, or says why it cannot move.
    pub fn decide(&mut self, to: GrantState, by: &str, reason: &str, now: UnixSeconds) -> Result<(), CoreError> {
        let from = self.state_at(now);
        let allowed = matches!(
            (from, to),
            (GrantState::Requested, GrantState::Approved)
                | (GrantState::Requested, GrantState::Rejected)
                | (GrantState::Requested, GrantState::Revoked)
                | (GrantState::Approved, GrantState::Revoked)
        );
        if !allowed {
            let verb = match to {
                GrantState::Approved => "approve",
                GrantState::Rejected => "reject",
                _ => "revoke",
            };
            return Err(CoreError::FailedPrecondition(format!(
                "cannot {verb} grant {} because it is {from}",
                self.id
            )));
        }
        if matches!(to, GrantState::Rejected | GrantState::Revoked) && reason.trim().is_empty() {
            return Err(ValidationError::new("reason", "say why the grant is rejected or revoked").into());
        }
        self.state = to;
        self.reason = reason.to_string();
        self.decided_by = by.to_string();
        self.updated_at = now;
        Ok(())
    }

    /// Why this grant would break under a new schema: granted fields that vanish or change type.
    pub fn broken_by(&self, old: &DatasetSchema, new: &DatasetSchema) -> Vec<(String, String)> {
        let mut broken = Vec::new();
        for field in &self.fields {
            match (old.properties.get(field), new.properties.get(field)) {
                (_, None) => broken.push((field.clone(), format!("field \"{field}\" would be removed"))),
                (Some(before), Some(after)) if before.types != after.types => broken.push((
                    field.clone(),
                    format!(
                        "field \"{field}\" changes type from {} to {}",
                        show_types(&before.types),
                        show_types(&after.types)
                    ),
                )),
                _ => {}
            }
        }
        broken
    }
}

fn show_types(types: &[String]) -> String {
    match types {
        [] => "any".to_string(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A consumer's request for a grant, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantRequest {
    /// The consumer department.
    pub consumer_id: String,
    /// The dataset asked for.
    pub dataset_id: String,
    /// Fields asked for (the key is added).
    pub fields: Vec<String>,
    /// Fields asked for in clear.
    pub clear_fields: Vec<String>,
    /// Row filter text; empty for all rows.
    pub row_filter: String,
    /// Purpose codes.
    pub purposes: Vec<String>,
    /// Which of them are investigative (see [`Grant::investigative_purposes`]).
    pub investigative_purposes: Vec<String>,
    /// Legal basis text.
    pub legal_basis: String,
    /// Requested expiry.
    pub expires_at: UnixSeconds,
}

/// Limits on grant requests, from the registry's configuration.
#[derive(Debug, Clone, Copy)]
pub struct GrantLimits {
    /// The longest a grant may run, in seconds from the request.
    pub max_duration_secs: i64,
}

impl GrantLimits {
    /// Refuses an expiry further from `now` than the registry gives grants.
    pub fn check_expiry(&self, expires_at: UnixSeconds, now: UnixSeconds) -> Result<(), ValidationError> {
        if expires_at > now.saturating_add(self.max_duration_secs) {
            return Err(ValidationError::new(
                "expires_at",
                format!(
                    "is more than {} days away; the registry allows grants of at most {} days",
                    (expires_at - now) / 86_400,
                    self.max_duration_secs / 86_400
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a purpose code: 2–64 lowercase letters, digits and `-`, starting with a letter, e.g.
/// `business-licensing`.
pub fn check_purpose(code: &str) -> Result<(), ValidationError> {
    let mut chars = code.chars();
    let ok = (2..=64).contains(&code.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "purposes",
            format!("\"{code}\" is not a purpose code; use lowercase words joined by '-', e.g. \"business-licensing\""),
        ))
    }
}

/// Checks a request against the dataset and its latest schema and returns the grant to store,
/// in the state its classification gives it. `not_shared` datasets are refused.
pub fn new_grant(
    request: GrantRequest,
    dataset: &Dataset,
    schema: &DatasetSchema,
    limits: GrantLimits,
    requested_by: &str,
    now: UnixSeconds,
) -> Result<Grant, CoreError> {
    if dataset.classification == Classification::NotShared {
        return Err(CoreError::FailedPrecondition(format!(
            "dataset {} is classified not_shared and is never served to other departments",
            dataset.id
        )));
    }
    if request.consumer_id == dataset.owner() {
        return Err(ValidationError::new(
            "consumer_id",
            format!(
                "{} owns {} and needs no grant to read it",
                request.consumer_id, dataset.id
            ),
        )
        .into());
    }
    let mut fields = Vec::new();
    for field in std::iter::once(&dataset.key_field).chain(&request.fields) {
        check_field_name(field, "fields")?;
        if !schema.properties.contains_key(field) {
            return Err(ValidationError::new(
                "fields",
                format!(
                    "\"{field}\" is not a property of {} version {}; it has {}",
                    dataset.id,
                    dataset.latest_version,
                    schema.properties.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .into());
        }
        if !fields.contains(field) {
            fields.push(field.clone());
        }
    }
    let mut clear_fields = Vec::new();
    for field in &request.clear_fields {
        if !fields.contains(field) {
            return Err(
                ValidationError::new("clear_fields", format!("\"{field}\" is not among the requested fields")).into(),
            );
        }
        // Only a field masked today can be asked in clear, so whoever approves sees exactly what
        // would be unmasked; a field marked sensitive later stays masked under this grant.
        if schema.properties.get(field).is_none_or(|p| p.sensitivity.is_none()) {
            return Err(ValidationError::new(
                "clear_fields",
                format!(
                    "\"{field}\" has no x-sensitivity and is never masked; list only masked fields in clear_fields"
                ),
            )
            .into());
        }
        if !clear_fields.contains(field) {
            clear_fields.push(field.clone());
        }
    }
    let row_filter = if request.row_filter.trim().is_empty() {
        String::new()
    } else {
        let filter: Filter = request
            .row_filter
            .parse()
            .map_err(|e| ValidationError::new("row_filter", format!("{e}")))?;
        for field in filter.fields() {
            let is_string = schema
                .properties
                .get(field)
                .is_some_and(|p| p.types.iter().any(|t| t == "string"));
            if !is_string {
                return Err(ValidationError::new(
                    "row_filter",
                    format!("\"{field}\" is not a top-level string property of {}", dataset.id),
                )
                .into());
            }
        }
        filter.to_string()
    };
    if request.purposes.is_empty() {
        return Err(ValidationError::new(
            "purposes",
            "name at least one purpose code, e.g. \"business-licensing\"",
        )
        .into());
    }
    let mut purposes = Vec::new();
    for purpose in &request.purposes {
        check_purpose(purpose)?;
        if !purposes.contains(purpose) {
            purposes.push(purpose.clone());
        }
    }
    let mut investigative_purposes = Vec::new();
    for purpose in &request.investigative_purposes {
        if !purposes.contains(purpose) {
            return Err(ValidationError::new(
                "investigative_purposes",
                format!(
                    "\"{purpose}\" is not one of the grant's purposes ({})",
                    purposes.join(", ")
                ),
            )
            .into());
        }
        if !investigative_purposes.contains(purpose) {
            investigative_purposes.push(purpose.clone());
        }
    }
    if request.legal_basis.trim().is_empty() {
        return Err(ValidationError::new("legal_basis", "name the law or document that allows this sharing").into());
    }
    if request.legal_basis.chars().count() > 2000 {
        return Err(ValidationError::new("legal_basis", "must be at most 2000 characters").into());
    }
    if request.expires_at <= now {
        return Err(ValidationError::new("expires_at", "must be in the future").into());
    }
    limits.check_expiry(request.expires_at, now)?;
    // Sensitive fields asked for in clear need a person's decision, whatever the class: the
    // class says who may read the data, not who may read it unmasked.
    let clear_sensitive: Vec<&str> = clear_fields
        .iter()
        .filter(|f| schema.properties.get(*f).is_some_and(|p| p.sensitivity.is_some()))
        .map(String::as_str)
        .collect();
    let (state, reason) = match dataset.classification {
        Classification::Conditional => (GrantState::Requested, String::new()),
        class if !clear_sensitive.is_empty() => (
            GrantState::Requested,
            format!(
                "waits for the owner: dataset is {class}, but {} asked in clear",
                clear_sensitive.join(", ")
            ),
        ),
        class => (
            GrantState::Approved,
            format!("approved automatically: dataset is {class}"),
        ),
    };
    Ok(Grant {
        id: String::new(),
        consumer_id: request.consumer_id,
        dataset_id: dataset.id.clone(),
        fields,
        clear_fields,
        row_filter,
        purposes,
        investigative_purposes,
        legal_basis: request.legal_basis,
        expires_at: request.expires_at,
        state,
        reason,
        requested_by: requested_by.to_string(),
        decided_by: if state == GrantState::Approved {
            AUTO_APPROVER.into()
        } else {
            String::new()
        },
        created_at: now,
        updated_at: now,
        revision: 0,
        steps: Steps::default(),
    })
}

#[cfg(test)]
mod tests;
