//! Data demands (供需对接): a consumer asks a department for data no dataset offers yet.
//!
//! ```text
//! open ─▶ answered (the provider registered a dataset: the demand became grant request g-…)
//!   └──▶ refused (with a reason)
//! ```
//!
//! The provider answers within `grants.demand_days` working days (default 10); an open demand past its
//! due date is overdue and escalates to the data authority, whose admins may answer or refuse it
//! in the provider's place (recorded as such), as with grant requests.

use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;
use crate::catalog::check_field_name;
use crate::closed_set::closed_set;
use crate::error::{CoreError, ValidationError};
#[cfg(test)]
use crate::grant::Clocks;
use crate::grant::{check_purpose, GrantLimits, GrantRequest};
use crate::UnixSeconds;

closed_set! {
    /// Where a demand stands.
    pub enum DemandState ("state", "demand state") {
        /// Waiting for the provider's answer.
        Open = "open",
        /// Answered with a dataset: the demand became a grant request on it.
        Answered = "answered",
        /// Refused, with a reason.
        Refused = "refused",
    }
}

/// What a consumer asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandRequest {
    /// The department asked (the provider).
    pub provider_id: String,
    /// What data, in a line.
    pub title: String,
    /// The fields wanted, as the consumer names them (the provider maps them to its schema).
    pub fields: Vec<String>,
    /// The purpose code the grant would be for.
    pub purpose: String,
    /// The law or document that allows the sharing.
    pub legal_basis: String,
    /// When the grant it becomes should expire.
    pub expires_at: UnixSeconds,
}

/// A demand as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    /// `d-000001`, unique in the registry.
    pub id: String,
    /// The department asking.
    pub consumer_id: String,
    /// The department asked.
    pub provider_id: String,
    pub title: String,
    pub fields: Vec<String>,
    pub purpose: String,
    pub legal_basis: String,
    /// When the grant it becomes should expire.
    pub expires_at: UnixSeconds,
    pub state: DemandState,
    /// When the provider's answer is due.
    pub due_at: UnixSeconds,
    /// Answered: the dataset registered for it, and the grant request it became.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataset_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grant_id: String,
    /// Refused: why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Certificate URI of who asked.
    pub requested_by: String,
    /// Certificate URI of who answered or refused it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
    /// Answered or refused by an admin of the data authority in the provider's place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decided_in_place: bool,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
    /// The registry revision of its last change.
    pub revision: u64,
}

/// Checks a demand by `consumer_id` and returns it open, due in `days` working days.
pub fn new_demand(
    consumer_id: &str,
    request: DemandRequest,
    requested_by: &str,
    (calendar, days, limits): (&WorkingCalendar, u32, GrantLimits),
    now: UnixSeconds,
) -> Result<Demand, CoreError> {
    if request.provider_id == consumer_id {
        return Err(ValidationError::new("provider_id", "a department does not ask itself for its own data").into());
    }
    let title = request.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ValidationError::new("title", "say what data you need, in at most 200 characters").into());
    }
    if request.fields.is_empty() {
        return Err(ValidationError::new("fields", "name at least one field you need, e.g. \"license_number\"").into());
    }
    let mut fields: Vec<String> = Vec::new();
    for field in &request.fields {
        check_field_name(field, "fields")?;
        if !fields.contains(field) {
            fields.push(field.clone());
        }
    }
    check_purpose(&request.purpose)?;
    if request.legal_basis.trim().is_empty() {
        return Err(ValidationError::new("legal_basis", "name the law or document that allows this sharing").into());
    }
    // The grant it becomes must be one the registry can give when the demand is answered.
    if request.expires_at <= calendar.due(now, days) {
        return Err(ValidationError::new(
            "expires_at",
            "must be after the answer is due (the grant the demand becomes starts then)",
        )
        .into());
    }
    limits.check_expiry(request.expires_at, now)?;
    Ok(Demand {
        id: String::new(),
        consumer_id: consumer_id.to_string(),
        provider_id: request.provider_id,
        title: title.to_string(),
        fields,
        purpose: request.purpose,
        legal_basis: request.legal_basis,
        expires_at: request.expires_at,
        state: DemandState::Open,
        due_at: calendar.due(now, days),
        dataset_id: String::new(),
        grant_id: String::new(),
        reason: String::new(),
        requested_by: requested_by.to_string(),
        decided_by: String::new(),
        decided_in_place: false,
        created_at: now,
        updated_at: now,
        revision: 0,
    })
}

impl Demand {
    /// Whether it is open past its due date (escalated to the data authority).
    pub fn is_overdue(&self, now: UnixSeconds) -> bool {
        self.state == DemandState::Open && now >= self.due_at
    }

    /// Refuses a demand answered or refused already.
    pub fn check_open(&self) -> Result<(), CoreError> {
        if self.state != DemandState::Open {
            return Err(CoreError::FailedPrecondition(format!(
                "demand {} is {} already",
                self.id, self.state
            )));
        }
        Ok(())
    }

    /// The grant request the demand becomes once `dataset_id` offers `fields` of it.
    pub fn grant_request(&self, dataset_id: &str, fields: Vec<String>) -> GrantRequest {
        GrantRequest {
            consumer_id: self.consumer_id.clone(),
            dataset_id: dataset_id.to_string(),
            fields,
            clear_fields: Vec::new(),
            row_filter: String::new(),
            purposes: vec![self.purpose.clone()],
            investigative_purposes: Vec::new(),
            legal_basis: self.legal_basis.clone(),
            expires_at: self.expires_at,
        }
    }

    /// Answered with `dataset_id`, now grant request `grant_id`.
    pub fn answer(
        &mut self,
        dataset_id: &str,
        grant_id: &str,
        by: &str,
        by_admin: bool,
        now: UnixSeconds,
    ) -> Result<(), CoreError> {
        self.check_open()?;
        self.state = DemandState::Answered;
        self.dataset_id = dataset_id.to_string();
        self.grant_id = grant_id.to_string();
        self.decide(by, by_admin, now);
        Ok(())
    }

    /// Refused for `reason`.
    pub fn refuse(&mut self, reason: &str, by: &str, by_admin: bool, now: UnixSeconds) -> Result<(), CoreError> {
        self.check_open()?;
        if reason.trim().is_empty() {
            return Err(ValidationError::new("reason", "say why the demand is refused").into());
        }
        self.state = DemandState::Refused;
        self.reason = reason.to_string();
        self.decide(by, by_admin, now);
        Ok(())
    }

    fn decide(&mut self, by: &str, by_admin: bool, now: UnixSeconds) {
        self.decided_by = by.to_string();
        self.decided_in_place = by_admin;
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{beijing, china};

    const LIMITS: GrantLimits = GrantLimits {
        max_duration_secs: 365 * 86_400,
    };

    fn request() -> DemandRequest {
        DemandRequest {
            provider_id: "js.zrzy".into(),
            title: "不动产登记信息".into(),
            fields: vec!["parcel_code".into(), "owner_name".into()],
            purpose: "business-licensing".into(),
            legal_basis: "《优化营商环境条例》".into(),
            expires_at: beijing("2027-06-30", 0, 0),
        }
    }

    #[test]
    fn a_demand_is_due_in_ten_working_days_and_answered_or_refused_once() {
        let calendar = china();
        // Monday 28 September: 29th, 30th, then 1-7 October off, 8th to 10th (a worked
        // Saturday), 12th to 16th: due at the end of Friday 16 October.
        let asked = beijing("2026-09-28", 9, 0);
        let rules = (&calendar, Clocks::default().demand_days, LIMITS);
        let mut d = new_demand("js.scjg", request(), "c", rules, asked).unwrap();
        assert_eq!((d.state, d.due_at), (DemandState::Open, beijing("2026-10-17", 0, 0)));
        assert!(!d.is_overdue(beijing("2026-10-16", 23, 0)) && d.is_overdue(beijing("2026-10-17", 0, 0)));
        assert!(
            d.clone().refuse(" ", "p", false, asked).is_err(),
            "a refusal needs a reason"
        );
        d.answer("js.zrzy/real-estate", "g-000007", "p", false, asked).unwrap();
        assert_eq!((d.state, d.grant_id.as_str()), (DemandState::Answered, "g-000007"));
        let err = d.refuse("late", "p", false, asked).unwrap_err();
        assert!(err.to_string().contains("is answered already"), "{err}");
    }

    #[test]
    fn a_demand_must_say_what_why_and_of_whom() {
        let calendar = china();
        let now = beijing("2026-09-28", 9, 0);
        let refuse = |edit: &dyn Fn(&mut DemandRequest), consumer: &str| {
            let mut r = request();
            edit(&mut r);
            new_demand(consumer, r, "c", (&calendar, 10, LIMITS), now)
                .unwrap_err()
                .to_string()
        };
        assert!(refuse(&|_| {}, "js.zrzy").contains("does not ask itself"));
        assert!(refuse(&|r| r.title = " ".into(), "js.scjg").contains("say what data"));
        assert!(refuse(&|r| r.fields.clear(), "js.scjg").contains("at least one field"));
        assert!(refuse(&|r| r.purpose = "Business".into(), "js.scjg").contains("not a purpose code"));
        assert!(refuse(&|r| r.legal_basis = String::new(), "js.scjg").contains("law or document"));
        let due = beijing("2026-10-17", 0, 0);
        assert!(refuse(&|r| r.expires_at = due, "js.scjg").contains("after the answer is due"));
        assert!(refuse(&|r| r.expires_at = now + 900 * 86_400, "js.scjg").contains("at most 365 days"));
        let mut twice = request();
        twice.fields = vec!["a".into(), "a".into()];
        assert_eq!(
            new_demand("js.scjg", twice, "c", (&calendar, 10, LIMITS), now)
                .unwrap()
                .fields,
            ["a"]
        );
    }
}
