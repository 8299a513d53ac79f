//! `TestNode`: a real department node on 127.0.0.1:0 following the test registry.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use exchange_core::identity::{Principal, Role};
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;
use exchange_transport::pki::CertSpec;
use tonic::transport::Channel;

use super::*;

pub type Node = NodeClient<Channel>;

pub struct TestNode {
    pub department: String,
    pub endpoint: String,
    pub data_dir: PathBuf,
    config: exchange_node::Config,
    clock: exchange_core::clock::Clock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), exchange_node::RunError>>>,
}

impl TestNode {
    /// Starts `department`'s node against the exchange's registry.
    pub async fn start(ex: &TestExchange, department: &str) -> Self {
        let dir = ex.dir.path().join(format!("node-{department}"));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = CertSpec::for_principal(Principal::new(department, Role::Node), 30)
            .serving(vec!["localhost".into()], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        ex.ca.issue(&spec).unwrap().save(&dir, "node").unwrap();
        let config = exchange_node::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.join("data"),
            trust_domain: TRUST_DOMAIN.into(),
            tls: exchange_node::config::TlsConfig {
                ca: ex.dir.path().join("ca.pem"),
                cert: dir.join("node.pem"),
                key: dir.join("node-key.pem"),
            },
            advertise: None,
            registry: exchange_node::config::RegistryConfig {
                endpoint: ex.endpoint.clone(),
            },
            limits: exchange_node::config::Limits {
                max_record_bytes: 4096,
                max_message_bytes: 256 * 1024,
                ..Default::default()
            },
            store: exchange_node::config::StoreConfig::default(),
            audit: Default::default(),
        };
        let mut node = Self {
            department: department.into(),
            endpoint: String::new(),
            data_dir: config.data_dir.clone(),
            config,
            clock: ex.clock.clock(),
            stop: None,
            task: None,
        };
        node.serve().await;
        node
    }

    async fn serve(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.endpoint = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        self.config.advertise = Some(self.endpoint.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        let shutdown = async move {
            let _ = stopped.await;
        };
        self.task = Some(tokio::spawn(exchange_node::run_with_clock(
            self.config.clone(),
            listener,
            shutdown,
            self.clock.clone(),
        )));
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
            self.task.take().unwrap().await.unwrap().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.serve().await;
    }

    /// Changes how long the node keeps audit events (takes effect when it next starts).
    pub fn set_retention_days(&mut self, days: u32) {
        self.config.audit.retention_days = days;
    }

    /// Starts the node again after [`TestNode::stop`].
    pub async fn serve_again(&mut self) {
        self.serve().await;
    }

    pub async fn channel(&self, ex: &TestExchange, dept: &str, role: Role) -> Channel {
        channel_with(&ex.ca, &self.endpoint, Some(&ex.issue(dept, role))).await
    }

    pub async fn client(&self, ex: &TestExchange, dept: &str, role: Role) -> Node {
        NodeClient::new(self.channel(ex, dept, role).await)
    }

    /// Waits (up to five seconds) until the node's view of the registry is current and has
    /// reached at least `revision`.
    pub async fn wait_current(&self, ex: &TestExchange, revision: u64) {
        let mut client = self.client(ex, &self.department, Role::Node).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let status = client.status(npb::StatusRequest {}).await.unwrap().into_inner();
            if status.registry_connected && status.registry_revision >= revision {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node view not current: {status:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
