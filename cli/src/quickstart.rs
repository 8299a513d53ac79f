//! `exchange quickstart`: a complete local exchange in one command. It makes a dev PKI, starts a
//! registry on an embedded sled directory, registers sample departments at two levels and the
//! sample datasets of `schemas/` with their schemas, sets up a grant of each kind, starts three
//! department nodes and publishes generated sample records to them, writes ready-to-use CLI
//! profiles, and prints an allowed, a masked and a denied read with their results. Running it
//! again reuses what is there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_core::identity::{Principal, Role};
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::pki::{Ca, CertSpec};
use exchange_transport::tls::TlsFiles;
use tonic::transport::Channel;
use tonic::Code;

use crate::connect::Profile;
use crate::output::status_error;
use crate::samples;

/// Quickstart flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the PKI, the registry's data and the CLI profiles go.
    #[arg(long, default_value = "exchange-quickstart")]
    dir: PathBuf,
    /// Registry port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 7400)]
    port: u16,
    /// Delete the directory first and start from nothing.
    #[arg(long)]
    fresh: bool,
    /// Set everything up, print the summary and exit instead of serving (for scripts and CI).
    #[arg(long)]
    exit_after_setup: bool,
}

const TRUST_DOMAIN: &str = "exchange.local";
const AUTHORITY: &str = "js.dsj";

/// (id, name, level, region code, parent)
const DEPARTMENTS: &[(&str, &str, pb::Level, &str, &str)] = &[
    (AUTHORITY, "江苏省大数据管理中心", pb::Level::Province, "320000", ""),
    ("js.gongan", "江苏省公安厅", pb::Level::Province, "320000", ""),
    ("js.scjg", "江苏省市场监督管理局", pb::Level::Province, "320000", ""),
    ("js.zrzy", "江苏省自然资源厅", pb::Level::Province, "320000", ""),
    ("js.swj", "国家税务总局江苏省税务局", pb::Level::Province, "320000", ""),
    (
        "js.rsj",
        "江苏省人力资源和社会保障厅",
        pb::Level::Province,
        "320000",
        "",
    ),
    ("js.nj.gongan", "南京市公安局", pb::Level::City, "320100", "js.gongan"),
    (
        "js.nj.scjg",
        "南京市市场监督管理局",
        pb::Level::City,
        "320100",
        "js.scjg",
    ),
];

/// A sample dataset: its catalog entry and its schema file from `schemas/`.
struct SampleDataset {
    id: &'static str,
    title: &'static str,
    description: &'static str,
    domain: &'static str,
    classification: pb::Classification,
    key: &'static str,
    frequency: &'static str,
    steward: &'static str,
    schema: &'static str,
}

const DATASETS: &[SampleDataset] = &[
    SampleDataset {
        id: "js.gongan/population",
        title: "人口基础信息",
        description: "Resident identity register: one record per resident identity number.",
        domain: "population",
        classification: pb::Classification::Conditional,
        key: "id_number",
        frequency: "realtime",
        steward: "人口管理总队 025-0000-0001",
        schema: include_str!("../../schemas/population.json"),
    },
    SampleDataset {
        id: "js.scjg/legal-persons",
        title: "法人基础信息",
        description: "Company register: one record per unified social credit code.",
        domain: "legal-person",
        classification: pb::Classification::Unconditional,
        key: "uscc",
        frequency: "daily",
        steward: "登记注册局 025-0000-0002",
        schema: include_str!("../../schemas/legal-persons.json"),
    },
    SampleDataset {
        id: "js.zrzy/places",
        title: "空间地理信息",
        description: "Places and land parcels with their coordinates and land use.",
        domain: "geography",
        classification: pb::Classification::Open,
        key: "place_id",
        frequency: "monthly",
        steward: "测绘地理信息处 025-0000-0003",
        schema: include_str!("../../schemas/places.json"),
    },
    SampleDataset {
        id: "js.swj/tax-registrations",
        title: "纳税人登记信息",
        description: "Taxpayer registrations by unified social credit code.",
        domain: "tax",
        classification: pb::Classification::Conditional,
        key: "taxpayer_id",
        frequency: "daily",
        steward: "征管科技处 025-0000-0004",
        schema: include_str!("../../schemas/tax-registrations.json"),
    },
    SampleDataset {
        id: "js.rsj/social-insurance",
        title: "社会保险参保信息",
        description: "Social insurance enrolments: person, employer, insurance type and base.",
        domain: "social-insurance",
        classification: pb::Classification::Conditional,
        key: "insurance_record_id",
        frequency: "daily",
        steward: "社会保险事业管理中心 025-0000-0005",
        schema: include_str!("../../schemas/social-insurance.json"),
    },
];

struct Paths {
    pki: PathBuf,
    profiles: PathBuf,
    data: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Self {
            pki: dir.join("pki"),
            profiles: dir.join("profiles"),
            data: dir.join("registry-data"),
        }
    }
}

/// Departments that run a node in the quickstart, with the dataset each serves.
const NODES: &[(&str, &str)] = &[
    ("js.gongan", "js.gongan/population"),
    ("js.scjg", "js.scjg/legal-persons"),
    ("js.zrzy", "js.zrzy/places"),
];

/// Creates the dev PKI unless it exists: the CA, the registry's and the nodes' server
/// certificates, and a client certificate for the admin, the auditor and each department.
fn make_pki(paths: &Paths) -> anyhow::Result<()> {
    let ca = if paths.pki.join("ca.pem").exists() {
        Ca::load(&paths.pki)?
    } else {
        let ca = Ca::generate(TRUST_DOMAIN, 3650)?;
        ca.save(&paths.pki)?;
        ca
    };
    let local = || (vec!["localhost".to_string()], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    // A registry certificate from before registries had an identity is made again.
    let registry_pem = std::fs::read_to_string(paths.pki.join("registry.pem")).unwrap_or_default();
    let names_registry = exchange_transport::auth::trust_domain_of(&registry_pem).is_some();
    if !names_registry {
        let (dns, ips) = local();
        ca.issue(&CertSpec::for_registry(365).serving(dns, ips))?
            .save(&paths.pki, "registry")?;
    }
    let mut identities = vec![(AUTHORITY, Role::Admin), (AUTHORITY, Role::Auditor)];
    for (id, ..) in DEPARTMENTS.iter().skip(1) {
        identities.push((id, Role::System));
    }
    for (dept, _) in NODES {
        identities.push((dept, Role::Node));
    }
    for (dept, role) in identities {
        let stem = format!("{dept}-{role}");
        if !paths.pki.join(format!("{stem}.pem")).exists() {
            let mut spec = CertSpec::for_principal(Principal::new(dept, role), 365);
            if role == Role::Node {
                let (dns, ips) = local();
                spec = spec.serving(dns, ips);
            }
            ca.issue(&spec)?.save(&paths.pki, &stem)?;
        }
    }
    Ok(())
}

/// Writes a CLI profile for the admin, the auditor and each department (with its node, if any).
fn write_profiles(paths: &Paths, registry: &str, nodes: &[(String, String)]) -> anyhow::Result<()> {
    let mut profiles = vec![
        ("admin".to_string(), format!("{AUTHORITY}-admin"), None),
        ("auditor".to_string(), format!("{AUTHORITY}-auditor"), None),
    ];
    for (id, ..) in DEPARTMENTS.iter().skip(1) {
        let node = nodes.iter().find(|(d, _)| d == id).map(|(_, e)| e.clone());
        profiles.push((id.to_string(), format!("{id}-system"), node));
    }
    std::fs::create_dir_all(&paths.profiles)?;
    for (name, stem, node) in profiles {
        let profile = Profile {
            registry: Some(registry.to_string()),
            node,
            ca: Some(PathBuf::from("../pki/ca.pem")),
            cert: Some(PathBuf::from(format!("../pki/{stem}.pem"))),
            key: Some(PathBuf::from(format!("../pki/{stem}-key.pem"))),
        };
        std::fs::write(paths.profiles.join(format!("{name}.toml")), toml::to_string(&profile)?)?;
    }
    Ok(())
}

async fn client_as(paths: &Paths, endpoint: &str, stem: &str) -> anyhow::Result<RegistryClient<Channel>> {
    let tls = tls_for(paths, stem)?;
    let channel = connect(&ClientConfig {
        endpoint: endpoint.to_string(),
        tls,
        server_identity: Some(exchange_core::identity::registry_uri(TRUST_DOMAIN)),
    })
    .await?;
    Ok(RegistryClient::new(channel))
}

/// Treats "already exists" as done, so running the quickstart twice is harmless.
fn created<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::AlreadyExists => Ok(false),
        Err(status) => Err(status_error(status)),
    }
}

async fn seed(paths: &Paths, endpoint: &str) -> anyhow::Result<()> {
    let mut admin = client_as(paths, endpoint, &format!("{AUTHORITY}-admin")).await?;
    for (id, name, level, region, parent) in DEPARTMENTS {
        let department = pb::Department {
            id: id.to_string(),
            name: name.to_string(),
            level: *level as i32,
            region_code: region.to_string(),
            parent_id: parent.to_string(),
            ..Default::default()
        };
        created(
            admin
                .register_department(pb::RegisterDepartmentRequest {
                    department: Some(department),
                })
                .await,
        )?;
    }
    for sample in DATASETS {
        let owner = sample.id.split('/').next().unwrap_or_default();
        // Each owner registers its own dataset with its own system certificate, as in production.
        let mut client = client_as(paths, endpoint, &format!("{owner}-system")).await?;
        let dataset = pb::Dataset {
            id: sample.id.to_string(),
            title: sample.title.to_string(),
            description: sample.description.to_string(),
            domain: sample.domain.to_string(),
            classification: sample.classification as i32,
            update_frequency: sample.frequency.to_string(),
            steward: sample.steward.to_string(),
            key_field: sample.key.to_string(),
            tags: vec!["sample".to_string()],
            compatibility: pb::CompatibilityMode::Backward as i32,
            ..Default::default()
        };
        created(
            client
                .register_dataset(pb::RegisterDatasetRequest { dataset: Some(dataset) })
                .await,
        )?;
        let current = client
            .get_dataset(pb::GetDatasetRequest {
                id: sample.id.to_string(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        if current.latest_version == 0 {
            client
                .publish_schema(pb::PublishSchemaRequest {
                    dataset_id: sample.id.to_string(),
                    schema_json: sample.schema.to_string(),
                })
                .await
                .map_err(status_error)
                .with_context(|| format!("publishing the schema of {}", sample.id))?;
        }
    }
    let existing = admin
        .list_grants(pb::ListGrantsRequest::default())
        .await
        .map_err(status_error)?
        .into_inner();
    if existing.grants.is_empty() {
        seed_grants(paths, endpoint).await?;
    }
    Ok(())
}

async fn seed_grants(paths: &Paths, endpoint: &str) -> anyhow::Result<()> {
    let in_180_days = exchange_core::now() + 180 * 86_400;
    let request = |dataset: &str, fields: &[&str], purpose: &str, basis: &str| pb::RequestGrantRequest {
        dataset_id: dataset.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purposes: vec![purpose.to_string()],
        legal_basis: basis.to_string(),
        expires_at: in_180_days,
        ..Default::default()
    };
    // Conditional: market regulation asks public security for residents' identity, approved.
    let mut scjg = client_as(paths, endpoint, "js.scjg-system").await?;
    let g = scjg
        .request_grant(request(
            "js.gongan/population",
            &["name", "gender", "birth_date", "household_register_region"],
            "business-licensing",
            "《优化营商环境条例》第三十五条：政务信息共享，减少申请材料",
        ))
        .await
        .map_err(status_error)?
        .into_inner();
    // The data authority reviews it first, then its owner decides.
    let mut admin = client_as(paths, endpoint, &format!("{AUTHORITY}-admin")).await?;
    admin
        .pass_review(pb::DecideGrantRequest {
            grant_id: g.id.clone(),
            reason: "legal basis checked".into(),
        })
        .await
        .map_err(status_error)?;
    let mut gongan = client_as(paths, endpoint, "js.gongan-system").await?;
    gongan
        .approve_grant(pb::DecideGrantRequest {
            grant_id: g.id,
            reason: "identity check for company registration".into(),
        })
        .await
        .map_err(status_error)?;
    // Unconditional: tax reads the company register, approved at once.
    let mut swj = client_as(paths, endpoint, "js.swj-system").await?;
    swj.request_grant(request(
        "js.scjg/legal-persons",
        &["name", "entity_type", "registration_region", "status"],
        "tax-registration",
        "《税收征收管理法》第十五条",
    ))
    .await
    .map_err(status_error)?;
    // Conditional, waiting for its review, then the owner: social insurance asks for identity.
    let mut rsj = client_as(paths, endpoint, "js.rsj-system").await?;
    let mut pending = request(
        "js.gongan/population",
        &["name", "birth_date"],
        "social-assistance-review",
        "《社会救助暂行办法》第五十条",
    );
    pending.row_filter = "household_register_region STARTS WITH \"3201\"".into();
    rsj.request_grant(pending).await.map_err(status_error)?;
    Ok(())
}

fn tls_for(paths: &Paths, stem: &str) -> anyhow::Result<TlsFiles> {
    Ok(TlsFiles::read(
        &paths.pki.join("ca.pem"),
        &paths.pki.join(format!("{stem}.pem")),
        &paths.pki.join(format!("{stem}-key.pem")),
    )?)
}

async fn node_as(paths: &Paths, endpoint: &str, stem: &str) -> anyhow::Result<NodeClient<Channel>> {
    let channel = connect(&ClientConfig {
        endpoint: endpoint.to_string(),
        tls: tls_for(paths, stem)?,
        server_identity: None,
    })
    .await?;
    Ok(NodeClient::new(channel))
}

fn port_after(base: u16, offset: u16) -> u16 {
    if base == 0 {
        0
    } else {
        base + offset
    }
}

/// Starts a department's node in-process; returns its endpoint.
async fn start_node(
    paths: &Paths,
    registry: &str,
    dept: &str,
    port: u16,
    stop: tokio::sync::watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} for {dept}'s node (try --port)"))?;
    let endpoint = format!("https://localhost:{}", listener.local_addr()?.port());
    let config = exchange_node::Config {
        listen: listener.local_addr()?,
        data_dir: paths
            .data
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("node-{dept}")),
        trust_domain: TRUST_DOMAIN.to_string(),
        tls: exchange_node::config::TlsConfig {
            ca: paths.pki.join("ca.pem"),
            cert: paths.pki.join(format!("{dept}-node.pem")),
            key: paths.pki.join(format!("{dept}-node-key.pem")),
        },
        // The node tells the registry where it serves, so consumers find it with `dept get`.
        advertise: Some(endpoint.clone()),
        registry: exchange_node::config::RegistryConfig {
            endpoint: registry.to_string(),
        },
        limits: exchange_node::config::Limits::default(),
        store: exchange_node::config::StoreConfig::default(),
        audit: Default::default(),
    };
    let mut stop = stop;
    tasks.push(tokio::spawn(async move {
        exchange_node::run(config, listener, async move {
            let _ = stop.wait_for(|&s| s).await;
        })
        .await?;
        Ok(())
    }));
    Ok(endpoint)
}

/// Waits until a node serves its dataset's schema, then publishes the samples if it is empty.
async fn fill_node(paths: &Paths, endpoint: &str, dept: &str, dataset: &str) -> anyhow::Result<()> {
    let mut node = node_as(paths, endpoint, &format!("{dept}-system")).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let current = loop {
        let status = node
            .status(npb::StatusRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        if let Some(d) = status
            .datasets
            .iter()
            .find(|d| d.dataset_id == dataset && d.latest_version > 0)
        {
            break d.clone();
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{dept}'s node did not receive {dataset} from the registry within 15 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    if current.records > 0 {
        return Ok(());
    }
    let records: Vec<serde_json::Value> = match dataset {
        "js.gongan/population" => samples::people(200).collect(),
        "js.scjg/legal-persons" => samples::companies(50).collect(),
        _ => samples::places(30).collect(),
    };
    let changes = records
        .iter()
        .map(|r| npb::Change {
            op: Some(npb::change::Op::Upsert(serde_json::to_vec(r).unwrap_or_default())),
        })
        .collect();
    let reply = node
        .publish(npb::PublishRequest {
            dataset_id: dataset.to_string(),
            schema_version: 0,
            changes,
            atomic: true,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if reply.rejected > 0 {
        anyhow::bail!(
            "sample records for {dataset} were rejected: {:?}",
            reply.rejections.first()
        );
    }
    Ok(())
}

/// Runs the quickstart.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("cannot remove {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let paths = Paths::new(&args.dir);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} (is a quickstart already running? try --port)",
                args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let endpoint = format!("https://localhost:{port}");
    make_pki(&paths)?;

    let config = registry::Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        data_dir: paths.data.clone(),
        trust_domain: TRUST_DOMAIN.to_string(),
        tls: registry::config::TlsConfig {
            ca: paths.pki.join("ca.pem"),
            cert: paths.pki.join("registry.pem"),
            key: paths.pki.join("registry-key.pem"),
        },
        grants: registry::config::GrantConfig::default(),
        store: registry::config::StoreConfig::default(),
        audit: Default::default(),
        calendar: Default::default(),
        alerts: Default::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = Vec::new();
    let mut registry_stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        registry::run(config, listener, async move {
            let _ = registry_stop.wait_for(|&s| s).await;
        })
        .await?;
        Ok(())
    }));
    let setup = async {
        seed(&paths, &endpoint).await?;
        let mut nodes = Vec::new();
        for (i, (dept, dataset)) in NODES.iter().enumerate() {
            let node_endpoint = start_node(
                &paths,
                &endpoint,
                dept,
                port_after(args.port, i as u16 + 1),
                stop_rx.clone(),
                &mut tasks,
            )
            .await?;
            fill_node(&paths, &node_endpoint, dept, dataset).await?;
            nodes.push((dept.to_string(), node_endpoint));
        }
        write_profiles(&paths, &endpoint, &nodes)?;
        let mut examples = examples(&paths, &nodes).await?;
        examples.push(who_read(&paths, &endpoint).await?);
        anyhow::Ok((nodes, examples))
    };
    let (nodes, examples) = match setup.await {
        Ok(done) => done,
        Err(e) => {
            let _ = stop_tx.send(true);
            // A server that failed to start (its store held by another quickstart, say) is the
            // cause; the setup only saw that it could not connect.
            let mut causes = Vec::new();
            for task in tasks {
                match task.await {
                    Ok(Err(server)) => causes.push(format!("{server:#}")),
                    Err(panicked) => causes.push(panicked.to_string()),
                    Ok(Ok(())) => {}
                }
            }
            let e = e.context("setting up the sample exchange");
            return Err(match causes.is_empty() {
                true => e,
                false => e.context(causes.join("; ")),
            });
        }
    };
    print_summary(&args.dir, &endpoint, &nodes, &examples, !args.exit_after_setup);
    if args.exit_after_setup {
        let _ = stop_tx.send(true);
    } else {
        println!("\nServing until Ctrl-C.");
        crate::shutdown_signal().await;
        let _ = stop_tx.send(true);
    }
    for task in tasks {
        task.await.context("server task")??;
    }
    Ok(())
}

/// A read shown in the summary: its command line and what it returned.
struct Example {
    title: &'static str,
    command: String,
    result: String,
}

/// Performs the three example reads and keeps their commands and results.
async fn examples(paths: &Paths, nodes: &[(String, String)]) -> anyhow::Result<Vec<Example>> {
    let gongan = nodes
        .iter()
        .find(|(d, _)| d == "js.gongan")
        .map(|(_, e)| e.clone())
        .unwrap_or_default();
    let scjg = nodes
        .iter()
        .find(|(d, _)| d == "js.scjg")
        .map(|(_, e)| e.clone())
        .unwrap_or_default();
    let person = samples::people(1).next().unwrap_or_default();
    let person_id = person["id_number"].as_str().unwrap_or_default().to_string();
    let company = samples::companies(1).next().unwrap_or_default();
    let company_id = company["uscc"].as_str().unwrap_or_default().to_string();
    let d = paths.profiles.display();
    let read = |dataset: &str, key: &str, fields: &[&str], purpose: &str| npb::GetRequest {
        dataset_id: dataset.to_string(),
        keys: vec![key.to_string()],
        fields: fields.iter().map(|f| f.to_string()).collect(),
        purpose: purpose.to_string(),
        case_id: "quickstart".to_string(),
        withhold_until: 0,
    };
    let show = |r: Result<tonic::Response<npb::GetResponse>, tonic::Status>| match r {
        Ok(response) => response
            .into_inner()
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.json).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(status) => format!("{}", status_error(status)),
    };
    let mut swj = node_as(paths, &scjg, "js.swj-system").await?;
    let allowed = show(
        swj.get(read(
            "js.scjg/legal-persons",
            &company_id,
            &["name", "status"],
            "tax-registration",
        ))
        .await,
    );
    let mut scjg_client = node_as(paths, &gongan, "js.scjg-system").await?;
    let masked = show(
        scjg_client
            .get(read(
                "js.gongan/population",
                &person_id,
                &["name", "birth_date"],
                "business-licensing",
            ))
            .await,
    );
    let mut rsj = node_as(paths, &gongan, "js.rsj-system").await?;
    let waiting = rsj
        .get(read(
            "js.gongan/population",
            &person_id,
            &["name"],
            "social-assistance-review",
        ))
        .await;
    // Someone may have approved the waiting grant since the exchange was first set up.
    let waiting_title = match waiting {
        Err(_) => "A denied read: social insurance's grant is still waiting for the data authority's review and public security's approval",
        Ok(_) => "A read by social insurance: its grant, waiting at first, has been approved since (revoke it to see a denial)",
    };
    let denied = show(waiting);
    Ok(vec![
        Example {
            title: "An allowed read: tax reads the company register (unconditional, nothing sensitive)",
            command: format!("exchange --profile {d}/js.swj.toml --node {scjg} get js.scjg/legal-persons {company_id} --fields name,status --purpose tax-registration"),
            result: allowed,
        },
        Example {
            title: "A masked read: market regulation reads a resident (approved grant; id and name are masked)",
            command: format!("exchange --profile {d}/js.scjg.toml --node {gongan} get js.gongan/population {person_id} --fields name,birth_date --purpose business-licensing"),
            result: masked,
        },
        Example {
            title: waiting_title,
            command: format!("exchange --profile {d}/js.rsj.toml --node {gongan} get js.gongan/population {person_id} --fields name --purpose social-assistance-review"),
            result: denied,
        },
    ])
}

/// An auditor asks the registry who read the example resident's record (the node ships the
/// reads' events within a second or so; this waits up to ten seconds for them).
async fn who_read(paths: &Paths, endpoint: &str) -> anyhow::Result<Example> {
    let person = samples::people(1).next().unwrap_or_default();
    let person_id = person["id_number"].as_str().unwrap_or_default().to_string();
    let mut auditor = client_as(paths, endpoint, &format!("{AUTHORITY}-auditor")).await?;
    let request = pb::AccessReportRequest {
        dataset_id: "js.gongan/population".into(),
        record_key: person_id.clone(),
        limit: 100,
        page_token: String::new(),
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let reads = loop {
        let reads = auditor
            .access_report(request.clone())
            .await
            .map_err(status_error)?
            .into_inner()
            .reads;
        // The example reads by market regulation and social insurance, once shipped.
        let departments: std::collections::BTreeSet<&str> = reads.iter().map(|r| r.department_id.as_str()).collect();
        if departments.contains("js.scjg") && departments.contains("js.rsj") || tokio::time::Instant::now() > deadline {
            break reads;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let result = reads
        .iter()
        .map(|r| {
            let grant = match r.grant_id.as_str() {
                "" => "no grant".to_string(),
                id => format!("grant {id} ({})", r.legal_basis),
            };
            format!(
                "{} {} for {}: {}, {grant}",
                r.department_id, r.operation, r.purpose, r.decision
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Example {
        title: "An auditor asks who read that resident's record (the reads above, shipped to the registry)",
        command: format!(
            "exchange --profile {}/auditor.toml audit who-read js.gongan/population {person_id}",
            paths.profiles.display()
        ),
        result: if result.is_empty() {
            "no reads shipped yet".into()
        } else {
            result
        },
    })
}

fn print_summary(dir: &Path, endpoint: &str, nodes: &[(String, String)], examples: &[Example], serving: bool) {
    let d = dir.display();
    if serving {
        println!("Exchange quickstart: a registry is serving mutual TLS on {endpoint}");
    } else {
        println!("Exchange quickstart: set up on {endpoint} and stopped (--exit-after-setup). Run");
        println!("`exchange quickstart` again to serve; the profiles follow the ports it serves on.");
    }
    for (dept, node) in nodes {
        println!("  node of {dept:<10} {node}");
    }
    println!(
        r#"  data:      {d}/registry-data, {d}/node-* (sled)
  PKI:       {d}/pki (dev CA, trust domain {TRUST_DOMAIN}; keys are mode 0600)
  profiles:  {d}/profiles/admin.toml, auditor.toml, js.gongan.toml, js.scjg.toml, ...
(`exchange` is target/debug/exchange, or `cargo run --` in the repository.)
"#
    );
    for example in examples {
        println!(
            "{}:\n  {}\n  => {}\n",
            example.title,
            example.command,
            example.result.replace('\n', "\n     ")
        );
    }
    println!(
        r#"More:
  exchange --profile {d}/profiles/admin.toml dept list
  exchange --profile {d}/profiles/admin.toml dataset search
  exchange --profile {d}/profiles/admin.toml grant list --waiting
  exchange --profile {d}/profiles/js.gongan.toml grant list --waiting
  exchange --profile {d}/profiles/js.gongan.toml status
  exchange --profile {d}/profiles/js.gongan.toml grant watch
Any gRPC client works; with grpcurl:
  grpcurl -cacert {d}/pki/ca.pem -cert {d}/pki/js.dsj-admin.pem -key {d}/pki/js.dsj-admin-key.pem \
    localhost:{port} exchange.registry.v1.Registry/ListDepartments"#,
        port = endpoint.rsplit(':').next().unwrap_or_default(),
    );
}
