//! The harnesses: `TestExchange`, a real registry on 127.0.0.1:0 with a fresh CA, a manual clock
//! and clients for any identity; `TestNode` (in `node`), a real department node following it.

mod node;

pub use node::{Node, TestNode};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use exchange_core::clock::ManualClock;
use exchange_core::identity::{Principal, Role};
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::pki::{Ca, CertSpec, Issued};
use exchange_transport::tls::TlsFiles;
use tonic::transport::Channel;

pub const TRUST_DOMAIN: &str = "exchange.test";
pub const DAY: i64 = 86_400;

pub type Client = RegistryClient<Channel>;

pub struct TestExchange {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub endpoint: String,
    /// The time the registry and every node of this exchange decide by: it moves only when a
    /// test moves it.
    pub clock: ManualClock,
    port: u16,
    /// Changes the registry's configuration before each start.
    configure: fn(&mut registry::Config),
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), registry::RunError>>>,
}

/// Writes a CA and the registry's server certificate into `dir`.
pub fn make_pki(dir: &Path) -> Ca {
    let ca = Ca::generate(TRUST_DOMAIN, 30).unwrap();
    ca.save(dir).unwrap();
    let server = CertSpec::for_registry(30).serving(vec!["localhost".into()], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    ca.issue(&server).unwrap().save(dir, "registry").unwrap();
    ca
}

pub fn registry_config(dir: &Path, listen: SocketAddr) -> registry::Config {
    registry::Config {
        listen,
        data_dir: dir.join("data"),
        trust_domain: TRUST_DOMAIN.into(),
        tls: registry::config::TlsConfig {
            ca: dir.join("ca.pem"),
            cert: dir.join("registry.pem"),
            key: dir.join("registry-key.pem"),
        },
        // Most tests decide grants at once; tests/it/clocks.rs turns the review on.
        grants: registry::config::GrantConfig {
            max_days: 365,
            review: false,
            ..Default::default()
        },
        store: registry::config::StoreConfig::default(),
        audit: Default::default(),
        calendar: Default::default(),
        alerts: Default::default(),
    }
}

impl TestExchange {
    pub async fn start() -> Self {
        Self::start_configured(|_| {}).await
    }

    /// [`TestExchange::start`] with the registry's configuration changed by `configure`.
    pub async fn start_configured(configure: fn(&mut registry::Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_pki(dir.path());
        let mut exchange = Self {
            dir,
            ca,
            endpoint: String::new(),
            clock: ManualClock::starting_now(),
            port: 0,
            configure,
            stop: None,
            task: None,
        };
        exchange.serve().await;
        exchange
    }

    /// Serves on the port used before (so nodes find the registry again), or a free one.
    async fn serve(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        self.port = addr.port();
        self.endpoint = format!("https://localhost:{}", addr.port());
        let mut config = registry_config(self.dir.path(), addr);
        (self.configure)(&mut config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        let shutdown = async move {
            let _ = stopped.await;
        };
        self.task = Some(tokio::spawn(registry::run_with_clock(
            config,
            listener,
            shutdown,
            self.clock.clock(),
        )));
    }

    /// Stops the registry gracefully and starts it again on the same data directory and port.
    pub async fn restart(&mut self) {
        self.stop_registry().await;
        self.serve().await;
    }

    /// Stops the registry gracefully (nodes keep running).
    pub async fn stop_registry(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// Starts the registry again after [`TestExchange::stop_registry`].
    pub async fn start_registry(&mut self) {
        self.serve().await;
    }

    pub fn issue(&self, dept: &str, role: Role) -> Issued {
        self.ca
            .issue(&CertSpec::for_principal(Principal::new(dept, role), 30))
            .unwrap()
    }

    /// A client presenting `issued` (or no certificate when `None`).
    pub async fn client_with(&self, issued: Option<&Issued>) -> Client {
        let identity = exchange_core::identity::registry_uri(TRUST_DOMAIN);
        RegistryClient::new(channel_checking(&self.ca, &self.endpoint, issued, Some(identity)).await)
    }

    pub async fn client(&self, dept: &str, role: Role) -> Client {
        self.client_with(Some(&self.issue(dept, role))).await
    }

    pub async fn admin(&self) -> Client {
        self.client("js.dsj", Role::Admin).await
    }

    /// Registers the departments, datasets and schemas most tests start from:
    /// js.gongan owns `js.gongan/population` (conditional), js.scjg owns `js.scjg/legal-persons`
    /// (unconditional), js.zrzy owns `js.zrzy/places` (open) and `js.zrzy/secrets` (not_shared).
    pub async fn seed(&self) {
        let mut admin = self.admin().await;
        for (id, level, region, parent) in [
            ("js.gongan", pb::Level::Province, "320000", ""),
            ("js.scjg", pb::Level::Province, "320000", ""),
            ("js.zrzy", pb::Level::Province, "320000", ""),
            ("js.rsj", pb::Level::Province, "320000", ""),
            ("js.nj.gongan", pb::Level::City, "320100", "js.gongan"),
        ] {
            admin
                .register_department(pb::RegisterDepartmentRequest {
                    department: Some(department(id, level, region, parent)),
                })
                .await
                .unwrap();
        }
        for (id, class) in [
            ("js.gongan/population", pb::Classification::Conditional),
            ("js.scjg/legal-persons", pb::Classification::Unconditional),
            ("js.zrzy/places", pb::Classification::Open),
            ("js.zrzy/secrets", pb::Classification::NotShared),
        ] {
            let owner = id.split('/').next().unwrap();
            let mut client = self.client(owner, Role::System).await;
            client
                .register_dataset(pb::RegisterDatasetRequest {
                    dataset: Some(dataset(id, class, "id")),
                })
                .await
                .unwrap();
            client
                .publish_schema(pb::PublishSchemaRequest {
                    dataset_id: id.into(),
                    schema_json: person_schema().to_string(),
                })
                .await
                .unwrap();
        }
    }
}

/// A mutual-TLS channel to `endpoint` presenting `issued` (or no certificate when `None`).
pub async fn channel_with(ca: &Ca, endpoint: &str, issued: Option<&Issued>) -> Channel {
    channel_checking(ca, endpoint, issued, None).await
}

/// The same, checking that the server's certificate names `server_identity`.
pub async fn channel_checking(
    ca: &Ca,
    endpoint: &str,
    issued: Option<&Issued>,
    server_identity: Option<String>,
) -> Channel {
    let tls = TlsFiles {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: issued.map(|i| i.cert_pem.clone()).unwrap_or_default(),
        key_pem: issued.map(|i| i.key_pem.clone()).unwrap_or_default(),
    };
    connect(&ClientConfig {
        endpoint: endpoint.to_string(),
        tls,
        server_identity,
    })
    .await
    .unwrap()
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn department(id: &str, level: pb::Level, region: &str, parent: &str) -> pb::Department {
    pb::Department {
        id: id.into(),
        name: format!("部门 {id}"),
        level: level as i32,
        region_code: region.into(),
        parent_id: parent.into(),
        ..Default::default()
    }
}

pub fn dataset(id: &str, classification: pb::Classification, key: &str) -> pb::Dataset {
    pb::Dataset {
        id: id.into(),
        title: format!("数据集 {id}"),
        description: "test data".into(),
        domain: "test".into(),
        classification: classification as i32,
        key_field: key.into(),
        tags: vec!["t".into()],
        ..Default::default()
    }
}

/// A small closed person schema keyed by `id`.
pub fn person_schema() -> serde_json::Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string", "format": "id-number-cn", "x-sensitivity": "id_number"},
            "name": {"type": "string", "x-sensitivity": "name"},
            "region_code": {"type": "string", "format": "region-code"},
            "phone": {"type": "string", "x-sensitivity": "phone"},
            "age": {"type": "integer", "minimum": 0}
        }
    })
}

pub fn grant_request(dataset: &str, fields: &[&str]) -> pb::RequestGrantRequest {
    pb::RequestGrantRequest {
        dataset_id: dataset.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purposes: vec!["business-licensing".into()],
        legal_basis: "《优化营商环境条例》".into(),
        expires_at: exchange_core::now() + 30 * DAY,
        ..Default::default()
    }
}

/// Asserts a call failed with `code` and a message containing `fragment`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, fragment: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                status.message().contains(fragment),
                "{:?} lacks {fragment:?}",
                status.message()
            );
        }
        Ok(value) => panic!("expected {code:?} containing {fragment:?}, got {value:?}"),
    }
}

/// The `exchange` binary, built if needed (cargo test does not build other packages' binaries).
pub fn exchange_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "cli", "--bin", "exchange"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the exchange binary failed");
            // target/debug/deps/it-<hash> -> target/debug/exchange
            let exe = std::env::current_exe().unwrap();
            let bin = exe.parent().unwrap().parent().unwrap().join("exchange");
            assert!(bin.exists(), "{} not found", bin.display());
            bin
        })
        .clone()
}
