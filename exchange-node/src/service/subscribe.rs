//! Subscribe: a dataset's change feed from a cursor, then live, under the same rules as Query.

use std::sync::Arc;

use exchange_core::identity::Principal;
use exchange_core::CoreError;
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::stream::send_unless_stopping;
use exchange_transport::to_status;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{pseudonym_scope, serve, served_key, BoxStream, NodeService, ReadAsk, Result, CHUNK};
use crate::records;

pub(super) async fn subscribe(
    service: &NodeService,
    request: Request<pb::SubscribeRequest>,
) -> Result<Response<BoxStream<pb::ChangeBatch>>> {
    let who = caller(&request)?.principal;
    let r = request.into_inner();
    let ask = read_ask!("subscribe", &r);
    // Refuse at once when not allowed (audited as a denial); record the opening as allowed.
    // The stream re-decides before every batch and audits what each batch serves.
    let (_, latest, plan) = service.plan(&who, &ask, &r.filter).await?;
    let last = *service.writer.feed(&r.dataset_id).borrow();
    if r.after_sequence > last {
        let error = CoreError::OutOfRange(format!(
                "field \"after_sequence\": {} is past the last change of {} ({last}); resume from a cursor this node sent you, or 0 for every change",
                r.after_sequence, r.dataset_id
            ));
        return Err(service.deny(&who, &ask, error).await);
    }
    service
        .audit_allowed(&who, &ask, &plan, latest.version, &[], [])
        .await?;
    let (tx, rx) = mpsc::channel(4);
    let task = Subscription {
        service: service.clone_for_task(),
        who,
        request: r,
    };
    tokio::spawn(task.run(tx));
    Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
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
            let ask = read_ask!("subscribe", r);
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
                    send_unless_stopping(&tx, Err(to_status(e)), &mut shutdown).await;
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
                let mut receipt = None;
                if !events.is_empty() {
                    let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
                    let upserts = events.iter().filter_map(|e| match &e.change {
                        Some(pb::change_event::Change::Upsert(json)) => Some(json.as_slice()),
                        _ => None,
                    });
                    match svc
                        .audit_allowed(&self.who, &ask, &plan, latest.version, &keys, upserts)
                        .await
                    {
                        Ok(r) => receipt = Some(r),
                        Err(status) => {
                            send_unless_stopping(&tx, Err(status), &mut shutdown).await;
                            return;
                        }
                    }
                    for event in &mut events {
                        let key = std::mem::take(&mut event.key);
                        event.key = served_key(&svc.page_tokens, &key_scope, &plan, &dataset.dataset.key_field, key);
                    }
                }
                cursor = next_cursor;
                if !send_unless_stopping(
                    &tx,
                    Ok(pb::ChangeBatch {
                        events,
                        cursor,
                        receipt,
                    }),
                    &mut shutdown,
                )
                .await
                {
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
