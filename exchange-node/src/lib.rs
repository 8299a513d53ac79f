//! A department's exchange node: its systems publish schema-validated records to it; other
//! departments read them under their grants, projected and masked; every read, allowed or
//! denied, is in the node's hash-chained audit ledger before any data leaves.
//!
//! # Layout
//! - `config`: the TOML configuration.
//! - `catalog`: the node's durable view of the registry (datasets, schemas, grants).
//! - `sync`: follows the registry's Watch, resuming from the last revision applied.
//! - `ship`: ships the audit ledger to the registry, resuming from what it holds.
//! - `records`: how records and the change feed are laid out in the store, and read.
//! - `writer`: the one thread that commits records, changes and audit events, in groups.
//! - `page_token`: Query page tokens sealed with a node-local secret, and key pseudonyms.
//! - `service`: the gRPC service.
//! - [`run`]: serve on a listener the caller bound, until the shutdown future resolves.

mod catalog;
pub mod config;
mod page_token;
mod records;
pub mod service;
mod ship;
#[cfg(test)]
mod stored_fixtures;
mod sync;
mod writer;

use std::future::Future;
use std::sync::{Arc, Mutex};

use exchange_core::clock::Clock;
use exchange_core::identity::{Principal, Role};
use exchange_core::ledger::Ledger;
use exchange_core::store::Store;
use exchange_proto::node::v1::node_server::NodeServer;
use exchange_transport::client::ClientConfig;
use exchange_transport::server::{self, Server, ServingStatus};
use exchange_transport::tls;
use tokio::net::TcpListener;

pub use config::Config;
pub use exchange_transport::server::RunError;

/// The node's own identity, read from its certificate: it must be a `node` certificate.
fn own_identity(cert_pem: &str, trust_domain: &str) -> Result<Principal, RunError> {
    let certs = tls::parse_certs(cert_pem, "node certificate").map_err(RunError::from_display)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(certs[0].as_ref())
        .map_err(|e| RunError(format!("node certificate cannot be parsed: {e}")))?;
    let uris = exchange_transport::auth::san_uris(&parsed);
    let principal =
        Principal::from_uris(uris.iter().map(String::as_str), trust_domain).map_err(RunError::from_display)?;
    if principal.role != Role::Node {
        return Err(RunError(format!(
            "the node's certificate names {principal}; a node needs a certificate with role node"
        )));
    }
    Ok(principal)
}

/// Serves the node on `listener` until `shutdown` resolves, then stops gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_clock(config, listener, shutdown, Clock::system()).await
}

/// [`run`], deciding grant expiry and stamping audit events by `clock` (tests pass a manual one).
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> Result<(), RunError> {
    serve(config, listener, shutdown, clock, bench::LedgerSwitch::default()).await
}

async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
    ledger_switch: bench::LedgerSwitch,
) -> Result<(), RunError> {
    if let Some(url) = &config.advertise {
        if !url.starts_with("https://") || url.len() == "https://".len() {
            return Err(RunError(format!(
                "advertise = \"{url}\" must be an https:// URL: nodes serve mutual TLS only"
            )));
        }
    }
    let files = config.tls.read().map_err(RunError::from_display)?;
    let me = own_identity(&files.cert_pem, &config.trust_domain)?;
    server::prepare_data_dir(&config.data_dir, owns)?;
    let store: Arc<dyn Store> =
        exchange_core::store::open(&config.data_dir.join(STORE_DIR), config.store).map_err(RunError::from_display)?;
    let catalog = Arc::new(catalog::Catalog::load(store.clone()).map_err(RunError::from_display)?);
    let page_tokens = Arc::new(page_token::PageTokens::load_or_create(&*store).map_err(RunError::from_display)?);
    let ledger = open_ledger(&config.data_dir, &config.trust_domain, &me.department)?;
    let writer = writer::Writer::start(store.clone(), ledger).map_err(RunError::from_display)?;

    // Membership is the registry's business: on a node, grants decide who reads what, and a
    // department without grants reads nothing.
    let mut server = Server::new(
        "node",
        &files,
        &config.trust_domain,
        Arc::new(|_| Ok(())),
        exchange_proto::node::v1::FILE_DESCRIPTOR_SET,
    )?;
    let stopping = server.stopping();
    let (epoch_tx, epoch_rx) = tokio::sync::watch::channel(0u64);
    let sync_state: sync::SharedSync = Arc::new(Mutex::new(sync::SyncState {
        current: false,
        last_current: None,
        started: std::time::Instant::now(),
    }));
    let on_change: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |_dataset| {
        epoch_tx.send_modify(|e| *e += 1);
    });
    // The node serves whether or not the registry is reachable; a second health status says
    // whether its view of the registry is current, for monitoring.
    let health = server.health();
    health
        .set_service_status(sync::VIEW_HEALTH, ServingStatus::NotServing)
        .await;
    let registry_client = ClientConfig {
        endpoint: config.registry.endpoint.clone(),
        tls: files.clone(),
        // Grants come from here, and the ledger goes there: only the registry itself may answer.
        server_identity: Some(exchange_core::identity::registry_uri(&config.trust_domain)),
    };
    let ship_status = ship::SharedShip::default();
    let shipper = tokio::spawn(ship::run(
        registry_client.clone(),
        ship::Shipper {
            ledger: writer.ledger().clone(),
            writer: writer.clone(),
            clock: clock.clone(),
            audit: config.audit,
            status: ship_status.clone(),
        },
        stopping.clone(),
    ));
    let follower = tokio::spawn(sync::follow(
        registry_client,
        sync::NodeIdentity {
            department: me.department.clone(),
            advertise: config.advertise.clone(),
        },
        catalog.clone(),
        sync_state.clone(),
        health,
        on_change,
        stopping.clone(),
    ));

    let service = service::NodeService {
        department: me.department.clone(),
        trust_domain: config.trust_domain.clone(),
        catalog,
        store,
        writer: writer.clone(),
        page_tokens,
        limits: config.limits,
        sync: sync_state,
        ship: ship_status,
        policy_epoch: epoch_rx,
        shutdown: stopping,
        clock,
        ledger_switch,
    };
    server
        .add_service(NodeServer::new(service).max_decoding_message_size(config.limits.max_message_bytes))
        .await;
    tracing::info!(department = %me.department, registry = %config.registry.endpoint, data_dir = %config.data_dir.display(), "node starting");
    let served = server.serve(listener, shutdown).await;
    let _ = follower.await;
    let _ = shipper.await;
    writer.stop().await;
    served
}

pub mod bench {
    //! For `exchange bench` only: a node whose audit ledger can be switched off, to measure what
    //! the ledger costs beside the same reads without it. No configuration reaches this:
    //! `exchange node` and [`run`](super::run) always audit.

    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use exchange_core::clock::Clock;
    use tokio::net::TcpListener;

    use crate::{Config, RunError};

    /// Whether reads are written to the ledger (on unless the bench turns it off).
    #[derive(Debug, Clone, Default)]
    pub struct LedgerSwitch {
        off: Arc<AtomicBool>,
    }

    impl LedgerSwitch {
        /// Turns the ledger on or off for the reads that follow. Off, a read is decided, served
        /// and its event built and hashed as always, but not written, so nothing is shipped
        /// either; its receipt names index 0.
        pub fn set_on(&self, on: bool) {
            self.off.store(!on, Ordering::Relaxed);
        }

        pub(crate) fn is_on(&self) -> bool {
            !self.off.load(Ordering::Relaxed)
        }
    }

    /// [`run`](super::run) with the ledger under `switch`.
    pub async fn run(
        config: Config,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        switch: LedgerSwitch,
    ) -> Result<(), RunError> {
        super::serve(config, listener, shutdown, Clock::system(), switch).await
    }
}

/// Opens the node's log key (creating it on first start) and its ledger, moving the events of a
/// first-form ledger into it.
fn open_ledger(data_dir: &std::path::Path, trust_domain: &str, department: &str) -> Result<Ledger, RunError> {
    let origin = exchange_core::ledger::node_origin(trust_domain, department);
    let (mut ledger, created) = Ledger::open_in(data_dir, &origin).map_err(RunError::from_display)?;
    if created {
        tracing::info!(
            vkey = ledger.key().vkey(),
            "created the node's log key; the registry pins it when the node first ships its ledger"
        );
    }
    let recovered = ledger.recovered();
    if recovered.cut_bytes > 0 {
        tracing::warn!(dir = %ledger.dir().display(), cut = recovered.cut_bytes, "cut a torn, unacknowledged last ledger line");
    }
    if let Some(moved) = ledger
        .migrate_v1(&data_dir.join(LEGACY_LEDGER_FILE))
        .map_err(RunError::from_display)?
    {
        tracing::info!(
            events = moved,
            "moved the events of the first-form ledger (audit.ledger) into the Merkle ledger"
        );
    }
    Ok(ledger)
}

/// What a node keeps in its `data_dir` (nothing else there is its).
fn owns(name: &str) -> bool {
    [
        STORE_DIR,
        LEDGER_DIR,
        LOG_KEY_FILE,
        LEGACY_LEDGER_FILE,
        "audit.ledger.migrated",
        CONVERTING_DIR,
        "store.sled-old",
        "store.fjall-old",
    ]
    .contains(&name)
}

/// Under a node's `data_dir` while [`convert_store`] copies the store.
const CONVERTING_DIR: &str = "store.converting";

/// Moves a stopped node's store to another engine: copies every entry into a new store beside
/// it, checks that the two hold the same entries, then puts the new one in its place and keeps
/// the old one as `store.<engine>-old` (remove it by hand once the node runs well). Records,
/// change feed, registry view and import marks move; the audit ledger is not in the store.
/// Returns the entries copied and the engine the store was on.
pub fn convert_store(
    data_dir: &std::path::Path,
    to: exchange_core::store::Engine,
    cache_mib: u64,
) -> Result<(u64, exchange_core::store::Engine), RunError> {
    use exchange_core::store::{Engine, StoreConfig};
    server::prepare_data_dir(data_dir, owns)?;
    let old_dir = data_dir.join(STORE_DIR);
    let from = Engine::in_dir(&old_dir)
        .ok_or_else(|| RunError(format!("there is no store in {} to convert", old_dir.display())))?;
    if from == to {
        return Err(RunError(format!(
            "the store in {} is on {} already",
            old_dir.display(),
            to.name()
        )));
    }
    let kept = data_dir.join(format!("{STORE_DIR}.{}-old", from.name()));
    if kept.exists() {
        return Err(RunError(format!(
            "{} is there from an earlier conversion: remove it first",
            kept.display()
        )));
    }
    let new_dir = data_dir.join(CONVERTING_DIR);
    if new_dir.exists() {
        // A conversion stopped halfway: its copy is not the store, begin the copy again.
        std::fs::remove_dir_all(&new_dir).map_err(|e| RunError(format!("cannot remove {}: {e}", new_dir.display())))?;
    }
    let config = |engine| StoreConfig {
        cache_mib,
        engine: Some(engine),
        ..StoreConfig::default()
    };
    let copied = {
        let old = exchange_core::store::open(&old_dir, config(from)).map_err(RunError::from_display)?;
        let new = exchange_core::store::open(&new_dir, config(to)).map_err(RunError::from_display)?;
        let copied = exchange_core::store::copy_all(&*old, &*new).map_err(RunError::from_display)?;
        if !exchange_core::store::same_entries(&*old, &*new).map_err(RunError::from_display)? {
            return Err(RunError(format!(
                "the copy in {} does not hold what {} holds; the store was left as it was",
                new_dir.display(),
                old_dir.display()
            )));
        }
        copied
    };
    let rename = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::rename(from, to)
            .map_err(|e| RunError(format!("cannot rename {} to {}: {e}", from.display(), to.display())))
    };
    rename(&old_dir, &kept)?;
    rename(&new_dir, &old_dir)?;
    Ok((copied, from))
}

/// Under a node's `data_dir`: the sled store of records, change feed and registry view.
pub const STORE_DIR: &str = "store";
/// Under a node's `data_dir`: the audit ledger and its signing key (see `exchange_core::ledger`).
pub use exchange_core::ledger::{LEDGER_DIR, LOG_KEY_FILE};
/// Under a node's `data_dir`: the first form of the ledger (a hash chain), moved into
/// [`LEDGER_DIR`] at start and renamed `audit.ledger.migrated`.
pub const LEGACY_LEDGER_FILE: &str = "audit.ledger";

/// Forgets a stopped node's view of the registry, so it replays the registry's current state when
/// it next runs: for a node whose registry was restored from an older backup (the node then stops
/// following it, saying so). Returns how many entries were forgotten. Records, the change feed
/// and the audit ledger are kept.
pub fn reset_registry_view(data_dir: &std::path::Path) -> Result<usize, RunError> {
    server::prepare_data_dir(data_dir, owns)?;
    let store =
        exchange_core::store::open(&data_dir.join(STORE_DIR), Default::default()).map_err(RunError::from_display)?;
    catalog::reset_view(&*store).map_err(RunError::from_display)
}

/// The verifier key of the node whose data directory this is (from its log key).
pub fn node_log_verifier(data_dir: &std::path::Path) -> Result<exchange_core::tlog::LogVerifier, RunError> {
    let path = data_dir.join(LOG_KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError(format!("cannot read the node's log key {}: {e}", path.display())))?;
    let key =
        exchange_core::tlog::LogKey::from_text(&text).map_err(|e| RunError(format!("{}: {e}", path.display())))?;
    Ok(key.verifier())
}

/// Reads and verifies the audit ledger in a node's data directory against `log` (safe while
/// the node runs: only complete lines are read). Returns what verified and the entries in order,
/// or the first broken entry.
pub fn read_ledger_with(
    data_dir: &std::path::Path,
    log: &exchange_core::tlog::LogVerifier,
) -> Result<(exchange_core::ledger::Verified, Vec<exchange_core::ledger::Entry>), RunError> {
    exchange_core::ledger::read_verified(&data_dir.join(LEDGER_DIR), log).map_err(RunError::from_display)
}

/// [`read_ledger_with`] the node's own log key: the entries, verified.
pub fn read_ledger(data_dir: &std::path::Path) -> Result<Vec<exchange_core::ledger::Entry>, RunError> {
    Ok(read_ledger_with(data_dir, &node_log_verifier(data_dir)?)?.1)
}
