//! Get: records by key.

use std::collections::BTreeSet;

use exchange_core::ValidationError;
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::to_status;
use tonic::{Request, Response};

use super::{serve, NodeService, ReadAsk, Result};
use crate::records;

pub(super) async fn get(service: &NodeService, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>> {
    let who = caller(&request)?.principal;
    let r = request.into_inner();
    let mut ask = read_ask!("get", &r);
    // A refused Get names the records it asked for: who tried to read a record is on its record.
    ask.keys = &r.keys;
    if r.keys.len() > service.limits.max_get_keys {
        let error = ValidationError::new(
            "keys",
            format!(
                "{} keys asked; the limit is {} (use Query for more)",
                r.keys.len(),
                service.limits.max_get_keys
            ),
        );
        return Err(service.deny(&who, &ask, error).await);
    }
    let (_, latest, plan) = service.plan(&who, &ask, "").await?;
    let mut records = Vec::new();
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for key in &r.keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let stored = records::get_record(&*service.store, &r.dataset_id, key).map_err(to_status)?;
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
    let receipt = service
        .audit_allowed(
            &who,
            &ask,
            &plan,
            latest.version,
            &served,
            records.iter().map(|r| r.json.as_slice()),
        )
        .await?;
    Ok(Response::new(pb::GetResponse {
        records,
        missing_keys: missing,
        grant_id: plan.grant_id.unwrap_or_default(),
        receipt: Some(receipt),
    }))
}
