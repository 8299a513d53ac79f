//! The sharing scoreboard: how each department serves the others over a period of days, and a
//! ranking by a written formula.
//!
//! Figures of the **period** (the calendar's days `from` to `to`, both included): grant requests
//! on the department's datasets, grants given, owner's decisions with their working days and
//! whether they were on time, correction requests answered and whether on time, reads its node
//! served and denied. Figures **now** (the registry keeps each object's current state, not its
//! past): datasets by class (those registered by the period's end), freshness against the declared
//! frequency, and the requests waiting for the department and how many of them are overdue.
//!
//! **The score** is 100 times the mean of the parts that apply to the department (a part applies
//! when what it divides by is not zero), rounded to one decimal:
//!
//! - freshness: fresh datasets / datasets with a declared frequency;
//! - decisions on time: owner's decisions of the period made by their due date / all of them;
//! - corrections on time: correction requests answered in the period by their due date / all
//!   answered in it;
//! - nothing overdue: 1 − overdue requests / requests waiting (grant decisions, data demands,
//!   correction requests).
//!
//! Departments are ranked by score, highest first; equal scores share a rank, and departments
//! to which no part applies (they publish nothing and were asked nothing) have no score and come
//! last, by id.

use std::collections::BTreeMap;

/// The formula, as the API states it with every scoreboard.
pub const FORMULA: &str = "score = 100 × the mean of the parts that apply (a part applies when \
what it divides by is not zero), rounded to one decimal: freshness (fresh datasets / datasets \
with a declared frequency, now), decisions on time (owner's decisions of the period made by \
their due date / all of them), corrections on time (correction requests answered in the period \
by their due date / all answered in it), nothing overdue (1 - overdue requests / requests \
waiting, now). Ranked by score, highest first; equal scores share a rank; departments to which \
no part applies come last.";

use crate::alert::{stale_dataset, AlertConfig};
use crate::calendar::{Date, WorkingCalendar};
use crate::catalog::{owner_of, Classification, Dataset};
use crate::correction::{Correction, CorrectionState};
use crate::demand::{Demand, DemandState};
use crate::department::Department;
use crate::grant::clock::{AppealOutcome, Stage};
use crate::grant::{Grant, GrantState};
use crate::UnixSeconds;

/// The days a scoreboard covers, as Unix seconds `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from_day: Date,
    pub to_day: Date,
    pub from: UnixSeconds,
    pub to: UnixSeconds,
}

impl Period {
    /// The days `from_day` to `to_day`, both included, in `calendar`'s time zone.
    pub fn days(calendar: &WorkingCalendar, from_day: Date, to_day: Date) -> Result<Self, String> {
        if from_day > to_day {
            return Err(format!("the period starts on {from_day}, after it ends ({to_day})"));
        }
        Ok(Self {
            from_day,
            to_day,
            from: calendar.start_of(from_day),
            to: calendar.end_of(to_day),
        })
    }

    fn contains(&self, at: UnixSeconds) -> bool {
        at > 0 && self.from <= at && at < self.to
    }
}

/// Reads a department's node served and denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub served: u64,
    pub denied: u64,
}

/// What the scoreboard is computed from: the registry's state, what nodes reported, and the
/// reads counted in the period.
pub struct History<'a> {
    pub departments: &'a [Department],
    pub datasets: &'a [Dataset],
    pub grants: &'a [Grant],
    pub demands: &'a [Demand],
    pub corrections: &'a [Correction],
    /// When each dataset last changed, as its node reported (Unix seconds; a dataset missing
    /// here counts from its registration).
    pub last_change: &'a BTreeMap<String, UnixSeconds>,
    /// Reads each department's node served and denied in the period.
    pub reads: &'a BTreeMap<String, Reads>,
}

/// Datasets per classification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByClass {
    pub unconditional: u32,
    pub conditional: u32,
    pub not_shared: u32,
    pub open: u32,
}

/// One department's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub department: String,
    /// 1 for the best; departments without a score rank after every scored one.
    pub rank: u32,
    /// 0 to 100, one decimal; none when no part applies.
    pub score: Option<f64>,
    pub datasets: ByClass,
    /// Datasets with a declared frequency (and a schema), and those of them fresh now.
    pub judged: u32,
    pub fresh: u32,
    /// Grant requests on its datasets made in the period, and grants given in it.
    pub requested: u32,
    pub given: u32,
    /// Its owner's decisions in the period, those made by their due date, and the median
    /// working days they took from reaching it.
    pub decided: u32,
    pub decided_on_time: u32,
    pub median_decision_days: Option<f64>,
    /// Requests waiting for it now, and those of them overdue.
    pub pending: u32,
    pub overdue: u32,
    pub reads: Reads,
    /// Correction requests it answered in the period, and those answered by their due date.
    pub corrections_answered: u32,
    pub corrections_on_time: u32,
}

fn median(mut values: Vec<u32>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(match values.len() % 2 {
        1 => f64::from(values[mid]),
        _ => (f64::from(values[mid - 1]) + f64::from(values[mid])) / 2.0,
    })
}

/// When the grant was given, if it was: at once (no clock), by its owner's decision, or on
/// appeal. A grant stored before decisions were dated counts at its last change.
fn given_at(grant: &Grant) -> Option<UnixSeconds> {
    if let Some(appeal) = &grant.steps.appeal {
        return (appeal.outcome == Some(AppealOutcome::Overturned)).then_some(appeal.decided_at);
    }
    match grant.state {
        GrantState::Approved | GrantState::Expired | GrantState::Revoked if grant.steps.due_at == 0 => {
            Some(grant.created_at)
        }
        GrantState::Approved | GrantState::Expired | GrantState::Revoked if grant.steps.decided_at > 0 => {
            Some(grant.steps.decided_at)
        }
        GrantState::Approved => Some(grant.updated_at),
        _ => None,
    }
}

fn ratio(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| f64::from(part) / f64::from(whole))
}

impl Score {
    /// The parts of the score that apply (see the module documentation).
    pub fn parts(&self) -> Vec<f64> {
        [
            ratio(self.fresh, self.judged),
            ratio(self.decided_on_time, self.decided),
            ratio(self.corrections_on_time, self.corrections_answered),
            ratio(self.pending - self.overdue, self.pending),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Every department's line, ranked.
pub fn scoreboard(
    history: &History<'_>,
    period: Period,
    now: UnixSeconds,
    calendar: &WorkingCalendar,
    alerts: &AlertConfig,
) -> Vec<Score> {
    let mut scores: Vec<Score> = history
        .departments
        .iter()
        .map(|d| score(history, &d.id, period, now, calendar, alerts))
        .collect();
    scores.sort_by(|a, b| match (a.score, b.score) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.department.cmp(&b.department)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.department.cmp(&b.department),
    });
    let mut previous: Option<(Option<f64>, u32)> = None;
    for (i, s) in scores.iter_mut().enumerate() {
        s.rank = match previous {
            Some((score, rank)) if score == s.score => rank,
            _ => i as u32 + 1,
        };
        previous = Some((s.score, s.rank));
    }
    scores
}

fn score(
    history: &History<'_>,
    department: &str,
    period: Period,
    now: UnixSeconds,
    calendar: &WorkingCalendar,
    alerts: &AlertConfig,
) -> Score {
    let mut s = Score {
        department: department.to_string(),
        rank: 0,
        score: None,
        datasets: ByClass::default(),
        judged: 0,
        fresh: 0,
        requested: 0,
        given: 0,
        decided: 0,
        decided_on_time: 0,
        median_decision_days: None,
        pending: 0,
        overdue: 0,
        reads: history.reads.get(department).copied().unwrap_or_default(),
        corrections_answered: 0,
        corrections_on_time: 0,
    };
    for dataset in history.datasets.iter().filter(|d| d.owner() == department) {
        if dataset.created_at >= period.to {
            continue;
        }
        let class = match dataset.classification {
            Classification::Unconditional => &mut s.datasets.unconditional,
            Classification::Conditional => &mut s.datasets.conditional,
            Classification::NotShared => &mut s.datasets.not_shared,
            Classification::Open => &mut s.datasets.open,
        };
        *class += 1;
        let judged = dataset.latest_version > 0 && dataset.frequency().and_then(|f| f.period_secs()).is_some();
        if judged {
            s.judged += 1;
            let changed = history
                .last_change
                .get(&dataset.id)
                .copied()
                .unwrap_or(dataset.created_at);
            // Judged as the early warning judges it, with the grace it allows.
            if stale_dataset(alerts, calendar, dataset, changed, now).is_none() {
                s.fresh += 1;
            }
        }
    }
    let mut decision_days = Vec::new();
    for grant in history.grants.iter().filter(|g| owner_of(&g.dataset_id) == department) {
        if period.contains(grant.created_at) {
            s.requested += 1;
        }
        if given_at(grant).is_some_and(|at| period.contains(at)) {
            s.given += 1;
        }
        if period.contains(grant.steps.decided_at) {
            s.decided += 1;
            if grant.steps.decided_at < grant.steps.due_at {
                s.decided_on_time += 1;
            }
            let reached = match grant.steps.reviewed_at {
                0 => grant.created_at,
                reviewed => reviewed,
            };
            decision_days.push(calendar.working_days_between(reached, grant.steps.decided_at));
        }
        if grant.state_at(now) == GrantState::Requested && grant.steps.stage == Some(Stage::Decision) {
            s.pending += 1;
            s.overdue += u32::from(grant.is_overdue(now));
        }
    }
    s.median_decision_days = median(decision_days);
    for demand in history.demands.iter().filter(|d| d.provider_id == department) {
        if demand.state == DemandState::Open {
            s.pending += 1;
            s.overdue += u32::from(demand.is_overdue(now));
        }
    }
    for correction in history.corrections.iter().filter(|c| c.provider_id == department) {
        if correction.state == CorrectionState::Open {
            s.pending += 1;
            s.overdue += u32::from(correction.is_overdue(now));
        } else if period.contains(correction.answered_at) {
            s.corrections_answered += 1;
            s.corrections_on_time += u32::from(correction.answered_on_time());
        }
    }
    let parts = s.parts();
    if !parts.is_empty() {
        let mean = parts.iter().sum::<f64>() / parts.len() as f64;
        s.score = Some((mean * 1000.0).round() / 10.0);
    }
    s
}

#[cfg(test)]
mod tests;
