//! Read authorization on a node: may this principal read these fields of this dataset for this
//! purpose, and if so which fields, masked how, filtered how? Default deny: no grant in force,
//! no data (Architecture Invariant).

use std::collections::BTreeMap;

use crate::catalog::{Classification, Dataset};
use crate::filter::Filter;
use crate::grant::{Grant, GrantState};
use crate::identity::{Principal, Role};
use crate::mask::Sensitivity;
use crate::schema::DatasetSchema;
use crate::UnixSeconds;

/// What a consumer asks to read.
#[derive(Debug, Clone)]
pub struct ReadRequest<'a> {
    /// Fields asked for; empty means every field the caller may read.
    pub fields: &'a [String],
    /// The purpose code stated.
    pub purpose: &'a str,
    /// The caller's own row filter.
    pub filter: &'a Filter,
}

/// How an allowed read is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// The grant relied on (`None` for the owner reading its own data).
    pub grant_id: Option<String>,
    /// Fields to send, in order; the key first.
    pub fields: Vec<String>,
    /// Fields to mask, with their sensitivity.
    pub masked: BTreeMap<String, Sensitivity>,
    /// The rows to send: the grant's filter AND the request's.
    pub filter: Filter,
    /// Why the read is allowed, for the audit event.
    pub reason: String,
}

/// Why a read is refused; the message is what the caller and the auditor see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No grant of the caller's department covers the dataset.
    #[error("no grant: {department} holds no grant on {dataset}; request one from the registry")]
    NoGrant {
        /// The caller's department.
        department: String,
        /// The dataset.
        dataset: String,
    },
    /// Only revoked grants.
    #[error("grant {grant} on {dataset} was revoked: {reason}")]
    Revoked {
        /// The grant.
        grant: String,
        /// The dataset.
        dataset: String,
        /// Why it was revoked.
        reason: String,
    },
    /// Only expired grants.
    #[error("grant {grant} on {dataset} expired")]
    Expired {
        /// The grant.
        grant: String,
        /// The dataset.
        dataset: String,
    },
    /// Grants exist but only requested or rejected ones.
    #[error("grant {grant} on {dataset} is {state}, not approved")]
    NotApproved {
        /// The grant.
        grant: String,
        /// The dataset.
        dataset: String,
        /// Its state.
        state: GrantState,
    },
    /// No purpose was stated.
    #[error("no purpose stated: every read must state a purpose code")]
    NoPurpose,
    /// The purpose is not in any grant in force.
    #[error("purpose \"{purpose}\" not granted on {dataset}; granted purposes: {granted}")]
    PurposeNotGranted {
        /// The purpose stated.
        purpose: String,
        /// The dataset.
        dataset: String,
        /// The purposes the grants in force allow.
        granted: String,
    },
    /// A field asked for is outside the grant.
    #[error("field \"{field}\" not granted on {dataset} for purpose \"{purpose}\"; granted fields: {granted}")]
    FieldNotGranted {
        /// The field.
        field: String,
        /// The dataset.
        dataset: String,
        /// The purpose stated.
        purpose: String,
        /// The fields the grant allows.
        granted: String,
    },
    /// A prefix or IN condition on a field the caller sees masked: a prefix would reveal the
    /// value a character at a time, and a long IN list would guess it hundreds of values a time.
    #[error("field \"{field}\" is masked under grant {grant}: filter it with = only, not STARTS WITH or IN (those would uncover what the mask hides)")]
    ProbeOnMasked {
        /// The field.
        field: String,
        /// The grant relied on.
        grant: String,
    },
    /// Each field is in some grant for the purpose, but no one grant has them all.
    #[error("no single grant on {dataset} for purpose \"{purpose}\" covers {fields} together: {grants}; read them in separate requests or request a grant with all of them")]
    NotInOneGrant {
        /// The fields asked for (and filtered on).
        fields: String,
        /// The dataset.
        dataset: String,
        /// The purpose stated.
        purpose: String,
        /// Each grant and its fields.
        grants: String,
    },
    /// A field asked for (or filtered on) does not exist.
    #[error("field \"{field}\" is not a property of {dataset}")]
    UnknownField {
        /// The field.
        field: String,
        /// The dataset.
        dataset: String,
    },
    /// The dataset is never shared.
    #[error("dataset {dataset} is classified not_shared and is never served to other departments")]
    NotShared {
        /// The dataset.
        dataset: String,
    },
    /// Admins and auditors do not read data through grants.
    #[error("{principal} may not read records: data is read by departments' node or system principals under a grant")]
    WrongRole {
        /// The caller.
        principal: String,
    },
}

/// Decides a read of `dataset` (latest schema `schema`) by `principal`, given every grant of
/// the caller's department on the dataset.
pub fn authorize(
    principal: &Principal,
    dataset: &Dataset,
    schema: &DatasetSchema,
    grants: &[&Grant],
    request: &ReadRequest<'_>,
    now: UnixSeconds,
) -> Result<ReadPlan, Denial> {
    if !matches!(principal.role, Role::Node | Role::System) {
        return Err(Denial::WrongRole {
            principal: principal.to_string(),
        });
    }
    if request.purpose.trim().is_empty() {
        return Err(Denial::NoPurpose);
    }
    // A row filter reads the fields it tests: they are asked for like the fields to return.
    let mut needed: Vec<&str> = request.fields.iter().map(String::as_str).collect();
    needed.extend(request.filter.fields());
    for &field in &needed {
        if !schema.properties.contains_key(field) {
            return Err(Denial::UnknownField {
                field: field.to_string(),
                dataset: dataset.id.clone(),
            });
        }
    }
    let sensitive = |f: &str| schema.properties.get(f).and_then(|p| p.sensitivity);
    if principal.department == dataset.owner() {
        let fields = chosen_fields(&dataset.key_field, request.fields, schema.properties.keys());
        return Ok(ReadPlan {
            grant_id: None,
            fields,
            masked: BTreeMap::new(),
            filter: request.filter.clone(),
            reason: "owner reads its own data".into(),
        });
    }
    if dataset.classification == Classification::NotShared {
        return Err(Denial::NotShared {
            dataset: dataset.id.clone(),
        });
    }
    let in_force: Vec<&Grant> = grants.iter().copied().filter(|g| g.is_in_force(now)).collect();
    if in_force.is_empty() {
        return Err(why_none_in_force(principal, dataset, grants, now));
    }
    let for_purpose: Vec<&Grant> = in_force
        .iter()
        .copied()
        .filter(|g| g.purposes.iter().any(|p| p == request.purpose))
        .collect();
    if for_purpose.is_empty() {
        let mut granted: Vec<&str> = in_force
            .iter()
            .flat_map(|g| g.purposes.iter().map(String::as_str))
            .collect();
        granted.sort();
        granted.dedup();
        return Err(Denial::PurposeNotGranted {
            purpose: request.purpose.to_string(),
            dataset: dataset.id.clone(),
            granted: granted.join(", "),
        });
    }
    // The first grant (oldest id) for the purpose that covers every field asked for or filtered on.
    let grants_field = |g: &Grant, f: &str| g.fields.iter().any(|x| x == f);
    let covering = for_purpose
        .iter()
        .copied()
        .find(|g| needed.iter().all(|f| grants_field(g, f)));
    let Some(grant) = covering else {
        // Name a field no grant for the purpose has; failing that, say no one grant has them all.
        let ungranted = needed.iter().find(|f| !for_purpose.iter().any(|g| grants_field(g, f)));
        if let Some(field) = ungranted {
            let mut granted: Vec<&str> = for_purpose
                .iter()
                .flat_map(|g| g.fields.iter().map(String::as_str))
                .collect();
            granted.sort();
            granted.dedup();
            return Err(Denial::FieldNotGranted {
                field: field.to_string(),
                dataset: dataset.id.clone(),
                purpose: request.purpose.to_string(),
                granted: granted.join(", "),
            });
        }
        return Err(Denial::NotInOneGrant {
            fields: needed.join(", "),
            dataset: dataset.id.clone(),
            purpose: request.purpose.to_string(),
            grants: for_purpose
                .iter()
                .map(|g| format!("{} has {}", g.id, g.fields.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        });
    };
    let fields = chosen_fields(&dataset.key_field, request.fields, grant.fields.iter());
    // Fields in clear are a person's decision: a grant approved by its class alone had no
    // sensitive field in clear when approved, and one marked sensitive since stays masked.
    let decided_by_person = grant.decided_by != crate::grant::AUTO_APPROVER;
    let in_clear = |f: &str| decided_by_person && grant.clear_fields.iter().any(|c| c == f);
    let masked_for = |f: &str| !in_clear(f) && sensitive(f).is_some();
    for cond in &request.filter.conds {
        if !matches!(cond, crate::filter::Cond::Eq { .. }) && masked_for(cond.field()) {
            return Err(Denial::ProbeOnMasked {
                field: cond.field().to_string(),
                grant: grant.id.clone(),
            });
        }
    }
    let masked = fields
        .iter()
        .filter(|f| masked_for(f))
        .filter_map(|f| sensitive(f).map(|s| (f.clone(), s)))
        .collect();
    let grant_filter: Filter = if grant.row_filter.is_empty() {
        Filter::default()
    } else {
        // The registry stored the filter in canonical form; a filter that no longer parses
        // matches nothing rather than everything.
        grant.row_filter.parse().unwrap_or_else(|_| Filter {
            conds: vec![crate::filter::Cond::In {
                field: dataset.key_field.clone(),
                values: vec![],
            }],
        })
    };
    Ok(ReadPlan {
        grant_id: Some(grant.id.clone()),
        fields,
        masked,
        filter: grant_filter.and(request.filter),
        reason: format!("grant {} for purpose {}", grant.id, request.purpose),
    })
}

/// The fields to send: those asked for (or all `available`), the key first, no repeats.
fn chosen_fields<'a>(key: &str, asked: &[String], available: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut fields = vec![key.to_string()];
    let source: Vec<&String> = if asked.is_empty() {
        available.collect()
    } else {
        asked.iter().collect()
    };
    for f in source {
        if !fields.contains(f) {
            fields.push(f.clone());
        }
    }
    fields
}

fn why_none_in_force(principal: &Principal, dataset: &Dataset, grants: &[&Grant], now: UnixSeconds) -> Denial {
    // Report the most recently changed grant: it is the one the caller is thinking of.
    let Some(latest) = grants.iter().max_by_key(|g| (g.updated_at, g.id.clone())) else {
        return Denial::NoGrant {
            department: principal.department.clone(),
            dataset: dataset.id.clone(),
        };
    };
    match latest.state_at(now) {
        GrantState::Revoked => Denial::Revoked {
            grant: latest.id.clone(),
            dataset: dataset.id.clone(),
            reason: latest.reason.clone(),
        },
        GrantState::Expired => Denial::Expired {
            grant: latest.id.clone(),
            dataset: dataset.id.clone(),
        },
        state => Denial::NotApproved {
            grant: latest.id.clone(),
            dataset: dataset.id.clone(),
            state,
        },
    }
}

#[cfg(test)]
mod tests;

/// How far ahead a read may be withheld from its record's access report at most.
pub const MAX_WITHHOLD_SECS: i64 = 5 * 366 * 86_400;

/// Checks a reader's request to withhold a read from the read record's access report until
/// `until`: only under a grant (`grant`, the one the read relies on) whose investigative
/// purposes include the read's `purpose`, and only to a time ahead but not more than
/// [`MAX_WITHHOLD_SECS`] ahead (a withheld read must come out).
pub fn check_withhold(
    grant: Option<&Grant>,
    purpose: &str,
    until: UnixSeconds,
    now: UnixSeconds,
) -> Result<(), crate::CoreError> {
    let Some(grant) = grant else {
        return Err(crate::error::PolicyError::Denied(
            "a read withheld from the access report needs a grant; the owner's own reads are never withheld".into(),
        )
        .into());
    };
    if !grant.investigative_purposes.iter().any(|p| p == purpose) {
        return Err(crate::error::PolicyError::Denied(format!(
            "grant {} does not mark purpose \"{purpose}\" as investigative, so this read cannot be withheld \
             from the access report (investigative purposes: {})",
            grant.id,
            if grant.investigative_purposes.is_empty() {
                "none".to_string()
            } else {
                grant.investigative_purposes.join(", ")
            }
        ))
        .into());
    }
    if until <= now || until > now.saturating_add(MAX_WITHHOLD_SECS) {
        return Err(crate::ValidationError::new(
            "withhold_until",
            format!(
                "must be a time in the next {} days (Unix seconds)",
                MAX_WITHHOLD_SECS / 86_400
            ),
        )
        .into());
    }
    Ok(())
}
