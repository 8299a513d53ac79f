//! The gRPC skin: authenticates (via the interceptor), converts, calls [`State`], converts back.

use std::pin::Pin;
use std::sync::Arc;

use exchange_core::{authz, CoreError};
use exchange_proto::registry::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::stream::send_unless_stopping;
use exchange_transport::to_status;
use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::alerts::{AlertQuery, Alerts};
use crate::auditing::Auditing;
use crate::scoreboard::Scoreboards;
use crate::shipping::{NodeReport, ShipBatch, ShipMeta, Shipping};
use crate::state::{CorrectionQuery, DatasetQuery, DemandQuery, GrantQuery, State, WatchItem};
use exchange_transport::convert::*;

/// The `exchange.registry.v1.Registry` service.
pub struct RegistryService {
    state: Arc<State>,
    shipping: Arc<Shipping>,
    auditing: Arc<Auditing>,
    alerts: Arc<Alerts>,
    scoreboards: Arc<Scoreboards>,
    trust_domain: String,
    /// Flips to true when the server shuts down, ending Watch streams so that graceful shutdown
    /// does not wait on them forever.
    shutdown: watch::Receiver<bool>,
}

impl RegistryService {
    /// A service over `state` and the nodes' shipped ledgers.
    pub fn new(
        state: Arc<State>,
        shipping: Arc<Shipping>,
        auditing: Arc<Auditing>,
        alerts: Arc<Alerts>,
        scoreboards: Arc<Scoreboards>,
        trust_domain: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            state,
            shipping,
            auditing,
            alerts,
            scoreboards,
            trust_domain,
            shutdown,
        }
    }
}

type Result<T> = std::result::Result<Response<T>, Status>;

fn ok<T>(value: std::result::Result<T, CoreError>) -> Result<T> {
    value.map(Response::new).map_err(to_status)
}

fn located_to_pb(e: exchange_core::audit_index::Located) -> pb::ShippedEvent {
    pb::ShippedEvent {
        node: e.node,
        index: e.index,
        event: e.bytes,
    }
}

fn shipped_to_pb(meta: ShipMeta) -> pb::ShippedLedger {
    pb::ShippedLedger {
        department_id: meta.department,
        vkey: meta.vkey,
        size: meta.size,
        checkpoint: meta.checkpoint,
        checkpoint_size: meta.checkpoint_size,
        refused: meta.refused,
        refused_at: meta.refused_at,
    }
}

/// How many log entries one Watch read takes before sending.
const WATCH_BATCH: usize = 1000;

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<pb::Principal> {
        let me = caller(&request)?;
        let registered = self.state.is_member(&me.principal.department).map_err(to_status)?;
        Ok(Response::new(pb::Principal {
            uri: me.principal.uri(&self.trust_domain),
            department_id: me.principal.department,
            role: role_to_pb(me.principal.role) as i32,
            department_registered: registered,
            certificate_not_after: me.not_after,
        }))
    }

    async fn register_department(&self, request: Request<pb::RegisterDepartmentRequest>) -> Result<pb::Department> {
        let me = caller(&request)?.principal;
        let dept = department_from_pb(request.into_inner().department).map_err(to_status)?;
        ok(self.state.register_department(&me, dept).await.map(department_to_pb))
    }

    async fn update_department(&self, request: Request<pb::UpdateDepartmentRequest>) -> Result<pb::Department> {
        let me = caller(&request)?.principal;
        let dept = department_from_pb(request.into_inner().department).map_err(to_status)?;
        ok(self.state.update_department(&me, dept).await.map(department_to_pb))
    }

    async fn announce_node(&self, request: Request<pb::AnnounceNodeRequest>) -> Result<pb::Department> {
        let me = caller(&request)?.principal;
        let endpoint = request.into_inner().endpoint;
        ok(self.state.announce_node(&me, endpoint).await.map(department_to_pb))
    }

    async fn get_department(&self, request: Request<pb::GetDepartmentRequest>) -> Result<pb::Department> {
        caller(&request)?;
        ok(self
            .state
            .get_department(&request.into_inner().id)
            .map(department_to_pb))
    }

    async fn list_departments(
        &self,
        request: Request<pb::ListDepartmentsRequest>,
    ) -> Result<pb::ListDepartmentsResponse> {
        caller(&request)?;
        let r = request.into_inner();
        let level = level_from_pb(r.level, "level").map_err(to_status)?;
        let parent = (!r.parent_id.is_empty()).then_some(r.parent_id.as_str());
        ok(self
            .state
            .list_departments(parent, level)
            .map(|ds| pb::ListDepartmentsResponse {
                departments: ds.into_iter().map(department_to_pb).collect(),
            }))
    }

    async fn register_dataset(&self, request: Request<pb::RegisterDatasetRequest>) -> Result<pb::Dataset> {
        let me = caller(&request)?.principal;
        let dataset = dataset_from_pb(request.into_inner().dataset).map_err(to_status)?;
        ok(self
            .state
            .register_dataset(&me, dataset)
            .await
            .map(|d| dataset_to_pb(d, vec![])))
    }

    async fn update_dataset(&self, request: Request<pb::UpdateDatasetRequest>) -> Result<pb::Dataset> {
        let me = caller(&request)?.principal;
        let dataset = dataset_from_pb(request.into_inner().dataset).map_err(to_status)?;
        let updated = self.state.update_dataset(&me, dataset).await.map_err(to_status)?;
        ok(self
            .state
            .get_dataset(&updated.id)
            .map(|d| dataset_to_pb(d.dataset, d.versions)))
    }

    async fn get_dataset(&self, request: Request<pb::GetDatasetRequest>) -> Result<pb::Dataset> {
        caller(&request)?;
        ok(self
            .state
            .get_dataset(&request.into_inner().id)
            .map(|d| dataset_to_pb(d.dataset, d.versions)))
    }

    async fn search_datasets(&self, request: Request<pb::SearchDatasetsRequest>) -> Result<pb::SearchDatasetsResponse> {
        caller(&request)?;
        let r = request.into_inner();
        let query = DatasetQuery {
            owner_id: r.owner_id,
            domain: r.domain,
            classification: classification_from_pb(r.classification).map_err(to_status)?,
            text: r.text,
        };
        ok(self.state.search_datasets(&query).map(|ds| pb::SearchDatasetsResponse {
            datasets: ds.into_iter().map(|d| dataset_to_pb(d, vec![])).collect(),
        }))
    }

    async fn publish_schema(&self, request: Request<pb::PublishSchemaRequest>) -> Result<pb::SchemaVersion> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        ok(self
            .state
            .publish_schema(&me, &r.dataset_id, &r.schema_json)
            .await
            .map(schema_to_pb))
    }

    async fn check_schema(&self, request: Request<pb::CheckSchemaRequest>) -> Result<pb::CheckSchemaResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        ok(self
            .state
            .check_schema(&me, &r.dataset_id, &r.schema_json)
            .map(|c| pb::CheckSchemaResponse {
                accepted: c.accepted,
                version: c.version,
                errors: c.errors,
                incompatibilities: c
                    .incompatibilities
                    .into_iter()
                    .map(|i| pb::Incompatibility {
                        against_version: i.against_version,
                        direction: i.direction.to_string(),
                        pointer: i.pointer,
                        message: i.message,
                    })
                    .collect(),
                broken_grants: c
                    .broken_grants
                    .into_iter()
                    .map(|(grant_id, consumer_id, field, reason)| pb::BrokenGrant {
                        grant_id,
                        consumer_id,
                        field,
                        reason,
                    })
                    .collect(),
            }))
    }

    async fn get_schema(&self, request: Request<pb::GetSchemaRequest>) -> Result<pb::SchemaVersion> {
        caller(&request)?;
        let r = request.into_inner();
        ok(self.state.get_schema(&r.dataset_id, r.version).map(schema_to_pb))
    }

    async fn request_grant(&self, request: Request<pb::RequestGrantRequest>) -> Result<pb::Grant> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = grant_request_from_pb(request.into_inner());
        ok(self
            .state
            .request_grant(&me, &uri, r)
            .await
            .map(|g| grant_to_pb(g, self.state.now())))
    }

    async fn approve_grant(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(request, GrantAction::Decide(exchange_core::grant::GrantState::Approved))
            .await
    }

    async fn reject_grant(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(request, GrantAction::Decide(exchange_core::grant::GrantState::Rejected))
            .await
    }

    async fn revoke_grant(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(request, GrantAction::Decide(exchange_core::grant::GrantState::Revoked))
            .await
    }

    async fn pass_review(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(request, GrantAction::PassReview).await
    }

    async fn appeal_grant(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(request, GrantAction::Appeal).await
    }

    async fn uphold_appeal(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(
            request,
            GrantAction::Answer(exchange_core::grant::AppealOutcome::Upheld),
        )
        .await
    }

    async fn overturn_appeal(&self, request: Request<pb::DecideGrantRequest>) -> Result<pb::Grant> {
        self.act_on_grant(
            request,
            GrantAction::Answer(exchange_core::grant::AppealOutcome::Overturned),
        )
        .await
    }

    async fn get_grant(&self, request: Request<pb::GetGrantRequest>) -> Result<pb::Grant> {
        let me = caller(&request)?.principal;
        ok(self
            .state
            .get_grant(&me, &request.into_inner().grant_id)
            .map(|g| grant_to_pb(g, self.state.now())))
    }

    async fn list_grants(&self, request: Request<pb::ListGrantsRequest>) -> Result<pb::ListGrantsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let query = GrantQuery {
            consumer_id: r.consumer_id,
            dataset_id: r.dataset_id,
            owner_id: r.owner_id,
            state: grant_state_from_pb(r.state).map_err(to_status)?,
            waiting_for_me: r.waiting_for_me,
        };
        let t = self.state.now();
        ok(self.state.list_grants(&me, &query).map(|gs| pb::ListGrantsResponse {
            grants: gs.into_iter().map(|g| grant_to_pb(g, t)).collect(),
        }))
    }

    async fn raise_demand(&self, request: Request<pb::RaiseDemandRequest>) -> Result<pb::Demand> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = demand_request_from_pb(request.into_inner());
        let t = self.state.now();
        ok(self.state.raise_demand(&me, &uri, r).await.map(|d| demand_to_pb(d, t)))
    }

    async fn answer_demand(&self, request: Request<pb::AnswerDemandRequest>) -> Result<pb::AnswerDemandResponse> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = request.into_inner();
        let t = self.state.now();
        ok(self
            .state
            .answer_demand(&me, &uri, &r.demand_id, &r.dataset_id, r.fields)
            .await
            .map(|(d, g)| pb::AnswerDemandResponse {
                demand: Some(demand_to_pb(d, t)),
                grant: Some(grant_to_pb(g, t)),
            }))
    }

    async fn refuse_demand(&self, request: Request<pb::RefuseDemandRequest>) -> Result<pb::Demand> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = request.into_inner();
        let t = self.state.now();
        ok(self
            .state
            .refuse_demand(&me, &uri, &r.demand_id, &r.reason)
            .await
            .map(|d| demand_to_pb(d, t)))
    }

    async fn get_demand(&self, request: Request<pb::GetDemandRequest>) -> Result<pb::Demand> {
        let me = caller(&request)?.principal;
        let t = self.state.now();
        ok(self
            .state
            .visible_demand(&me, &request.into_inner().demand_id)
            .map(|d| demand_to_pb(d, t)))
    }

    async fn list_demands(&self, request: Request<pb::ListDemandsRequest>) -> Result<pb::ListDemandsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let query = DemandQuery {
            consumer_id: r.consumer_id,
            provider_id: r.provider_id,
            state: demand_state_from_pb(r.state).map_err(to_status)?,
            waiting_for_me: r.waiting_for_me,
        };
        let t = self.state.now();
        ok(self.state.list_demands(&me, &query).map(|ds| pb::ListDemandsResponse {
            demands: ds.into_iter().map(|d| demand_to_pb(d, t)).collect(),
        }))
    }

    async fn raise_correction(&self, request: Request<pb::RaiseCorrectionRequest>) -> Result<pb::Correction> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = correction_request_from_pb(request.into_inner());
        let mut served = self
            .auditing
            .served(&me.department, &r.dataset_id, &r.key)
            .await
            .map_err(to_status)?;
        served.latest_sequence = self.shipping.latest_sequence(&r.dataset_id).map_err(to_status)?;
        let t = self.state.now();
        ok(self
            .state
            .raise_correction(&me, &uri, r, &served)
            .await
            .map(|c| correction_to_pb(c, t)))
    }

    async fn answer_correction(&self, request: Request<pb::AnswerCorrectionRequest>) -> Result<pb::Correction> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = request.into_inner();
        let answer = correction_answer_from_pb(&r).map_err(to_status)?;
        let t = self.state.now();
        let shipping = self.shipping.clone();
        let latest = move |dataset: &str| shipping.latest_sequence(dataset);
        ok(self
            .state
            .answer_correction(&me, &uri, &r.correction_id, answer, &r.answer, &latest)
            .await
            .map(|c| correction_to_pb(c, t)))
    }

    async fn get_correction(&self, request: Request<pb::GetCorrectionRequest>) -> Result<pb::Correction> {
        let me = caller(&request)?.principal;
        let t = self.state.now();
        ok(self
            .state
            .visible_correction(&me, &request.into_inner().correction_id)
            .map(|c| correction_to_pb(c, t)))
    }

    async fn list_corrections(
        &self,
        request: Request<pb::ListCorrectionsRequest>,
    ) -> Result<pb::ListCorrectionsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let query = CorrectionQuery {
            consumer_id: r.consumer_id,
            dataset_id: r.dataset_id,
            provider_id: r.provider_id,
            state: correction_state_from_pb(r.state).map_err(to_status)?,
            waiting_for_me: r.waiting_for_me,
        };
        let t = self.state.now();
        ok(self
            .state
            .list_corrections(&me, &query)
            .map(|cs| pb::ListCorrectionsResponse {
                corrections: cs.into_iter().map(|c| correction_to_pb(c, t)).collect(),
            }))
    }

    async fn list_alerts(&self, request: Request<pb::ListAlertsRequest>) -> Result<pb::ListAlertsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let query = AlertQuery {
            rule: alert_rule_from_pb(r.rule).map_err(to_status)?,
            state: alert_state_from_pb(r.state).map_err(to_status)?,
            department: Some(r.department_id).filter(|d| !d.is_empty()),
            from_ms: Some(r.from_ms).filter(|t| *t != 0),
            to_ms: Some(r.to_ms).filter(|t| *t != 0),
            limit: r.limit as usize,
        };
        ok(self.alerts.list(&me, &query).map(|alerts| pb::ListAlertsResponse {
            alerts: alerts.into_iter().map(alert_to_pb).collect(),
        }))
    }

    async fn get_alert(&self, request: Request<pb::GetAlertRequest>) -> Result<pb::Alert> {
        let me = caller(&request)?.principal;
        ok(self.alerts.get(&me, &request.into_inner().alert_id).map(alert_to_pb))
    }

    async fn acknowledge_alert(&self, request: Request<pb::AcknowledgeAlertRequest>) -> Result<pb::Alert> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        ok(self
            .alerts
            .acknowledge(&me, &r.alert_id, &r.note)
            .await
            .map(alert_to_pb))
    }

    async fn get_scoreboard(&self, request: Request<pb::GetScoreboardRequest>) -> Result<pb::Scoreboard> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        ok(self
            .scoreboards
            .get(&me, &r.from_day, &r.to_day)
            .await
            .map(|(period, scores, as_of)| pb::Scoreboard {
                from_day: period.from_day.to_string(),
                to_day: period.to_day.to_string(),
                as_of,
                formula: exchange_core::scoreboard::FORMULA.to_string(),
                departments: scores.into_iter().map(score_to_pb).collect(),
            }))
    }

    type WatchAlertsStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::Alert, Status>> + Send>>;

    async fn watch_alerts(&self, request: Request<pb::WatchAlertsRequest>) -> Result<Self::WatchAlertsStream> {
        let me = caller(&request)?.principal;
        // Refused here, before the stream opens.
        let mut last = self
            .alerts
            .watch_from(&me, &request.into_inner().after_id)
            .map_err(to_status)?;
        let (tx, rx) = mpsc::channel(64);
        let alerts = self.alerts.clone();
        let mut latest = alerts.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let found = match alerts.after(last, WATCH_BATCH) {
                    Ok(found) => found,
                    Err(e) => {
                        send_unless_stopping(&tx, Err(to_status(e)), &mut shutdown).await;
                        return;
                    }
                };
                let more = found.len() == WATCH_BATCH;
                for alert in found {
                    last = crate::alerts::seq_of(&alert.id).unwrap_or(last);
                    if !send_unless_stopping(&tx, Ok(alert_to_pb(alert)), &mut shutdown).await {
                        return;
                    }
                }
                if more {
                    continue;
                }
                tokio::select! {
                    changed = latest.wait_for(|&n| n > last) => if changed.is_err() { return },
                    _ = shutdown.wait_for(|&down| down) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::WatchEvent, Status>> + Send>>;

    async fn ship_ledger(&self, request: Request<pb::ShipLedgerRequest>) -> Result<pb::ShippedLedger> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let batch = ShipBatch {
            vkey: r.vkey,
            from_index: r.from_index,
            events: r.events,
            checkpoint: r.checkpoint,
            batch_proof: r.batch_proof,
            accepted_proof: r.accepted_proof,
            report: r.report.map(|report| NodeReport {
                ledger_size: report.ledger_size,
                datasets: report
                    .datasets
                    .into_iter()
                    .map(|d| (d.dataset_id, d.sequence))
                    .collect(),
            }),
        };
        ok(self.shipping.ship(&me, batch).await.map(shipped_to_pb))
    }

    async fn get_shipped_ledger(&self, request: Request<pb::GetShippedLedgerRequest>) -> Result<pb::ShippedLedger> {
        let me = caller(&request)?.principal;
        let department = request.into_inner().department_id;
        // A department the registry does not know has no ledger here, rather than an empty one.
        self.state.get_department(&department).map_err(to_status)?;
        ok(self.shipping.get(&me, &department).map(shipped_to_pb))
    }

    async fn read_shipped_events(
        &self,
        request: Request<pb::ReadShippedEventsRequest>,
    ) -> Result<pb::ReadShippedEventsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        ok(self
            .shipping
            .read(&me, &r.department_id, r.from_index, limit)
            .map(|events| pb::ReadShippedEventsResponse {
                events: events.into_iter().map(located_to_pb).collect(),
            }))
    }

    async fn search_audit_events(
        &self,
        request: Request<pb::SearchAuditEventsRequest>,
    ) -> Result<pb::SearchAuditEventsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let text = |s: String| (!s.is_empty()).then_some(s);
        let decision = match r.decision.as_str() {
            "" => None,
            d => Some(d.parse().map_err(|e: exchange_core::ValidationError| to_status(e))?),
        };
        let query = exchange_core::audit_index::AuditQuery {
            from_ms: (r.from_ms != 0).then_some(r.from_ms),
            to_ms: (r.to_ms != 0).then_some(r.to_ms),
            consumer: text(r.consumer_id),
            provider: text(r.provider_id),
            dataset: text(r.dataset_id),
            purpose: text(r.purpose),
            decision,
            grant: text(r.grant_id),
            case_id: text(r.case_id),
            record_key: text(r.record_key),
        };
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        ok(self
            .auditing
            .search(&me, query, &r.page_token, limit)
            .await
            .map(|found| pb::SearchAuditEventsResponse {
                events: found.events.into_iter().map(located_to_pb).collect(),
                next_page_token: found.next_page_token,
            }))
    }

    async fn count_audit_events(
        &self,
        request: Request<pb::CountAuditEventsRequest>,
    ) -> Result<pb::CountAuditEventsResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let by: exchange_core::audit_index::CountBy =
            r.by.parse().map_err(|e: exchange_core::ValidationError| to_status(e))?;
        ok(self
            .auditing
            .counts(&me, by, &r.from_day, &r.to_day)
            .await
            .map(|counts| pb::CountAuditEventsResponse {
                counts: counts
                    .into_iter()
                    .map(|c| pb::AuditCount {
                        value: c.value,
                        day: c.day,
                        count: c.count,
                    })
                    .collect(),
            }))
    }

    async fn access_report(&self, request: Request<pb::AccessReportRequest>) -> Result<pb::AccessReportResponse> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        ok(self
            .auditing
            .access_report(&me, &r.dataset_id, &r.record_key, &r.page_token, limit)
            .await
            .map(|(reads, next_page_token)| pb::AccessReportResponse {
                reads: reads
                    .into_iter()
                    .map(|read| {
                        let e = read.located.event;
                        pb::AccessRead {
                            node: read.located.node,
                            index: read.located.index,
                            time_ms: e.time_ms,
                            department_id: e.department,
                            principal: e.principal,
                            operation: e.operation,
                            purpose: e.purpose,
                            case_id: e.case_id,
                            grant_id: e.grant_id,
                            legal_basis: read.legal_basis,
                            decision: e.decision.to_string(),
                            reason: e.reason,
                            withheld_until: e.withheld_until,
                        }
                    })
                    .collect(),
                next_page_token,
            }))
    }

    async fn rotate_log_key(&self, request: Request<pb::RotateLogKeyRequest>) -> Result<pb::ShippedLedger> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        self.state.get_department(&r.department_id).map_err(to_status)?;
        ok(self
            .shipping
            .rotate(&me, &r.department_id, &r.vkey, &r.reason)
            .await
            .map(shipped_to_pb))
    }

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Self::WatchStream> {
        let me = caller(&request)?.principal;
        let r = request.into_inner();
        let department = if r.all_departments || (r.department_id.is_empty() && me.role.is_exchange_wide()) {
            None
        } else if r.department_id.is_empty() {
            Some(me.department.clone())
        } else {
            Some(r.department_id)
        };
        authz::watch(&me, department.as_deref()).map_err(to_status)?;
        let (tx, rx) = mpsc::channel(64);
        let state = self.state.clone();
        let mut revisions = state.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last = r.from_revision;
            let mut last_history;
            let mut checked = false;
            let mut caught_up = false;
            loop {
                loop {
                    // The first read checks the resuming watcher's history, with writes held.
                    let expected = (!checked).then_some(r.from_history.as_str());
                    checked = true;
                    let changes = match state
                        .changes_since(department.as_deref(), last, expected, WATCH_BATCH)
                        .await
                    {
                        Ok(found) => found,
                        Err(e) => {
                            send_unless_stopping(&tx, Err(to_status(e)), &mut shutdown).await;
                            return;
                        }
                    };
                    last_history = changes.history;
                    for (revision, history, item) in changes.items {
                        let t = state.now();
                        let event = match item {
                            WatchItem::Dataset(d) => {
                                pb::watch_event::Event::Dataset(dataset_to_pb(d.dataset, d.versions))
                            }
                            WatchItem::Grant(g) => pb::watch_event::Event::Grant(grant_to_pb(*g, t)),
                        };
                        let event = pb::WatchEvent {
                            revision,
                            history,
                            event: Some(event),
                        };
                        if !send_unless_stopping(&tx, Ok(event), &mut shutdown).await {
                            return;
                        }
                    }
                    if changes.last == last {
                        break;
                    }
                    last = changes.last;
                }
                if !caught_up {
                    caught_up = true;
                    let event = pb::WatchEvent {
                        revision: last,
                        history: last_history.clone(),
                        event: Some(pb::watch_event::Event::CaughtUp(pb::CaughtUp {})),
                    };
                    if !send_unless_stopping(&tx, Ok(event), &mut shutdown).await {
                        return;
                    }
                }
                tokio::select! {
                    changed = revisions.wait_for(|&r| r > last) => if changed.is_err() { return },
                    _ = shutdown.wait_for(|&down| down) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// What a `DecideGrantRequest` asks of a grant.
enum GrantAction {
    Decide(exchange_core::grant::GrantState),
    PassReview,
    Appeal,
    Answer(exchange_core::grant::AppealOutcome),
}

impl RegistryService {
    /// Approves, rejects, revokes, passes the review of, appeals or answers the appeal of the
    /// grant a request names, with its reason.
    async fn act_on_grant(&self, request: Request<pb::DecideGrantRequest>, action: GrantAction) -> Result<pb::Grant> {
        let me = caller(&request)?.principal;
        let uri = me.uri(&self.trust_domain);
        let r = request.into_inner();
        let (id, reason) = (r.grant_id.as_str(), r.reason.as_str());
        let done = match action {
            GrantAction::Decide(to) => self.state.decide_grant(&me, &uri, id, to, reason).await,
            GrantAction::PassReview => self.state.pass_review(&me, &uri, id, reason).await,
            GrantAction::Appeal => self.state.appeal_grant(&me, &uri, id, reason).await,
            GrantAction::Answer(outcome) => self.state.answer_appeal(&me, &uri, id, outcome, reason).await,
        };
        ok(done.map(|g| grant_to_pb(g, self.state.now())))
    }
}
