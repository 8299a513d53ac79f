//! A grant request's clock: who must act next, by when, what happens when they do not, and the
//! consumer's appeal of a rejection.
//!
//! ```text
//! requested ─ review (data authority, review_days) ─▶ decision (owner, decision_days) ─▶ approved
//!     │            └─▶ rejected (at review)                 └─▶ rejected ─▶ appeal (authority,
//!     └─ without a review stage: decision at once                             appeal_days) ─▶ upheld
//!                                                                                          └▶ overturned: approved
//! ```
//!
//! Due dates are counted in working days on the registry's [`WorkingCalendar`] and stored with
//! the grant when its step begins. A step past its due date is *overdue*: it escalates to the
//! data authority, whose admins find it among what waits for them and may decide it in the
//! owner's place (recorded with the grant as such). An admin may decide the owner's step at any
//! time; the grant records that too.

use serde::{Deserialize, Serialize};

use super::{Grant, GrantState};
use crate::calendar::{WorkingCalendar, MAX_WORKING_DAYS};
use crate::closed_set::closed_set;
use crate::error::{CoreError, ValidationError};
use crate::UnixSeconds;

closed_set! {
    /// Whose step a requested grant is at.
    pub enum Stage ("stage", "request stage") {
        /// The data authority's review, before the owner sees it.
        Review = "review",
        /// The dataset owner's decision.
        Decision = "decision",
    }
}

closed_set! {
    /// How the data authority answered an appeal.
    pub enum AppealOutcome ("outcome", "appeal outcome") {
        /// The rejection stands.
        Upheld = "upheld",
        /// The rejection is overturned and the grant approved.
        Overturned = "overturned",
    }
}

/// The consumer's appeal of a rejection to the data authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appeal {
    /// The reason of the rejection appealed (the grant's reason changes if it is overturned).
    pub rejected_for: String,
    /// The consumer's grounds.
    pub grounds: String,
    /// Certificate URI of who appealed.
    pub appealed_by: String,
    /// When.
    pub appealed_at: UnixSeconds,
    /// When the data authority's answer is due.
    pub due_at: UnixSeconds,
    /// The answer, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AppealOutcome>,
    /// Certificate URI of the admin who answered.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
    /// When.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decided_at: UnixSeconds,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A grant's steps: stored with it (flattened), empty for a grant that never waited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    /// While requested: whose step it is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// When the step it is at is due (once decided: when its last step was); 0: no clock.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub due_at: UnixSeconds,
    /// Certificate URI of the admin who reviewed it for the data authority.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reviewed_by: String,
    /// When.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reviewed_at: UnixSeconds,
    /// Decided by the data authority's admin in the owner's place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decided_in_place: bool,
    /// When the owner's step was decided (by the owner or in its place); 0 while undecided, for
    /// a grant that never waited for its owner, and in grants stored before it was kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decided_at: UnixSeconds,
    /// The consumer's appeal of its rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeal: Option<Appeal>,
    /// The data demand this request answers (`d-000001`), when it came from one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub demand_id: String,
}

fn is_zero(t: &UnixSeconds) -> bool {
    *t == 0
}

/// The request clocks: the `[grants]` settings of the registry that set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// Whether requests go to the data authority's review before their owner.
    pub review: bool,
    /// Working days the data authority has to review a request.
    pub review_days: u32,
    /// Working days the owner has to decide.
    pub decision_days: u32,
    /// Working days the owner has to decide a request on data it has not published yet (see
    /// [`Clocks::for_data`]).
    pub unpublished_decision_days: u32,
    /// Working days the data authority has to answer an appeal.
    pub appeal_days: u32,
    /// Working days a department has to answer a data demand (see [`crate::demand`]).
    pub demand_days: u32,
    /// Working days a provider has to answer a correction request (see [`crate::correction`]).
    pub correction_days: u32,
}

impl Default for Clocks {
    /// The review on, 2 working days for it, 5 for the owner's decision, 10 for a decision on
    /// data not yet published and for a demand for data no dataset offers (a provincial rule:
    /// Shanxi, 2024), and 5 for an appeal and for a correction request.
    fn default() -> Self {
        Self {
            review: true,
            review_days: 2,
            decision_days: 5,
            unpublished_decision_days: 10,
            appeal_days: 5,
            demand_days: 10,
            correction_days: 5,
        }
    }
}

impl Clocks {
    /// The clocks of a request on a dataset that has records (`published`) or has none yet, whose
    /// owner gets `unpublished_decision_days` to decide.
    pub fn for_data(self, published: bool) -> Self {
        match published {
            true => self,
            false => Self {
                decision_days: self.unpublished_decision_days,
                ..self
            },
        }
    }

    /// Refuses periods of no working days or beyond [`MAX_WORKING_DAYS`].
    pub fn check(&self) -> Result<(), String> {
        for (name, days) in [
            ("review_days", self.review_days),
            ("decision_days", self.decision_days),
            ("unpublished_decision_days", self.unpublished_decision_days),
            ("appeal_days", self.appeal_days),
            ("demand_days", self.demand_days),
            ("correction_days", self.correction_days),
        ] {
            if !(1..=MAX_WORKING_DAYS).contains(&days) {
                return Err(format!(
                    "grants.{name} is {days}: give it 1 to {MAX_WORKING_DAYS} working days"
                ));
            }
        }
        Ok(())
    }
}

/// Who a grant waits for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingFor {
    /// The data authority's admins: a review, an overdue step (escalated), or an appeal.
    Authority,
    /// The dataset's owner.
    Owner,
}

fn required(field: &str, text: &str, what: &str) -> Result<(), CoreError> {
    if text.trim().is_empty() {
        return Err(ValidationError::new(field, what).into());
    }
    Ok(())
}

impl Grant {
    /// Starts the clock of a grant that waits for a decision: the review, or the owner's step.
    pub fn start_clock(&mut self, clocks: &Clocks, calendar: &WorkingCalendar, now: UnixSeconds) {
        if self.state != GrantState::Requested {
            return;
        }
        let (stage, days) = match clocks.review {
            true => (Stage::Review, clocks.review_days),
            false => (Stage::Decision, clocks.decision_days),
        };
        self.steps.stage = Some(stage);
        self.steps.due_at = calendar.due(now, days);
    }

    /// Whether the step the grant is at is past its due date (an appeal's included).
    pub fn is_overdue(&self, now: UnixSeconds) -> bool {
        let step = self.state_at(now) == GrantState::Requested && self.steps.due_at > 0 && now >= self.steps.due_at;
        step || self.pending_appeal().is_some_and(|a| now >= a.due_at)
    }

    /// The appeal waiting for an answer, if any.
    pub fn pending_appeal(&self) -> Option<&Appeal> {
        self.steps.appeal.as_ref().filter(|a| a.outcome.is_none())
    }

    /// Who must act on the grant now, if anyone: an overdue owner's step escalates to the data
    /// authority (the owner may still decide it).
    pub fn waiting_for(&self, now: UnixSeconds) -> Vec<WaitingFor> {
        if self.pending_appeal().is_some() {
            return vec![WaitingFor::Authority];
        }
        if self.state_at(now) != GrantState::Requested {
            return Vec::new();
        }
        match self.steps.stage {
            Some(Stage::Review) => vec![WaitingFor::Authority],
            _ if self.is_overdue(now) => vec![WaitingFor::Owner, WaitingFor::Authority],
            _ => vec![WaitingFor::Owner],
        }
    }

    /// The data authority passes its review: the owner's step begins.
    pub fn pass_review(
        &mut self,
        by: &str,
        clocks: &Clocks,
        calendar: &WorkingCalendar,
        now: UnixSeconds,
    ) -> Result<(), CoreError> {
        if self.state_at(now) != GrantState::Requested || self.steps.stage != Some(Stage::Review) {
            return Err(CoreError::FailedPrecondition(format!(
                "grant {} is not waiting for the data authority's review (it is {}{})",
                self.id,
                self.state_at(now),
                self.steps
                    .stage
                    .map(|s| format!(", at the {s} step"))
                    .unwrap_or_default()
            )));
        }
        self.steps.stage = Some(Stage::Decision);
        self.steps.due_at = calendar.due(now, clocks.decision_days);
        self.steps.reviewed_by = by.to_string();
        self.steps.reviewed_at = now;
        self.updated_at = now;
        Ok(())
    }

    /// Decides the grant as [`Grant::decide`] does, under the clock's rules: at the review only
    /// an admin acts, and only to reject (passing is [`Grant::pass_review`]); an admin deciding
    /// the owner's step is recorded as deciding in its place. Revoking is never held back.
    pub fn decide_at_step(
        &mut self,
        to: GrantState,
        by: &str,
        by_admin: bool,
        reason: &str,
        (calendar, now): (&WorkingCalendar, UnixSeconds),
    ) -> Result<(), CoreError> {
        let requested = self.state_at(now) == GrantState::Requested;
        let at_review = requested && self.steps.stage == Some(Stage::Review) && to != GrantState::Revoked;
        if at_review && to == GrantState::Approved {
            return Err(CoreError::FailedPrecondition(format!(
                "grant {} is at the data authority's review (due {}): an admin passes the review first (`exchange grant pass-review`, the PassReview call), then its owner decides",
                self.id,
                calendar.local_text(self.steps.due_at)
            )));
        }
        if at_review && !by_admin {
            return Err(CoreError::FailedPrecondition(format!(
                "grant {} is at the data authority's review (due {}); it comes to its owner once reviewed",
                self.id,
                calendar.local_text(self.steps.due_at)
            )));
        }
        let in_place = requested && !at_review && by_admin && to != GrantState::Revoked;
        self.decide(to, by, reason, now)?;
        if at_review {
            self.steps.reviewed_by = by.to_string();
            self.steps.reviewed_at = now;
        }
        self.steps.decided_in_place = in_place;
        if requested && !at_review && to != GrantState::Revoked {
            self.steps.decided_at = now;
        }
        self.steps.stage = None;
        Ok(())
    }

    /// The consumer appeals the rejection to the data authority.
    pub fn appeal(
        &mut self,
        by: &str,
        grounds: &str,
        clocks: &Clocks,
        calendar: &WorkingCalendar,
        now: UnixSeconds,
    ) -> Result<(), CoreError> {
        if self.state != GrantState::Rejected {
            return Err(CoreError::FailedPrecondition(format!(
                "grant {} is {}: only a rejected grant can be appealed",
                self.id,
                self.state_at(now)
            )));
        }
        if self.steps.appeal.is_some() {
            return Err(CoreError::FailedPrecondition(format!(
                "grant {} was appealed already; request a new grant to ask again",
                self.id
            )));
        }
        required("reason", grounds, "say why the rejection should be overturned")?;
        self.steps.appeal = Some(Appeal {
            rejected_for: self.reason.clone(),
            grounds: grounds.to_string(),
            appealed_by: by.to_string(),
            appealed_at: now,
            due_at: calendar.due(now, clocks.appeal_days),
            outcome: None,
            decided_by: String::new(),
            decided_at: 0,
            reason: String::new(),
        });
        self.updated_at = now;
        Ok(())
    }

    /// The data authority answers the appeal; overturning it approves the grant.
    pub fn answer_appeal(
        &mut self,
        outcome: AppealOutcome,
        by: &str,
        reason: &str,
        now: UnixSeconds,
    ) -> Result<(), CoreError> {
        let id = self.id.clone();
        let Some(appeal) = self.steps.appeal.as_mut().filter(|a| a.outcome.is_none()) else {
            return Err(CoreError::FailedPrecondition(format!(
                "grant {id} has no appeal waiting for an answer"
            )));
        };
        required("reason", reason, "say why the appeal is upheld or overturned")?;
        appeal.outcome = Some(outcome);
        appeal.decided_by = by.to_string();
        appeal.decided_at = now;
        appeal.reason = reason.to_string();
        if outcome == AppealOutcome::Overturned {
            self.state = GrantState::Approved;
            self.reason = format!("approved on appeal: {reason}");
            self.decided_by = by.to_string();
        }
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{beijing, china};

    fn requested(now: UnixSeconds) -> Grant {
        let mut g: Grant = serde_json::from_value(serde_json::json!({
            "id": "g-000001", "consumer_id": "js.scjg", "dataset_id": "js.gongan/population",
            "fields": ["id_number"], "clear_fields": [], "row_filter": "", "purposes": ["business-licensing"],
            "legal_basis": "law", "expires_at": now + 365 * 86_400, "state": "requested", "reason": "",
            "requested_by": "c", "decided_by": "", "created_at": now, "updated_at": now, "revision": 1
        }))
        .unwrap();
        g.start_clock(&Clocks::default(), &china(), now);
        g
    }

    #[test]
    fn a_request_goes_to_review_then_to_its_owner_each_with_its_due_date() {
        // Wednesday 30 September: review over National Day, due at the end of Friday 9 October.
        let asked = beijing("2026-09-30", 10, 0);
        let mut g = requested(asked);
        assert_eq!(
            (g.steps.stage, g.steps.due_at),
            (Some(Stage::Review), beijing("2026-10-10", 0, 0))
        );
        assert_eq!(g.waiting_for(asked), vec![WaitingFor::Authority]);
        // The owner may not decide before the review, nor anyone approve.
        for (to, by_admin) in [
            (GrantState::Approved, false),
            (GrantState::Approved, true),
            (GrantState::Rejected, false),
        ] {
            let err = g
                .clone()
                .decide_at_step(to, "x", by_admin, "why", (&china(), asked))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("at the data authority's review (due 2026-10-10 00:00 +08:00)"),
                "{err}"
            );
        }
        // Passed on Friday 9 October: 5 working days are Saturday 10th (worked), 12th to 15th.
        g.pass_review("admin", &Clocks::default(), &china(), beijing("2026-10-09", 15, 0))
            .unwrap();
        assert_eq!(
            (g.steps.stage, g.steps.due_at),
            (Some(Stage::Decision), beijing("2026-10-16", 0, 0))
        );
        assert_eq!(g.waiting_for(beijing("2026-10-12", 9, 0)), vec![WaitingFor::Owner]);
        assert!(!g.is_overdue(beijing("2026-10-15", 23, 0)));
        // Past due: escalated to the data authority, the owner may still decide.
        let late = beijing("2026-10-16", 9, 0);
        assert!(g.is_overdue(late));
        assert_eq!(g.waiting_for(late), vec![WaitingFor::Owner, WaitingFor::Authority]);
        g.decide_at_step(GrantState::Approved, "admin", true, "", (&china(), late))
            .unwrap();
        assert!(
            g.steps.decided_in_place,
            "an admin deciding the owner's step is recorded as such"
        );
        assert_eq!(
            (g.state, g.steps.stage, g.steps.decided_at),
            (GrantState::Approved, None, late)
        );
        assert!(g.waiting_for(late).is_empty() && !g.is_overdue(late));
    }

    #[test]
    fn a_rejection_at_review_is_the_authoritys() {
        let asked = beijing("2026-11-27", 10, 0);
        let mut g = requested(asked);
        g.decide_at_step(
            GrantState::Rejected,
            "admin",
            true,
            "no legal basis given",
            (&china(), asked),
        )
        .unwrap();
        assert_eq!(
            (g.state, g.steps.reviewed_by.as_str(), g.steps.decided_in_place),
            (GrantState::Rejected, "admin", false)
        );
        assert_eq!(g.steps.decided_at, 0, "the owner's step was never reached");
    }

    #[test]
    fn an_appeal_is_answered_by_the_authority() {
        let asked = beijing("2026-11-27", 10, 0);
        let mut g = requested(asked);
        g.state = GrantState::Rejected;
        assert!(
            g.appeal("c", " ", &Clocks::default(), &china(), asked).is_err(),
            "grounds are required"
        );
        g.appeal("c", "the law allows it", &Clocks::default(), &china(), asked)
            .unwrap();
        // Friday: 5 working days are 30 November to 4 December.
        assert_eq!(g.pending_appeal().unwrap().due_at, beijing("2026-12-05", 0, 0));
        assert_eq!(g.waiting_for(asked), vec![WaitingFor::Authority]);
        assert!(g.is_overdue(beijing("2026-12-05", 8, 0)));
        g.answer_appeal(AppealOutcome::Overturned, "admin", "article 35 applies", asked)
            .unwrap();
        assert_eq!(g.state, GrantState::Approved);
        assert!(g.waiting_for(asked).is_empty());
        let err = g.appeal("c", "again", &Clocks::default(), &china(), asked).unwrap_err();
        assert!(err.to_string().contains("only a rejected grant"), "{err}");
    }

    #[test]
    fn clocks_of_no_days_are_refused() {
        let clocks = Clocks {
            decision_days: 0,
            ..Clocks::default()
        };
        assert!(clocks.check().unwrap_err().contains("grants.decision_days is 0"));
    }
}
