//! The gRPC skin of a node: authenticates (via the interceptor), validates, authorizes with
//! `exchange_core::authz` and `exchange_core::policy`, writes the audit event, and only then
//! serves. Every refusal and failure is a [`CoreError`] turned into a status by
//! [`exchange_transport::to_status`], the one mapping.
//!
//! # Layout
//! - this module: [`NodeService`], deciding a read and auditing it, shaping records as the
//!   plan allows them to leave.
//! - `publish`: Publish and PublishStream.
//! - `import`: Import, the resumable bulk load.
//! - `get`, `query`, `subscribe`: the reads.
//! - `status`: Status.
//! - `ledger`: GetCheckpoint, ProveEvent, ProveConsistency and ExportLedger: the audit ledger's
//!   checkpoints, proofs and exports.

/// The [`ReadAsk`] of a read request (Get, Query and Subscribe name these fields alike).
macro_rules! read_ask {
    ($operation:literal, $request:expr) => {{
        let request = $request;
        ReadAsk {
            operation: $operation,
            dataset: &request.dataset_id,
            fields: &request.fields,
            keys: &[],
            purpose: &request.purpose,
            case_id: &request.case_id,
            withhold_until: request.withhold_until,
        }
    }};
}

mod get;
mod import;
mod ledger;
mod publish;
mod query;
mod status;
mod subscribe;

use std::pin::Pin;
use std::sync::Arc;

use exchange_core::clock::Clock;
use exchange_core::filter::Filter;
use exchange_core::identity::Principal;
use exchange_core::ledger::{AuditEvent, Decision, MAX_KEYS_PER_EVENT};
use exchange_core::mask::mask_value;
use exchange_core::policy::{authorize, ReadPlan, ReadRequest};
use exchange_core::store::Store;
use exchange_core::{CoreError, ValidationError};
use exchange_proto::node::v1 as pb;
use exchange_transport::to_status;
use futures_util::Stream;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::catalog::{Catalog, Compiled, NodeDataset};
use crate::config::Limits;
use crate::page_token::PageTokens;
use crate::sync::SharedSync;
use crate::writer::Writer;

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
    /// How shipping the ledger to the registry goes.
    pub(crate) ship: crate::ship::SharedShip,
    /// Changes whenever a grant or dataset changes, so open subscriptions re-check their grant.
    pub(crate) policy_epoch: watch::Receiver<u64>,
    /// Flips to true at shutdown, ending subscriptions.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The time grants expire by and events are stamped with.
    pub(crate) clock: Clock,
    /// Always on, except in `exchange bench`'s ledger-off measurement.
    pub(crate) ledger_switch: crate::bench::LedgerSwitch,
}

type Result<T> = std::result::Result<T, Status>;

/// Records per streamed message.
const CHUNK: usize = 500;

/// What a read asked for, for its audit event.
struct ReadAsk<'a> {
    operation: &'static str,
    dataset: &'a str,
    fields: &'a [String],
    /// The record keys asked for by name (Get), recorded in a denial too.
    keys: &'a [String],
    purpose: &'a str,
    case_id: &'a str,
    /// Unix seconds until which the read is withheld from the access report (0: it is not).
    withhold_until: i64,
}

/// A decided read: the dataset, its latest schema version and how the read is served.
type Decided = (Arc<NodeDataset>, Arc<Compiled>, ReadPlan);

impl NodeService {
    fn event(&self, who: &Principal, ask: &ReadAsk<'_>, decision: Decision, reason: String) -> AuditEvent {
        AuditEvent {
            time_ms: self.clock.now_ms(),
            node: self.department.clone(),
            principal: who.uri(&self.trust_domain),
            department: who.department.clone(),
            operation: ask.operation.to_string(),
            dataset: ask.dataset.to_string(),
            schema_version: 0,
            fields: ask.fields.to_vec(),
            keys: ask.keys.iter().take(MAX_KEYS_PER_EVENT).cloned().collect(),
            count: 0,
            purpose: ask.purpose.to_string(),
            case_id: ask.case_id.to_string(),
            decision,
            reason,
            grant_id: String::new(),
            served_sha256: String::new(),
            withheld_until: 0,
        }
    }

    /// Records a refusal durably, then returns the status the caller gets (or, when the ledger
    /// cannot take the event, the status saying so: nothing is refused off the record).
    async fn deny(&self, who: &Principal, ask: &ReadAsk<'_>, error: impl Into<CoreError>) -> Status {
        let error = error.into();
        let event = self.event(who, ask, Decision::Deny, error.to_string());
        if let Err(e) = self.write_audit(event).await {
            return to_status(e);
        }
        tracing::info!(caller = %who, dataset = ask.dataset, operation = ask.operation, reason = %error, "read denied");
        to_status(error)
    }

    /// Decides a read. Denials are audited here; the caller audits what it serves.
    async fn plan(&self, who: &Principal, ask: &ReadAsk<'_>, filter_text: &str) -> Result<Decided> {
        match self.decide(who, ask, filter_text) {
            Ok(decided) => Ok(decided),
            // A refused request is a denied read, and on the record like any other.
            Err(error) => Err(self.deny(who, ask, error).await),
        }
    }

    fn decide(&self, who: &Principal, ask: &ReadAsk<'_>, filter_text: &str) -> std::result::Result<Decided, CoreError> {
        let request_filter: Filter = if filter_text.trim().is_empty() {
            Filter::default()
        } else {
            filter_text
                .parse()
                .map_err(|e| ValidationError::new("filter", format!("{e}")))?
        };
        let dataset = self.served(ask.dataset)?;
        let latest = dataset.latest().ok_or_else(|| {
            CoreError::FailedPrecondition(format!("dataset {} has no schema version yet", ask.dataset))
        })?;
        let grants = self.catalog.grants(ask.dataset, &who.department);
        let refs: Vec<&exchange_core::grant::Grant> = grants.iter().collect();
        let request = ReadRequest {
            fields: ask.fields,
            purpose: ask.purpose,
            filter: &request_filter,
        };
        let plan = authorize(who, &dataset.dataset, &latest.schema, &refs, &request, self.clock.now())?;
        if ask.withhold_until != 0 {
            let grant = plan
                .grant_id
                .as_ref()
                .and_then(|id| refs.iter().find(|g| &g.id == id).copied());
            exchange_core::policy::check_withhold(grant, ask.purpose, ask.withhold_until, self.clock.now())?;
        }
        Ok((dataset, latest, plan))
    }

    /// A dataset this node serves, or NOT_FOUND saying whose node this is.
    fn served(&self, dataset_id: &str) -> std::result::Result<Arc<NodeDataset>, CoreError> {
        self.catalog.dataset(dataset_id).ok_or_else(|| {
            CoreError::not_found(format!(
                "dataset {dataset_id} is not served by this node ({})",
                self.department
            ))
        })
    }

    /// Durably records an allowed read of `keys`, serving the record JSON `served`, before
    /// anything is sent; returns the receipt the response carries.
    async fn audit_allowed<'a>(
        &self,
        who: &Principal,
        ask: &ReadAsk<'_>,
        plan: &ReadPlan,
        version: u32,
        keys: &[String],
        served: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<pb::Receipt> {
        let event = self.allowed_event(who, ask, plan, version, keys, served);
        self.queue_allowed(event).await?.receipt().await
    }

    /// The event of an allowed read of `keys`, serving the record JSON `served`.
    fn allowed_event<'a>(
        &self,
        who: &Principal,
        ask: &ReadAsk<'_>,
        plan: &ReadPlan,
        version: u32,
        keys: &[String],
        served: impl IntoIterator<Item = &'a [u8]>,
    ) -> AuditEvent {
        let mut event = self.event(who, ask, Decision::Allow, plan.reason.clone());
        event.fields = plan.fields.clone();
        event.schema_version = version;
        event.count = keys.len() as u64;
        event.keys = keys.iter().take(MAX_KEYS_PER_EVENT).cloned().collect();
        event.grant_id = plan.grant_id.clone().unwrap_or_default();
        event.served_sha256 = exchange_core::ledger::served_digest(served);
        event.withheld_until = ask.withhold_until;
        event
    }

    /// Queues an allowed read's event in the ledger, in order; the receipt comes once it is
    /// durable.
    async fn queue_allowed(&self, event: AuditEvent) -> Result<Queued> {
        let served_sha256 = event.served_sha256.clone();
        let done = match self.ledger_switch.is_on() {
            true => Some(self.writer.queue_audit(vec![event]).await.map_err(to_status)?),
            false => None,
        };
        Ok(Queued {
            node: self.department.clone(),
            served_sha256,
            done,
        })
    }

    /// Writes one event to the ledger durably; returns its index.
    async fn write_audit(&self, event: AuditEvent) -> std::result::Result<u64, CoreError> {
        if !self.ledger_switch.is_on() {
            return Ok(0);
        }
        Ok(self.writer.audit(vec![event]).await?.start)
    }

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
            ship: self.ship.clone(),
            policy_epoch: self.policy_epoch.clone(),
            shutdown: self.shutdown.clone(),
            clock: self.clock.clone(),
            ledger_switch: self.ledger_switch.clone(),
        })
    }
}

/// An allowed read's event, queued in the ledger.
struct Queued {
    node: String,
    served_sha256: String,
    /// Answers once the event is durable (none with the bench's ledger off).
    done: Option<tokio::sync::oneshot::Receiver<std::result::Result<std::ops::Range<u64>, CoreError>>>,
}

impl Queued {
    /// The read's receipt, once its event is durable.
    async fn receipt(self) -> Result<pb::Receipt> {
        let index = match self.done {
            Some(done) => {
                done.await
                    .map_err(|_| to_status(crate::writer::stopped()))?
                    .map_err(to_status)?
                    .start
            }
            None => 0,
        };
        Ok(pb::Receipt {
            node: self.node,
            index,
            served_sha256: self.served_sha256,
        })
    }
}

/// The record as the plan allows it to leave: `None` if the row filter hides it.
///
/// Stored records are serde_json's own compact output (keys in order), so a value leaves as the
/// bytes it is stored as and only masked values and the filter's fields are parsed: parsing
/// whole records into values cost more than everything else a read does. The bytes are the
/// same as projecting a parsed record would give.
fn serve(plan: &ReadPlan, json: &[u8]) -> Option<Vec<u8>> {
    let mut parser = serde_json::Deserializer::from_slice(json);
    let served = serde::de::DeserializeSeed::deserialize(Projector { plan }, &mut parser).and_then(|served| {
        parser.end()?;
        Ok(served)
    });
    match served {
        Ok(served) => served,
        // A field name with escapes cannot be borrowed, and keys out of order (not serde_json's
        // output) must be sorted: parse it all.
        Err(_) => {
            let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(json) else {
                return None;
            };
            if !plan.filter.matches(&record) {
                return None;
            }
            Some(project(plan, &record))
        }
    }
}

/// Projects and masks a stored record as its fields are read, in one pass, without building a
/// map of them (the masked Query serves every record through this). The record's keys must come
/// in order and once each, as serde_json writes them; anything else is an error here and is
/// served by parsing the whole record instead.
struct Projector<'p> {
    plan: &'p ReadPlan,
}

impl<'de> serde::de::DeserializeSeed<'de> for Projector<'_> {
    type Value = Option<Vec<u8>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Projector<'_> {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with its keys in order")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut fields: A) -> std::result::Result<Self::Value, A::Error> {
        use serde::de::Error;
        let plan = self.plan;
        let mut filtered = (!plan.filter.is_empty()).then(Map::new);
        let mut out = Vec::with_capacity(64 * plan.fields.len());
        out.push(b'{');
        let mut last: Option<&'de str> = None;
        while let Some(name) = fields.next_key::<&'de str>()? {
            if last.is_some_and(|last| last >= name) {
                return Err(A::Error::custom("keys out of order"));
            }
            last = Some(name);
            let raw: &'de RawValue = fields.next_value()?;
            if let Some(filtered) = filtered.as_mut() {
                if plan.filter.fields().any(|f| f == name) {
                    let Ok(value) = serde_json::from_str(raw.get()) else {
                        return Ok(None);
                    };
                    filtered.insert(name.to_string(), value);
                }
            }
            if !plan.fields.iter().any(|f| f == name) {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            if serde_json::to_writer(&mut out, name).is_err() {
                return Ok(None);
            }
            out.push(b':');
            match plan.masked.get(name) {
                Some(&sensitivity) => {
                    let Ok(value) = serde_json::from_str::<Value>(raw.get()) else {
                        return Ok(None);
                    };
                    if serde_json::to_writer(&mut out, &mask_value(sensitivity, &value)).is_err() {
                        return Ok(None);
                    }
                }
                None => out.extend_from_slice(raw.get().as_bytes()),
            }
        }
        out.push(b'}');
        match filtered {
            Some(filtered) if !plan.filter.matches(&filtered) => Ok(None),
            _ => Ok(Some(out)),
        }
    }
}

/// Whether every record of `schema` leaves exactly as stored under `plan`: nothing masked or
/// filtered, the schema closed (its records hold no field it does not name) and every field it
/// names sent. Projecting such a record gives back its stored bytes (see [`serve`]), so a Query
/// sends them without parsing them: the owner's own unprojected stream is the common case.
fn serves_whole(plan: &ReadPlan, schema: &exchange_core::schema::DatasetSchema) -> bool {
    plan.masked.is_empty()
        && plan.filter.is_empty()
        && schema.schema.get("additionalProperties") == Some(&Value::Bool(false))
        && schema.properties.keys().all(|p| plan.fields.iter().any(|f| f == p))
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
                Some(&sensitivity) => mask_value(sensitivity, value),
                None => value.clone(),
            };
            out.insert(field.clone(), value);
        }
    }
    serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>> {
        publish::publish(self, request).await
    }

    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<pb::PublishRequest>>,
    ) -> Result<Response<pb::PublishResponse>> {
        publish::publish_stream(self, request).await
    }

    type ImportStream = BoxStream<pb::ImportAck>;

    async fn import(
        &self,
        request: Request<tonic::Streaming<pb::ImportBatch>>,
    ) -> Result<Response<Self::ImportStream>> {
        import::import(self, request).await
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>> {
        get::get(self, request).await
    }

    type QueryStream = BoxStream<pb::QueryResponse>;

    async fn query(&self, request: Request<pb::QueryRequest>) -> Result<Response<Self::QueryStream>> {
        query::query(self, request).await
    }

    type SubscribeStream = BoxStream<pb::ChangeBatch>;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>> {
        subscribe::subscribe(self, request).await
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::NodeStatus>> {
        status::status(self, request).await
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::LedgerCheckpoint>> {
        ledger::get_checkpoint(self, request).await
    }

    async fn prove_event(&self, request: Request<pb::ProveEventRequest>) -> Result<Response<pb::EventProof>> {
        ledger::prove_event(self, request).await
    }

    async fn prove_consistency(
        &self,
        request: Request<pb::ProveConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyProof>> {
        ledger::prove_consistency(self, request).await
    }

    type ExportLedgerStream = BoxStream<pb::ExportChunk>;

    async fn export_ledger(
        &self,
        request: Request<pb::ExportLedgerRequest>,
    ) -> Result<Response<Self::ExportLedgerStream>> {
        ledger::export_ledger(self, request).await
    }
}

#[cfg(test)]
mod tests {
    use exchange_core::mask::Sensitivity;
    use exchange_core::policy::ReadPlan;
    use serde_json::{json, Value};

    fn plan(fields: &[&str], masked: &[(&str, Sensitivity)], filter: &str) -> ReadPlan {
        ReadPlan {
            grant_id: None,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            masked: masked.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
            filter: if filter.is_empty() {
                Default::default()
            } else {
                filter.parse().unwrap()
            },
            reason: String::new(),
        }
    }

    /// What serving gave when it parsed the whole record: the reference for the raw path.
    fn parsed(plan: &ReadPlan, json: &[u8]) -> Option<Vec<u8>> {
        let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(json) else {
            return None;
        };
        plan.filter.matches(&record).then(|| super::project(plan, &record))
    }

    #[test]
    fn records_leave_byte_for_byte_as_parsing_them_would_give() {
        let records = [
            json!({"id_number": "110101199001011234", "name": "张三", "note": "a \"quoted\"\n line \u{1F600}",
                   "age": 34, "ratio": 0.25, "tags": ["a", "b"], "address": {"city": "南京"}, "none": null}),
            json!({"id_number": "320102198001011111", "name": "李四", "region": "3201"}),
            json!({}),
        ];
        let plans = [
            plan(
                &[
                    "id_number",
                    "name",
                    "note",
                    "age",
                    "ratio",
                    "tags",
                    "address",
                    "none",
                    "region",
                ],
                &[],
                "",
            ),
            plan(&["name", "age"], &[("name", Sensitivity::Name)], ""),
            plan(&["id_number", "tags"], &[("id_number", Sensitivity::IdNumber)], ""),
            plan(&["name", "region"], &[], "region = \"3201\""),
            plan(&["missing"], &[], ""),
        ];
        for record in &records {
            // As the node stores them: serde_json's compact output.
            let stored = serde_json::to_vec(record).unwrap();
            for plan in &plans {
                assert_eq!(
                    super::serve(plan, &stored).map(|b| String::from_utf8(b).unwrap()),
                    parsed(plan, &stored).map(|b| String::from_utf8(b).unwrap()),
                    "{record} with {:?}",
                    plan.fields
                );
            }
        }
        // A field name with an escape in it takes the parsing path, with the same result.
        let stored = br#"{"a\"b":1,"name":"x"}"#;
        let all = plan(&["a\"b", "name"], &[], "");
        assert_eq!(super::serve(&all, stored), parsed(&all, stored));
        assert_eq!(super::serve(&all, b"[1]"), None);
        // Keys out of order or given twice (not serde_json's output) take it too.
        let both = plan(&["a", "name"], &[("name", Sensitivity::Name)], "");
        for stored in [
            &br#"{"name":"xy","a":1}"#[..],
            br#"{"a":1,"name":"xy","a":2}"#,
            br#"{"a":1} x"#,
        ] {
            assert_eq!(
                super::serve(&both, stored),
                parsed(&both, stored),
                "{}",
                String::from_utf8_lossy(stored)
            );
        }
    }

    #[test]
    fn a_record_sent_whole_is_what_projecting_it_gives() {
        let schema = |closed: bool| {
            let mut schema = json!({
                "type": "object", "required": ["id_number"],
                "properties": {
                    "id_number": {"type": "string", "x-sensitivity": "id_number"},
                    "name": {"type": "string", "x-sensitivity": "name"},
                    "age": {"type": "integer"}
                }
            });
            if closed {
                schema["additionalProperties"] = json!(false);
            }
            exchange_core::schema::parse_dataset_schema(&schema.to_string(), "id_number").unwrap()
        };
        let all = plan(&["id_number", "name", "age"], &[], "");
        let stored = serde_json::to_vec(&json!({"id_number": "1", "name": "张三", "age": 3})).unwrap();
        assert!(super::serves_whole(&all, &schema(true)));
        assert_eq!(super::serve(&all, &stored), Some(stored.clone()));
        // An open schema's record may hold fields the plan does not send.
        assert!(!super::serves_whole(&all, &schema(false)));
        // Masked, filtered or projected: parsed.
        assert!(!super::serves_whole(
            &plan(&["id_number", "name", "age"], &[("name", Sensitivity::Name)], ""),
            &schema(true)
        ));
        assert!(!super::serves_whole(
            &plan(&["id_number", "name", "age"], &[], "name = \"张三\""),
            &schema(true)
        ));
        assert!(!super::serves_whole(
            &plan(&["id_number", "age"], &[], ""),
            &schema(true)
        ));
    }
}
