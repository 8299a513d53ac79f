//! How the command line reaches a registry or a node: flags, or a profile file naming the
//! endpoints and the certificate files, so a person types `--profile admin.toml` instead of five
//! paths.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_core::identity::{Principal, Role};
use exchange_proto::node::v1::node_client::NodeClient;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::tls::TlsFiles;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

/// Flags every registry command takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Print JSON (the API's messages, proto3 JSON mapping) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Connection flags shared by every registry command. Flags override the profile.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// A profile file (TOML with `registry`, `node`, `ca`, `cert`, `key`; paths relative to the file).
    #[arg(long, global = true, env = "EXCHANGE_PROFILE")]
    pub(crate) profile: Option<PathBuf>,
    /// The registry's URL, e.g. https://localhost:7400.
    #[arg(long, global = true, env = "EXCHANGE_REGISTRY")]
    pub(crate) registry: Option<String>,
    /// A node's URL, e.g. https://node.gongan.example:7401 (for publish, get, query, subscribe, status, audit).
    #[arg(long, global = true, env = "EXCHANGE_NODE")]
    pub(crate) node: Option<String>,
    /// The exchange CA certificate (PEM).
    #[arg(long, global = true, env = "EXCHANGE_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Your client certificate (PEM).
    #[arg(long, global = true, env = "EXCHANGE_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// Your private key (PEM).
    #[arg(long, global = true, env = "EXCHANGE_KEY")]
    pub(crate) key: Option<PathBuf>,
}

/// A profile file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// The registry's URL.
    pub(crate) registry: Option<String>,
    /// A node's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// The CA certificate path.
    pub(crate) ca: Option<PathBuf>,
    /// The client certificate path.
    pub(crate) cert: Option<PathBuf>,
    /// The private key path.
    pub(crate) key: Option<PathBuf>,
}

impl Profile {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read profile {}", path.display()))?;
        let mut profile: Profile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("profile {}: {e}", path.display()))?;
        // Paths in a profile are relative to the profile, so the profile works from any directory.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut profile.ca, &mut profile.cert, &mut profile.key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(profile)
    }
}

impl ConnectArgs {
    fn resolve(&self, to_node: bool) -> anyhow::Result<ClientConfig> {
        let profile = match &self.profile {
            Some(path) => Profile::load(path)?,
            None => Profile::default(),
        };
        let missing = |what: &str, flag: &str| {
            anyhow::anyhow!("no {what}: pass {flag} or --profile FILE (the quickstart writes profiles; see the README)")
        };
        let endpoint = if to_node {
            self.node
                .clone()
                .or(profile.node)
                .ok_or_else(|| missing("node URL", "--node"))?
        } else {
            self.registry
                .clone()
                .or(profile.registry)
                .ok_or_else(|| missing("registry URL", "--registry"))?
        };
        let ca = self
            .ca
            .clone()
            .or(profile.ca)
            .ok_or_else(|| missing("CA certificate", "--ca"))?;
        let cert = self
            .cert
            .clone()
            .or(profile.cert)
            .ok_or_else(|| missing("client certificate", "--cert"))?;
        let key = self
            .key
            .clone()
            .or(profile.key)
            .ok_or_else(|| missing("private key", "--key"))?;
        let tls = TlsFiles::read(&ca, &cert, &key)?;
        // The registry must prove it is the registry, not merely a holder of its host name.
        let server_identity = match to_node {
            true => None,
            false => exchange_transport::auth::trust_domain_of(&tls.cert_pem)
                .map(|td| exchange_core::identity::registry_uri(&td)),
        };
        Ok(ClientConfig {
            endpoint,
            tls,
            server_identity,
        })
    }

    /// A client of the registry these flags name.
    pub(crate) async fn registry(&self) -> anyhow::Result<RegistryClient<Channel>> {
        let config = self.resolve(false)?;
        Ok(RegistryClient::new(connect(&config).await?))
    }

    /// A client of the node these flags name, for any department's node (e.g. `status`).
    pub(crate) async fn node(&self) -> anyhow::Result<NodeClient<Channel>> {
        let config = self.resolve(true)?;
        Ok(NodeClient::new(connect(&config).await?).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// A client of `department`'s node, which must prove it is that node: at `--node` when given
    /// on the command line, otherwise where the registry says the department's node serves.
    pub(crate) async fn node_of_department(&self, department: &str) -> anyhow::Result<NodeClient<Channel>> {
        let mut config = match &self.node {
            Some(_) => self.resolve(true)?,
            None => {
                let found = self
                    .registry()
                    .await?
                    .get_department(exchange_proto::registry::v1::GetDepartmentRequest {
                        id: department.to_string(),
                    })
                    .await
                    .map_err(crate::output::status_error)?
                    .into_inner();
                if found.node_endpoint.is_empty() {
                    anyhow::bail!("the registry knows no node endpoint for {department}; pass --node URL");
                }
                let mut config = self.resolve(false)?;
                config.endpoint = found.node_endpoint;
                config
            }
        };
        config.server_identity = exchange_transport::auth::trust_domain_of(&config.tls.cert_pem)
            .map(|td| Principal::new(department, Role::Node).uri(&td));
        Ok(NodeClient::new(connect(&config).await?).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// A client of the node serving `dataset`: the server must prove it is the owner's node, so
    /// a read states its purpose, and a publish sends records, only to that department. Without
    /// `--node`, another department's dataset is read at the node the registry names for it (a
    /// profile's `node` is its own department's).
    pub(crate) async fn node_of(&self, dataset: &str) -> anyhow::Result<NodeClient<Channel>> {
        let owner = dataset.split('/').next().unwrap_or_default();
        if self.node.is_none() {
            let me = self
                .resolve(false)
                .ok()
                .and_then(|c| exchange_transport::auth::principal_of(&c.tls.cert_pem));
            if me.is_some_and(|me| me.department != owner) {
                return self.node_of_department(owner).await;
            }
        }
        let mut config = self.resolve(true)?;
        config.server_identity = exchange_transport::auth::trust_domain_of(&config.tls.cert_pem)
            .map(|td| Principal::new(owner, Role::Node).uri(&td));
        Ok(NodeClient::new(connect(&config).await?).max_decoding_message_size(64 * 1024 * 1024))
    }
}
