//! Status: what a node holds, how current its view of the registry is, and its ledger.

use exchange_core::authz;
use exchange_proto::node::v1 as pb;
use exchange_transport::auth::caller;
use exchange_transport::to_status;
use tonic::{Request, Response};

use super::{NodeService, Result};

pub(super) async fn status(
    service: &NodeService,
    request: Request<pb::StatusRequest>,
) -> Result<Response<pb::NodeStatus>> {
    let who = caller(&request)?.principal;
    // How much a department holds and how busy its node is are its own business.
    authz::see_node_status(&who, &service.department).map_err(to_status)?;
    let sync = service.sync.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut datasets = Vec::new();
    for d in service.catalog.datasets() {
        datasets.push(pb::DatasetStatus {
            dataset_id: d.dataset.id.clone(),
            latest_version: d.latest().map(|c| c.version).unwrap_or(0),
            last_sequence: *service.writer.feed(&d.dataset.id).borrow(),
            records: service.writer.records(&d.dataset.id),
        });
    }
    let ledger = service.writer.ledger();
    let ship = service.ship.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let registry_diverged = service.catalog.diverged().map_err(to_status)?.unwrap_or_default();
    Ok(Response::new(pb::NodeStatus {
        department_id: service.department.clone(),
        registry_connected: sync.current,
        registry_revision: service.catalog.revision(),
        view_age_seconds: sync.view_age_seconds(),
        datasets,
        audit_entries: ledger.size(),
        audit_head: exchange_core::ledger::hex(&ledger.root().0),
        registry_diverged,
        audit_signed: ledger.checkpoint().map_or(0, |c| c.size),
        log_vkey: ledger.verifier().text().to_string(),
        audit_shipped: ship.shipped,
        ship_error: ship.error,
    }))
}
