//! The early warning at the registry: the rules of `exchange_core::alert` run over every batch
//! of reads a node ships and, on a schedule, over the registry's state; what they raise is
//! stored, recorded in the registry's ledger, and sent to whoever watches.
//!
//! Keys: `alert/<n:020>` (the alert numbered n, `a-<n:06>`), `alert_key/<key>` (the [`Marker`]
//! of a key already raised), `alert_meta/seq`, `distinct/<consumer>/<date>` (the distinct
//! records a consumer read that day: the history its usual is taken from).

use std::sync::{Arc, Mutex};

use exchange_core::alert::{self, Alert, AlertConfig, AlertRule, AlertState, ReadingHours, Windows};
use exchange_core::calendar::Date;
use exchange_core::identity::Principal;
use exchange_core::store::{Batch, Store};
use exchange_core::{authz, CoreError, ValidationError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::shipping;
use crate::state::{decode, encode, State};

const META_SEQ: &[u8] = b"alert_meta/seq";
/// Alerts listed at most at once.
pub const MAX_LIST: usize = 1000;
/// A window's marker is kept this long after the window ends: a read shipped later than that
/// counts in no window any more.
const MARKER_KEPT_MS: i64 = 2 * 24 * 3_600_000;

fn alert_key(seq: u64) -> Vec<u8> {
    format!("alert/{seq:020}").into_bytes()
}

fn marker_key(key: &str) -> Vec<u8> {
    format!("alert_key/{key}").into_bytes()
}

fn distinct_key(consumer: &str, date: Date) -> Vec<u8> {
    format!("distinct/{consumer}/{date}").into_bytes()
}

/// The number in an alert id: `a-000012` is 12.
pub fn seq_of(id: &str) -> Option<u64> {
    id.strip_prefix("a-")?.parse().ok()
}

fn id_of(seq: u64) -> String {
    format!("a-{seq:06}")
}

/// That a key was raised, and until when it stays so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The alert raised.
    pub id: String,
    pub rule: AlertRule,
    /// For a window, when it ended (Unix ms): the marker goes [`MARKER_KEPT_MS`] later. 0 for a
    /// condition, whose marker goes when the condition no longer holds.
    pub window_to_ms: i64,
}

/// Whether `rule` judges state, whose conditions clear, rather than windows of events.
fn on_state(rule: AlertRule) -> bool {
    match rule {
        AlertRule::DeniedReads | AlertRule::ReadVolume | AlertRule::DistinctRecords | AlertRule::OffHours => false,
        AlertRule::StaleDataset
        | AlertRule::NodeSilent
        | AlertRule::NodeLagging
        | AlertRule::Overdue
        | AlertRule::RefusedLedger => true,
    }
}

/// Which alerts a listing wants.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub rule: Option<AlertRule>,
    pub state: Option<AlertState>,
    pub department: Option<String>,
    /// Raised at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Raised before (Unix ms).
    pub to_ms: Option<i64>,
    pub limit: usize,
}

impl AlertQuery {
    fn matches(&self, a: &Alert) -> bool {
        self.rule.is_none_or(|r| r == a.rule)
            && self.state.is_none_or(|s| s == a.state)
            && self.department.as_ref().is_none_or(|d| *d == a.department)
            && self.from_ms.is_none_or(|t| a.raised_at_ms >= t)
            && self.to_ms.is_none_or(|t| a.raised_at_ms < t)
    }
}

/// The registry's early warning.
pub struct Alerts {
    store: Arc<dyn Store>,
    state: Arc<State>,
    config: AlertConfig,
    hours: Option<ReadingHours>,
    windows: Mutex<Windows>,
    /// Held while alerts are numbered and stored, so each key is raised once.
    raising: tokio::sync::Mutex<u64>,
    latest: watch::Sender<u64>,
}

impl Alerts {
    /// The early warning over `store`, by `config` (checked), recording in the state's ledger.
    pub fn open(store: Arc<dyn Store>, state: Arc<State>, config: AlertConfig) -> Result<Self, String> {
        let hours = config.check()?;
        let seq = match store.get(META_SEQ).map_err(|e| e.to_string())? {
            Some(bytes) => decode::<u64>(META_SEQ, &bytes).map_err(|e| e.to_string())?,
            None => 0,
        };
        Ok(Self {
            store,
            state,
            config,
            hours,
            windows: Mutex::new(Windows::default()),
            raising: tokio::sync::Mutex::new(seq),
            latest: watch::channel(seq).0,
        })
    }

    /// Counts a shipped batch of `node`'s events (each read in place) in the windows; returns
    /// what it raises (for [`Alerts::raise`]). Blocking: it may read consumers' histories from
    /// the store.
    pub fn observe<'a>(&self, node: &str, events: impl IntoIterator<Item = &'a alert::Read<'a>>) -> Vec<Alert> {
        let calendar = self.state.calendar();
        let store = &*self.store;
        let days = self.config.baseline_days;
        let mut history = |consumer: &str, date: Date| -> Vec<u64> {
            alert::days_before(date, days)
                .filter_map(|day| store.get(&distinct_key(consumer, day)).ok().flatten())
                .filter_map(|bytes| serde_json::from_slice::<u64>(&bytes).ok())
                .filter(|count| *count > 0)
                .collect()
        };
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut raised = Vec::new();
        // Only the node's own reads: an event naming another node is not its to report.
        for read in events.into_iter().filter(|read| read.node == node) {
            raised.extend(windows.observe(&self.config, self.hours, calendar, read, &mut history));
        }
        raised
    }

    /// Commits `batch` durably, off the async threads.
    async fn commit(&self, batch: Batch) -> Result<(), CoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.commit(batch))
            .await
            .map_err(|e| CoreError::Unavailable(format!("alert task failed: {e}")))??;
        Ok(())
    }

    /// Stores, records and sends each of `alerts` whose key was not raised yet; returns those
    /// raised.
    pub async fn raise(&self, alerts: Vec<Alert>) -> Result<Vec<Alert>, CoreError> {
        if alerts.is_empty() {
            return Ok(alerts);
        }
        let mut seq = self.raising.lock().await;
        let mut batch = Batch::default();
        let mut events = Vec::new();
        let mut raised = Vec::new();
        let mut next = *seq;
        let now_ms = self.state.clock_now_ms();
        for mut alert in alerts {
            let marker = marker_key(&alert.key);
            if self.store.get(&marker)?.is_some() || raised.iter().any(|a: &Alert| a.key == alert.key) {
                continue;
            }
            next += 1;
            alert.id = id_of(next);
            alert.raised_at_ms = now_ms;
            let window_to_ms = if on_state(alert.rule) { 0 } else { alert.window_to_ms };
            batch.put(
                marker,
                encode(&Marker {
                    id: alert.id.clone(),
                    rule: alert.rule,
                    window_to_ms,
                })?,
            );
            batch.put(alert_key(next), encode(&alert)?);
            let mut event = self.state.registry_event("raise_alert");
            event.case_id = alert.id.clone();
            event.keys = vec![alert.subject.clone()];
            event.dataset = alert.dataset_id.clone();
            event.grant_id = alert.grant_id.clone();
            event.count = alert.observed;
            event.reason = format!("{}: {}", alert.rule, alert.summary);
            events.push(event);
            raised.push(alert);
        }
        if raised.is_empty() {
            return Ok(raised);
        }
        batch.put(META_SEQ.to_vec(), encode(&next)?);
        // On the record first, as every change of the registry.
        self.state.ledger().record(events).await?;
        self.commit(batch).await?;
        *seq = next;
        self.latest.send_replace(next);
        for alert in &raised {
            tracing::warn!(id = %alert.id, rule = %alert.rule, department = %alert.department, summary = %alert.summary, "alert raised");
        }
        Ok(raised)
    }

    /// Runs the rules on state once: keeps the day's distinct-record counts, forgets old
    /// windows, clears the conditions that no longer hold and raises the new ones.
    pub async fn check(&self) -> Result<Vec<Alert>, CoreError> {
        let now_ms = self.state.clock_now_ms();
        let now = now_ms.div_euclid(1000);
        let calendar = self.state.calendar();
        let mut batch = Batch::default();
        {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            for (consumer, date, count) in windows.distinct_counts() {
                batch.put(distinct_key(&consumer, date), encode(&count)?);
            }
            // Hours of the last two days and days from yesterday on still take late reads.
            windows.forget_before(calendar, now_ms - MARKER_KEPT_MS);
        }
        let conditions = self.conditions(now)?;
        let _numbering = self.raising.lock().await;
        for (key, bytes) in self.store.scan_prefix(b"alert_key/")? {
            let marker: Marker = decode(&key, &bytes)?;
            let raised_key = String::from_utf8_lossy(&key["alert_key/".len()..]).into_owned();
            let gone = match on_state(marker.rule) {
                true => !conditions.iter().any(|c| c.key == raised_key),
                false => marker.window_to_ms + MARKER_KEPT_MS < now_ms,
            };
            if gone {
                batch.delete(key);
            }
        }
        if !batch.is_empty() {
            self.commit(batch).await?;
        }
        drop(_numbering);
        self.raise(conditions).await
    }

    /// Every condition the rules on state find now.
    fn conditions(&self, now: i64) -> Result<Vec<Alert>, CoreError> {
        let calendar = self.state.calendar();
        let config = &self.config;
        let watched = self.state.watched()?;
        let health = shipping::all_health(&*self.store)?;
        let metas = shipping::all_metas(&*self.store)?;
        let health_of = |department: &str| health.iter().find(|h| h.department == department);
        let mut found = Vec::new();
        for dataset in watched.datasets.iter().filter(|d| d.latest_version > 0) {
            let changed = health_of(dataset.owner())
                .and_then(|h| h.datasets.get(&dataset.id))
                .map(|f| f.changed_at)
                .filter(|at| *at > 0)
                .unwrap_or(dataset.created_at);
            found.extend(alert::stale_dataset(config, calendar, dataset, changed, now));
        }
        for department in watched.departments.iter().filter(|d| d.node_endpoint.is_some()) {
            let health = health_of(&department.id);
            let seen = health.map_or(department.updated_at, |h| h.reported_at_ms.div_euclid(1000));
            found.extend(alert::node_silent(config, calendar, &department.id, seen, now));
            if let Some(health) = health {
                let held = metas
                    .iter()
                    .find(|m| m.department == department.id)
                    .map_or(0, |m| m.size);
                found.extend(alert::node_lagging(
                    config,
                    &department.id,
                    health.ledger_size,
                    held,
                    health.reported_at_ms,
                ));
            }
        }
        for meta in metas.iter().filter(|m| !m.refused.is_empty()) {
            found.push(alert::refused_ledger(
                &meta.department,
                &meta.refused,
                meta.refused_at,
                meta.size,
            ));
        }
        if config.overdue {
            found.extend(
                watched
                    .grants
                    .iter()
                    .filter_map(|g| alert::overdue_grant(calendar, g, now)),
            );
            found.extend(
                watched
                    .demands
                    .iter()
                    .filter_map(|d| alert::overdue_demand(calendar, d, now)),
            );
            found.extend(
                watched
                    .corrections
                    .iter()
                    .filter_map(|c| alert::overdue_correction(calendar, c, now)),
            );
        }
        Ok(found)
    }

    /// Runs [`Alerts::check`] every `check_every_secs` until `stopping`.
    pub fn spawn_checks(self: &Arc<Self>, mut stopping: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let every = std::time::Duration::from_secs(this.config.check_every_secs);
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.check().await {
                    tracing::error!(error = %e, "could not run the early warning's rules on state");
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stopping.wait_for(|&s| s) => return,
                }
            }
        })
    }

    fn read(&self, seq: u64) -> Result<Option<Alert>, CoreError> {
        let key = alert_key(seq);
        self.store.get(&key)?.map(|bytes| decode(&key, &bytes)).transpose()
    }

    fn found(&self, id: &str) -> Result<(u64, Alert), CoreError> {
        if id.is_empty() {
            return Err(ValidationError::new(
                "alert_id",
                "name the alert (a-000012); list them with `exchange alert list`",
            )
            .into());
        }
        let missing = || CoreError::NotFound(format!("no alert {id}; list them with `exchange alert list`"));
        let seq = seq_of(id).ok_or_else(missing)?;
        Ok((seq, self.read(seq)?.ok_or_else(missing)?))
    }

    /// One alert (admins and auditors).
    pub fn get(&self, who: &Principal, id: &str) -> Result<Alert, CoreError> {
        authz::see_alerts(who)?;
        Ok(self.found(id)?.1)
    }

    /// The alerts `query` wants, newest first (admins and auditors).
    pub fn list(&self, who: &Principal, query: &AlertQuery) -> Result<Vec<Alert>, CoreError> {
        authz::see_alerts(who)?;
        let limit = match query.limit {
            0 => 100,
            n => n.min(MAX_LIST),
        };
        let mut found = Vec::new();
        for (key, bytes) in self.store.scan_prefix(b"alert/")?.into_iter().rev() {
            let alert: Alert = decode(&key, &bytes)?;
            if query.matches(&alert) {
                found.push(alert);
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Where a watch of the caller's starting after `after_id` ("" for all) begins: refused when
    /// the caller may not see alerts, the id is not one, or no such alert was raised yet.
    pub fn watch_from(&self, who: &Principal, after_id: &str) -> Result<u64, CoreError> {
        authz::see_alerts(who)?;
        let after = match after_id {
            "" => 0,
            id => seq_of(id)
                .ok_or_else(|| ValidationError::new("after_id", format!("{id:?} is not an alert id like a-000012")))?,
        };
        let latest = *self.latest.borrow();
        if after > latest {
            return Err(CoreError::OutOfRange(format!(
                "no alert {after_id} yet: the latest is {}",
                match latest {
                    0 => "none".to_string(),
                    n => id_of(n),
                }
            )));
        }
        Ok(after)
    }

    /// The alerts numbered after `after`, oldest first, at most `limit` (for a watch
    /// [`Alerts::watch_from`] let start).
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Alert>, CoreError> {
        self.store
            .range(&alert_key(after + 1), b"alert0", limit)?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// The number of the latest alert, changing as alerts are raised.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// An admin says what was found or done about alert `id`.
    pub async fn acknowledge(&self, who: &Principal, id: &str, note: &str) -> Result<Alert, CoreError> {
        authz::acknowledge_alert(who)?;
        let note = alert::check_note(note)?;
        let _numbering = self.raising.lock().await;
        let (seq, mut alert) = self.found(id)?;
        if alert.state == AlertState::Acknowledged {
            return Err(CoreError::FailedPrecondition(format!(
                "alert {id} was acknowledged already by {} ({})",
                alert.acknowledged_by, alert.note
            )));
        }
        alert.state = AlertState::Acknowledged;
        alert.acknowledged_by = who.uri(self.state.trust_domain());
        alert.acknowledged_at_ms = self.state.clock_now_ms();
        alert.note = note;
        let mut event = self.state.event(who, "acknowledge_alert");
        event.case_id = alert.id.clone();
        event.keys = vec![alert.subject.clone()];
        event.dataset = alert.dataset_id.clone();
        event.grant_id = alert.grant_id.clone();
        event.reason = alert.note.clone();
        self.state.ledger().record(vec![event]).await?;
        let mut batch = Batch::default();
        batch.put(alert_key(seq), encode(&alert)?);
        self.commit(batch).await?;
        Ok(alert)
    }
}

/// The early warning's stored forms as the code of 2026-12-03 (the set that introduced them)
/// writes them: a store holding them opens and answers, and today's code still writes them so
/// (ARCHITECTURE.md, "stored types evolve").
#[cfg(test)]
mod stored_fixtures {
    use super::*;
    use crate::shipping::{Freshness, NodeHealth};
    use exchange_core::clock::ManualClock;
    use exchange_core::identity::Role;
    use exchange_core::store::MemStore;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../fixtures/stored/2026-12-03/", $name)).as_slice()
        };
    }
    macro_rules! core_fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../exchange-core/fixtures/stored/2026-12-03/", $name)).as_slice()
        };
    }

    fn health() -> NodeHealth {
        NodeHealth {
            department: "js.gongan".into(),
            reported_at_ms: 1_796_001_000_000,
            ledger_size: 4210,
            datasets: [(
                "js.gongan/population".to_string(),
                Freshness {
                    sequence: 57,
                    changed_at: 1_796_000_100,
                },
            )]
            .into(),
        }
    }

    fn marker() -> Marker {
        Marker {
            id: "a-000008".into(),
            rule: AlertRule::NodeSilent,
            window_to_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_store_of_2026_12_03_opens_and_answers() {
        let store = Arc::new(MemStore::new());
        let mut batch = Batch::default();
        batch.put(alert_key(7), core_fixture!("alert.json"));
        batch.put(alert_key(8), core_fixture!("alert-open.json"));
        batch.put(
            marker_key("node_silent/js.gongan/1796000000"),
            fixture!("alert_marker.json"),
        );
        batch.put(b"health/js.gongan".to_vec(), fixture!("node_health.json"));
        batch.put(META_SEQ.to_vec(), b"8".to_vec());
        store.commit(batch).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(exchange_core::audit_index::StoreAuditIndex::new(Arc::new(
            MemStore::new(),
        )));
        let ledger =
            Arc::new(crate::ledger::RegistryLedger::open(dir.path(), "exchange.example/registry", index).unwrap());
        let clock = ManualClock::starting_now();
        clock.set(1_796_001_900);
        let limits = exchange_core::grant::GrantLimits {
            max_duration_secs: 86_400,
        };
        let state = Arc::new(State::open(store.clone(), limits, clock.clock(), ledger, "exchange.example").unwrap());
        let alerts = Alerts::open(store.clone(), state, AlertConfig::default()).unwrap();
        let auditor = Principal::new("js.dsj", Role::Auditor);
        let listed = alerts.list(&auditor, &AlertQuery::default()).unwrap();
        assert_eq!(
            listed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["a-000008", "a-000007"]
        );
        assert_eq!(*alerts.subscribe().borrow(), 8);
        // The rules on state read the health and the marker: no department has a node now, so
        // the silent node's condition is gone, and its marker with it.
        alerts.check().await.unwrap();
        assert!(store
            .get(&marker_key("node_silent/js.gongan/1796000000"))
            .unwrap()
            .is_none());

        assert_eq!(
            serde_json::from_slice::<NodeHealth>(fixture!("node_health.json")).unwrap(),
            health()
        );
        assert_eq!(
            serde_json::from_slice::<Marker>(fixture!("alert_marker.json")).unwrap(),
            marker()
        );
        for (name, today, fixture) in [
            (
                "node_health.json",
                encode(&health()).unwrap(),
                fixture!("node_health.json"),
            ),
            (
                "alert_marker.json",
                encode(&marker()).unwrap(),
                fixture!("alert_marker.json"),
            ),
        ] {
            assert!(
                today == fixture,
                "{name}: this code writes a form the newest fixture set does not have; add a set with:\n{}",
                String::from_utf8_lossy(&today)
            );
        }
    }
}
