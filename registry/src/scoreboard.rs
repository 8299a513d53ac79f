//! The sharing scoreboard at the registry: `exchange_core::scoreboard` over the registry's
//! state, what nodes reported (each dataset's last change) and the reads the index counted per
//! node and decision.

use std::collections::BTreeMap;
use std::sync::Arc;

use exchange_core::alert::AlertConfig;
use exchange_core::audit_index::{AuditIndex, CountBy};
use exchange_core::calendar::{parse_date, Date};
use exchange_core::identity::Principal;
use exchange_core::scoreboard::{self, History, Period, Reads, Score};
use exchange_core::store::Store;
use exchange_core::{authz, CoreError, ValidationError};

use crate::shipping;
use crate::state::State;

/// The longest period one scoreboard covers, in days.
pub const MAX_DAYS: i64 = 3660;

/// Makes scoreboards.
pub struct Scoreboards {
    store: Arc<dyn Store>,
    index: Arc<dyn AuditIndex>,
    state: Arc<State>,
    /// The early warning's settings: a dataset is fresh on the scoreboard when it is not stale
    /// by them.
    alerts: AlertConfig,
}

fn day(field: &str, text: &str) -> Result<Date, ValidationError> {
    parse_date(text)
        .ok_or_else(|| ValidationError::new(field, format!("{text:?} is not a day of the calendar (yyyy-mm-dd)")))
}

impl Scoreboards {
    pub fn new(store: Arc<dyn Store>, index: Arc<dyn AuditIndex>, state: Arc<State>, alerts: AlertConfig) -> Self {
        Self {
            store,
            index,
            state,
            alerts,
        }
    }

    /// The scoreboard of the days `from_day` to `to_day` (empty: the 30 days to today), and
    /// when it was made.
    pub async fn get(
        &self,
        who: &Principal,
        from_day: &str,
        to_day: &str,
    ) -> Result<(Period, Vec<Score>, i64), CoreError> {
        authz::see_scoreboard(who)?;
        let now = self.state.now();
        let calendar = self.state.calendar();
        let to = match to_day {
            "" => calendar.date_at(now),
            text => day("to_day", text)?,
        };
        let from = match from_day {
            "" => exchange_core::alert::days_before(to, 29).last().unwrap_or(to),
            text => day("from_day", text)?,
        };
        if (to - from).whole_days() >= MAX_DAYS {
            return Err(
                ValidationError::new("from_day", format!("a scoreboard covers at most {MAX_DAYS} days")).into(),
            );
        }
        let period = Period::days(calendar, from, to).map_err(|e| ValidationError::new("from_day", e))?;
        let watched = self.state.watched()?;
        let last_change: BTreeMap<String, i64> = shipping::all_health(&*self.store)?
            .into_iter()
            .flat_map(|h| h.datasets.into_iter())
            .filter(|(_, f)| f.changed_at > 0)
            .map(|(id, f)| (id, f.changed_at))
            .collect();
        let index = self.index.clone();
        let (first, last) = (from.to_string(), to.to_string());
        let counts = tokio::task::spawn_blocking(move || index.counts(CountBy::ProviderDecision, &first, &last))
            .await
            .map_err(|e| CoreError::Unavailable(format!("scoreboard task failed: {e}")))??;
        let mut reads: BTreeMap<String, Reads> = BTreeMap::new();
        for count in counts {
            let Some((node, decision)) = count.value.rsplit_once('/') else {
                continue;
            };
            let entry = reads.entry(node.to_string()).or_default();
            match decision {
                "allow" => entry.served += count.count,
                "deny" => entry.denied += count.count,
                _ => {}
            }
        }
        let history = History {
            departments: &watched.departments,
            datasets: &watched.datasets,
            grants: &watched.grants,
            demands: &watched.demands,
            corrections: &watched.corrections,
            last_change: &last_change,
            reads: &reads,
        };
        let scores = scoreboard::scoreboard(&history, period, now, calendar, &self.alerts);
        Ok((period, scores, now))
    }
}
