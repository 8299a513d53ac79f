//! A node's configuration, read from TOML (see `deploy/node-gongan.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything a node needs to run. The node's department is read from its certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:7401`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The node's data directory, created when missing: `store/` (fjall or sled: records, change feed,
    /// the cached registry view), `ledger/` (the audit ledger) and `log.key` (its signing key).
    pub data_dir: PathBuf,
    /// The trust domain of identities.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Mutual TLS material: the CA, and the node's certificate (role `node`, with the DNS names
    /// or IPs it serves on) and key. The node uses the same certificate to call the registry.
    pub tls: TlsConfig,
    /// The https:// URL consumers reach this node at, e.g. `https://node.gongan.example:7401`
    /// (a name in the node's certificate). When set, the node announces it to the registry each
    /// time it connects, as its department's node endpoint. Unset: an admin sets the endpoint.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Where the registry is.
    pub registry: RegistryConfig,
    /// Size and count limits.
    #[serde(default)]
    pub limits: Limits,
    /// How the store is run (its cache size).
    #[serde(default)]
    pub store: StoreConfig,
    /// How long audit events are kept.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// How long audit events are kept, shared with the registry.
pub use exchange_core::ledger::AuditConfig;

/// The store's settings, shared with the registry.
pub use exchange_core::store::StoreConfig;

/// TLS files, shared with the other servers.
pub use exchange_transport::tls::TlsConfig;

/// The registry the node follows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry's URL, e.g. `https://registry.exchange.example:7400`.
    pub endpoint: String,
}

/// Limits that keep one caller from hurting others. Each refusal names the limit.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest record, in bytes of JSON. Default 64 KiB.
    pub max_record_bytes: usize,
    /// The largest request message, in bytes. Default 16 MiB.
    pub max_message_bytes: usize,
    /// The most keys one Get may ask for. Default 1000.
    pub max_get_keys: usize,
    /// The most records one Query returns. Default 100000.
    pub max_query_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: 64 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            max_get_keys: 1000,
            max_query_records: 100_000,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7401))
}

fn default_trust_domain() -> String {
    "exchange.local".to_string()
}

impl Config {
    /// Parses a TOML configuration, naming the problem.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
