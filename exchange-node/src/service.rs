//! The gRPC skin of a node: authenticates (via the interceptor), validates, authorizes with
//! `exchange_core::policy`, writes the audit event, and only then serves.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use exchange_core::filter::Filter;
use exchange_core::identity::{Principal, Role};
use exchange_core::ledger::{AuditEvent, Decision, MAX_KEYS_PER_EVENT};
use exchange_core::mask::mask_value;
use exchange_core::policy::{authorize, Denial, ReadPlan, ReadRequest};
use exchange_core::store::{Store, StoreError};
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::stream::send_unless_stopping;
use futures_util::{Stream, StreamExt as _};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::catalog::{Catalog, Compiled, NodeDataset};
use crate::config::Limits;
use crate::page_token::PageTokens;
use crate::records::{self, NewChange, Writer};
use crate::sync::SharedSync;

/// The `exchange.node.v1.Node` service.
pub struct NodeService {
    pub(crate) department: String,
    pub(crate) trust_domain: String,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) writer: Writer,
    pub(crate) page_tokens: Arc<PageTokens>,
    pub(crate) limits: Limits,
    pub(crate) sync: SharedSync,
    /// Changes whenever a grant or dataset changes, so open subscriptions re-check their grant.
    pub(crate) policy_epoch: watch::Receiver<u64>,
    /// Flips to true at shutdown, ending subscriptions.
    pub(crate) shutdown: watch::Receiver<bool>,
}

type Result<T> = std::result::Result<T, Status>;

/// How many rejections one reply lists; the count covers them all.
const MAX_REJECTIONS_LISTED: usize = 1000;
/// Records per streamed message.
const CHUNK: usize = 500;
/// Stored records read from the store at a time while looking for matches.
const SCAN_PAGE: usize = 1000;

fn unavailable(e: StoreError) -> Status {
    tracing::error!(error = %e, "storage failed");
    Status::unavailable(format!("storage failed, nothing was acknowledged: {e}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a read asked for, for its audit event.
struct ReadAsk<'a> {
    operation: &'static str,
    dataset: &'a str,
    fields: &'a [String],
    purpose: &'a str,
    case_id: &'a str,
}

impl<'a> ReadAsk<'a> {
    fn query(r: &'a pb::QueryRequest) -> Self {
        Self {
            operation: "query",
            dataset: &r.dataset_id,
            fields: &r.fields,
            purpose: &r.purpose,
            case_id: &r.case_id,
        }
    }

    fn subscribe(r: &'a pb::SubscribeRequest) -> Self {
        Self {
            operation: "subscribe",
            dataset: &r.dataset_id,
            fields: &r.fields,
            purpose: &r.purpose,
            case_id: &r.case_id,
        }
    }
}

impl NodeService {
    fn event(&self, who: &Principal, ask: &ReadAsk<'_>, decision: Decision, reason: String) -> AuditEvent {
        AuditEvent {
            time_ms: now_ms(),
            node: self.department.clone(),
            principal: who.uri(&self.trust_domain),
            department: who.department.clone(),
            operation: ask.operation.to_string(),
            dataset: ask.dataset.to_string(),
            schema_version: 0,
            fields: ask.fields.to_vec(),
            keys: Vec::new(),
            count: 0,
            purpose: ask.purpose.to_string(),
            case_id: ask.case_id.to_string(),
            decision,
            reason,
            grant_id: String::new(),
        }
    }

    /// Records a denial durably, then returns the status the caller gets.
    async fn deny(&self, who: &Principal, ask: &ReadAsk<'_>, status: Status) -> Status {
        let event = self.event(who, ask, Decision::Deny, status.message().to_string());
        if let Err(e) = self.writer.audit(vec![event]).await {
            return unavailable(e);
        }
        tracing::info!(caller = %who, dataset = ask.dataset, operation = ask.operation, reason = status.message(), "read denied");
        status
    }

    /// Decides a read. Denials are audited here; the caller audits what it serves.
    async fn plan(
        &self,
        who: &Principal,
        ask: &ReadAsk<'_>,
        filter_text: &str,
    ) -> Result<(Arc<NodeDataset>, Arc<Compiled>, ReadPlan)> {
        // A refused request is a denied read, and on the record like any other.
        let request_filter: Filter = if filter_text.trim().is_empty() {
            Filter::default()
        } else {
            match filter_text.parse() {
                Ok(filter) => filter,
                Err(e) => {
                    let status = Status::invalid_argument(format!("field \"filter\": {e}"));
                    return Err(self.deny(who, ask, status).await);
                }
            }
        };
        let Some(dataset) = self.catalog.dataset(ask.dataset) else {
            let status = Status::not_found(format!(
                "dataset {} is not served by this node ({})",
                ask.dataset, self.department
            ));
            return Err(self.deny(who, ask, status).await);
        };
        let Some(latest) = dataset.latest() else {
            let status = Status::failed_precondition(format!("dataset {} has no schema version yet", ask.dataset));
            return Err(self.deny(who, ask, status).await);
        };
        let grants = self.catalog.grants(ask.dataset, &who.department);
        let refs: Vec<&exchange_core::grant::Grant> = grants.iter().collect();
        let request = ReadRequest {
            fields: ask.fields,
            purpose: ask.purpose,
            filter: &request_filter,
        };
        match authorize(
            who,
            &dataset.dataset,
            &latest.schema,
            &refs,
            &request,
            exchange_core::now(),
        ) {
            Ok(plan) => Ok((dataset, latest, plan)),
            Err(denial) => {
                let status = match denial {
                    Denial::UnknownField { .. } => Status::invalid_argument(denial.to_string()),
                    Denial::NoPurpose => Status::invalid_argument(denial.to_string()),
                    _ => Status::permission_denied(denial.to_string()),
                };
                Err(self.deny(who, ask, status).await)
            }
        }
    }

    /// Durably records an allowed read of `keys` before anything is sent.
    async fn audit_allowed(
        &self,
        who: &Principal,
        ask: &ReadAsk<'_>,
        plan: &ReadPlan,
        version: u32,
        keys: &[String],
    ) -> Result<()> {
        let mut event = self.event(who, ask, Decision::Allow, plan.reason.clone());
        event.fields = plan.fields.clone();
        event.schema_version = version;
        event.count = keys.len() as u64;
        event.keys = keys.iter().take(MAX_KEYS_PER_EVENT).cloned().collect();
        event.grant_id = plan.grant_id.clone().unwrap_or_default();
        self.writer.audit(vec![event]).await.map_err(unavailable)
    }
}

/// The record as the plan allows it to leave: `None` if the row filter hides it.
fn serve(plan: &ReadPlan, json: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(json) else {
        return None;
    };
    if !plan.filter.matches(&record) {
        return None;
    }
    Some(project(plan, &record))
}

/// What a key pseudonym is bound to: the dataset and the reading department.
fn pseudonym_scope(dataset: &str, who: &Principal) -> String {
    format!("{dataset}\n{}", who.department)
}

/// A record's key as the plan lets it leave: when the grant masks the key field, a pseudonym
/// stable for this reader of this dataset (`scope`, see [`pseudonym_scope`]), since a masked
/// key would collide with others.
fn served_key(secrets: &PageTokens, scope: &str, plan: &ReadPlan, key_field: &str, key: String) -> String {
    if plan.masked.contains_key(key_field) {
        secrets.pseudonym(scope, &key)
    } else {
        key
    }
}

fn project(plan: &ReadPlan, record: &Map<String, Value>) -> Vec<u8> {
    let mut out = Map::new();
    for field in &plan.fields {
        if let Some(value) = record.get(field) {
            let value = match plan.masked.get(field) {
                Some(sensitivity) => mask_value(sensitivity, value),
                None => value.clone(),
            };
            out.insert(field.clone(), value);
        }
    }
    serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
}

/// Checks one change against the schema; a rejection lists every error.
fn check_change(
    compiled: &Compiled,
    key_field: &str,
    limits: &Limits,
    change: pb::Change,
) -> std::result::Result<NewChange, (String, Vec<pb::FieldError>)> {
    let error = |pointer: &str, message: String| pb::FieldError {
        pointer: pointer.to_string(),
        message,
    };
    match change.op {
        None => Err((
            String::new(),
            vec![error("", "empty change: set upsert or delete_key".into())],
        )),
        Some(pb::change::Op::DeleteKey(key)) => {
            if key.is_empty() {
                Err((key, vec![error("", "delete_key is empty".into())]))
            } else {
                Ok(NewChange { key, json: None })
            }
        }
        Some(pb::change::Op::Upsert(bytes)) => {
            if bytes.len() > limits.max_record_bytes {
                return Err((
                    String::new(),
                    vec![error(
                        "",
                        format!(
                            "record is {} bytes; the limit is {} (limits.max_record_bytes)",
                            bytes.len(),
                            limits.max_record_bytes
                        ),
                    )],
                ));
            }
            let value: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    return Err((
                        String::new(),
                        vec![error(
                            "",
                            format!("not JSON: line {} column {}: {e}", e.line(), e.column()),
                        )],
                    ))
                }
            };
            let key = value
                .get(key_field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let errors: Vec<pb::FieldError> = exchange_core::schema::record_errors(&compiled.validator, &value)
                .into_iter()
                .map(|(pointer, message)| error(&pointer, message))
                .collect();
            if !errors.is_empty() {
                return Err((key, errors));
            }
            if key.is_empty() {
                return Err((
                    key,
                    vec![error(
                        &format!("/{key_field}"),
                        format!("the key field \"{key_field}\" is missing or empty"),
                    )],
                ));
            }
            // Store the bytes as validated, re-encoded compactly so every stored record has one form.
            Ok(NewChange {
                key,
                json: Some(serde_json::to_vec(&value).unwrap_or(bytes.to_vec())),
            })
        }
    }
}

/// Running totals of a publish (one request, or a whole stream).
#[derive(Default)]
struct PublishTotals {
    response: pb::PublishResponse,
    position: u64,
}

impl NodeService {
    fn publisher(&self, who: &Principal, dataset_id: &str) -> Result<Arc<NodeDataset>> {
        let dataset = self.catalog.dataset(dataset_id).ok_or_else(|| {
            Status::not_found(format!(
                "dataset {dataset_id} is not served by this node ({})",
                self.department
            ))
        })?;
        let owner = dataset.dataset.owner().to_string();
        if who.department != owner || !matches!(who.role, Role::Node | Role::System) {
            return Err(Status::permission_denied(format!(
                "{who} may not publish to {dataset_id}; only {owner}'s system or node may"
            )));
        }
        Ok(dataset)
    }

    async fn publish_one(
        &self,
        who: &Principal,
        request: pb::PublishRequest,
        totals: &mut PublishTotals,
    ) -> Result<()> {
        let dataset = self.publisher(who, &request.dataset_id)?;
        let compiled = if request.schema_version == 0 {
            dataset.latest()
        } else {
            dataset.versions.get(&request.schema_version).cloned()
        }
        .ok_or_else(|| {
            let known: Vec<String> = dataset.versions.keys().map(u32::to_string).collect();
            Status::failed_precondition(if known.is_empty() {
                format!(
                    "dataset {} has no schema version yet: publish one at the registry first (exchange schema publish {} FILE)",
                    request.dataset_id, request.dataset_id
                )
            } else {
                format!(
                    "dataset {} has no schema version {}; known versions: {}",
                    request.dataset_id,
                    request.schema_version,
                    known.join(", ")
                )
            })
        })?;
        let mut accepted = Vec::new();
        let mut rejected = 0u64;
        for change in request.changes {
            let position = totals.position;
            totals.position += 1;
            match check_change(&compiled, &dataset.dataset.key_field, &self.limits, change) {
                Ok(change) => accepted.push(change),
                Err((key, errors)) => {
                    rejected += 1;
                    if totals.response.rejections.len() < MAX_REJECTIONS_LISTED {
                        totals
                            .response
                            .rejections
                            .push(pb::RejectedChange { position, key, errors });
                    }
                }
            }
        }
        totals.response.rejected += rejected;
        totals.response.schema_version = compiled.version;
        if request.atomic && rejected > 0 {
            return Ok(());
        }
        let count = accepted.len() as u64;
        let (first, last) = self
            .writer
            .publish(&request.dataset_id, compiled.version, accepted)
            .await
            .map_err(unavailable)?;
        if count > 0 {
            if totals.response.first_sequence == 0 {
                totals.response.first_sequence = first;
            }
            totals.response.last_sequence = last;
        }
        totals.response.accepted += count;
        Ok(())
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>> {
        let who = caller(&request)?.principal;
        let mut totals = PublishTotals::default();
        self.publish_one(&who, request.into_inner(), &mut totals).await?;
        Ok(Response::new(totals.response))
    }

    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<pb::PublishRequest>>,
    ) -> Result<Response<pb::PublishResponse>> {
        let who = caller(&request)?.principal;
        let mut stream = request.into_inner();
        let mut totals = PublishTotals::default();
        while let Some(message) = stream.next().await {
            let outcome = match message {
                Ok(message) => self.publish_one(&who, message, &mut totals).await,
                Err(status) => Err(status),
            };
            if let Err(status) = outcome {
                // What earlier messages stored stays stored: say so, so the caller resumes
                // from the right place instead of guessing.
                let r = &totals.response;
                if r.accepted == 0 {
                    return Err(status);
                }
                return Err(Status::new(
                    status.code(),
                    format!(
                        "{}; the messages before this one were stored: {} changes accepted (sequences {} to {}), {} rejected",
                        status.message(),
                        r.accepted,
                        r.first_sequence,
                        r.last_sequence,
                        r.rejected
                    ),
                ));
            }
        }
        Ok(Response::new(totals.response))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>> {
        let who = caller(&request)?.principal;
        let r = request.into_inner();
        let ask = ReadAsk {
            operation: "get",
            dataset: &r.dataset_id,
            fields: &r.fields,
            purpose: &r.purpose,
            case_id: &r.case_id,
        };
        if r.keys.len() > self.limits.max_get_keys {
            let status = Status::invalid_argument(format!(
                "field \"keys\": {} keys asked; the limit is {} (use Query for more)",
                r.keys.len(),
                self.limits.max_get_keys
            ));
            return Err(self.deny(&who, &ask, status).await);
        }
        let (_, latest, plan) = self.plan(&who, &ask, "").await?;
        let mut records = Vec::new();
        let mut missing = Vec::new();
        let mut seen = BTreeSet::new();
        for key in &r.keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            let stored = records::get_record(&*self.store, &r.dataset_id, key).map_err(unavailable)?;
            match stored.and_then(|s| serve(&plan, &s.json).map(|json| (s, json))) {
                Some((s, json)) => records.push(pb::Record {
                    key: key.clone(),
                    json,
                    sequence: s.sequence,
                    schema_version: s.schema_version,
                }),
                None => missing.push(key.clone()),
            }
        }
        let served: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        self.audit_allowed(&who, &ask, &plan, latest.version, &served).await?;
        Ok(Response::new(pb::GetResponse {
            records,
            missing_keys: missing,
            grant_id: plan.grant_id.unwrap_or_default(),
        }))
    }

    type QueryStream = BoxStream<pb::QueryResponse>;

    async fn query(&self, request: Request<pb::QueryRequest>) -> Result<Response<Self::QueryStream>> {
        let who = caller(&request)?.principal;
        let r = request.into_inner();
        let ask = ReadAsk::query(&r);
        // Refuse at once when not allowed (audited as a denial); then stream page by page,
        // deciding again before every message.
        let decided = self.plan(&who, &ask, &r.filter).await?;
        let after = match r.page_token.as_str() {
            "" => None,
            token => match self.page_tokens.open(&page_scope(&r, &who), token) {
                Some(key) => Some(key),
                None => {
                    let status = Status::invalid_argument(format!(
                        "field \"page_token\": not a token this node gave {} for this query of {} (same purpose, fields and filter); start the query again without it",
                        who.department, r.dataset_id
                    ));
                    return Err(self.deny(&who, &ask, status).await);
                }
            },
        };
        let limit = match r.limit as usize {
            0 => self.limits.max_query_records,
            n => n.min(self.limits.max_query_records),
        };
        let (tx, rx) = mpsc::channel(2);
        let task = QueryRun {
            service: self.clone_for_task(),
            who,
            request: r,
            limit,
            decided,
            after,
        };
        tokio::spawn(task.run(tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type SubscribeStream = BoxStream<pb::ChangeBatch>;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>> {
        let who = caller(&request)?.principal;
        let r = request.into_inner();
        let ask = ReadAsk::subscribe(&r);
        // Refuse at once when not allowed (audited as a denial); record the opening as allowed.
        // The stream re-decides before every batch and audits what each batch serves.
        let (_, latest, plan) = self.plan(&who, &ask, &r.filter).await?;
        let last = *self.writer.feed(&r.dataset_id).borrow();
        if r.after_sequence > last {
            let status = Status::out_of_range(format!(
                "field \"after_sequence\": {} is past the last change of {} ({last}); resume from a cursor this node sent you, or 0 for every change",
                r.after_sequence, r.dataset_id
            ));
            return Err(self.deny(&who, &ask, status).await);
        }
        self.audit_allowed(&who, &ask, &plan, latest.version, &[]).await?;
        let (tx, rx) = mpsc::channel(4);
        let task = Subscription {
            service: self.clone_for_task(),
            who,
            request: r,
        };
        tokio::spawn(task.run(tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::NodeStatus>> {
        let who = caller(&request)?.principal;
        // How much a department holds and how busy its node is are its own business.
        if who.department != self.department && !who.role.is_exchange_wide() {
            return Err(Status::permission_denied(format!(
                "{who} may not see the status of {}'s node; only {} itself, an admin or an auditor may",
                self.department, self.department
            )));
        }
        let sync = self.sync.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut datasets = Vec::new();
        for d in self.catalog.datasets() {
            datasets.push(pb::DatasetStatus {
                dataset_id: d.dataset.id.clone(),
                latest_version: d.latest().map(|c| c.version).unwrap_or(0),
                last_sequence: *self.writer.feed(&d.dataset.id).borrow(),
                records: self.writer.records(&d.dataset.id),
            });
        }
        let head = self.writer.ledger_head();
        Ok(Response::new(pb::NodeStatus {
            department_id: self.department.clone(),
            registry_connected: sync.current,
            registry_revision: self.catalog.revision(),
            view_age_seconds: sync.view_age_seconds(),
            datasets,
            audit_entries: head.seq,
            audit_head: exchange_core::ledger::hex(&head.head),
        }))
    }
}

impl NodeService {
    fn clone_for_task(&self) -> Arc<NodeService> {
        Arc::new(NodeService {
            department: self.department.clone(),
            trust_domain: self.trust_domain.clone(),
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            writer: self.writer.clone(),
            page_tokens: self.page_tokens.clone(),
            limits: self.limits,
            sync: self.sync.clone(),
            policy_epoch: self.policy_epoch.clone(),
            shutdown: self.shutdown.clone(),
        })
    }
}

/// One Query being streamed. Memory stays bounded by a message or two whatever the dataset's
/// size: records are read a page at a time, and each message's audit event (with its keys) is
/// durable before the message is sent.
struct QueryRun {
    service: Arc<NodeService>,
    who: Principal,
    request: pb::QueryRequest,
    limit: usize,
    decided: (Arc<NodeDataset>, Arc<Compiled>, ReadPlan),
    /// The key to go on after (from the page token).
    after: Option<String>,
}

/// What a page token is bound to: the dataset, the reading department, and the query's
/// purpose, fields and filter (going on with another query from its position makes no sense).
fn page_scope(request: &pb::QueryRequest, who: &Principal) -> String {
    let mut fields = request.fields.clone();
    fields.sort();
    format!(
        "{}\n{}\n{}\n{}\n{}",
        request.dataset_id,
        who.department,
        request.purpose,
        fields.join(","),
        request.filter.trim()
    )
}

impl QueryRun {
    async fn run(mut self, tx: mpsc::Sender<std::result::Result<pb::QueryResponse, Status>>) {
        if let Err(status) = self.stream(&tx).await {
            let mut shutdown = self.service.shutdown.clone();
            // At shutdown the error is dropped if the caller is not reading: the connection
            // closes after the grace anyway.
            send_unless_stopping(&tx, Err(status), &mut shutdown).await;
        }
    }

    async fn stream(&mut self, tx: &mpsc::Sender<std::result::Result<pb::QueryResponse, Status>>) -> Result<()> {
        let r = &self.request;
        let svc = &self.service;
        let ask = ReadAsk::query(r);
        let scope = page_scope(r, &self.who);
        let key_scope = pseudonym_scope(&r.dataset_id, &self.who);
        let mut after = self.after.take();
        // Everything up to this key has reached the caller: where to go on after a shutdown.
        let mut delivered = after.clone();
        let mut shutdown = svc.shutdown.clone();
        let stopping = |delivered: &Option<String>| -> Status {
            let token = delivered
                .as_ref()
                .and_then(|key| svc.page_tokens.seal(&scope, key).ok());
            Status::unavailable(match token {
                Some(token) => format!("the node is shutting down; go on later with page_token {token}"),
                None => "the node is shutting down; ask again later".to_string(),
            })
        };
        let mut served = 0usize;
        let mut audited_any = false;
        let mut page: Vec<pb::Record> = Vec::with_capacity(CHUNK);
        let mut exhausted = false;
        let mut first = true;
        loop {
            if *shutdown.borrow() {
                return Err(stopping(&delivered));
            }
            // Decide again before every message, so a revocation or an expiry stops the query.
            if !first {
                self.decided = svc.plan(&self.who, &ask, &r.filter).await?;
            }
            first = false;
            let (dataset, latest, plan) = &self.decided;
            let key_field = &dataset.dataset.key_field;
            while page.len() < CHUNK && served + page.len() < self.limit && !exhausted {
                let scan = records::scan_records(&*svc.store, &r.dataset_id, after.as_deref(), SCAN_PAGE)
                    .map_err(unavailable)?;
                exhausted = scan.len() < SCAN_PAGE;
                for (key, stored) in scan {
                    after = Some(key.clone());
                    if let Some(json) = serve(plan, &stored.json) {
                        page.push(pb::Record {
                            key,
                            json,
                            sequence: stored.sequence,
                            schema_version: stored.schema_version,
                        });
                        if page.len() == CHUNK || served + page.len() == self.limit {
                            // Stop exactly after this record, so `after` is where to go on from.
                            exhausted = false;
                            break;
                        }
                    }
                }
            }
            let limit_hit = served + page.len() >= self.limit;
            let last = exhausted || limit_hit;
            if page.is_empty() {
                // A query that matched nothing is on the record too, with a count of 0.
                if !audited_any {
                    svc.audit_allowed(&self.who, &ask, plan, latest.version, &[]).await?;
                }
                return Ok(());
            }
            // The ledger names the real keys; the caller gets them as its grant allows.
            let keys: Vec<String> = page.iter().map(|p| p.key.clone()).collect();
            svc.audit_allowed(&self.who, &ask, plan, latest.version, &keys).await?;
            audited_any = true;
            served += page.len();
            let mut records = std::mem::replace(&mut page, Vec::with_capacity(CHUNK));
            for record in &mut records {
                let key = std::mem::take(&mut record.key);
                record.key = served_key(&svc.page_tokens, &key_scope, plan, key_field, key);
            }
            let next_page_token = match (limit_hit && !exhausted, &after) {
                (true, Some(last)) => svc.page_tokens.seal(&scope, last).map_err(Status::internal)?,
                _ => String::new(),
            };
            let message = pb::QueryResponse {
                records,
                next_page_token,
            };
            if !send_unless_stopping(tx, Ok(message), &mut shutdown).await {
                return match *shutdown.borrow() {
                    true => Err(stopping(&delivered)),
                    false => Ok(()),
                };
            }
            delivered.clone_from(&after);
            if last {
                return Ok(());
            }
        }
    }
}

/// One open Subscribe stream.
struct Subscription {
    service: Arc<NodeService>,
    who: Principal,
    request: pb::SubscribeRequest,
}

impl Subscription {
    async fn run(self, tx: mpsc::Sender<std::result::Result<pb::ChangeBatch, Status>>) {
        let r = &self.request;
        let svc = &self.service;
        let mut feed = svc.writer.feed(&r.dataset_id);
        let mut epoch = svc.policy_epoch.clone();
        let mut shutdown = svc.shutdown.clone();
        let mut cursor = r.after_sequence;
        let key_scope = pseudonym_scope(&r.dataset_id, &self.who);
        loop {
            let ask = ReadAsk::subscribe(r);
            // Re-decide before every batch, so a revocation ends the stream.
            let (dataset, latest, plan) = match svc.plan(&self.who, &ask, &r.filter).await {
                Ok(p) => p,
                Err(status) => {
                    send_unless_stopping(&tx, Err(status), &mut shutdown).await;
                    return;
                }
            };
            let committed = *feed.borrow_and_update();
            let changes = match records::changes_after(&*svc.store, &r.dataset_id, cursor, committed, CHUNK) {
                Ok(c) => c,
                Err(e) => {
                    send_unless_stopping(&tx, Err(unavailable(e)), &mut shutdown).await;
                    return;
                }
            };
            if let Some(last) = changes.last() {
                let next_cursor = last.sequence;
                let mut events = Vec::new();
                for change in changes {
                    let after = change.after.as_deref().and_then(|a| serve(&plan, a.as_bytes()));
                    let was_visible = change
                        .before
                        .as_deref()
                        .and_then(|b| serve(&plan, b.as_bytes()))
                        .is_some();
                    let event = match after {
                        Some(json) => Some(pb::change_event::Change::Upsert(json)),
                        None if was_visible => Some(pb::change_event::Change::Removed(true)),
                        None => None,
                    };
                    if let Some(change_kind) = event {
                        events.push(pb::ChangeEvent {
                            sequence: change.sequence,
                            key: change.key,
                            change: Some(change_kind),
                        });
                    }
                }
                // A consumer that went away gets nothing more, and nothing more is audited.
                if tx.is_closed() {
                    return;
                }
                if !events.is_empty() {
                    let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
                    if let Err(status) = svc.audit_allowed(&self.who, &ask, &plan, latest.version, &keys).await {
                        send_unless_stopping(&tx, Err(status), &mut shutdown).await;
                        return;
                    }
                    for event in &mut events {
                        let key = std::mem::take(&mut event.key);
                        event.key = served_key(&svc.page_tokens, &key_scope, &plan, &dataset.dataset.key_field, key);
                    }
                }
                cursor = next_cursor;
                if !send_unless_stopping(&tx, Ok(pb::ChangeBatch { events, cursor }), &mut shutdown).await {
                    return;
                }
                continue;
            }
            tokio::select! {
                changed = feed.wait_for(|&seq| seq > cursor) => if changed.is_err() { return },
                changed = epoch.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|&s| s) => return,
                () = tx.closed() => return,
            }
        }
    }
}
