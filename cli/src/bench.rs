//! `exchange bench reads`: audited, authorized reads per second through a real node, beside the
//! baseline of the same connections making a bare gRPC call (the node's health check, which
//! passes the same mutual TLS and identity check but decides, reads and audits nothing).
//!
//! Everything runs in this process on one tokio runtime (its worker threads are the machine's
//! cores): registry, node, and the clients. Numbers are for comparing builds on one machine.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exchange_core::identity::{Principal, Role};
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::pki::{Ca, CertSpec};
use exchange_transport::tls::{TlsConfig, TlsFiles};
use tonic::transport::Channel;

use crate::output::status_error;

/// Bench flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight, over all connections.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Records in the dataset read.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
}

/// What one measurement saw.
struct Measured {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn load<F, Fut>(channels: &[Channel], in_flight: usize, seconds: u64, call: F) -> Measured
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..in_flight)
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut n = i;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if call(channel.clone(), n).await {
                        latencies.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                    n += in_flight;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Measured {
        requests: latencies.len() as u64,
        errors,
        seconds,
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

async fn channel(ca: &Ca, endpoint: &str, dept: &str, role: Role) -> anyhow::Result<Channel> {
    let issued = ca.issue(&CertSpec::for_principal(Principal::new(dept, role), 1))?;
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

/// Runs the read benchmark.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("exchange-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench(&dir, &args).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(dir: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    let ca = Ca::generate("exchange.bench", 1)?;
    ca.save(dir)?;
    let local = (vec!["localhost".to_string()], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    ca.issue(&CertSpec::for_registry(1).serving(local.0.clone(), local.1.clone()))?
        .save(dir, "registry")?;
    ca.issue(&CertSpec::for_principal(Principal::new("js.gongan", Role::Node), 1).serving(local.0, local.1))?
        .save(dir, "node")?;
    let tls = |stem: &str| TlsConfig {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let registry_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let registry_url = format!("https://localhost:{}", registry_listener.local_addr()?.port());
    let registry_config = registry::Config {
        listen: registry_listener.local_addr()?,
        data_dir: dir.join("registry"),
        trust_domain: "exchange.bench".into(),
        tls: tls("registry"),
        grants: registry::config::GrantConfig::default(),
        store: registry::config::StoreConfig::default(),
        audit: Default::default(),
    };
    let mut stop = stop_rx.clone();
    let registry_task = tokio::spawn(registry::run(registry_config, registry_listener, async move {
        let _ = stop.wait_for(|&s| s).await;
    }));
    let node_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let node_url = format!("https://localhost:{}", node_listener.local_addr()?.port());
    let node_config = exchange_node::Config {
        listen: node_listener.local_addr()?,
        data_dir: dir.join("node"),
        trust_domain: "exchange.bench".into(),
        tls: tls("node"),
        advertise: None,
        registry: exchange_node::config::RegistryConfig {
            endpoint: registry_url.clone(),
        },
        limits: exchange_node::config::Limits::default(),
        store: exchange_node::config::StoreConfig::default(),
        audit: Default::default(),
    };
    let mut stop = stop_rx.clone();
    let node_task = tokio::spawn(exchange_node::run(node_config, node_listener, async move {
        let _ = stop.wait_for(|&s| s).await;
    }));

    // The exchange: two departments, the population dataset, an approved grant.
    let mut admin = RegistryClient::new(channel(&ca, &registry_url, "js.dsj", Role::Admin).await?);
    for id in ["js.gongan", "js.scjg"] {
        admin
            .register_department(pb::RegisterDepartmentRequest {
                department: Some(pb::Department {
                    id: id.into(),
                    name: id.into(),
                    level: pb::Level::Province as i32,
                    region_code: "320000".into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(status_error)?;
    }
    admin
        .register_dataset(pb::RegisterDatasetRequest {
            dataset: Some(pb::Dataset {
                id: "js.gongan/population".into(),
                title: "人口基础信息".into(),
                classification: pb::Classification::Conditional as i32,
                key_field: "id_number".into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(status_error)?;
    admin
        .publish_schema(pb::PublishSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            schema_json: include_str!("../../schemas/population.json").into(),
        })
        .await
        .map_err(status_error)?;
    let grant = admin
        .request_grant(pb::RequestGrantRequest {
            consumer_id: "js.scjg".into(),
            dataset_id: "js.gongan/population".into(),
            fields: vec!["name".into(), "birth_date".into(), "gender".into()],
            purposes: vec!["business-licensing".into()],
            legal_basis: "benchmark".into(),
            expires_at: exchange_core::now() + 86_400,
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    admin
        .approve_grant(pb::DecideGrantRequest {
            grant_id: grant.id,
            reason: "benchmark".into(),
        })
        .await
        .map_err(status_error)?;

    // The records, published by the owner once the node has the schema and the grant.
    let mut owner = NodeClient::new(channel(&ca, &node_url, "js.gongan", Role::System).await?);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = owner
            .status(npb::StatusRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        if status.registry_connected && status.registry_revision >= 5 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the node did not catch up with the registry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut people: Vec<serde_json::Value> = crate::samples::people(args.records).collect();
    people.sort_by(|a, b| a["id_number"].as_str().cmp(&b["id_number"].as_str()));
    people.dedup_by(|a, b| a["id_number"] == b["id_number"]);
    for chunk in people.chunks(1000) {
        owner
            .publish(npb::PublishRequest {
                dataset_id: "js.gongan/population".into(),
                changes: chunk
                    .iter()
                    .map(|p| npb::Change {
                        op: Some(npb::change::Op::Upsert(serde_json::to_vec(p).unwrap_or_default())),
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .map_err(status_error)
            .context("publishing the benchmark records")?;
    }
    let keys: Arc<Vec<String>> = Arc::new(
        people
            .iter()
            .filter_map(|p| p["id_number"].as_str().map(str::to_string))
            .collect(),
    );

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(channel(&ca, &node_url, "js.scjg", Role::System).await?);
    }
    let in_flight = args.in_flight.max(1);

    // Warm up, then measure the bare call and the audited read.
    let health = |channel: Channel, _n: usize| async move {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: "exchange.node.v1.Node".into(),
            })
            .await
            .is_ok()
    };
    let read_keys = keys.clone();
    let read = move |channel: Channel, n: usize| {
        let key = read_keys[n % read_keys.len()].clone();
        async move {
            let mut client = NodeClient::new(channel);
            client
                .get(npb::GetRequest {
                    dataset_id: "js.gongan/population".into(),
                    keys: vec![key],
                    fields: vec!["name".into(), "birth_date".into()],
                    purpose: "business-licensing".into(),
                    case_id: "bench".into(),
                    withhold_until: 0,
                })
                .await
                .is_ok_and(|r| r.into_inner().records.len() == 1)
        }
    };
    load(&channels, in_flight, 1, health).await;
    let bare = load(&channels, in_flight, args.seconds, health).await;
    load(&channels, in_flight, 1, read.clone()).await;
    let audited = load(&channels, in_flight, args.seconds, read).await;
    let status = owner
        .status(npb::StatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();

    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "{} connections x {in_flight} in flight, {}s each, one tokio runtime with {workers} worker threads shared by registry, node and clients, {} records",
        channels.len(),
        args.seconds,
        keys.len()
    );
    println!("| what | requests/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|");
    for (what, m) in [
        ("bare call: node health check over mTLS (baseline)", &bare),
        ("audited authorized Get, 1 key, masked, ledger on", &audited),
    ] {
        println!(
            "| {what} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            m.requests as f64 / m.seconds,
            m.p50_us as f64 / 1000.0,
            m.p99_us as f64 / 1000.0,
            m.errors
        );
    }
    println!(
        "audited reads reached {:.0}% of the baseline; the ledger holds {} entries",
        100.0 * (audited.requests as f64 / audited.seconds) / (bare.requests as f64 / bare.seconds).max(1.0),
        status.audit_entries
    );
    let _ = stop_tx.send(true);
    let _ = node_task.await;
    let _ = registry_task.await;
    Ok(())
}
