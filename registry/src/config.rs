//! The registry's configuration, read from TOML (see `deploy/registry.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything a registry needs to run. Paths are relative to the working directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:7400`; use `0.0.0.0:7400` to serve other hosts.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the registry's sled database. Created when missing.
    pub data_dir: PathBuf,
    /// The trust domain of identities, the host part of `spiffe://<trust-domain>/dept/..`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Mutual TLS material.
    pub tls: TlsConfig,
    /// Rules for grants.
    #[serde(default)]
    pub grants: GrantConfig,
    /// How the store is run (its cache size).
    #[serde(default)]
    pub store: StoreConfig,
    /// How long audit events are kept in the registry's index.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The working days request clocks count: China's national calendar for 2026 by default.
    #[serde(default)]
    pub calendar: CalendarConfig,
    /// The early warning's rules and their limits.
    #[serde(default)]
    pub alerts: AlertConfig,
}

/// The early warning's rules.
pub use exchange_core::alert::AlertConfig;

/// Working days, weekends, holidays and make-up working days.
pub use exchange_core::calendar::CalendarConfig;

/// How long audit events are kept, shared with the nodes.
pub use exchange_core::ledger::AuditConfig;

/// The store's settings, shared with the nodes.
pub use exchange_core::store::StoreConfig;

/// TLS files, shared with the other servers.
pub use exchange_transport::tls::TlsConfig;

/// Rules for grants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// The longest a grant may run, in days from its request. Default 365.
    #[serde(default = "default_max_days")]
    pub max_days: u32,
    /// Whether a request waits for the data authority's review before its owner decides.
    /// Default true.
    #[serde(default = "default_review")]
    pub review: bool,
    /// Working days the data authority has to review a request. Default 2.
    #[serde(default = "default_review_days")]
    pub review_days: u32,
    /// Working days a dataset's owner has to decide a request. Default 5.
    #[serde(default = "default_decision_days")]
    pub decision_days: u32,
    /// ... on a dataset with no records published yet. Default 10.
    #[serde(default = "default_unpublished_decision_days")]
    pub unpublished_decision_days: u32,
    /// Working days the data authority has to answer an appeal. Default 5.
    #[serde(default = "default_appeal_days")]
    pub appeal_days: u32,
    /// Working days a department has to answer a data demand. Default 10.
    #[serde(default = "default_demand_days")]
    pub demand_days: u32,
    /// Working days a provider has to answer a correction request. Default 5.
    #[serde(default = "default_correction_days")]
    pub correction_days: u32,
}

impl GrantConfig {
    /// The request clocks these settings give.
    pub fn clocks(&self) -> Clocks {
        Clocks {
            review: self.review,
            review_days: self.review_days,
            decision_days: self.decision_days,
            unpublished_decision_days: self.unpublished_decision_days,
            appeal_days: self.appeal_days,
            demand_days: self.demand_days,
            correction_days: self.correction_days,
        }
    }
}

impl Default for GrantConfig {
    fn default() -> Self {
        let clocks = Clocks::default();
        Self {
            max_days: default_max_days(),
            review: clocks.review,
            review_days: clocks.review_days,
            decision_days: clocks.decision_days,
            unpublished_decision_days: clocks.unpublished_decision_days,
            appeal_days: clocks.appeal_days,
            demand_days: clocks.demand_days,
            correction_days: clocks.correction_days,
        }
    }
}

use exchange_core::grant::Clocks;

fn default_review() -> bool {
    Clocks::default().review
}
fn default_review_days() -> u32 {
    Clocks::default().review_days
}
fn default_decision_days() -> u32 {
    Clocks::default().decision_days
}
fn default_unpublished_decision_days() -> u32 {
    Clocks::default().unpublished_decision_days
}
fn default_appeal_days() -> u32 {
    Clocks::default().appeal_days
}
fn default_demand_days() -> u32 {
    Clocks::default().demand_days
}
fn default_correction_days() -> u32 {
    Clocks::default().correction_days
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7400))
}

fn default_trust_domain() -> String {
    "exchange.local".to_string()
}

fn default_max_days() -> u32 {
    365
}

impl Config {
    /// Parses a TOML configuration, naming the problem.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
