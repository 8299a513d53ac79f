//! The exchange a bench runs against: a dev PKI, a registry and js.gongan's node in this process
//! (one tokio runtime), the population dataset, and two consumers with grants.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exchange_core::identity::{Principal, Role};
use exchange_node::bench::LedgerSwitch;
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::pki::{Ca, CertSpec};
use exchange_transport::server::RunError;
use exchange_transport::tls::{TlsConfig, TlsFiles};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::output::status_error;

pub(crate) const TRUST_DOMAIN: &str = "exchange.bench";
pub(crate) const DATASET: &str = "js.gongan/population";
pub(crate) const OWNER: &str = "js.gongan";
/// Reads under a standing grant.
pub(crate) const CONSUMER: &str = "js.scjg";
pub(crate) const PURPOSE: &str = "business-licensing";
/// What the consumer reads: `name` is masked for it (the schema marks it sensitive).
pub(crate) const READ_FIELDS: [&str; 3] = ["name", "birth_date", "gender"];
/// Given grants and has them revoked, by the revocation row.
pub(crate) const REVOKED: &str = "js.mz";
/// Requests the grants row 9 approves (another department than the reader's, so that its
/// grants do not add to what every Get checks).
pub(crate) const REQUESTER: &str = "js.rsj";

/// A server task and how to stop it.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RunError>>,
}

impl Running {
    fn spawn<F>(start: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F) -> Self
    where
        F: std::future::Future<Output = Result<(), RunError>> + Send + 'static,
    {
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(start(Box::pin(async move {
            let _ = rx.wait_for(|&s| s).await;
        })));
        Running { stop, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

pub(crate) struct Exchange {
    pub(crate) dir: PathBuf,
    ca: Ca,
    pub(crate) registry_url: String,
    pub(crate) node_addr: SocketAddr,
    pub(crate) node_url: String,
    pub(crate) admin: RegistryClient<Channel>,
    /// The node's ledger, on except in the ledger-off measurement.
    pub(crate) ledger: LedgerSwitch,
    registry: Running,
    node: Option<Running>,
}

impl Exchange {
    /// Starts the registry and the node in `dir`, registers `extra_departments` besides the
    /// owner and the consumers, and waits until the node serves the consumer's grant.
    pub(crate) async fn start(dir: &Path, extra_departments: &[String]) -> anyhow::Result<Self> {
        let ca = Ca::generate(TRUST_DOMAIN, 1)?;
        ca.save(dir)?;
        let local = (vec!["localhost".to_string()], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        ca.issue(&CertSpec::for_registry(1).serving(local.0.clone(), local.1.clone()))?
            .save(dir, "registry")?;
        ca.issue(&CertSpec::for_principal(Principal::new(OWNER, Role::Node), 1).serving(local.0, local.1))?
            .save(dir, "node")?;

        let registry_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let registry_url = format!("https://localhost:{}", registry_listener.local_addr()?.port());
        let registry_config = registry::Config {
            listen: registry_listener.local_addr()?,
            data_dir: dir.join("registry"),
            trust_domain: TRUST_DOMAIN.into(),
            tls: tls_config(dir, "registry"),
            // The bench's admin decides grants itself (row 9 times a decision, not a review).
            grants: registry::config::GrantConfig {
                review: false,
                ..Default::default()
            },
            store: registry::config::StoreConfig::default(),
            audit: Default::default(),
            calendar: Default::default(),
            alerts: Default::default(),
        };
        let registry = Running::spawn(|stop| registry::run(registry_config, registry_listener, stop));

        let node_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let node_addr = node_listener.local_addr()?;
        let ledger = LedgerSwitch::default();
        let node_config = node_config(dir, node_addr, &registry_url);
        let switch = ledger.clone();
        let node = Running::spawn(move |stop| exchange_node::bench::run(node_config, node_listener, stop, switch));

        let admin = RegistryClient::new(channel_as(&ca, &registry_url, "js.dsj", Role::Admin).await?);
        let mut exchange = Exchange {
            dir: dir.to_path_buf(),
            ca,
            registry_url,
            node_addr,
            node_url: format!("https://localhost:{}", node_addr.port()),
            admin,
            ledger,
            registry,
            node: Some(node),
        };
        let mut departments = [OWNER, CONSUMER, REVOKED, REQUESTER].map(String::from).to_vec();
        departments.extend(extra_departments.iter().cloned());
        for id in departments {
            exchange
                .admin
                .register_department(pb::RegisterDepartmentRequest {
                    department: Some(pb::Department {
                        id: id.clone(),
                        name: id,
                        level: pb::Level::Province as i32,
                        region_code: "320000".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(status_error)?;
        }
        exchange
            .admin
            .register_dataset(pb::RegisterDatasetRequest {
                dataset: Some(pb::Dataset {
                    id: DATASET.into(),
                    title: "人口基础信息".into(),
                    classification: pb::Classification::Conditional as i32,
                    key_field: "id_number".into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(status_error)?;
        exchange
            .admin
            .publish_schema(pb::PublishSchemaRequest {
                dataset_id: DATASET.into(),
                schema_json: include_str!("../../../schemas/population.json").into(),
            })
            .await
            .map_err(status_error)?;
        exchange.grant(CONSUMER, PURPOSE).await?;
        let consumer = exchange.channel(CONSUMER, Role::System).await?;
        exchange
            .wait_until(&consumer, PURPOSE, true, Duration::from_secs(20))
            .await
            .context("the node did not get the consumer's grant from the registry")?;
        Ok(exchange)
    }

    /// A client channel to the node (or to `endpoint`) as `department`'s `role`.
    pub(crate) async fn channel(&self, department: &str, role: Role) -> anyhow::Result<Channel> {
        channel_as(&self.ca, &self.node_url, department, role).await
    }

    pub(crate) async fn channel_to(&self, endpoint: &str, department: &str, role: Role) -> anyhow::Result<Channel> {
        channel_as(&self.ca, endpoint, department, role).await
    }

    /// The node's TLS material (the baseline serves with it).
    pub(crate) fn node_tls(&self) -> anyhow::Result<TlsFiles> {
        Ok(tls_config(&self.dir, "node").read()?)
    }

    /// Requests and approves a grant of [`READ_FIELDS`] for `purpose` to `consumer`; its id.
    pub(crate) async fn grant(&mut self, consumer: &str, purpose: &str) -> anyhow::Result<String> {
        let id = self.request_grant(consumer, purpose).await?;
        self.admin
            .approve_grant(pb::DecideGrantRequest {
                grant_id: id.clone(),
                reason: "benchmark".into(),
            })
            .await
            .map_err(status_error)?;
        Ok(id)
    }

    pub(crate) async fn request_grant(&mut self, consumer: &str, purpose: &str) -> anyhow::Result<String> {
        Ok(self
            .admin
            .request_grant(pb::RequestGrantRequest {
                consumer_id: consumer.into(),
                dataset_id: DATASET.into(),
                fields: READ_FIELDS.map(String::from).to_vec(),
                purposes: vec![purpose.into()],
                legal_basis: "benchmark".into(),
                expires_at: exchange_core::now() + 86_400,
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .id)
    }

    /// Polls a Get on `channel` for `purpose` until it is allowed (or refused, for
    /// `allowed = false`); when it happened.
    pub(crate) async fn wait_until(
        &self,
        channel: &Channel,
        purpose: &str,
        allowed: bool,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        let mut client = NodeClient::new(channel.clone());
        loop {
            let reply = client
                .get(get_request(String::from("110101199001011234"), purpose))
                .await;
            match reply {
                Ok(_) if allowed => return Ok(Instant::now()),
                Err(status) if !allowed && status.code() == tonic::Code::PermissionDenied => return Ok(Instant::now()),
                _ => {}
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "a Get for {purpose} was not {} within {timeout:?}",
                if allowed { "allowed" } else { "refused" }
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Stops the in-process node (its data directory stays), so that it can run as a process.
    pub(crate) async fn stop_node(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            node.stop().await?;
        }
        Ok(())
    }

    /// The node's configuration as a TOML file, listening on `listen`: for running it as a
    /// process on the same data directory.
    pub(crate) fn write_node_config(&self, listen: SocketAddr) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("node.toml");
        self.write_node_config_at(&path, listen, &self.dir.join("node"), None)?;
        Ok(path)
    }

    /// The node's configuration at `path`, on `data_dir` with the store `engine` (the
    /// default when `None`).
    pub(crate) fn write_node_config_at(
        &self,
        path: &Path,
        listen: SocketAddr,
        data_dir: &Path,
        engine: Option<&str>,
    ) -> anyhow::Result<()> {
        let file = |name: &str| self.dir.join(name).display().to_string();
        let mut text = format!(
            "listen = {listen:?}\ndata_dir = {:?}\ntrust_domain = {TRUST_DOMAIN:?}\n\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\n[registry]\nendpoint = {:?}\n",
            data_dir.display().to_string(),
            file("ca.pem"),
            file("node.pem"),
            file("node-key.pem"),
            self.registry_url,
            listen = listen.to_string(),
        );
        if let Some(engine) = engine {
            text.push_str(&format!("\n[store]\nengine = {engine:?}\n"));
        }
        std::fs::write(path, text)?;
        Ok(())
    }

    /// Writes a client certificate of `department`'s `role` as `<stem>.pem` and
    /// `<stem>-key.pem` in the bench's directory, for a CLI process.
    pub(crate) fn issue(&self, department: &str, role: Role, stem: &str) -> anyhow::Result<()> {
        self.ca
            .issue(&CertSpec::for_principal(Principal::new(department, role), 1))?
            .save(&self.dir, stem)?;
        Ok(())
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_node().await?;
        self.registry.stop().await
    }
}

/// A Get of one key with the consumer's fields.
pub(crate) fn get_request(key: String, purpose: &str) -> npb::GetRequest {
    npb::GetRequest {
        dataset_id: DATASET.into(),
        keys: vec![key],
        fields: READ_FIELDS.map(String::from).to_vec(),
        purpose: purpose.into(),
        case_id: "bench".into(),
        withhold_until: 0,
    }
}

fn tls_config(dir: &Path, stem: &str) -> TlsConfig {
    TlsConfig {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    }
}

fn node_config(dir: &Path, listen: SocketAddr, registry_url: &str) -> exchange_node::Config {
    exchange_node::Config {
        listen,
        data_dir: dir.join("node"),
        trust_domain: TRUST_DOMAIN.into(),
        tls: tls_config(dir, "node"),
        advertise: None,
        registry: exchange_node::config::RegistryConfig {
            endpoint: registry_url.to_string(),
        },
        limits: exchange_node::config::Limits::default(),
        store: exchange_node::config::StoreConfig::default(),
        audit: Default::default(),
    }
}

async fn channel_as(ca: &Ca, endpoint: &str, department: &str, role: Role) -> anyhow::Result<Channel> {
    let issued = ca.issue(&CertSpec::for_principal(Principal::new(department, role), 1))?;
    Ok(connect(&ClientConfig {
        endpoint: endpoint.to_string(),
        tls: TlsFiles {
            ca_pem: ca.cert_pem.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        },
        server_identity: None,
    })
    .await?)
}
