//! The audit ledger's checkpoints and proofs, for anyone who must check what the node recorded:
//! the department that read (its receipts), the node's own department, auditors.

use exchange_core::authz;
use exchange_core::ledger::{AuditEvent, LedgerError};
use exchange_core::tlog::Checkpoint;
use exchange_core::CoreError;
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::to_status;
use tonic::{Request, Response, Status};

use super::{NodeService, Result};

fn ledger_status(e: LedgerError) -> Status {
    match e {
        LedgerError::OutOfRange(why) => to_status(CoreError::not_found(why)),
        other => to_status(other),
    }
}

fn checkpoint_message(checkpoint: &Checkpoint, vkey: &str) -> pb::LedgerCheckpoint {
    pb::LedgerCheckpoint {
        note: checkpoint.note.clone(),
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root: checkpoint.root.0.to_vec(),
        vkey: vkey.to_string(),
    }
}

pub(super) async fn get_checkpoint(
    service: &NodeService,
    request: Request<pb::GetCheckpointRequest>,
) -> Result<Response<pb::LedgerCheckpoint>> {
    caller(&request)?;
    let checkpoint = service.writer.checkpoint().await.map_err(to_status)?;
    let vkey = service.writer.ledger().verifier().text();
    Ok(Response::new(checkpoint_message(&checkpoint, vkey)))
}

pub(super) async fn prove_event(
    service: &NodeService,
    request: Request<pb::ProveEventRequest>,
) -> Result<Response<pb::EventProof>> {
    let who = caller(&request)?.principal;
    let index = request.into_inner().index;
    let ledger = service.writer.ledger();
    let not_found = || {
        to_status(CoreError::not_found(format!(
            "the ledger of {} holds {} events; there is no event {index}",
            service.department,
            ledger.size()
        )))
    };
    let leaf = ledger
        .leaves(index, 1)
        .map_err(ledger_status)?
        .pop()
        .ok_or_else(not_found)?;
    let event: AuditEvent = serde_json::from_slice(&leaf).map_err(|e| {
        to_status(CoreError::Unavailable(format!(
            "audit event {index} cannot be read: {e}"
        )))
    })?;
    // The same answer whether or not the event exists would need a second lookup; the index
    // itself reveals only how long the ledger is, which the checkpoint says to anyone.
    authz::see_audit_event(&who, &service.department, &event.department).map_err(to_status)?;
    // A receipt is provable at once: sign a checkpoint now if the event is newer than the last.
    let checkpoint = match ledger.checkpoint() {
        Some(c) if c.size > index => c,
        _ => service.writer.checkpoint().await.map_err(to_status)?,
    };
    let file = ledger.proof_file(index, &checkpoint).map_err(ledger_status)?;
    Ok(Response::new(pb::EventProof {
        index,
        event: leaf,
        proof: file.proof.iter().map(|h| h.0.to_vec()).collect(),
        checkpoint: Some(checkpoint_message(&checkpoint, ledger.verifier().text())),
        proof_file: file.to_text(),
    }))
}

pub(super) async fn prove_consistency(
    service: &NodeService,
    request: Request<pb::ProveConsistencyRequest>,
) -> Result<Response<pb::ConsistencyProof>> {
    caller(&request)?;
    let r = request.into_inner();
    let ledger = service.writer.ledger();
    let latest = match ledger.checkpoint() {
        Some(c) => c,
        None => service.writer.checkpoint().await.map_err(to_status)?,
    };
    let new_size = if r.new_size == 0 { latest.size } else { r.new_size };
    if r.old_size == 0 || r.old_size > new_size || new_size > ledger.size() {
        return Err(to_status(exchange_core::ValidationError::new(
            "old_size",
            format!(
                "a consistency proof goes from a size of 1 or more to a larger one within the ledger's {} events; \
                 asked from {} to {new_size}",
                ledger.size(),
                r.old_size
            ),
        )));
    }
    let proof = ledger.consistency_proof(r.old_size, new_size).map_err(ledger_status)?;
    Ok(Response::new(pb::ConsistencyProof {
        old_size: r.old_size,
        new_size,
        old_root: ledger.root_at(r.old_size).map_err(ledger_status)?.0.to_vec(),
        new_root: ledger.root_at(new_size).map_err(ledger_status)?.0.to_vec(),
        proof: proof.iter().map(|h| h.0.to_vec()).collect(),
        checkpoint: (new_size == latest.size).then(|| checkpoint_message(&latest, ledger.verifier().text())),
    }))
}

pub(super) async fn export_ledger(
    service: &NodeService,
    request: Request<pb::ExportLedgerRequest>,
) -> Result<Response<super::BoxStream<pb::ExportChunk>>> {
    let who = caller(&request)?.principal;
    // Every reader's events: the node's own business, and the auditors'.
    authz::see_node_ledger(&who, &service.department).map_err(to_status)?;
    let r = request.into_inner();
    let ledger = service.writer.ledger().clone();
    let checkpoint = match ledger.checkpoint() {
        Some(c) if r.to_index <= c.size && c.size == ledger.size() => c,
        _ => service.writer.checkpoint().await.map_err(to_status)?,
    };
    let to = if r.to_index == 0 { checkpoint.size } else { r.to_index };
    if r.from_index > to {
        return Err(to_status(exchange_core::ValidationError::new(
            "from_index",
            format!("export {}..{to}: the first index is after the last", r.from_index),
        )));
    }
    if to > checkpoint.size {
        return Err(to_status(exchange_core::ValidationError::new(
            "to_index",
            format!(
                "export {}..{to}: the ledger's latest checkpoint covers {} events (indexes 0 to {})",
                r.from_index,
                checkpoint.size,
                checkpoint.size.saturating_sub(1)
            ),
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let from = r.from_index;
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::new();
        let sent = exchange_core::ledger::export::export(&ledger, &checkpoint, from, to, |line| {
            chunk.push(line);
            if chunk.len() == 500 {
                let lines = std::mem::take(&mut chunk);
                tx.blocking_send(Ok(pb::ExportChunk { lines }))
                    .map_err(|_| LedgerError::OutOfRange("the caller went away".into()))?;
            }
            Ok(())
        });
        let last = match sent {
            Ok(()) => Ok(pb::ExportChunk { lines: chunk }),
            Err(e) => Err(ledger_status(e)),
        };
        let _ = tx.blocking_send(last);
    });
    Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
}
