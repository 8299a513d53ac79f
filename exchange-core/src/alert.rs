//! Early warning: rules over the reads shipped to the registry and over the registry's own
//! state, each raising an [`Alert`] for the data authority to look at.
//!
//! - **Rules on events** run as each shipped batch arrives ([`Windows::observe`]), over windows
//!   of the events' own times, so a batch shipped late counts where it happened: denied reads
//!   per consumer per hour, records read per grant per hour, distinct records one consumer read
//!   in a day against its usual, reads outside the reading hours.
//! - **Rules on state** run on a schedule: datasets not changed within their declared frequency
//!   ([`stale_dataset`]), nodes that stopped reporting or lag in shipping ([`node_silent`],
//!   [`node_lagging`]), requests past their due date ([`overdue_grant`], [`overdue_demand`],
//!   [`overdue_correction`]) and a node whose ledger the registry refused ([`refused_ledger`]).
//!
//! Every alert carries a **key**, the rule with what it is about and, for a window, which one:
//! the registry raises one alert per key. A rule on state names a condition (a dataset stale
//! since a given change, a node lagging); while the condition holds no second alert is raised,
//! and once it clears the same condition may alert again.
//!
//! Reads of a department's own datasets by its own systems are not sharing and are not watched
//! here (they are in the ledger as every read is).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::calendar::{Date, WorkingCalendar};
use crate::catalog::Dataset;
use crate::closed_set::closed_set;
use crate::correction::{Correction, CorrectionState};
use crate::demand::{Demand, DemandState};
use crate::grant::clock::Stage;
use crate::grant::Grant;
use crate::ledger::Decision;
use crate::UnixSeconds;

closed_set! {
    /// What an alert warns of.
    pub enum AlertRule ("rule", "alert rule") {
        /// Many reads of one consumer denied within an hour.
        DeniedReads = "denied_reads",
        /// Many records read under one grant within an hour.
        ReadVolume = "read_volume",
        /// One consumer read far more distinct records in a day than it usually does.
        DistinctRecords = "distinct_records",
        /// A read outside the reading hours.
        OffHours = "off_hours",
        /// A dataset not changed within its declared update frequency.
        StaleDataset = "stale_dataset",
        /// A node that stopped reporting to the registry.
        NodeSilent = "node_silent",
        /// A node whose ledger the registry holds far less of than the node has written.
        NodeLagging = "node_lagging",
        /// A grant request, appeal, data demand or correction request past its due date.
        Overdue = "overdue",
        /// A node the registry refused because its ledger's history changed.
        RefusedLedger = "refused_ledger",
    }
}

closed_set! {
    /// Whether someone has looked at an alert.
    pub enum AlertState ("state", "alert state") {
        /// Raised, not yet acknowledged.
        Open = "open",
        /// An admin looked at it and said what was done.
        Acknowledged = "acknowledged",
    }
}

/// Longest acknowledgement note, in characters.
pub const MAX_NOTE: usize = 2000;

/// An alert, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// `a-000001`, in the order raised.
    pub id: String,
    pub rule: AlertRule,
    /// What makes it one alert (see the module documentation).
    pub key: String,
    /// The department it is about: the reader for the read rules, the owner for a dataset, the
    /// node's department, the department a request waits for ("" when it waits for the data
    /// authority).
    pub department: String,
    /// What it is about: a department, grant, dataset or request id.
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataset_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grant_id: String,
    /// What happened and where to look, in one sentence.
    pub summary: String,
    /// What the rule saw and the limit it holds to, in the rule's unit (README, "Early warning").
    pub observed: u64,
    pub threshold: u64,
    /// The period it is about, Unix milliseconds.
    pub window_from_ms: i64,
    pub window_to_ms: i64,
    pub raised_at_ms: i64,
    pub state: AlertState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acknowledged_by: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub acknowledged_at_ms: i64,
    /// What the admin who acknowledged it found or did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The rules' settings: the `[alerts]` table of the registry's configuration. A limit of 0 turns
/// its rule off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// How often the rules on state run, in seconds. Default 60.
    pub check_every_secs: u64,
    /// Denied reads of one consumer within a clock hour that raise an alert. Default 20.
    pub denied_reads_per_hour: u64,
    /// Records served under one grant within a clock hour that raise an alert. Default 100,000.
    pub records_per_hour: u64,
    /// A consumer reading more than this many times its usual number of distinct records in a
    /// day raises an alert. Default 5.
    pub distinct_factor: u64,
    /// ... and at least this many. Default 1,000.
    pub distinct_min: u64,
    /// Its usual: the mean over the days it read in the last this many days. Default 7.
    pub baseline_days: u32,
    /// A consumer with fewer days of reads than this has no usual yet. Default 3.
    pub baseline_min_days: u32,
    /// When reads are expected, in the calendar's time zone: `"07:00-22:00"` (a range past
    /// midnight such as `"20:00-08:00"` is a night shift). Empty, the default, turns the rule off.
    pub reading_hours: String,
    /// Departments that read at any hour (a police duty desk, say).
    pub round_the_clock: Vec<String>,
    /// A dataset is stale once unchanged for its frequency's period plus this much of it, in
    /// percent. Default 50 (a daily dataset: after 36 hours).
    pub stale_grace_percent: u32,
    /// A node not heard from for this many minutes is silent. Default 30.
    pub node_silent_minutes: u64,
    /// A node whose ledger holds this many more events than the registry took is lagging.
    /// Default 10,000.
    pub node_lag_events: u64,
    /// Whether requests past their due date raise alerts. Default true.
    pub overdue: bool,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            check_every_secs: 60,
            denied_reads_per_hour: 20,
            records_per_hour: 100_000,
            distinct_factor: 5,
            distinct_min: 1_000,
            baseline_days: 7,
            baseline_min_days: 3,
            reading_hours: String::new(),
            round_the_clock: Vec::new(),
            stale_grace_percent: 50,
            node_silent_minutes: 30,
            node_lag_events: 10_000,
            overdue: true,
        }
    }
}

/// A range of the day, in minutes after midnight: inside when `from <= t < to`, or, for a
/// range past midnight, when `t >= from` or `t < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingHours {
    from: u32,
    to: u32,
}

impl ReadingHours {
    /// Parses `"HH:MM-HH:MM"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("alerts.reading_hours {text:?} is not a range like \"07:00-22:00\"");
        let minute = |part: &str| -> Option<u32> {
            let (h, m) = part.trim().split_once(':')?;
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            (m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (from, to) = text.split_once('-').ok_or_else(bad)?;
        let (from, to) = (minute(from).ok_or_else(bad)?, minute(to).ok_or_else(bad)?);
        if from == to {
            return Err(format!(
                "alerts.reading_hours {text:?} is empty; leave it out to allow reads at any hour"
            ));
        }
        Ok(Self { from, to })
    }

    /// Whether `minute` (after midnight) is within the hours.
    pub fn contains(self, minute: u32) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

impl AlertConfig {
    /// Checks the settings; the reading hours when set.
    pub fn check(&self) -> Result<Option<ReadingHours>, String> {
        if self.check_every_secs == 0 || self.check_every_secs > 3600 {
            return Err("alerts.check_every_secs must be 1 to 3600".into());
        }
        if self.distinct_factor != 0 && (self.baseline_days == 0 || self.baseline_min_days > self.baseline_days) {
            return Err("alerts.baseline_days must be at least 1 and at least alerts.baseline_min_days".into());
        }
        match self.reading_hours.trim() {
            "" => Ok(None),
            hours => ReadingHours::parse(hours).map(Some),
        }
    }
}

/// A shipped event as the rules on events read it: the registry reads each shipped event in
/// place once, to check, index and watch it.
pub type Read<'a> = crate::ledger::EventView<'a>;

const HOUR_MS: i64 = 3_600_000;
/// Distinct records are counted up to this many per consumer and day (memory: about 16 MB),
/// far past any alert's limit; beyond it the count stays there.
pub const DISTINCT_CAP: usize = 1_000_000;

#[derive(Debug, Default)]
struct DistinctDay {
    keys: HashSet<u64>,
    /// The number above which it alerts; none without a usual.
    limit: Option<u64>,
    fired: bool,
}

/// The windows the rules on events count in (in memory: after a restart they count from then).
#[derive(Debug, Default)]
pub struct Windows {
    /// Per consumer, per hour.
    denied: ByName<i64, u64>,
    /// Per grant, per hour.
    volume: ByName<i64, u64>,
    /// Per consumer, per day.
    distinct: ByName<Date, DistinctDay>,
    /// Per consumer, the days it was alerted for.
    off_hours: ByName<Date, ()>,
}

/// Windows by a name (a consumer, a grant), then by hour or day: looked up by the event's
/// borrowed name, so an event allocates nothing for a window that exists.
type ByName<K, V> = HashMap<String, HashMap<K, V>>;

fn windows_of<'m, K, V>(map: &'m mut ByName<K, V>, name: &str) -> &'m mut HashMap<K, V> {
    if !map.contains_key(name) {
        map.insert(name.to_owned(), HashMap::new());
    }
    map.get_mut(name).expect("inserted above")
}

fn forget<K: Copy, V>(map: &mut ByName<K, V>, keep: impl Fn(K) -> bool) {
    for windows in map.values_mut() {
        windows.retain(|k, _| keep(*k));
    }
    map.retain(|_, windows| !windows.is_empty());
}

/// The `n` days before `date`, the latest first.
pub fn days_before(date: Date, n: u32) -> impl Iterator<Item = Date> {
    (1..=i64::from(n)).filter_map(move |back| date.checked_sub(time::Duration::days(back)))
}

/// The usual: the mean of a consumer's daily distinct-record counts on the days it read, none
/// with fewer than `min_days` of them.
pub fn usual(days: &[u64], min_days: u32) -> Option<u64> {
    if days.is_empty() || days.len() < min_days as usize {
        return None;
    }
    Some(days.iter().sum::<u64>() / days.len() as u64)
}

fn hash_key(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// An alert of `rule` about to be raised (the registry gives it its id and time).
fn alert(rule: AlertRule, key: String, department: &str, subject: &str, summary: String) -> Alert {
    Alert {
        id: String::new(),
        rule,
        key,
        department: department.to_string(),
        subject: subject.to_string(),
        dataset_id: String::new(),
        grant_id: String::new(),
        summary,
        observed: 0,
        threshold: 0,
        window_from_ms: 0,
        window_to_ms: 0,
        raised_at_ms: 0,
        state: AlertState::Open,
        acknowledged_by: String::new(),
        acknowledged_at_ms: 0,
        note: String::new(),
    }
}

impl Alert {
    fn measured(mut self, observed: u64, threshold: u64, from_ms: i64, to_ms: i64) -> Self {
        (self.observed, self.threshold, self.window_from_ms, self.window_to_ms) = (observed, threshold, from_ms, to_ms);
        self
    }

    fn about(mut self, dataset_id: &str, grant_id: &str) -> Self {
        self.dataset_id = dataset_id.to_string();
        self.grant_id = grant_id.to_string();
        self
    }
}

fn local_ms(calendar: &WorkingCalendar, ms: i64) -> String {
    calendar.local_text(ms.div_euclid(1000))
}

/// The start of `date` and of the day after, Unix milliseconds, in the calendar's zone.
fn day_ms(calendar: &WorkingCalendar, at_ms: i64) -> (i64, i64) {
    let at = at_ms.div_euclid(1000);
    let minute = i64::from(calendar.minute_of_day(at));
    let start = (at - minute * 60 - at.rem_euclid(60)) * 1000;
    (start, start + 24 * HOUR_MS)
}

impl Windows {
    /// Counts one read `event` shipped by its node, and returns the alerts it raises.
    /// `history` gives a consumer's distinct-record counts of the days before a date (the
    /// registry keeps them); it is asked once per consumer and day.
    pub fn observe(
        &mut self,
        config: &AlertConfig,
        hours: Option<ReadingHours>,
        calendar: &WorkingCalendar,
        event: &Read<'_>,
        history: &mut dyn FnMut(&str, Date) -> Vec<u64>,
    ) -> Vec<Alert> {
        let consumer = event.department.as_ref();
        if consumer == event.node {
            return Vec::new();
        }
        let mut raised = Vec::new();
        let hour = event.time_ms.div_euclid(HOUR_MS);
        let (hour_from, hour_to) = (hour * HOUR_MS, (hour + 1) * HOUR_MS);
        let date = calendar.date_at(event.time_ms.div_euclid(1000));
        match event.decision {
            Decision::Deny if config.denied_reads_per_hour > 0 => {
                let denied = windows_of(&mut self.denied, consumer).entry(hour).or_default();
                *denied += 1;
                if *denied == config.denied_reads_per_hour {
                    raised.push(
                        alert(
                            AlertRule::DeniedReads,
                            format!("denied_reads/{consumer}/{hour}"),
                            consumer,
                            consumer,
                            format!(
                                "{consumer} had {denied} {} denied in the hour from {}: see why with `exchange audit query --consumer {consumer} --decision deny`",
                                if *denied == 1 { "read" } else { "reads" },
                                local_ms(calendar, hour_from)
                            ),
                        )
                        .about(&event.dataset, "")
                        .measured(*denied, config.denied_reads_per_hour, hour_from, hour_to),
                    );
                }
            }
            Decision::Deny => {}
            Decision::Allow => {
                if config.records_per_hour > 0 && !event.grant_id.is_empty() {
                    let grant = event.grant_id.as_ref();
                    let records = windows_of(&mut self.volume, grant).entry(hour).or_default();
                    let before = *records;
                    *records += event.count;
                    if before < config.records_per_hour && *records >= config.records_per_hour {
                        raised.push(
                            alert(
                                AlertRule::ReadVolume,
                                format!("read_volume/{grant}/{hour}"),
                                consumer,
                                grant,
                                format!(
                                    "{consumer} read {records} records of {} under grant {grant} in the hour from {} (the limit is {}): see the reads with `exchange audit query --grant {grant}`",
                                    event.dataset,
                                    local_ms(calendar, hour_from),
                                    config.records_per_hour
                                ),
                            )
                            .about(&event.dataset, grant)
                            .measured(*records, config.records_per_hour, hour_from, hour_to),
                        );
                    }
                }
                if config.distinct_factor > 0 {
                    raised.extend(self.distinct(config, calendar, event, date, history));
                }
                if let Some(hours) = hours {
                    let minute = calendar.minute_of_day(event.time_ms.div_euclid(1000));
                    let exempt = config.round_the_clock.iter().any(|d| d == consumer);
                    if !exempt
                        && !hours.contains(minute)
                        && windows_of(&mut self.off_hours, consumer).insert(date, ()).is_none()
                    {
                        let (from, to) = day_ms(calendar, event.time_ms);
                        raised.push(
                            alert(
                                AlertRule::OffHours,
                                format!("off_hours/{consumer}/{date}"),
                                consumer,
                                consumer,
                                format!(
                                    "{consumer} read {} at {}, outside the reading hours {} (the first such read of the day)",
                                    event.dataset,
                                    local_ms(calendar, event.time_ms),
                                    config.reading_hours.trim()
                                ),
                            )
                            .about(&event.dataset, &event.grant_id)
                            .measured(1, 1, from, to),
                        );
                    }
                }
            }
        }
        raised
    }

    fn distinct(
        &mut self,
        config: &AlertConfig,
        calendar: &WorkingCalendar,
        event: &Read<'_>,
        date: Date,
        history: &mut dyn FnMut(&str, Date) -> Vec<u64>,
    ) -> Option<Alert> {
        let consumer = event.department.as_ref();
        let day = windows_of(&mut self.distinct, consumer).entry(date).or_insert_with(|| {
            let limit = usual(&history(consumer, date), config.baseline_min_days)
                .map(|usual| usual.saturating_mul(config.distinct_factor).max(config.distinct_min));
            DistinctDay {
                limit,
                ..DistinctDay::default()
            }
        });
        for key in &event.keys {
            if day.keys.len() >= DISTINCT_CAP {
                break;
            }
            day.keys.insert(hash_key(key));
        }
        let limit = day.limit?;
        let count = day.keys.len() as u64;
        if day.fired || count <= limit {
            return None;
        }
        day.fired = true;
        let (from, to) = day_ms(calendar, event.time_ms);
        Some(
            alert(
                AlertRule::DistinctRecords,
                format!("distinct_records/{consumer}/{date}"),
                consumer,
                consumer,
                format!(
                    "{consumer} read {count} distinct records on {date}, more than {limit} ({} times its usual of {}): see what it read with `exchange audit query --consumer {consumer}`",
                    config.distinct_factor,
                    limit / config.distinct_factor.max(1),
                ),
            )
            .about(&event.dataset, &event.grant_id)
            .measured(count, limit, from, to),
        )
    }

    /// The distinct records each consumer read on each day still counted, for the registry to
    /// keep as the history of later days.
    pub fn distinct_counts(&self) -> Vec<(String, Date, u64)> {
        let mut counts: Vec<_> = self
            .distinct
            .iter()
            .flat_map(|(consumer, days)| {
                days.iter()
                    .map(move |(date, day)| (consumer.clone(), *date, day.keys.len() as u64))
            })
            .collect();
        counts.sort();
        counts
    }

    /// Forgets the windows that ended before `before_ms` (hours) and the days before `before`'s
    /// date: events that old arrive too late to count.
    pub fn forget_before(&mut self, calendar: &WorkingCalendar, before_ms: i64) {
        let hour = before_ms.div_euclid(HOUR_MS);
        let date = calendar.date_at(before_ms.div_euclid(1000));
        forget(&mut self.denied, |h| h >= hour);
        forget(&mut self.volume, |h| h >= hour);
        forget(&mut self.distinct, |d| d >= date);
        forget(&mut self.off_hours, |d| d >= date);
    }
}

/// A dataset not changed for longer than its declared frequency allows: `last_change` is when
/// its records last changed (Unix seconds), as its node reported.
pub fn stale_dataset(
    config: &AlertConfig,
    calendar: &WorkingCalendar,
    dataset: &Dataset,
    last_change: UnixSeconds,
    now: UnixSeconds,
) -> Option<Alert> {
    let frequency = dataset.frequency()?;
    let period = frequency.period_secs()?;
    let allowed = period + period * i64::from(config.stale_grace_percent) / 100;
    let age = now - last_change;
    if age <= allowed {
        return None;
    }
    let id = &dataset.id;
    Some(
        alert(
            AlertRule::StaleDataset,
            format!("stale_dataset/{id}/{last_change}"),
            dataset.owner(),
            id,
            format!(
                "{id} has not changed since {} ({} hours); it is declared {frequency}, stale after {} hours: its owner publishes, or declares another frequency",
                calendar.local_text(last_change),
                age / 3600,
                allowed / 3600
            ),
        )
        .about(id, "")
        .measured(age as u64, allowed as u64, last_change * 1000, now * 1000),
    )
}

/// A node not heard from since `last_seen` (Unix seconds).
pub fn node_silent(
    config: &AlertConfig,
    calendar: &WorkingCalendar,
    department: &str,
    last_seen: UnixSeconds,
    now: UnixSeconds,
) -> Option<Alert> {
    let allowed = (config.node_silent_minutes as i64).saturating_mul(60);
    let silent = now - last_seen;
    if config.node_silent_minutes == 0 || silent <= allowed {
        return None;
    }
    Some(
        alert(
            AlertRule::NodeSilent,
            format!("node_silent/{department}/{last_seen}"),
            department,
            department,
            format!(
                "{department}'s node has not reported to the registry since {} ({} minutes): its reads are not reaching the registry's audit; check the node (exchange status) and its connection to the registry",
                calendar.local_text(last_seen),
                silent / 60
            ),
        )
        .measured((silent / 60) as u64, config.node_silent_minutes, last_seen * 1000, now * 1000),
    )
}

/// A node whose ledger had `written` events at its last report, of which the registry holds
/// `held`.
pub fn node_lagging(
    config: &AlertConfig,
    department: &str,
    written: u64,
    held: u64,
    reported_ms: i64,
) -> Option<Alert> {
    let behind = written.saturating_sub(held);
    if config.node_lag_events == 0 || behind < config.node_lag_events {
        return None;
    }
    Some(
        alert(
            AlertRule::NodeLagging,
            format!("node_lagging/{department}"),
            department,
            department,
            format!(
                "{department}'s node has written {written} audit events and the registry holds {held}: {behind} wait to be shipped (the limit is {}); see `exchange status` on the node",
                config.node_lag_events
            ),
        )
        .measured(behind, config.node_lag_events, reported_ms, reported_ms),
    )
}

/// A node the registry refused at `refused_at` (Unix seconds) for `why`.
pub fn refused_ledger(department: &str, why: &str, refused_at: UnixSeconds, held: u64) -> Alert {
    alert(
        AlertRule::RefusedLedger,
        format!("refused_ledger/{department}/{refused_at}"),
        department,
        department,
        format!(
            "the registry refuses {department}'s audit ledger: {why}. It keeps the {held} events it accepted; the node's operator and the data authority must find out what happened"
        ),
    )
    .measured(1, 1, refused_at * 1000, refused_at * 1000)
}

fn overdue_alert(
    calendar: &WorkingCalendar,
    kind: &str,
    id: &str,
    due_at: UnixSeconds,
    waits_for: &str,
    now: UnixSeconds,
    what: String,
) -> Alert {
    let late = calendar.working_days_between(due_at, now);
    let whom = match waits_for {
        "" => "the data authority".to_string(),
        department => department.to_string(),
    };
    alert(
        AlertRule::Overdue,
        format!("overdue/{kind}/{id}/{due_at}"),
        waits_for,
        id,
        format!(
            "{what} was due {} and waits for {whom}; the data authority's admins may act in its place",
            calendar.local_text(due_at)
        ),
    )
    .measured(u64::from(late), 0, due_at * 1000, now * 1000)
}

/// A grant request whose step, or an appeal of it, is past its due date.
pub fn overdue_grant(calendar: &WorkingCalendar, grant: &Grant, now: UnixSeconds) -> Option<Alert> {
    if !grant.is_overdue(now) {
        return None;
    }
    let owner = crate::catalog::owner_of(&grant.dataset_id);
    let (due_at, waits_for, what) = match grant.pending_appeal() {
        Some(appeal) if now >= appeal.due_at => (appeal.due_at, "", format!("the appeal of grant {}", grant.id)),
        _ => match grant.steps.stage {
            Some(Stage::Review) => (
                grant.steps.due_at,
                "",
                format!("the review of grant request {}", grant.id),
            ),
            _ => (
                grant.steps.due_at,
                owner,
                format!(
                    "the decision on grant request {} ({} for {})",
                    grant.id, grant.consumer_id, grant.dataset_id
                ),
            ),
        },
    };
    Some(overdue_alert(calendar, "grant", &grant.id, due_at, waits_for, now, what).about(&grant.dataset_id, &grant.id))
}

/// A data demand not answered by its due date.
pub fn overdue_demand(calendar: &WorkingCalendar, demand: &Demand, now: UnixSeconds) -> Option<Alert> {
    if demand.state != DemandState::Open || !demand.is_overdue(now) {
        return None;
    }
    let what = format!(
        "the answer to data demand {} of {} ({})",
        demand.id, demand.consumer_id, demand.title
    );
    Some(overdue_alert(
        calendar,
        "demand",
        &demand.id,
        demand.due_at,
        &demand.provider_id,
        now,
        what,
    ))
}

/// A correction request not answered by its due date.
pub fn overdue_correction(calendar: &WorkingCalendar, correction: &Correction, now: UnixSeconds) -> Option<Alert> {
    if correction.state != CorrectionState::Open || !correction.is_overdue(now) {
        return None;
    }
    let what = format!(
        "the answer to correction request {} of {} (record {} of {})",
        correction.id, correction.consumer_id, correction.key, correction.dataset_id
    );
    Some(
        overdue_alert(
            calendar,
            "correction",
            &correction.id,
            correction.due_at,
            &correction.provider_id,
            now,
            what,
        )
        .about(&correction.dataset_id, &correction.grant_id),
    )
}

/// Checks an acknowledgement note.
pub fn check_note(note: &str) -> Result<String, crate::ValidationError> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        return Err(crate::ValidationError::new(
            "note",
            format!("say what was found or done, in at most {MAX_NOTE} characters (it is recorded)"),
        ));
    }
    Ok(note.to_string())
}

#[cfg(test)]
mod tests;
