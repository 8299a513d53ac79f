//! The exchange registry: the members (departments), the catalog of datasets with their JSON
//! Schemas, and the grants, served over mutual TLS with gRPC health and reflection.
//!
//! # Layout
//! - `config`: the TOML configuration.
//! - `state`: the rules and the stored state, transport-free.
//! - `service`: the gRPC service over the state.
//! - `ledger`: the registry's own audit ledger, where every change is recorded.
//! - `shipping`: the nodes' audit ledgers, shipped here and checked as a witness checks a log.
//! - `auditing`: auditors' searches and counts, and access reports of one record.
//! - `scoreboard`: the sharing scoreboard over the state, node reports and read counts.
//! - `alerts`: the early warning: rules over shipped reads and the state, and their alerts.
//! - [`run`]: serve on a listener the caller bound, until the shutdown future resolves.

pub mod alerts;
pub mod auditing;
pub mod config;
pub mod ledger;
pub mod scoreboard;
pub mod service;
pub mod shipping;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use exchange_core::calendar::WorkingCalendar;
use exchange_core::clock::Clock;
use exchange_core::error::PolicyError;
use exchange_core::grant::GrantLimits;
use exchange_core::store::SledStore;
use exchange_proto::registry::v1::registry_server::RegistryServer;
use exchange_transport::server::{self, Server};
use tokio::net::TcpListener;

pub use config::Config;
pub use exchange_transport::server::RunError;

/// Serves the registry on `listener` until `shutdown` resolves, then stops gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_clock(config, listener, shutdown, Clock::system()).await
}

/// How the index of shipped events is opened from the registry's `[store]` settings: with one
/// fjall background worker unless configured. The index takes events faster when fjall compacts
/// lazily (2M events: 32,600 events/s with one, 27,300 with two), and the registry is not the
/// server short of memory.
pub fn audit_index_config(store: exchange_core::store::StoreConfig) -> exchange_core::store::StoreConfig {
    exchange_core::store::StoreConfig {
        background_workers: Some(store.background_workers_or(1)),
        ..store
    }
}

/// [`run`], deciding expiry and timestamps by `clock` (tests pass a manual one).
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> Result<(), RunError> {
    let files = config.tls.read().map_err(RunError::from_display)?;
    // The data directory is sled's, with the ledger and its key beside sled's files.
    server::prepare_data_dir(&config.data_dir, owns)?;
    if config.store.engine == Some(exchange_core::store::Engine::Fjall) {
        return Err(RunError(
            "store.engine = \"fjall\": the registry keeps its state in sled (its index of shipped events is fjall already); the setting is for nodes".into(),
        ));
    }
    let store = SledStore::open_with(&config.data_dir, config.store).map_err(RunError::from_display)?;
    let limits = GrantLimits {
        max_duration_secs: i64::from(config.grants.max_days) * 86_400,
    };
    let clocks = config.grants.clocks();
    clocks.check().map_err(RunError)?;
    let calendar = WorkingCalendar::from_config(&config.calendar).map_err(RunError)?;
    let today = calendar.date_at(clock.now());
    // In December, deadlines already run into the next year.
    let next_needed = u8::from(today.month()) == 12;
    for (year, needed) in [(today.year(), true), (today.year() + 1, next_needed)] {
        if needed && !calendar.covers(year) {
            tracing::warn!(
                year,
                "the calendar lists no holidays or make-up working days for {year}: request clocks count only weekends as days off in it until [[calendar.year]] year = {year} is added"
            );
        }
    }
    let store: Arc<dyn exchange_core::store::Store> = Arc::new(store);
    // Shipped events are indexed in an LSM tree of their own: a write-heavy table that outgrows
    // any cache, which sled's B-tree pages handled at a few thousand events a second.
    let index_store = exchange_core::store::LsmStore::open_index(
        &config.data_dir.join(AUDIT_INDEX_DIR),
        audit_index_config(config.store),
    )
    .map_err(RunError::from_display)?;
    let (index, moved) = exchange_core::audit_index::StoreAuditIndex::open_moving(Arc::new(index_store), &*store)
        .map_err(RunError::from_display)?;
    if moved > 0 {
        tracing::info!(
            events = moved,
            dir = AUDIT_INDEX_DIR,
            "moved the index of shipped events out of the registry's store into its own"
        );
    }
    let index: Arc<dyn exchange_core::audit_index::AuditIndex> = Arc::new(index);
    let origin = exchange_core::ledger::registry_origin(&config.trust_domain);
    let ledger = Arc::new(
        ledger::RegistryLedger::open(&config.data_dir, &origin, index.clone()).map_err(RunError::from_display)?,
    );
    let state = Arc::new(
        state::State::open(
            store.clone(),
            limits,
            clock.clone(),
            ledger.clone(),
            &config.trust_domain,
        )
        .map(|state| state.with_clocks(clocks, calendar))
        .map_err(RunError::from_display)?,
    );
    let scoreboards = Arc::new(scoreboard::Scoreboards::new(
        store.clone(),
        index.clone(),
        state.clone(),
        config.alerts.clone(),
    ));
    let alerts = Arc::new(alerts::Alerts::open(store.clone(), state.clone(), config.alerts).map_err(RunError)?);
    let shipping = Arc::new(shipping::Shipping::new(
        store,
        index.clone(),
        ledger.clone(),
        &config.trust_domain,
        clock,
        alerts.clone(),
    ));

    let membership_state = state.clone();
    let membership: exchange_transport::auth::Membership =
        Arc::new(move |p| match membership_state.is_member(&p.department)? {
            true => Ok(()),
            false => Err(PolicyError::Denied(format!(
                "department {} is not registered in this exchange; ask the data authority to register it",
                p.department
            ))
            .into()),
        });
    let mut server = Server::new(
        "registry",
        &files,
        &config.trust_domain,
        membership,
        exchange_proto::registry::v1::FILE_DESCRIPTOR_SET,
    )?;
    let signer = ledger.spawn_signer(server.stopping());
    let auditing = Arc::new(auditing::Auditing::new(index, state.clone()));
    let retention = auditing.spawn_retention(config.audit, server.stopping());
    let checks = alerts.spawn_checks(server.stopping());
    let service = service::RegistryService::new(
        state,
        shipping,
        auditing,
        alerts,
        scoreboards,
        config.trust_domain.clone(),
        server.stopping(),
    );
    server.add_service(RegistryServer::new(service)).await;
    tracing::info!(trust_domain = %config.trust_domain, data_dir = %config.data_dir.display(), vkey = ledger.reader().verifier().text(), "registry starting");
    let served = server.serve(listener, shutdown).await;
    let _ = retention.await;
    let _ = checks.await;
    let _ = signer.await;
    served
}

/// What the registry keeps in its `data_dir`: sled's files, its ledger and its log key.
fn owns(name: &str) -> bool {
    SledStore::owns(name) || [ledger::LEDGER_DIR, ledger::LOG_KEY_FILE, AUDIT_INDEX_DIR].contains(&name)
}

/// Under the registry's `data_dir`: the index of shipped audit events (fjall).
pub const AUDIT_INDEX_DIR: &str = "audit-index";
