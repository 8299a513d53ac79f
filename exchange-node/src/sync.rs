//! Following the registry: the node watches its department's datasets and grants and applies
//! every change to its [`Catalog`] durably, resuming from the last revision it applied. While the
//! registry is unreachable the node keeps serving with its last view and retries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_proto::registry::v1::watch_event::Event;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::convert::{dataset_from_watch, grant_from_pb};
use exchange_transport::server::{HealthReporter, ServingStatus};
use tokio::sync::watch;

use crate::catalog::Catalog;

/// How fresh the node's view of the registry is.
#[derive(Debug, Clone)]
pub(crate) struct SyncState {
    /// Connected and caught up: the view is current.
    pub(crate) current: bool,
    /// When the view was last known current (`None`: never since start).
    pub(crate) last_current: Option<Instant>,
    /// When the node started, for the age of a view never confirmed current.
    pub(crate) started: Instant,
}

impl SyncState {
    /// Seconds since the view was last known current; 0 while current.
    pub(crate) fn view_age_seconds(&self) -> i64 {
        if self.current {
            return 0;
        }
        self.last_current.unwrap_or(self.started).elapsed().as_secs() as i64
    }
}

/// Shared freshness state.
pub(crate) type SharedSync = Arc<Mutex<SyncState>>;

/// The health service name that reports whether the registry view is current.
pub(crate) const VIEW_HEALTH: &str = "exchange.node.v1.RegistryView";

async fn set_current(state: &SharedSync, health: &HealthReporter, current: bool) {
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        if s.current || current {
            s.last_current = Some(Instant::now());
        }
        s.current = current;
    }
    let status = if current {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status(VIEW_HEALTH, status).await;
}

/// Who this node is at the registry.
pub(crate) struct NodeIdentity {
    /// The node's department, from its certificate.
    pub(crate) department: String,
    /// The URL consumers reach the node at, announced on every connect (when configured).
    pub(crate) advertise: Option<String>,
}

/// Follows the registry until `stop` flips to true.
pub(crate) async fn follow(
    client: ClientConfig,
    me: NodeIdentity,
    catalog: Arc<Catalog>,
    state: SharedSync,
    health: HealthReporter,
    on_change: Arc<dyn Fn(&str) + Send + Sync>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(&client, &me, &catalog, &state, &health, &on_change) => outcome,
            _ = stop.wait_for(|&s| s) => return,
        };
        set_current(&state, &health, false).await;
        // A diverged view stays so until an operator acts: say it once, loudly, and wait.
        if let Ok(Some(why)) = catalog.diverged() {
            tracing::error!(registry = %client.endpoint, %why, "stopped following the registry; serving the last known view until restarted with --resync-registry-view");
            let _ = stop.wait_for(|&s| s).await;
            return;
        }
        match outcome {
            Ok(()) => tracing::warn!(registry = %client.endpoint, "registry closed the watch; reconnecting"),
            Err(e) => {
                tracing::warn!(registry = %client.endpoint, error = %e, retry_in = ?backoff, "cannot follow the registry; serving the last known view")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            _ = stop.wait_for(|&s| s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn follow_once(
    client: &ClientConfig,
    me: &NodeIdentity,
    catalog: &Catalog,
    state: &SharedSync,
    health: &HealthReporter,
    on_change: &Arc<dyn Fn(&str) + Send + Sync>,
) -> Result<(), String> {
    if let Some(why) = catalog.diverged().map_err(|e| e.to_string())? {
        return Err(format!(
            "{why}; this node keeps its last view and will not follow the registry until restarted with --resync-registry-view"
        ));
    }
    let channel = connect(client).await.map_err(|e| e.to_string())?;
    let mut registry = RegistryClient::new(channel);
    if let Some(endpoint) = &me.advertise {
        let request = pb::AnnounceNodeRequest {
            endpoint: endpoint.clone(),
        };
        match registry.announce_node(request).await {
            Ok(_) => tracing::info!(%endpoint, "announced where this node serves to the registry"),
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(format!("Unavailable: {}", s.message())),
            // Serving matters more than being listed: go on, loudly.
            Err(s) => {
                tracing::error!(%endpoint, code = ?s.code(), error = s.message(), "the registry refused this node's endpoint; consumers will not find the node there")
            }
        }
    }
    let request = pb::WatchRequest {
        department_id: me.department.clone(),
        all_departments: false,
        from_revision: catalog.revision(),
        from_history: catalog.history(),
    };
    let mut events = match registry.watch(request).await {
        Ok(response) => response.into_inner(),
        Err(s) if s.code() == tonic::Code::OutOfRange => return diverged(catalog, &s),
        Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
    };
    loop {
        let event = match events.message().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            // Going back to the registry's older state could undo revocations this node enforces,
            // and resuming by revision once the registry passes ours would skip its new changes.
            Err(s) if s.code() == tonic::Code::OutOfRange => return diverged(catalog, &s),
            Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
        };
        let position = (event.revision, event.history.as_str());
        let revision = event.revision;
        let applied = match event.event {
            Some(Event::Dataset(d)) => {
                let id = d.id.clone();
                let (dataset, versions) = dataset_from_watch(d).map_err(|e| e.to_string())?;
                catalog
                    .apply_dataset(position, dataset, versions)
                    .map_err(|e| e.to_string())?;
                Some(id)
            }
            Some(Event::Grant(g)) => {
                let dataset = g.dataset_id.clone();
                catalog
                    .apply_grant(position, grant_from_pb(g).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                Some(dataset)
            }
            Some(Event::CaughtUp(_)) => {
                catalog.mark_revision(position).map_err(|e| e.to_string())?;
                set_current(state, health, true).await;
                tracing::info!(revision, "registry view is current");
                None
            }
            None => None,
        };
        if let Some(dataset) = applied {
            tracing::debug!(revision, %dataset, "applied registry change");
            on_change(&dataset);
        }
    }
    Ok(())
}

/// Records, durably, that the registry's history does not match this node's view, and says so.
fn diverged(catalog: &Catalog, status: &tonic::Status) -> Result<(), String> {
    let why = format!(
        "the registry's history does not match this node's view ({})",
        status.message()
    );
    catalog.mark_diverged(&why).map_err(|e| e.to_string())?;
    Err(why)
}
