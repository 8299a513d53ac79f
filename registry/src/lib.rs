//! The exchange registry: the members (departments), the catalog of datasets with their JSON
//! Schemas, and the grants, served over mutual TLS with gRPC health and reflection.
//!
//! # Layout
//! - `config`: the TOML configuration.
//! - `state`: the rules and the stored state, transport-free.
//! - `service`: the gRPC service over the state.
//! - [`run`]: serve on a listener the caller bound, until the shutdown future resolves.

pub mod config;
pub mod service;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use exchange_core::error::PolicyError;
use exchange_core::grant::GrantLimits;
use exchange_core::store::SledStore;
use exchange_proto::registry::v1::registry_server::RegistryServer;
use exchange_transport::tls;
use exchange_transport::Authenticator;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;

/// Why the registry could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// Serves the registry on `listener` until `shutdown` resolves, then stops gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let files = config.tls.read().map_err(|e| RunError(e.to_string()))?;
    let tls_config = tls::server_config(&files).map_err(|e| RunError(e.to_string()))?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| RunError(format!("cannot create data_dir {}: {e}", config.data_dir.display())))?;
    let store = SledStore::open(&config.data_dir).map_err(|e| RunError(e.to_string()))?;
    let limits = GrantLimits {
        max_duration_secs: i64::from(config.grants.max_days) * 86_400,
    };
    let state = Arc::new(state::State::open(Arc::new(store), limits).map_err(|e| RunError(e.to_string()))?);

    let membership_state = state.clone();
    let membership: exchange_transport::auth::Membership =
        Arc::new(move |p| match membership_state.is_member(&p.department) {
            Ok(true) => Ok(()),
            Ok(false) => Err(PolicyError::Denied(format!(
                "department {} is not registered in this exchange; ask the data authority to register it",
                p.department
            ))),
            Err(e) => Err(PolicyError::Denied(format!("cannot check membership: {e}"))),
        });
    let auth =
        Authenticator::new(&files.ca_pem, &config.trust_domain, membership).map_err(|e| RunError(e.to_string()))?;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<RegistryServer<service::RegistryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(exchange_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RunError(format!("reflection: {e}")))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(exchange_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| RunError(format!("reflection: {e}")))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = service::RegistryService::new(state, config.trust_domain.clone(), stop_rx.clone());
    let local = listener.local_addr().map_err(|e| RunError(e.to_string()))?;
    tracing::info!(address = %local, trust_domain = %config.trust_domain, data_dir = %config.data_dir.display(), "registry serving mutual TLS");

    let shutdown = async move {
        shutdown.await;
        tracing::info!("registry shutting down");
        let _ = stop_tx.send(true);
    };
    let serve = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(RegistryServer::new(service), auth.clone()))
        .add_service(InterceptedService::new(health, auth.clone()))
        .add_service(InterceptedService::new(reflection, auth.clone()))
        .add_service(InterceptedService::new(reflection_alpha, auth))
        .serve_with_incoming_shutdown(tls::incoming(listener, tls_config), shutdown);
    tls::serve_with_grace(serve, stop_rx, Ok(()))
        .await
        .map_err(|e| RunError(format!("server failed: {e}")))
}
