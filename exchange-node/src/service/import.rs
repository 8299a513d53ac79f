//! Import: a resumable bulk load. Batches arrive numbered on one stream; each is validated on
//! the blocking pool while earlier ones are still being validated or committed (so both cores
//! work on a load), and handed to the writer in the order they came, the writer staying the one
//! that orders and commits. Each batch's import mark is committed with its changes, so a batch
//! sent again (its acknowledgement lost to a crash or a dropped connection) is recognised and
//! acknowledged without being stored twice.

use std::sync::Arc;

use exchange_core::identity::Principal;
use exchange_core::{CoreError, ValidationError};
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::stream::send_unless_stopping;
use exchange_transport::to_status;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use super::publish::{check_changes, Checked, MAX_REJECTIONS_LISTED};
use super::{BoxStream, NodeService, Result};
use crate::writer::{Committed, ImportStep};

/// Batches being validated at once: enough to keep both cores busy beside the writer.
const VALIDATING: usize = 4;
/// Validated batches queued at the writer, not yet durable.
const COMMITTING: usize = 4;

pub(super) async fn import(
    service: &NodeService,
    request: Request<tonic::Streaming<pb::ImportBatch>>,
) -> Result<Response<BoxStream<pb::ImportAck>>> {
    let who = caller(&request)?.principal;
    let (tx, rx) = mpsc::channel(COMMITTING);
    let run = ImportRun {
        service: service.clone_for_task(),
        who,
        expected: None,
    };
    tokio::spawn(run.run(request.into_inner(), tx));
    Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
}

fn invalid(field: &str, message: String) -> Status {
    to_status(CoreError::Invalid(ValidationError::new(field, message)))
}

/// An import id names the import in the node's store and in messages: keep it plain.
fn check_import_id(id: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > 128 || !id.chars().all(plain) {
        return Err(invalid(
            "import_id",
            format!("import_id {id:?} must be 1 to 128 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// A batch whose validation runs on the blocking pool.
type Validating = tokio::task::JoinHandle<Result<Validated>>;
/// A batch at the writer.
type Committing = std::pin::Pin<Box<dyn std::future::Future<Output = Result<pb::ImportAck>> + Send>>;

struct Validated {
    dataset: String,
    step: ImportStep,
    schema_version: u32,
    checked: Checked,
    /// An atomic batch with a rejection stores none of its changes (its mark still moves on).
    store_nothing: bool,
}

struct ImportRun {
    service: Arc<NodeService>,
    who: Principal,
    /// The import id, dataset and next batch number this stream must send.
    expected: Option<(String, String, u64)>,
}

impl ImportRun {
    async fn run(mut self, mut incoming: tonic::Streaming<pb::ImportBatch>, tx: mpsc::Sender<Result<pb::ImportAck>>) {
        let mut shutdown = self.service.shutdown.clone();
        let mut stopping = self.service.shutdown.clone();
        let mut validating: FuturesOrdered<Validating> = FuturesOrdered::new();
        let mut committing: FuturesOrdered<Committing> = FuturesOrdered::new();
        let mut reading = true;
        // A bad batch ends the stream, after the good ones before it are stored and acknowledged.
        let mut refused: Option<Status> = None;
        // The node began stopping before the caller's stream ended.
        let mut interrupted = false;
        let failure = loop {
            let stopped = *stopping.borrow();
            tokio::select! {
                biased;
                Some(acked) = committing.next(), if !committing.is_empty() => match acked {
                    Ok(ack) => {
                        if !send_unless_stopping(&tx, Ok(ack), &mut shutdown).await {
                            // The caller left, or the node stops: what is queued still commits.
                            break None;
                        }
                    }
                    Err(status) => break Some(status),
                },
                Some(validated) = validating.next(), if !validating.is_empty() && committing.len() < COMMITTING => {
                    let validated = match validated {
                        Ok(Ok(validated)) => validated,
                        Ok(Err(status)) => break Some(status),
                        Err(_) => break Some(Status::internal("a batch's validation failed unexpectedly; resume the import")),
                    };
                    match self.commit(validated).await {
                        Ok(future) => committing.push_back(future),
                        Err(status) => break Some(status),
                    }
                }
                message = incoming.next(), if reading && validating.len() < VALIDATING && !stopped => match message {
                    None => reading = false,
                    Some(Err(status)) => {
                        refused = Some(status);
                        reading = false;
                    }
                    Some(Ok(batch)) => match self.start(batch) {
                        Ok(task) => validating.push_back(task),
                        Err(status) => {
                            refused = Some(status);
                            reading = false;
                        }
                    },
                },
                changed = stopping.changed(), if reading && !stopped => {
                    // The node stops (or its shutdown signal is gone): take no more batches.
                    if changed.is_err() || *stopping.borrow() {
                        reading = false;
                        interrupted = true;
                    }
                }
                else => break None,
            }
        };
        // Batches handed to the writer commit whatever happens here; say which did, in order,
        // before the error, so the caller's record of what is acknowledged is exact.
        while let Some(acked) = committing.next().await {
            match acked {
                Ok(ack) => {
                    if !send_unless_stopping(&tx, Ok(ack), &mut shutdown).await {
                        return;
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        let failure = failure.or(refused).or_else(|| {
            (interrupted || reading || !validating.is_empty()).then(|| {
                to_status(CoreError::Unavailable(
                    "the node is shutting down; resume the import from its last acknowledged batch when it is back"
                        .into(),
                ))
            })
        });
        if let Some(status) = failure {
            let _ = tx.send(Err(status)).await;
        }
    }

    /// Checks a batch's place in the import and starts validating it.
    fn start(&mut self, batch: pb::ImportBatch) -> Result<Validating> {
        check_import_id(&batch.import_id)?;
        let request = batch
            .publish
            .ok_or_else(|| invalid("publish", "a batch without its publish request".into()))?;
        match &self.expected {
            None => {}
            Some((id, dataset, next)) => {
                if *id != batch.import_id || *dataset != request.dataset_id {
                    return Err(invalid(
                        "import_id",
                        format!(
                            "this stream imports {id} into {dataset}; batch {} names {} into {}: one import a stream",
                            batch.batch, batch.import_id, request.dataset_id
                        ),
                    ));
                }
                if batch.batch != *next {
                    return Err(invalid(
                        "batch",
                        format!(
                            "batch {} came after batch {} on this stream; send batch {next}",
                            batch.batch,
                            next - 1
                        ),
                    ));
                }
            }
        }
        if batch.batch == 0 {
            return Err(invalid("batch", "batches count from 1".into()));
        }
        self.expected = Some((batch.import_id.clone(), request.dataset_id.clone(), batch.batch + 1));
        let (dataset, compiled) = self.service.publish_target(&self.who, &request)?;
        let limits = self.service.limits;
        let step = ImportStep {
            id: batch.import_id,
            batch: batch.batch,
        };
        Ok(tokio::task::spawn_blocking(move || {
            let checked = check_changes(
                &compiled,
                &dataset.dataset.key_field,
                &limits,
                request.changes,
                0,
                MAX_REJECTIONS_LISTED,
            );
            Ok(Validated {
                dataset: request.dataset_id,
                step,
                schema_version: compiled.version,
                store_nothing: request.atomic && checked.rejected > 0,
                checked,
            })
        }))
    }

    /// Hands a validated batch to the writer (behind every batch handed before it).
    async fn commit(&self, validated: Validated) -> Result<Committing> {
        let Validated {
            dataset,
            step,
            schema_version,
            checked,
            store_nothing,
        } = validated;
        let Checked {
            accepted,
            rejected,
            rejections,
        } = checked;
        let count = accepted.len() as u64;
        let changes = if store_nothing { Vec::new() } else { accepted };
        let stored = if store_nothing { 0 } else { count };
        let (import_id, batch) = (step.id.clone(), step.batch);
        let done: oneshot::Receiver<std::result::Result<Committed, CoreError>> = self
            .service
            .writer
            .queue_publish(&dataset, schema_version, changes, Some(step))
            .await
            .map_err(to_status)?;
        Ok(Box::pin(async move {
            let committed = done
                .await
                .map_err(|_| to_status(crate::writer::stopped()))?
                .map_err(to_status)?;
            let (already_stored, (first, last)) = match committed {
                Committed::AlreadyStored => (true, (0, 0)),
                Committed::Stored(_) if stored == 0 => (false, (0, 0)),
                Committed::Stored(sequences) => (false, sequences),
            };
            Ok(pb::ImportAck {
                import_id,
                batch,
                already_stored,
                result: Some(pb::PublishResponse {
                    accepted: stored,
                    rejected,
                    rejections,
                    first_sequence: first,
                    last_sequence: last,
                    schema_version,
                }),
            })
        }))
    }
}
