//! Conversions between the API's messages and the core's types, shared by the registry (which
//! serves them) and the nodes (which read them from the registry's Watch). Enum values a caller
//! leaves unspecified get the documented default or a clear error.

use exchange_core::alert::{Alert, AlertRule, AlertState};
use exchange_core::catalog::{Classification, Dataset, SchemaVersion};
use exchange_core::compat::CompatMode;
use exchange_core::correction::{Answer, Correction, CorrectionRequest, CorrectionState};
use exchange_core::demand::{Demand, DemandRequest, DemandState};
use exchange_core::department::{Department, Level};
use exchange_core::grant::{AppealOutcome, Grant, GrantRequest, GrantState, Stage};
use exchange_core::identity::Role;
use exchange_core::mask::Sensitivity;
use exchange_core::scoreboard::Score;
use exchange_core::ValidationError;
use exchange_proto::registry::v1 as pb;

fn none_if_empty(s: String) -> Option<String> {
    if s.trim().is_empty() {
        None
    } else {
        Some(s)
    }
}

/// The API's role.
pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Auditor => pb::Role::Auditor,
        Role::Node => pb::Role::Node,
        Role::System => pb::Role::System,
    }
}

/// A role from the API (`None` when unspecified).
pub fn role_from_pb(value: i32) -> Result<Option<Role>, ValidationError> {
    Ok(match pb::Role::try_from(value) {
        Ok(pb::Role::Unspecified) => None,
        Ok(pb::Role::Admin) => Some(Role::Admin),
        Ok(pb::Role::Auditor) => Some(Role::Auditor),
        Ok(pb::Role::Node) => Some(Role::Node),
        Ok(pb::Role::System) => Some(Role::System),
        Err(_) => return Err(ValidationError::new("role", format!("{value} is not a role"))),
    })
}

pub fn level_from_pb(value: i32, field: &str) -> Result<Option<Level>, ValidationError> {
    Ok(match pb::Level::try_from(value) {
        Ok(pb::Level::Unspecified) => None,
        Ok(pb::Level::Province) => Some(Level::Province),
        Ok(pb::Level::City) => Some(Level::City),
        Ok(pb::Level::District) => Some(Level::District),
        Ok(pb::Level::Street) => Some(Level::Street),
        Ok(pb::Level::Community) => Some(Level::Community),
        Err(_) => return Err(ValidationError::new(field, format!("{value} is not a level"))),
    })
}

pub fn level_to_pb(level: Level) -> pb::Level {
    match level {
        Level::Province => pb::Level::Province,
        Level::City => pb::Level::City,
        Level::District => pb::Level::District,
        Level::Street => pb::Level::Street,
        Level::Community => pb::Level::Community,
    }
}

pub fn department_from_pb(d: Option<pb::Department>) -> Result<Department, ValidationError> {
    let d = d.ok_or_else(|| ValidationError::new("department", "is required"))?;
    let level = level_from_pb(d.level, "level")?
        .ok_or_else(|| ValidationError::new("level", format!("is required: one of {}", Level::names())))?;
    Ok(Department {
        id: d.id,
        name: d.name,
        level,
        region_code: d.region_code,
        parent_id: none_if_empty(d.parent_id),
        node_endpoint: none_if_empty(d.node_endpoint),
        created_at: 0,
        updated_at: 0,
        // For an update, the revision the caller read (0: no check).
        revision: d.revision,
    })
}

pub fn department_to_pb(d: Department) -> pb::Department {
    pb::Department {
        id: d.id,
        name: d.name,
        level: level_to_pb(d.level) as i32,
        region_code: d.region_code,
        parent_id: d.parent_id.unwrap_or_default(),
        node_endpoint: d.node_endpoint.unwrap_or_default(),
        created_at: d.created_at,
        updated_at: d.updated_at,
        revision: d.revision,
    }
}

pub fn classification_from_pb(value: i32) -> Result<Option<Classification>, ValidationError> {
    Ok(match pb::Classification::try_from(value) {
        Ok(pb::Classification::Unspecified) => None,
        Ok(pb::Classification::Unconditional) => Some(Classification::Unconditional),
        Ok(pb::Classification::Conditional) => Some(Classification::Conditional),
        Ok(pb::Classification::NotShared) => Some(Classification::NotShared),
        Ok(pb::Classification::Open) => Some(Classification::Open),
        Err(_) => {
            return Err(ValidationError::new(
                "classification",
                format!("{value} is not a classification"),
            ))
        }
    })
}

pub fn classification_to_pb(c: Classification) -> pb::Classification {
    match c {
        Classification::Unconditional => pb::Classification::Unconditional,
        Classification::Conditional => pb::Classification::Conditional,
        Classification::NotShared => pb::Classification::NotShared,
        Classification::Open => pb::Classification::Open,
    }
}

pub fn compat_from_pb(value: i32) -> Result<CompatMode, ValidationError> {
    use pb::CompatibilityMode as M;
    Ok(match M::try_from(value) {
        Ok(M::Unspecified) | Ok(M::Backward) => CompatMode::Backward,
        Ok(M::BackwardTransitive) => CompatMode::BackwardTransitive,
        Ok(M::Forward) => CompatMode::Forward,
        Ok(M::ForwardTransitive) => CompatMode::ForwardTransitive,
        Ok(M::Full) => CompatMode::Full,
        Ok(M::FullTransitive) => CompatMode::FullTransitive,
        Ok(M::None) => CompatMode::None,
        Err(_) => {
            return Err(ValidationError::new(
                "compatibility",
                format!("{value} is not a compatibility mode"),
            ))
        }
    })
}

pub fn compat_to_pb(mode: CompatMode) -> pb::CompatibilityMode {
    use pb::CompatibilityMode as M;
    match mode {
        CompatMode::Backward => M::Backward,
        CompatMode::BackwardTransitive => M::BackwardTransitive,
        CompatMode::Forward => M::Forward,
        CompatMode::ForwardTransitive => M::ForwardTransitive,
        CompatMode::Full => M::Full,
        CompatMode::FullTransitive => M::FullTransitive,
        CompatMode::None => M::None,
    }
}

pub fn dataset_from_pb(d: Option<pb::Dataset>) -> Result<Dataset, ValidationError> {
    let d = d.ok_or_else(|| ValidationError::new("dataset", "is required"))?;
    let classification = classification_from_pb(d.classification)?.ok_or_else(|| {
        ValidationError::new(
            "classification",
            format!("is required: one of {}", Classification::names()),
        )
    })?;
    Ok(Dataset {
        id: d.id,
        title: d.title,
        description: d.description,
        domain: d.domain,
        classification,
        update_frequency: d.update_frequency,
        steward: d.steward,
        key_field: d.key_field,
        tags: d.tags,
        compatibility: compat_from_pb(d.compatibility)?,
        latest_version: 0,
        created_at: 0,
        updated_at: 0,
        // For an update, the revision the caller read (0: no check).
        revision: d.revision,
    })
}

pub fn dataset_to_pb(d: Dataset, versions: Vec<SchemaVersion>) -> pb::Dataset {
    pb::Dataset {
        owner_id: d.owner().to_string(),
        id: d.id,
        title: d.title,
        description: d.description,
        domain: d.domain,
        classification: classification_to_pb(d.classification) as i32,
        update_frequency: d.update_frequency,
        steward: d.steward,
        key_field: d.key_field,
        tags: d.tags,
        compatibility: compat_to_pb(d.compatibility) as i32,
        versions: versions.into_iter().map(schema_to_pb).collect(),
        latest_version: d.latest_version,
        created_at: d.created_at,
        updated_at: d.updated_at,
        revision: d.revision,
    }
}

pub fn schema_to_pb(v: SchemaVersion) -> pb::SchemaVersion {
    pb::SchemaVersion {
        dataset_id: v.dataset_id,
        version: v.version,
        schema_json: v.schema_json,
        sensitive_fields: v
            .sensitive_fields
            .into_iter()
            .map(|s| pb::SensitiveField {
                pointer: s.pointer,
                sensitivity: s.sensitivity.to_string(),
            })
            .collect(),
        created_at: v.created_at,
    }
}

pub fn grant_state_from_pb(value: i32) -> Result<Option<GrantState>, ValidationError> {
    use pb::GrantState as S;
    Ok(match S::try_from(value) {
        Ok(S::Unspecified) => None,
        Ok(S::Requested) => Some(GrantState::Requested),
        Ok(S::Approved) => Some(GrantState::Approved),
        Ok(S::Rejected) => Some(GrantState::Rejected),
        Ok(S::Revoked) => Some(GrantState::Revoked),
        Ok(S::Expired) => Some(GrantState::Expired),
        Err(_) => return Err(ValidationError::new("state", format!("{value} is not a grant state"))),
    })
}

pub fn grant_state_to_pb(s: GrantState) -> pb::GrantState {
    use pb::GrantState as S;
    match s {
        GrantState::Requested => S::Requested,
        GrantState::Approved => S::Approved,
        GrantState::Rejected => S::Rejected,
        GrantState::Revoked => S::Revoked,
        GrantState::Expired => S::Expired,
    }
}

/// The grant as a caller sees it at `now`: an approved grant past its expiry reads as expired.
pub fn grant_to_pb(g: Grant, now: i64) -> pb::Grant {
    let overdue = g.is_overdue(now);
    pb::Grant {
        state: grant_state_to_pb(g.state_at(now)) as i32,
        id: g.id,
        consumer_id: g.consumer_id,
        dataset_id: g.dataset_id,
        fields: g.fields,
        row_filter: g.row_filter,
        purposes: g.purposes,
        investigative_purposes: g.investigative_purposes,
        legal_basis: g.legal_basis,
        expires_at: g.expires_at,
        reason: g.reason,
        requested_by: g.requested_by,
        decided_by: g.decided_by,
        created_at: g.created_at,
        updated_at: g.updated_at,
        revision: g.revision,
        clear_fields: g.clear_fields,
        stage: match g.steps.stage {
            None => pb::GrantStage::Unspecified,
            Some(Stage::Review) => pb::GrantStage::Review,
            Some(Stage::Decision) => pb::GrantStage::Decision,
        } as i32,
        due_at: g.steps.due_at,
        overdue,
        reviewed_by: g.steps.reviewed_by,
        reviewed_at: g.steps.reviewed_at,
        decided_in_place: g.steps.decided_in_place,
        demand_id: g.steps.demand_id,
        appeal: g.steps.appeal.map(|a| pb::GrantAppeal {
            rejected_for: a.rejected_for,
            grounds: a.grounds,
            appealed_by: a.appealed_by,
            appealed_at: a.appealed_at,
            due_at: a.due_at,
            outcome: match a.outcome {
                None => pb::AppealOutcome::Unspecified,
                Some(AppealOutcome::Upheld) => pb::AppealOutcome::Upheld,
                Some(AppealOutcome::Overturned) => pb::AppealOutcome::Overturned,
            } as i32,
            decided_by: a.decided_by,
            decided_at: a.decided_at,
            reason: a.reason,
        }),
    }
}

/// A demand as a caller sees it at `now`.
pub fn demand_to_pb(d: Demand, now: i64) -> pb::Demand {
    pb::Demand {
        overdue: d.is_overdue(now),
        state: demand_state_to_pb(d.state) as i32,
        id: d.id,
        consumer_id: d.consumer_id,
        provider_id: d.provider_id,
        title: d.title,
        fields: d.fields,
        purpose: d.purpose,
        legal_basis: d.legal_basis,
        expires_at: d.expires_at,
        due_at: d.due_at,
        dataset_id: d.dataset_id,
        grant_id: d.grant_id,
        reason: d.reason,
        requested_by: d.requested_by,
        decided_by: d.decided_by,
        decided_in_place: d.decided_in_place,
        created_at: d.created_at,
        updated_at: d.updated_at,
        revision: d.revision,
    }
}

pub fn demand_state_to_pb(state: DemandState) -> pb::DemandState {
    match state {
        DemandState::Open => pb::DemandState::Open,
        DemandState::Answered => pb::DemandState::Answered,
        DemandState::Refused => pb::DemandState::Refused,
    }
}

/// A demand state named in a request; unspecified is `None`.
pub fn demand_state_from_pb(value: i32) -> Result<Option<DemandState>, ValidationError> {
    match pb::DemandState::try_from(value) {
        Ok(pb::DemandState::Unspecified) => Ok(None),
        Ok(pb::DemandState::Open) => Ok(Some(DemandState::Open)),
        Ok(pb::DemandState::Answered) => Ok(Some(DemandState::Answered)),
        Ok(pb::DemandState::Refused) => Ok(Some(DemandState::Refused)),
        Err(_) => Err(ValidationError::new("state", format!("{value} is not a demand state"))),
    }
}

pub fn demand_request_from_pb(r: pb::RaiseDemandRequest) -> DemandRequest {
    DemandRequest {
        provider_id: r.provider_id,
        title: r.title,
        fields: r.fields,
        purpose: r.purpose,
        legal_basis: r.legal_basis,
        expires_at: r.expires_at,
    }
}

pub fn grant_request_from_pb(r: pb::RequestGrantRequest) -> GrantRequest {
    GrantRequest {
        consumer_id: r.consumer_id,
        dataset_id: r.dataset_id,
        fields: r.fields,
        clear_fields: r.clear_fields,
        row_filter: r.row_filter,
        purposes: r.purposes,
        investigative_purposes: r.investigative_purposes,
        legal_basis: r.legal_basis,
        expires_at: r.expires_at,
    }
}

/// A dataset as the registry's Watch sends it, with its schema versions, back into core types.
pub fn dataset_from_watch(d: pb::Dataset) -> Result<(Dataset, Vec<SchemaVersion>), ValidationError> {
    let mut versions = Vec::with_capacity(d.versions.len());
    for v in &d.versions {
        let mut sensitive_fields = Vec::with_capacity(v.sensitive_fields.len());
        for s in &v.sensitive_fields {
            sensitive_fields.push(exchange_core::schema::SensitiveField {
                pointer: s.pointer.clone(),
                // A sensitivity a newer registry knows and this build does not is masked whole.
                sensitivity: s.sensitivity.parse().unwrap_or(Sensitivity::Other),
            });
        }
        versions.push(SchemaVersion {
            dataset_id: v.dataset_id.clone(),
            version: v.version,
            schema_json: v.schema_json.clone(),
            sensitive_fields,
            created_at: v.created_at,
        });
    }
    let (latest_version, created_at, updated_at, revision) = (d.latest_version, d.created_at, d.updated_at, d.revision);
    let mut dataset = dataset_from_pb(Some(d))?;
    dataset.latest_version = latest_version;
    dataset.created_at = created_at;
    dataset.updated_at = updated_at;
    dataset.revision = revision;
    Ok((dataset, versions))
}

/// A grant as the registry sends it. A grant the registry reports as expired stays expired.
pub fn grant_from_pb(g: pb::Grant) -> Result<Grant, ValidationError> {
    let state = grant_state_from_pb(g.state)?.ok_or_else(|| ValidationError::new("state", "is unspecified"))?;
    Ok(Grant {
        id: g.id,
        consumer_id: g.consumer_id,
        dataset_id: g.dataset_id,
        fields: g.fields,
        clear_fields: g.clear_fields,
        row_filter: g.row_filter,
        purposes: g.purposes,
        investigative_purposes: g.investigative_purposes,
        legal_basis: g.legal_basis,
        expires_at: g.expires_at,
        state,
        reason: g.reason,
        requested_by: g.requested_by,
        decided_by: g.decided_by,
        created_at: g.created_at,
        updated_at: g.updated_at,
        revision: g.revision,
        // Nodes decide reads by the state alone; who acted on the way is the registry's record.
        steps: Default::default(),
    })
}

/// A correction request as a caller sees it at `now`.
pub fn correction_to_pb(c: Correction, now: i64) -> pb::Correction {
    pb::Correction {
        overdue: c.is_overdue(now),
        state: correction_state_to_pb(c.state) as i32,
        id: c.id,
        consumer_id: c.consumer_id,
        provider_id: c.provider_id,
        dataset_id: c.dataset_id,
        key: c.key,
        fields: c.fields,
        sequence: c.sequence,
        problem: c.problem,
        evidence: c.evidence,
        grant_id: c.grant_id,
        due_at: c.due_at,
        corrected_sequence: c.corrected_sequence,
        answer: c.answer,
        requested_by: c.requested_by,
        decided_by: c.decided_by,
        decided_in_place: c.decided_in_place,
        created_at: c.created_at,
        answered_at: c.answered_at,
        revision: c.revision,
    }
}

pub fn correction_state_to_pb(state: CorrectionState) -> pb::CorrectionState {
    match state {
        CorrectionState::Open => pb::CorrectionState::Open,
        CorrectionState::Corrected => pb::CorrectionState::Corrected,
        CorrectionState::Confirmed => pb::CorrectionState::Confirmed,
        CorrectionState::Rejected => pb::CorrectionState::Rejected,
    }
}

/// A correction state named in a request; unspecified is `None`.
pub fn correction_state_from_pb(value: i32) -> Result<Option<CorrectionState>, ValidationError> {
    match pb::CorrectionState::try_from(value) {
        Ok(pb::CorrectionState::Unspecified) => Ok(None),
        Ok(pb::CorrectionState::Open) => Ok(Some(CorrectionState::Open)),
        Ok(pb::CorrectionState::Corrected) => Ok(Some(CorrectionState::Corrected)),
        Ok(pb::CorrectionState::Confirmed) => Ok(Some(CorrectionState::Confirmed)),
        Ok(pb::CorrectionState::Rejected) => Ok(Some(CorrectionState::Rejected)),
        Err(_) => Err(ValidationError::new(
            "state",
            format!("{value} is not a correction state"),
        )),
    }
}

pub fn correction_request_from_pb(r: pb::RaiseCorrectionRequest) -> CorrectionRequest {
    CorrectionRequest {
        dataset_id: r.dataset_id,
        key: r.key,
        fields: r.fields,
        sequence: r.sequence,
        problem: r.problem,
        evidence: r.evidence,
    }
}

/// The answer an AnswerCorrection names.
pub fn correction_answer_from_pb(r: &pb::AnswerCorrectionRequest) -> Result<Answer, ValidationError> {
    match correction_state_from_pb(r.outcome)? {
        Some(CorrectionState::Corrected) => Ok(Answer::Corrected(r.corrected_sequence)),
        Some(CorrectionState::Confirmed) => Ok(Answer::Confirmed),
        Some(CorrectionState::Rejected) => Ok(Answer::Rejected),
        Some(CorrectionState::Open) | None => Err(ValidationError::new(
            "outcome",
            "say how it is answered: corrected, confirmed or rejected",
        )),
    }
}

/// A department's line of the scoreboard as sent.
pub fn score_to_pb(s: Score) -> pb::DepartmentScore {
    pb::DepartmentScore {
        department_id: s.department,
        rank: s.rank,
        score: s.score,
        datasets_unconditional: s.datasets.unconditional,
        datasets_conditional: s.datasets.conditional,
        datasets_not_shared: s.datasets.not_shared,
        datasets_open: s.datasets.open,
        datasets_judged: s.judged,
        datasets_fresh: s.fresh,
        grants_requested: s.requested,
        grants_given: s.given,
        decisions: s.decided,
        decisions_on_time: s.decided_on_time,
        median_decision_days: s.median_decision_days,
        pending: s.pending,
        overdue: s.overdue,
        reads_served: s.reads.served,
        reads_denied: s.reads.denied,
        corrections_answered: s.corrections_answered,
        corrections_on_time: s.corrections_on_time,
    }
}

/// An alert as sent.
pub fn alert_to_pb(a: Alert) -> pb::Alert {
    pb::Alert {
        rule: alert_rule_to_pb(a.rule) as i32,
        state: alert_state_to_pb(a.state) as i32,
        id: a.id,
        key: a.key,
        department_id: a.department,
        subject: a.subject,
        dataset_id: a.dataset_id,
        grant_id: a.grant_id,
        summary: a.summary,
        observed: a.observed,
        threshold: a.threshold,
        window_from_ms: a.window_from_ms,
        window_to_ms: a.window_to_ms,
        raised_at_ms: a.raised_at_ms,
        acknowledged_by: a.acknowledged_by,
        acknowledged_at_ms: a.acknowledged_at_ms,
        note: a.note,
    }
}

// The API's enums list the core's values in the same order after UNSPECIFIED (a test checks
// their names agree), so each maps by position.
pub fn alert_rule_to_pb(rule: AlertRule) -> pb::AlertRule {
    let position = AlertRule::ALL.iter().position(|r| *r == rule).unwrap_or(0);
    pb::AlertRule::try_from(position as i32 + 1).unwrap_or(pb::AlertRule::Unspecified)
}

pub fn alert_state_to_pb(state: AlertState) -> pb::AlertState {
    let position = AlertState::ALL.iter().position(|s| *s == state).unwrap_or(0);
    pb::AlertState::try_from(position as i32 + 1).unwrap_or(pb::AlertState::Unspecified)
}

/// An alert rule named in a request; unspecified is `None`.
pub fn alert_rule_from_pb(value: i32) -> Result<Option<AlertRule>, ValidationError> {
    match value {
        0 => Ok(None),
        v => usize::try_from(v - 1)
            .ok()
            .and_then(|i| AlertRule::ALL.get(i).copied())
            .map(Some)
            .ok_or_else(|| ValidationError::new("rule", format!("{value} is not an alert rule"))),
    }
}

/// An alert state named in a request; unspecified is `None`.
pub fn alert_state_from_pb(value: i32) -> Result<Option<AlertState>, ValidationError> {
    match value {
        0 => Ok(None),
        v => usize::try_from(v - 1)
            .ok()
            .and_then(|i| AlertState::ALL.get(i).copied())
            .map(Some)
            .ok_or_else(|| ValidationError::new("state", format!("{value} is not an alert state"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_enums_name_the_same_values_in_the_same_order() {
        for rule in AlertRule::ALL {
            let sent = alert_rule_to_pb(rule);
            assert_eq!(
                sent.as_str_name(),
                format!("ALERT_RULE_{}", rule.as_str().to_uppercase())
            );
            assert_eq!(alert_rule_from_pb(sent as i32).unwrap(), Some(rule));
        }
        for state in AlertState::ALL {
            let sent = alert_state_to_pb(state);
            assert_eq!(
                sent.as_str_name(),
                format!("ALERT_STATE_{}", state.as_str().to_uppercase())
            );
            assert_eq!(alert_state_from_pb(sent as i32).unwrap(), Some(state));
        }
        assert!(alert_rule_from_pb(99).is_err() && alert_state_from_pb(-1).is_err());
    }

    /// A node older than its registry keeps following it: a sensitivity it does not know is
    /// masked whole rather than refusing the dataset (and with it every later change).
    #[test]
    fn a_dataset_from_a_newer_registry_with_an_unknown_sensitivity_is_taken_masked() {
        let d = pb::Dataset {
            id: "js.gongan/population".into(),
            title: "t".into(),
            classification: pb::Classification::Conditional as i32,
            key_field: "id_number".into(),
            versions: vec![pb::SchemaVersion {
                dataset_id: "js.gongan/population".into(),
                version: 3,
                sensitive_fields: vec![pb::SensitiveField {
                    pointer: "/properties/fingerprint".into(),
                    sensitivity: "biometric".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (_, versions) = dataset_from_watch(d).unwrap();
        assert_eq!(versions[0].sensitive_fields[0].sensitivity, Sensitivity::Other);
    }
}
