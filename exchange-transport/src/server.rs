//! The one server assembly: every exchange server (the registry, each node) is built here, so
//! mutual TLS, authentication, health, reflection and shutdown are the same everywhere.
//!
//! A server adds its own gRPC services with [`Server::add_service`]; each is wrapped in the
//! [`Authenticator`] and marked serving in `grpc.health.v1.Health`. Reflection is served in both
//! versions clients speak (`grpc.reflection.v1` and `v1alpha`, which Python's `grpcio-reflection`
//! and older grpcurl use), and lists exactly the server's own API, health and reflection.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::http::{Request as HttpRequest, Response as HttpResponse};
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

use crate::auth::{Authenticator, Membership};
use crate::tls::{self, TlsFiles};

pub use tonic_health::server::HealthReporter;
pub use tonic_health::ServingStatus;

/// Why a server could not start, or stopped with an error. The message names the file, setting
/// or address at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

impl RunError {
    /// A `RunError` from anything displayable.
    pub fn from_display(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Makes `dir` a private data directory before a server opens anything in it
/// ([`exchange_core::datadir::prepare`], tightening the entries `owns` names), and says so at
/// start when it was readable by others.
pub fn prepare_data_dir(dir: &std::path::Path, owns: impl Fn(&str) -> bool) -> Result<(), RunError> {
    let prepared = exchange_core::datadir::prepare(dir, owns)
        .map_err(|e| RunError(format!("cannot prepare data_dir {}: {e}", dir.display())))?;
    if !prepared.fixed.is_empty() {
        let sample: Vec<String> = prepared
            .fixed
            .iter()
            .take(5)
            .map(|(p, mode)| format!("{} ({mode:o})", p.display()))
            .collect();
        tracing::warn!(
            data_dir = %dir.display(),
            count = prepared.fixed.len(),
            paths = %sample.join(", "),
            "the data directory was readable by other users; its modes are now 0700 (directories) and 0600 (files)"
        );
    }
    for (path, why) in &prepared.unfixed {
        // Either open to others and not ours to change, or not readable to check at all.
        tracing::warn!(path = %path.display(), error = %why, "cannot make this private (or check that it is): fix it by hand");
    }
    Ok(())
}

/// A server being assembled: TLS, the authenticator, health, reflection, and the services added.
pub struct Server {
    /// What it is, for logs ("registry", "node").
    kind: &'static str,
    tls: Arc<rustls::ServerConfig>,
    auth: Authenticator,
    /// The server's own API, for reflection.
    descriptor: &'static [u8],
    health: HealthReporter,
    routes: Routes,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl Server {
    /// Starts assembling a server of `kind` with the TLS material `files`, identities in
    /// `trust_domain`, members decided by `membership`, and `descriptor` (the encoded file
    /// descriptor set of its API) for reflection.
    pub fn new(
        kind: &'static str,
        files: &TlsFiles,
        trust_domain: &str,
        membership: Membership,
        descriptor: &'static [u8],
    ) -> Result<Self, RunError> {
        let tls = tls::server_config(files).map_err(RunError::from_display)?;
        let auth = Authenticator::new(&files.ca_pem, trust_domain, membership).map_err(RunError::from_display)?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let (stop_tx, stop_rx) = watch::channel(false);
        let routes = Routes::new(InterceptedService::new(health_service, auth.clone()));
        Ok(Self {
            kind,
            tls,
            auth,
            descriptor,
            health,
            routes,
            stop_tx,
            stop_rx,
        })
    }

    /// Turns true when the server starts stopping: streams end on it rather than hold the
    /// shutdown up (see [`crate::stream::send_unless_stopping`]).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// The health reporter, for statuses of the server's own (for a node: whether its view of
    /// the registry is current).
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Adds a service behind the authenticator and marks it serving in `grpc.health.v1.Health`.
    pub async fn add_service<S>(&mut self, service: S)
    where
        S: tower::Service<HttpRequest<Body>, Response = HttpResponse<Body>, Error = std::convert::Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.health.set_service_status(S::NAME, ServingStatus::Serving).await;
        let service = InterceptedService::new(service, self.auth.clone());
        self.routes = std::mem::take(&mut self.routes).add_service(service);
    }

    /// Serves on `listener` until `shutdown` resolves, then stops: no new calls, open ones
    /// given [`tls::SHUTDOWN_GRACE`] to finish.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        // Both reflection versions list the same services: the server's own, health, and both
        // reflection services.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(self.descriptor)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        };
        let v1 = reflection()
            .build_v1()
            .map_err(|e| RunError(format!("reflection: {e}")))?;
        let v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| RunError(format!("reflection: {e}")))?;
        self.add_service(v1).await;
        self.add_service(v1alpha).await;

        let local = listener.local_addr().map_err(RunError::from_display)?;
        let kind = self.kind;
        let stop_tx = self.stop_tx;
        let shutdown = async move {
            shutdown.await;
            tracing::info!(kind, "shutting down");
            let _ = stop_tx.send(true);
        };
        tracing::info!(kind, address = %local, "serving mutual TLS");
        let serve = tonic::transport::Server::builder()
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(tls::incoming(listener, self.tls), shutdown);
        tls::serve_with_grace(serve, self.stop_rx, Ok(()))
            .await
            .map_err(|e| RunError(format!("{kind} failed: {e}")))
    }
}
