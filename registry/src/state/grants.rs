//! Grants: requests, the owner's decisions, revocations, and who may see which.

use super::*;
use exchange_core::grant::{AppealOutcome, WaitingFor};
use exchange_core::identity::Role;

/// Filters for listing grants; empty strings and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct GrantQuery {
    /// Only this consumer's grants.
    pub consumer_id: String,
    /// Only grants on this dataset.
    pub dataset_id: String,
    /// Only grants on datasets this department owns.
    pub owner_id: String,
    /// Only grants in this state now.
    pub state: Option<GrantState>,
    /// Only grants waiting for the caller to act.
    pub waiting_for_me: bool,
}

/// Stores a decided grant under the next revision, its ledger event saying why.
fn record_decision(tx: &mut Tx, g: &mut Grant, reason: &str) -> Result<(), CoreError> {
    g.revision = tx.next_revision(Kind::Grant, &g.id)?;
    tx.event.dataset = g.dataset_id.clone();
    tx.event.reason = reason.to_string();
    tx.put(grant_key(&g.id), g)
}

/// Whether `g` waits for `p` to act: an admin for the data authority, a node or system for the
/// dataset's owner.
fn waits_for(g: &Grant, p: &Principal, now: UnixSeconds) -> bool {
    let waiting = g.waiting_for(now);
    match p.role {
        Role::Admin => waiting.contains(&WaitingFor::Authority),
        Role::Node | Role::System => {
            waiting.contains(&WaitingFor::Owner) && catalog::owner_of(&g.dataset_id) == p.department
        }
        Role::Auditor => false,
    }
}

impl State {
    /// Requests a grant; approved at once for unconditional and open datasets.
    pub async fn request_grant(&self, p: &Principal, uri: &str, mut request: GrantRequest) -> Result<Grant, CoreError> {
        if request.consumer_id.is_empty() {
            request.consumer_id = p.department.clone();
        }
        authz::request_grant(p, &request.consumer_id)?;
        self.write(p, "request_grant", |tx| self.add_grant(tx, request, uri, ""))
        .await
        .inspect(|g| {
            tracing::info!(by = %p, grant = %g.id, dataset = %g.dataset_id, consumer = %g.consumer_id, state = %g.state, "grant requested")
        })
    }

    /// Stores a new grant request (in `tx`, the change it is part of) with its clock started;
    /// `demand_id` names the data demand it answers, if any.
    pub(super) fn add_grant(
        &self,
        tx: &mut Tx,
        request: GrantRequest,
        uri: &str,
        demand_id: &str,
    ) -> Result<Grant, CoreError> {
        if !self.is_member(&request.consumer_id)? {
            return Err(ValidationError::new(
                "consumer_id",
                format!("{} is not a registered department", request.consumer_id),
            )
            .into());
        }
        let dataset = self.dataset(&request.dataset_id)?;
        if dataset.latest_version == 0 {
            return Err(CoreError::FailedPrecondition(format!(
                "dataset {} has no schema version yet; its owner must publish one first",
                dataset.id
            )));
        }
        let latest = self
            .parsed_versions(&dataset)?
            .pop()
            .ok_or_else(|| CoreError::not_found(format!("dataset {} has no schema", dataset.id)))?;
        let mut g = grant::new_grant(request, &dataset, &latest.schema, self.limits, uri, self.now())?;
        g.start_clock(&self.clocks_for(&g.dataset_id)?, &self.calendar, self.now());
        g.steps.demand_id = demand_id.to_string();
        let seq = self.get::<u64>(META_GRANT_SEQ)?.unwrap_or(0) + 1;
        tx.put(META_GRANT_SEQ.to_vec(), &seq)?;
        g.id = format!("g-{seq:06}");
        g.revision = tx.next_revision(Kind::Grant, &g.id)?;
        tx.event.dataset = g.dataset_id.clone();
        tx.event.fields = g.fields.clone();
        tx.event.purpose = g.purposes.join(",");
        tx.event.reason = format!("for {}: {}", g.consumer_id, g.state);
        tx.put(grant_key(&g.id), &g)?;
        Ok(g)
    }

    /// The request clocks of a request on `dataset`: its owner has longer to decide while its
    /// node reports no records of it (a node that never reported is taken to have them).
    fn clocks_for(&self, dataset: &str) -> Result<grant::Clocks, CoreError> {
        let published = crate::shipping::published(&*self.store, dataset)?;
        Ok(self.clocks.for_data(published))
    }

    /// Approves, rejects or revokes a grant.
    pub async fn decide_grant(
        &self,
        p: &Principal,
        uri: &str,
        id: &str,
        to: GrantState,
        reason: &str,
    ) -> Result<Grant, CoreError> {
        let operation = match to {
            GrantState::Approved => "approve_grant",
            GrantState::Rejected => "reject_grant",
            GrantState::Revoked => "revoke_grant",
            _ => "decide_grant",
        };
        self.write(p, operation, |tx| {
            let mut g = self.grant(id)?;
            let owner = catalog::owner_of(&g.dataset_id).to_string();
            match to {
                GrantState::Revoked => authz::revoke_grant(p, &owner, &g.consumer_id)?,
                _ => authz::decide_grant(p, &owner)?,
            }
            g.decide_at_step(to, uri, p.role == Role::Admin, reason, (&self.calendar, self.now()))?;
            let reason = match g.steps.decided_in_place {
                true => format!("in the owner's place: {reason}"),
                false => reason.to_string(),
            };
            record_decision(tx, &mut g, &reason)?;
            Ok(g)
        })
        .await
        .inspect(|g| tracing::info!(by = %p, grant = %g.id, state = %g.state, reason = %g.reason, "grant decided"))
    }

    /// An admin passes a request's review for the data authority: its owner's step begins.
    pub async fn pass_review(&self, p: &Principal, uri: &str, id: &str, reason: &str) -> Result<Grant, CoreError> {
        authz::review_grant(p)?;
        self.write(p, "pass_review", |tx| {
            let mut g = self.grant(id)?;
            g.pass_review(uri, &self.clocks_for(&g.dataset_id)?, &self.calendar, self.now())?;
            record_decision(tx, &mut g, reason)?;
            Ok(g)
        })
        .await
        .inspect(|g| tracing::info!(by = %p, grant = %g.id, due_at = g.steps.due_at, "grant review passed"))
    }

    /// The consumer appeals a rejection to the data authority.
    pub async fn appeal_grant(&self, p: &Principal, uri: &str, id: &str, grounds: &str) -> Result<Grant, CoreError> {
        self.write(p, "appeal_grant", |tx| {
            let mut g = self.grant(id)?;
            if !authz::see_grant(p, catalog::owner_of(&g.dataset_id), &g.consumer_id) {
                return Err(CoreError::not_found(format!("grant {id} does not exist")));
            }
            authz::appeal_grant(p, &g.consumer_id)?;
            g.appeal(uri, grounds, &self.clocks, &self.calendar, self.now())?;
            record_decision(tx, &mut g, grounds)?;
            Ok(g)
        })
        .await
        .inspect(|g| tracing::info!(by = %p, grant = %g.id, "grant rejection appealed"))
    }

    /// An admin answers an appeal: upheld, or overturned (the grant approved).
    pub async fn answer_appeal(
        &self,
        p: &Principal,
        uri: &str,
        id: &str,
        outcome: AppealOutcome,
        reason: &str,
    ) -> Result<Grant, CoreError> {
        authz::review_grant(p)?;
        let operation = match outcome {
            AppealOutcome::Upheld => "uphold_appeal",
            AppealOutcome::Overturned => "overturn_appeal",
        };
        self.write(p, operation, |tx| {
            let mut g = self.grant(id)?;
            g.answer_appeal(outcome, uri, reason, self.now())?;
            record_decision(tx, &mut g, reason)?;
            Ok(g)
        })
        .await
        .inspect(|g| tracing::info!(by = %p, grant = %g.id, %outcome, "appeal answered"))
    }

    pub(super) fn grant(&self, id: &str) -> Result<Grant, CoreError> {
        self.get(&grant_key(id))?
            .ok_or_else(|| CoreError::not_found(format!("grant {id} does not exist")))
    }

    /// One grant, if the caller may see it.
    pub fn get_grant(&self, p: &Principal, id: &str) -> Result<Grant, CoreError> {
        let g = self.grant(id)?;
        if !authz::see_grant(p, catalog::owner_of(&g.dataset_id), &g.consumer_id) {
            // Same answer as a missing grant: ids of other departments' grants are not disclosed.
            return Err(CoreError::not_found(format!("grant {id} does not exist")));
        }
        Ok(g)
    }

    /// Grants matching the query that the caller may see.
    pub fn list_grants(&self, p: &Principal, query: &GrantQuery) -> Result<Vec<Grant>, CoreError> {
        let t = self.now();
        Ok(self
            .scan::<Grant>(b"grant/")?
            .into_iter()
            .filter(|g| authz::see_grant(p, catalog::owner_of(&g.dataset_id), &g.consumer_id))
            .filter(|g| query.consumer_id.is_empty() || g.consumer_id == query.consumer_id)
            .filter(|g| query.dataset_id.is_empty() || g.dataset_id == query.dataset_id)
            .filter(|g| query.owner_id.is_empty() || catalog::owner_of(&g.dataset_id) == query.owner_id)
            .filter(|g| query.state.is_none_or(|s| g.state_at(t) == s))
            .filter(|g| !query.waiting_for_me || waits_for(g, p, t))
            .collect())
    }
}
