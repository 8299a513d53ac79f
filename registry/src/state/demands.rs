//! Data demands: raised by a consumer, answered by the department asked by registering a dataset
//! (the demand becomes a grant request on it), or refused with a reason.

use super::*;
use exchange_core::demand::{self, Demand, DemandRequest, DemandState};
use exchange_core::identity::Role;

/// Filters for listing demands; empty strings and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct DemandQuery {
    /// Only this consumer's.
    pub consumer_id: String,
    /// Only those addressed to this department.
    pub provider_id: String,
    /// Only in this state.
    pub state: Option<DemandState>,
    /// Only those waiting for the caller: for a department, the open demands addressed to it;
    /// for an admin, the overdue ones.
    pub waiting_for_me: bool,
}

/// Who sees a demand: both departments, admins and auditors, as for a grant between them.
fn sees(p: &Principal, d: &Demand) -> bool {
    authz::see_grant(p, &d.provider_id, &d.consumer_id)
}

fn waits_for(d: &Demand, p: &Principal, now: UnixSeconds) -> bool {
    match p.role {
        _ if d.state != DemandState::Open => false,
        Role::Admin => d.is_overdue(now),
        Role::Node | Role::System => d.provider_id == p.department,
        Role::Auditor => false,
    }
}

impl State {
    /// A consumer asks a department for data no dataset offers yet.
    pub async fn raise_demand(&self, p: &Principal, uri: &str, request: DemandRequest) -> Result<Demand, CoreError> {
        authz::raise_request(p, &p.department, "ask for data")?;
        self.write(p, "raise_demand", |tx| {
            if !self.is_member(&request.provider_id)? {
                return Err(ValidationError::new(
                    "provider_id",
                    format!("{} is not a registered department", request.provider_id),
                )
                .into());
            }
            let rules = (&self.calendar, self.clocks.demand_days, self.limits);
            let mut d = demand::new_demand(&p.department, request, uri, rules, self.now())?;
            let seq = self.get::<u64>(META_DEMAND_SEQ)?.unwrap_or(0) + 1;
            tx.put(META_DEMAND_SEQ.to_vec(), &seq)?;
            d.id = format!("d-{seq:06}");
            d.revision = tx.next_revision(Kind::Demand, &d.id)?;
            tx.event.fields = d.fields.clone();
            tx.event.purpose = d.purpose.clone();
            tx.event.reason = format!("{} asks {}: {}", d.consumer_id, d.provider_id, d.title);
            tx.put(demand_key(&d.id), &d)?;
            Ok(d)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, demand = %d.id, provider = %d.provider_id, "data demand raised"))
    }

    /// The department asked answers with a dataset it registered: the demand becomes a grant
    /// request for `fields` of it, as the consumer asked, on the request's usual path.
    pub async fn answer_demand(
        &self,
        p: &Principal,
        uri: &str,
        id: &str,
        dataset_id: &str,
        fields: Vec<String>,
    ) -> Result<(Demand, Grant), CoreError> {
        self.write(p, "answer_demand", |tx| {
            let mut d = self.visible_demand(p, id)?;
            authz::answer_request(p, &d.provider_id, "demands")?;
            if catalog::owner_of(dataset_id) != d.provider_id {
                return Err(ValidationError::new(
                    "dataset_id",
                    format!("{dataset_id} is not {}'s; answer with a dataset it owns", d.provider_id),
                )
                .into());
            }
            // Before the grant request is made of it (answer() checks again as it changes it).
            d.check_open()?;
            // The grant request is the consumer's, made when it raised the demand.
            let g = self.add_grant(tx, d.grant_request(dataset_id, fields), &d.requested_by, &d.id)?;
            d.answer(dataset_id, &g.id, uri, p.role == Role::Admin, self.now())?;
            d.revision = tx.next_revision(Kind::Demand, &d.id)?;
            tx.event.reason = format!("answered with {dataset_id}: grant request {}", g.id);
            tx.put(demand_key(&d.id), &d)?;
            Ok((d, g))
        })
        .await
        .inspect(|(d, g)| tracing::info!(by = %p, demand = %d.id, grant = %g.id, "data demand answered"))
    }

    /// The department asked (or an admin) refuses the demand, saying why.
    pub async fn refuse_demand(&self, p: &Principal, uri: &str, id: &str, reason: &str) -> Result<Demand, CoreError> {
        self.write(p, "refuse_demand", |tx| {
            let mut d = self.visible_demand(p, id)?;
            authz::answer_request(p, &d.provider_id, "demands")?;
            d.refuse(reason, uri, p.role == Role::Admin, self.now())?;
            d.revision = tx.next_revision(Kind::Demand, &d.id)?;
            tx.event.reason = match d.decided_in_place {
                true => format!("in the provider's place: {reason}"),
                false => reason.to_string(),
            };
            tx.put(demand_key(&d.id), &d)?;
            Ok(d)
        })
        .await
        .inspect(|d| tracing::info!(by = %p, demand = %d.id, "data demand refused"))
    }

    /// A demand the caller may see; another department's is reported missing, as grants are.
    pub fn visible_demand(&self, p: &Principal, id: &str) -> Result<Demand, CoreError> {
        let missing = || CoreError::not_found(format!("demand {id} does not exist"));
        let d: Demand = self.get(&demand_key(id))?.ok_or_else(missing)?;
        if !sees(p, &d) {
            return Err(missing());
        }
        Ok(d)
    }

    /// Demands matching the query that the caller may see.
    pub fn list_demands(&self, p: &Principal, query: &DemandQuery) -> Result<Vec<Demand>, CoreError> {
        let now = self.now();
        Ok(self
            .scan::<Demand>(b"demand/")?
            .into_iter()
            .filter(|d| sees(p, d))
            .filter(|d| query.consumer_id.is_empty() || d.consumer_id == query.consumer_id)
            .filter(|d| query.provider_id.is_empty() || d.provider_id == query.provider_id)
            .filter(|d| query.state.is_none_or(|s| d.state == s))
            .filter(|d| !query.waiting_for_me || waits_for(d, p, now))
            .collect())
    }
}
