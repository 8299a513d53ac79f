//! What auditors ask, and what a department asks to answer a citizen: searches and counts over
//! every event the registry holds, and the access report of one record. Each answer is recorded
//! in the registry's ledger before it is given (auditors are audited too).

use std::sync::Arc;

use base64::Engine as _;
use exchange_core::audit_index::{AuditIndex, AuditQuery, Count, CountBy, Located, SearchPage};
use exchange_core::catalog;
use exchange_core::correction::Served;
use exchange_core::identity::Principal;
use exchange_core::{authz, CoreError, ValidationError};

use crate::state::State;

/// Results per page at most.
pub const MAX_PAGE: usize = 1000;

/// The auditor API over the index.
pub struct Auditing {
    index: Arc<dyn AuditIndex>,
    state: Arc<State>,
}

/// One page of found events, with the token of the next.
pub struct Found {
    /// The events.
    pub events: Vec<Located>,
    /// Empty at the end.
    pub next_page_token: String,
}

/// A read of a record, with the legal basis of the grant it relied on.
pub struct AccessRead {
    /// The read's event.
    pub located: Located,
    /// The grant's legal basis ("" when there was no grant, or it is unknown).
    pub legal_basis: String,
}

fn cursor(token: &str) -> Result<Option<String>, CoreError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ValidationError::new("page_token", "not a token a search gave; start again without it"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ValidationError::new("page_token", "not a token a search gave; start again without it").into())
}

fn token(next: Option<String>) -> String {
    next.map(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n))
        .unwrap_or_default()
}

/// Whether `day` is a real calendar day written yyyy-mm-dd.
fn is_day(day: &str) -> bool {
    let parts: Vec<&str> = day.split('-').collect();
    let [y, m, d] = parts[..] else { return false };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// The query as one line for the ledger: the filters given, in a fixed order.
pub fn describe(query: &AuditQuery) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(format!("{name}={v}"));
        }
    };
    add("from_ms", query.from_ms.map(|t| t.to_string()));
    add("to_ms", query.to_ms.map(|t| t.to_string()));
    add("consumer", query.consumer.clone());
    add("provider", query.provider.clone());
    add("dataset", query.dataset.clone());
    add("purpose", query.purpose.clone());
    add("decision", query.decision.map(|d| d.to_string()));
    add("grant", query.grant.clone());
    add("case_id", query.case_id.clone());
    add("record_key", query.record_key.clone());
    if parts.is_empty() {
        "every event".into()
    } else {
        parts.join(" ")
    }
}

impl Auditing {
    /// Auditing over `index`, recording in the state's ledger.
    pub fn new(index: Arc<dyn AuditIndex>, state: Arc<State>) -> Self {
        Self { index, state }
    }

    /// Removes the events older than `cutoff_ms` from the index (retention), recording that it
    /// did; returns how many went.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<u64, CoreError> {
        let index = self.index.clone();
        let removed = tokio::task::spawn_blocking(move || index.prune(cutoff_ms))
            .await
            .map_err(|e| CoreError::Unavailable(format!("prune task failed: {e}")))??;
        if removed > 0 {
            let mut event = self.state.registry_event("prune_audit_events");
            event.count = removed;
            event.reason = format!("retention: events before {cutoff_ms} (Unix ms) removed from the index");
            self.state.ledger().record(vec![event]).await?;
            tracing::info!(
                removed,
                cutoff_ms,
                "pruned audit events past their retention from the index"
            );
        }
        Ok(removed)
    }

    /// Prunes at start and every hour until `stopping`, by `audit`'s retention.
    pub fn spawn_retention(
        self: &Arc<Self>,
        audit: exchange_core::ledger::AuditConfig,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Some(cutoff) = audit.cutoff_ms(this.state.clock_now_ms()) {
                    if let Err(e) = this.prune(cutoff).await {
                        tracing::error!(error = %e, "could not prune the audit index");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                    _ = stopping.wait_for(|&s| s) => return,
                }
            }
        })
    }

    /// A page of the index (off the async threads: it reads the store).
    async fn search_index(&self, query: &AuditQuery, page_token: &str, limit: usize) -> Result<SearchPage, CoreError> {
        let after = cursor(page_token)?;
        let index = self.index.clone();
        let query = query.clone();
        Ok(
            tokio::task::spawn_blocking(move || index.search(&query, after.as_deref(), limit.clamp(1, MAX_PAGE)))
                .await
                .map_err(|e| CoreError::Unavailable(format!("search task failed: {e}")))??,
        )
    }

    /// A question refused: on the record too (who tried to see what), then the refusal.
    async fn refused(&self, who: &Principal, operation: &str, what: String, error: CoreError) -> CoreError {
        let mut event = self.state.event(who, operation);
        event.decision = exchange_core::ledger::Decision::Deny;
        event.reason = format!("{what}: {error}");
        match self.state.ledger().record(vec![event]).await {
            Ok(_) => error,
            Err(e) => e,
        }
    }

    async fn record(
        &self,
        who: &Principal,
        operation: &str,
        query: &AuditQuery,
        found: usize,
    ) -> Result<(), CoreError> {
        let mut event = self.state.event(who, operation);
        event.reason = describe(query);
        event.count = found as u64;
        event.dataset = query.dataset.clone().unwrap_or_default();
        event.keys = query.record_key.iter().cloned().collect();
        self.state.ledger().record(vec![event]).await.map(|_| ())
    }

    /// Events matching `query`, a page at a time (admins and auditors).
    pub async fn search(
        &self,
        who: &Principal,
        query: AuditQuery,
        page_token: &str,
        limit: usize,
    ) -> Result<Found, CoreError> {
        if let Err(e) = authz::read_shipped_events(who) {
            return Err(self
                .refused(who, "search_audit_events", describe(&query), e.into())
                .await);
        }
        let page = self.search_index(&query, page_token, limit).await?;
        self.record(who, "search_audit_events", &query, page.events.len())
            .await?;
        Ok(Found {
            events: page.events,
            next_page_token: token(page.next),
        })
    }

    /// Events per value of `by` per day (admins and auditors).
    pub async fn counts(
        &self,
        who: &Principal,
        by: CountBy,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<Count>, CoreError> {
        if let Err(e) = authz::read_shipped_events(who) {
            return Err(self
                .refused(who, "count_audit_events", format!("by={by}"), e.into())
                .await);
        }
        for (field, day) in [("from_day", from_day), ("to_day", to_day)] {
            if !day.is_empty() && !is_day(day) {
                return Err(
                    ValidationError::new(field, format!("{day:?} is not a day of the calendar (yyyy-mm-dd)")).into(),
                );
            }
        }
        if !from_day.is_empty() && !to_day.is_empty() && from_day > to_day {
            return Err(ValidationError::new("from_day", format!("{from_day} is after to_day {to_day}")).into());
        }
        let counts = self.index.counts(by, from_day, to_day)?;
        let mut event = self.state.event(who, "count_audit_events");
        event.reason = format!("by={by} from_day={from_day} to_day={to_day}");
        event.count = counts.len() as u64;
        self.state.ledger().record(vec![event]).await?;
        Ok(counts)
    }

    /// What the dataset's node has served `consumer` of record `key` of `dataset`, by its
    /// shipped events: the fields of every allowed read of it. A correction request names only
    /// such a record, so it tells nobody more than the reads did. Not an auditor's question, so
    /// not recorded by itself (the request it checks is).
    pub async fn served(&self, consumer: &str, dataset: &str, key: &str) -> Result<Served, CoreError> {
        let query = AuditQuery {
            consumer: Some(consumer.to_string()),
            provider: Some(catalog::owner_of(dataset).to_string()),
            dataset: Some(dataset.to_string()),
            decision: Some(exchange_core::ledger::Decision::Allow),
            record_key: Some(key.to_string()),
            ..AuditQuery::default()
        };
        let mut served = Served::default();
        let mut page_token = String::new();
        // A record key names few events: the key index is scanned first, and each page reads
        // at most SCAN_BUDGET entries of it, so this ends.
        loop {
            let page = self.search_index(&query, &page_token, MAX_PAGE).await?;
            for field in page.events.iter().flat_map(|e| &e.event.fields) {
                if !served.fields.contains(field) {
                    served.fields.push(field.clone());
                }
            }
            match page.next {
                Some(next) => page_token = token(Some(next)),
                None => return Ok(served),
            }
        }
    }

    /// Every read of `record_key` of `dataset`, with each grant's legal basis (the dataset's
    /// owner, admins and auditors). A read its reader withheld (an investigative purpose of its
    /// grant) is left out until its date, except for admins and auditors.
    pub async fn access_report(
        &self,
        who: &Principal,
        dataset: &str,
        record_key: &str,
        page_token: &str,
        limit: usize,
    ) -> Result<(Vec<AccessRead>, String), CoreError> {
        if dataset.is_empty() || record_key.is_empty() {
            return Err(ValidationError::new("record_key", "name the dataset and the record key").into());
        }
        if let Err(e) = authz::access_report(who, catalog::owner_of(dataset)) {
            return Err(self
                .refused(
                    who,
                    "access_report",
                    format!("dataset={dataset} record_key={record_key}"),
                    e.into(),
                )
                .await);
        }
        let query = AuditQuery {
            dataset: Some(dataset.to_string()),
            record_key: Some(record_key.to_string()),
            provider: Some(catalog::owner_of(dataset).to_string()),
            ..AuditQuery::default()
        };
        let page = self.search_index(&query, page_token, limit).await?;
        let now = self.state.now();
        let sees_withheld = who.role.is_exchange_wide();
        let events: Vec<Located> = page
            .events
            .into_iter()
            .filter(|e| sees_withheld || e.event.withheld_until <= now)
            .collect();
        self.record(who, "access_report", &query, events.len()).await?;
        let reads = events
            .into_iter()
            .map(|located| {
                let legal_basis = match located.event.grant_id.as_str() {
                    "" => String::new(),
                    id => self.state.get_grant(who, id).map(|g| g.legal_basis).unwrap_or_default(),
                };
                AccessRead { located, legal_basis }
            })
            .collect();
        Ok((reads, token(page.next)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_days_of_the_calendar() {
        for day in ["2026-12-01", "2024-02-29", "2000-02-29", "2026-12-31"] {
            assert!(super::is_day(day), "{day}");
        }
        for day in [
            "2026-12-32",
            "2026-02-29",
            "1900-02-29",
            "2026-12-00",
            "2026-13-01",
            "2026-1-01",
            "x",
        ] {
            assert!(!super::is_day(day), "{day}");
        }
    }
}
