//! Correction requests: raised by a consumer about a record it was served, answered by the
//! dataset's owner (corrected, confirmed or rejected).

use super::*;
use exchange_core::correction::{self, Answer, Correction, CorrectionRequest, CorrectionState, Served};
use exchange_core::identity::Role;

/// Filters for listing correction requests; empty strings and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct CorrectionQuery {
    /// Only this consumer's.
    pub consumer_id: String,
    /// Only those on this dataset.
    pub dataset_id: String,
    /// Only those addressed to this department (the datasets' owner).
    pub provider_id: String,
    /// Only in this state.
    pub state: Option<CorrectionState>,
    /// Only those waiting for the caller: for a department, the open requests on its records;
    /// for an admin, the overdue ones.
    pub waiting_for_me: bool,
}

/// Who sees a correction request: both departments, admins and auditors.
fn sees(p: &Principal, c: &Correction) -> bool {
    authz::see_grant(p, &c.provider_id, &c.consumer_id)
}

fn waits_for(c: &Correction, p: &Principal, now: UnixSeconds) -> bool {
    match p.role {
        _ if c.state != CorrectionState::Open => false,
        Role::Admin => c.is_overdue(now),
        Role::Node | Role::System => c.provider_id == p.department,
        Role::Auditor => false,
    }
}

/// The ledger event of a change to `c`: the record questioned, its fields, and the request's id
/// as the case (so `audit query --case-id c-000001` lists its history).
fn describe(tx: &mut Tx, c: &Correction, reason: String) {
    tx.event.dataset = c.dataset_id.clone();
    tx.event.keys = vec![c.key.clone()];
    tx.event.fields = c.fields.clone();
    tx.event.case_id = c.id.clone();
    tx.event.grant_id = c.grant_id.clone();
    tx.event.reason = reason;
}

impl State {
    /// A consumer questions a record it was `served`, holding a grant on its dataset now.
    pub async fn raise_correction(
        &self,
        p: &Principal,
        uri: &str,
        request: CorrectionRequest,
        served: &Served,
    ) -> Result<Correction, CoreError> {
        authz::raise_request(p, &p.department, "question records")?;
        if request.dataset_id.is_empty() {
            return Err(ValidationError::new("dataset_id", "name the dataset of the record").into());
        }
        self.write(p, "raise_correction", |tx| {
            let now = self.now();
            let dataset = self.dataset(&request.dataset_id)?;
            let grant = self
                .scan::<Grant>(b"grant/")?
                .into_iter()
                .find(|g| g.consumer_id == p.department && g.dataset_id == dataset.id && g.is_active(now))
                .ok_or_else(|| {
                    CoreError::FailedPrecondition(format!(
                        "{} holds no active grant on {}: a consumer questions records it may read",
                        p.department, dataset.id
                    ))
                })?;
            let parties = (p.department.as_str(), catalog::owner_of(&dataset.id), grant.id.as_str());
            let rules = (&self.calendar, self.clocks.correction_days);
            let mut c = correction::new_correction(parties, request, served, uri, rules, now)?;
            if let Some(open) = self.scan::<Correction>(b"correction/")?.into_iter().find(|o| {
                o.state == CorrectionState::Open
                    && (&o.consumer_id, &o.dataset_id, &o.key) == (&c.consumer_id, &c.dataset_id, &c.key)
            }) {
                return Err(CoreError::AlreadyExists(format!(
                    "correction {} on this record is open already; wait for its answer",
                    open.id
                )));
            }
            let seq = self.get::<u64>(META_CORRECTION_SEQ)?.unwrap_or(0) + 1;
            tx.put(META_CORRECTION_SEQ.to_vec(), &seq)?;
            c.id = format!("c-{seq:06}");
            c.revision = tx.next_revision(Kind::Correction, &c.id)?;
            describe(
                tx,
                &c,
                format!("{} questions {} {}: {}", c.consumer_id, c.dataset_id, c.key, c.problem),
            );
            tx.put(correction_key(&c.id), &c)?;
            Ok(c)
        })
        .await
        .inspect(|c| tracing::info!(by = %p, correction = %c.id, dataset = %c.dataset_id, "correction requested"))
    }

    /// The dataset's owner (or an admin, in its place) answers a correction request; a
    /// correction names a change its node has reported (`latest_sequence` of a dataset).
    pub async fn answer_correction(
        &self,
        p: &Principal,
        uri: &str,
        id: &str,
        answer: Answer,
        note: &str,
        latest_sequence: &(dyn Fn(&str) -> Result<Option<u64>, CoreError> + Sync),
    ) -> Result<Correction, CoreError> {
        self.write(p, "answer_correction", |tx| {
            let mut c = self.visible_correction(p, id)?;
            authz::answer_request(p, &c.provider_id, "correction requests")?;
            if let Answer::Corrected(sequence) = answer {
                let latest = latest_sequence(&c.dataset_id)?;
                correction::check_sequence("corrected_sequence", sequence, &c.dataset_id, latest)?;
            }
            c.answer(answer, note, uri, p.role == Role::Admin, self.now())?;
            c.revision = tx.next_revision(Kind::Correction, &c.id)?;
            let outcome = match c.state {
                CorrectionState::Corrected => format!("corrected at sequence {}", c.corrected_sequence),
                state => state.to_string(),
            };
            let place = if c.decided_in_place {
                " in the provider's place"
            } else {
                ""
            };
            let note = if c.answer.is_empty() {
                String::new()
            } else {
                format!(": {}", c.answer)
            };
            describe(tx, &c, format!("{outcome}{place}{note}"));
            tx.put(correction_key(&c.id), &c)?;
            Ok(c)
        })
        .await
        .inspect(|c| tracing::info!(by = %p, correction = %c.id, state = %c.state, "correction answered"))
    }

    /// A correction request the caller may see; another department's is reported missing.
    pub fn visible_correction(&self, p: &Principal, id: &str) -> Result<Correction, CoreError> {
        let missing = || CoreError::not_found(format!("correction {id} does not exist"));
        let c: Correction = self.get(&correction_key(id))?.ok_or_else(missing)?;
        if !sees(p, &c) {
            return Err(missing());
        }
        Ok(c)
    }

    /// Correction requests matching the query that the caller may see.
    pub fn list_corrections(&self, p: &Principal, query: &CorrectionQuery) -> Result<Vec<Correction>, CoreError> {
        let now = self.now();
        Ok(self
            .scan::<Correction>(b"correction/")?
            .into_iter()
            .filter(|c| sees(p, c))
            .filter(|c| query.consumer_id.is_empty() || c.consumer_id == query.consumer_id)
            .filter(|c| query.dataset_id.is_empty() || c.dataset_id == query.dataset_id)
            .filter(|c| query.provider_id.is_empty() || c.provider_id == query.provider_id)
            .filter(|c| query.state.is_none_or(|s| c.state == s))
            .filter(|c| !query.waiting_for_me || waits_for(c, p, now))
            .collect())
    }
}
