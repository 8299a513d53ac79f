//! Query: a row-filtered, projected and masked stream of a dataset's records, page by page.

use std::collections::VecDeque;
use std::sync::Arc;

use exchange_core::identity::Principal;
use exchange_core::{CoreError, ValidationError};
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::stream::send_unless_stopping;
use exchange_transport::to_status;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{
    pseudonym_scope, serve, served_key, serves_whole, BoxStream, Decided, NodeService, ReadAsk, Result, CHUNK,
};
use crate::records::{self, StoredRecord};

/// Stored records read from the store at a time while looking for matches.
const SCAN_PAGE: usize = 1000;
/// Messages read and audited ahead of the one being sent, at most.
const MESSAGES_AHEAD: usize = 3;

pub(super) async fn query(
    service: &NodeService,
    request: Request<pb::QueryRequest>,
) -> Result<Response<BoxStream<pb::QueryResponse>>> {
    let who = caller(&request)?.principal;
    let r = request.into_inner();
    let ask = read_ask!("query", &r);
    // Refuse at once when not allowed (audited as a denial); then stream page by page,
    // deciding again before every message.
    let decided = service.plan(&who, &ask, &r.filter).await?;
    let after = match r.page_token.as_str() {
        "" => None,
        token => match service.page_tokens.open(&page_scope(&r, &who), token) {
            Some(key) => Some(key),
            None => {
                let error = ValidationError::new(
                        "page_token",
                        format!(
                            "not a token this node gave {} for this query of {} (same purpose, fields and filter); start the query again without it",
                            who.department, r.dataset_id
                        ),
                    );
                return Err(service.deny(&who, &ask, error).await);
            }
        },
    };
    let limit = match r.limit as usize {
        0 => service.limits.max_query_records,
        n => n.min(service.limits.max_query_records),
    };
    let (tx, rx) = mpsc::channel(2);
    let task = QueryRun {
        service: service.clone_for_task(),
        who,
        request: r,
        limit,
        decided,
        after,
    };
    tokio::spawn(task.run(tx));
    Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
}

/// One Query being streamed. Memory stays bounded by a few messages whatever the dataset's
/// size: records are read a page at a time, and each message's audit event (with its keys) is
/// durable before the message is sent.
struct QueryRun {
    service: Arc<NodeService>,
    who: Principal,
    request: pb::QueryRequest,
    limit: usize,
    decided: Decided,
    /// The key to go on after (from the page token).
    after: Option<String>,
}

/// A message ready to go once its audit event is durable.
struct Pending {
    queued: super::Queued,
    records: Vec<pb::Record>,
    next_page_token: String,
    resume_token: String,
    /// The last key it holds: where to go on from once it is delivered.
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
        let ask = read_ask!("query", r);
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
            to_status(CoreError::Unavailable(match token {
                Some(token) => format!("the node is shutting down; go on later with page_token {token}"),
                None => "the node is shutting down; ask again later".to_string(),
            }))
        };
        let mut served = 0usize;
        let mut audited_any = false;
        let mut page: Vec<pb::Record> = Vec::with_capacity(CHUNK);
        // Records read from the store and not yet looked at: a message takes what it needs and
        // the next goes on from the rest, so no record is read twice. The store is read only
        // once they are all looked at, so from `after`.
        let mut scanned: VecDeque<(String, StoredRecord)> = VecDeque::with_capacity(SCAN_PAGE);
        let mut scan_done = false;
        let mut first = true;
        // Messages whose events are being written while the next ones are read: each is sent
        // only once its own event is durable, in order, but reading on need not wait for the
        // disk (a sync that grows the ledger file takes about as long as reading a message).
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(MESSAGES_AHEAD + 1);
        macro_rules! deliver {
            ($pending:expr) => {
                if let Some(p) = $pending {
                    let message = pb::QueryResponse {
                        records: p.records,
                        next_page_token: p.next_page_token,
                        resume_token: p.resume_token,
                        receipt: Some(p.queued.receipt().await?),
                    };
                    if !send_unless_stopping(tx, Ok(message), &mut shutdown).await {
                        return match *shutdown.borrow() {
                            true => Err(stopping(&delivered)),
                            false => Ok(()),
                        };
                    }
                    // Not read again after the last message.
                    #[allow(unused_assignments)]
                    {
                        delivered = p.after;
                    }
                }
            };
        }
        macro_rules! deliver_all {
            () => {
                while let Some(p) = pending.pop_front() {
                    deliver!(Some(p));
                }
            };
        }
        loop {
            if *shutdown.borrow() {
                return Err(stopping(&delivered));
            }
            // Decide again before every message, so a revocation or an expiry stops the query
            // (what was decided and recorded before it still goes out).
            if !first {
                match svc.plan(&self.who, &ask, &r.filter).await {
                    Ok(decided) => self.decided = decided,
                    Err(status) => {
                        deliver_all!();
                        return Err(status);
                    }
                }
            }
            first = false;
            let (dataset, latest, plan) = &self.decided;
            let key_field = &dataset.dataset.key_field;
            // Records of the latest version that leave as stored are not parsed.
            let whole = serves_whole(plan, &latest.schema).then_some(latest.version);
            while page.len() < CHUNK && served + page.len() < self.limit {
                if scanned.is_empty() && !scan_done {
                    let scan = records::scan_records(&*svc.store, &r.dataset_id, after.as_deref(), SCAN_PAGE)
                        .map_err(to_status)?;
                    scan_done = scan.len() < SCAN_PAGE;
                    scanned.extend(scan);
                }
                let Some((key, stored)) = scanned.pop_front() else {
                    break;
                };
                after = Some(key.clone());
                let (sequence, schema_version) = (stored.sequence, stored.schema_version);
                let json = match whole == Some(schema_version) {
                    true => Some(stored.json),
                    false => serve(plan, &stored.json),
                };
                if let Some(json) = json {
                    page.push(pb::Record {
                        key,
                        json,
                        sequence,
                        schema_version,
                    });
                }
            }
            let exhausted = scan_done && scanned.is_empty();
            let limit_hit = served + page.len() >= self.limit;
            let last = exhausted || limit_hit;
            if page.is_empty() {
                deliver_all!();
                // A query that matched nothing is on the record too, with a count of 0.
                if !audited_any {
                    svc.audit_allowed(&self.who, &ask, plan, latest.version, &[], [])
                        .await?;
                }
                return Ok(());
            }
            // The ledger names the real keys; the caller gets them as its grant allows.
            let keys: Vec<String> = page.iter().map(|p| p.key.clone()).collect();
            let event = svc.allowed_event(
                &self.who,
                &ask,
                plan,
                latest.version,
                &keys,
                page.iter().map(|p| p.json.as_slice()),
            );
            let queued = svc.queue_allowed(event).await?;
            audited_any = true;
            served += page.len();
            let mut records = std::mem::replace(&mut page, Vec::with_capacity(CHUNK));
            for record in &mut records {
                let key = std::mem::take(&mut record.key);
                record.key = served_key(&svc.page_tokens, &key_scope, plan, key_field, key);
            }
            let seal = |last: &str| {
                svc.page_tokens
                    .seal(&scope, last)
                    .map_err(|e| to_status(CoreError::Unavailable(e)))
            };
            let resume_token = match &after {
                Some(last) => seal(last)?,
                None => String::new(),
            };
            let next_page_token = match limit_hit && !exhausted {
                true => resume_token.clone(),
                false => String::new(),
            };
            pending.push_back(Pending {
                queued,
                records,
                next_page_token,
                resume_token,
                after: after.clone(),
            });
            if last {
                deliver_all!();
                return Ok(());
            }
            if pending.len() > MESSAGES_AHEAD {
                deliver!(pending.pop_front());
            }
        }
    }
}
