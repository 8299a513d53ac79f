//! Publish and PublishStream: validated records from the owning department's systems.

use exchange_core::identity::Principal;
use exchange_core::{authz, CoreError};
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::to_status;
use futures_util::StreamExt as _;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::{NodeService, Result};
use crate::catalog::Compiled;
use crate::config::Limits;
use crate::records::NewChange;

/// How many rejections one reply lists; the count covers them all.
pub(super) const MAX_REJECTIONS_LISTED: usize = 1000;

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

/// A batch of changes checked against the schema: what to store, and what was refused.
pub(super) struct Checked {
    pub(super) accepted: Vec<NewChange>,
    pub(super) rejected: u64,
    /// The rejections listed (as many as there was room for).
    pub(super) rejections: Vec<pb::RejectedChange>,
}

/// Checks every change of a batch; rejection positions start at `first_position`, and at most
/// `room` rejections are listed (all are counted).
pub(super) fn check_changes(
    compiled: &Compiled,
    key_field: &str,
    limits: &Limits,
    changes: Vec<pb::Change>,
    first_position: u64,
    room: usize,
) -> Checked {
    let mut checked = Checked {
        accepted: Vec::with_capacity(changes.len()),
        rejected: 0,
        rejections: Vec::new(),
    };
    for (position, change) in (first_position..).zip(changes) {
        match check_change(compiled, key_field, limits, change) {
            Ok(change) => checked.accepted.push(change),
            Err((key, errors)) => {
                checked.rejected += 1;
                if checked.rejections.len() < room {
                    checked.rejections.push(pb::RejectedChange { position, key, errors });
                }
            }
        }
    }
    checked
}

impl NodeService {
    /// The dataset and schema version a publish request validates against, once the caller may
    /// publish to it.
    pub(super) fn publish_target(
        &self,
        who: &Principal,
        request: &pb::PublishRequest,
    ) -> Result<(std::sync::Arc<crate::catalog::NodeDataset>, std::sync::Arc<Compiled>)> {
        let dataset = self.served(&request.dataset_id).map_err(to_status)?;
        authz::publish_records(who, &request.dataset_id).map_err(to_status)?;
        let compiled = if request.schema_version == 0 {
            dataset.latest()
        } else {
            dataset.versions.get(&request.schema_version).cloned()
        }
        .ok_or_else(|| {
            let known: Vec<String> = dataset.versions.keys().map(u32::to_string).collect();
            to_status(CoreError::FailedPrecondition(if known.is_empty() {
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
            }))
        })?;
        Ok((dataset, compiled))
    }
}

/// Running totals of a publish (one request, or a whole stream).
#[derive(Default)]
struct PublishTotals {
    response: pb::PublishResponse,
    position: u64,
}

impl NodeService {
    async fn publish_one(
        &self,
        who: &Principal,
        request: pb::PublishRequest,
        totals: &mut PublishTotals,
    ) -> Result<()> {
        let (dataset, compiled) = self.publish_target(who, &request)?;
        let count = request.changes.len() as u64;
        let Checked {
            accepted,
            rejected,
            mut rejections,
        } = check_changes(
            &compiled,
            &dataset.dataset.key_field,
            &self.limits,
            request.changes,
            totals.position,
            MAX_REJECTIONS_LISTED.saturating_sub(totals.response.rejections.len()),
        );
        totals.position += count;
        totals.response.rejections.append(&mut rejections);
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
            .map_err(to_status)?;
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

pub(super) async fn publish(
    service: &NodeService,
    request: Request<pb::PublishRequest>,
) -> Result<Response<pb::PublishResponse>> {
    let who = caller(&request)?.principal;
    let mut totals = PublishTotals::default();
    service.publish_one(&who, request.into_inner(), &mut totals).await?;
    Ok(Response::new(totals.response))
}

pub(super) async fn publish_stream(
    service: &NodeService,
    request: Request<tonic::Streaming<pb::PublishRequest>>,
) -> Result<Response<pb::PublishResponse>> {
    let who = caller(&request)?.principal;
    let mut stream = request.into_inner();
    let mut totals = PublishTotals::default();
    while let Some(message) = stream.next().await {
        let outcome = match message {
            Ok(message) => service.publish_one(&who, message, &mut totals).await,
            Err(status) => Err(status),
        };
        if let Err(status) = outcome {
            // What earlier messages stored stays stored: say so, so the caller resumes
            // from the right place instead of guessing.
            let r = &totals.response;
            if r.accepted == 0 {
                return Err(status);
            }
            // The status, mapped already, keeps its code; its message gains what was stored.
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
