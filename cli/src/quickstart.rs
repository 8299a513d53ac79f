//! `exchange quickstart`: a complete local exchange in one command. It makes a dev PKI, starts a
//! registry on an embedded sled directory, registers sample departments at two levels and the
//! sample datasets of `schemas/` with their schemas, sets up a grant of each kind, writes
//! ready-to-use CLI profiles and prints how to call it. Running it again reuses what is there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_core::identity::{Principal, Role};
use exchange_proto::registry::v1 as pb;
use exchange_proto::registry::v1::registry_client::RegistryClient;
use exchange_transport::client::{connect, ClientConfig};
use exchange_transport::pki::{Ca, CertSpec};
use exchange_transport::tls::TlsFiles;
use tonic::transport::Channel;
use tonic::Code;

use crate::admin::status_error;
use crate::connect::Profile;

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

/// Creates the dev PKI and profiles unless they exist.
fn make_pki(paths: &Paths, endpoint: &str) -> anyhow::Result<()> {
    let ca = if paths.pki.join("ca.pem").exists() {
        Ca::load(&paths.pki)?
    } else {
        let ca = Ca::generate(TRUST_DOMAIN, 3650)?;
        ca.save(&paths.pki)?;
        ca
    };
    if !paths.pki.join("registry.pem").exists() {
        let spec = CertSpec::for_server("registry", 365)
            .serving(vec!["localhost".into()], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        ca.issue(&spec)?.save(&paths.pki, "registry")?;
    }
    let mut identities = vec![
        (AUTHORITY, Role::Admin, "admin".to_string()),
        (AUTHORITY, Role::Auditor, "auditor".to_string()),
    ];
    for (id, ..) in DEPARTMENTS.iter().skip(1) {
        identities.push((id, Role::System, id.to_string()));
    }
    for (dept, role, name) in identities {
        let stem = format!("{dept}-{role}");
        if !paths.pki.join(format!("{stem}.pem")).exists() {
            ca.issue(&CertSpec::for_principal(Principal::new(dept, role), 365))?
                .save(&paths.pki, &stem)?;
        }
        let profile = Profile {
            registry: Some(endpoint.to_string()),
            ca: Some(PathBuf::from("../pki/ca.pem")),
            cert: Some(PathBuf::from(format!("../pki/{stem}.pem"))),
            key: Some(PathBuf::from(format!("../pki/{stem}-key.pem"))),
        };
        std::fs::create_dir_all(&paths.profiles)?;
        std::fs::write(paths.profiles.join(format!("{name}.toml")), toml::to_string(&profile)?)?;
    }
    Ok(())
}

async fn client_as(paths: &Paths, endpoint: &str, stem: &str) -> anyhow::Result<RegistryClient<Channel>> {
    let tls = TlsFiles::read(
        &paths.pki.join("ca.pem"),
        &paths.pki.join(format!("{stem}.pem")),
        &paths.pki.join(format!("{stem}-key.pem")),
    )?;
    let channel = connect(&ClientConfig {
        endpoint: endpoint.to_string(),
        tls,
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
    // Conditional, still waiting for the owner: social insurance asks for residents' identity.
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
    make_pki(&paths, &endpoint)?;

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
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(registry::run(config, listener, async move {
        tokio::select! {
            () = crate::shutdown_signal() => {},
            _ = stop_rx => {},
        }
    }));

    let seeded = seed(&paths, &endpoint).await;
    if let Err(e) = seeded {
        let _ = stop_tx.send(());
        let _ = server.await;
        return Err(e.context("setting up the sample exchange"));
    }
    print_summary(&args.dir, &endpoint);
    if args.exit_after_setup {
        let _ = stop_tx.send(());
    } else {
        println!("\nServing until Ctrl-C.");
    }
    server.await.context("registry task")??;
    Ok(())
}

fn print_summary(dir: &Path, endpoint: &str) {
    let d = dir.display();
    println!(
        r#"
Exchange quickstart: a registry is serving mutual TLS on {endpoint}
  data:      {d}/registry-data (sled)
  PKI:       {d}/pki (dev CA, trust domain {TRUST_DOMAIN}; keys are mode 0600)
  profiles:  {d}/profiles/admin.toml, auditor.toml, js.gongan.toml, js.scjg.toml, ...

Try it (in another terminal):
  exchange --profile {d}/profiles/admin.toml dept list
  exchange --profile {d}/profiles/admin.toml dataset search
  exchange --profile {d}/profiles/admin.toml dataset get js.gongan/population
  exchange --profile {d}/profiles/js.gongan.toml grant list
  exchange --profile {d}/profiles/auditor.toml grant list --state requested
  exchange --profile {d}/profiles/js.gongan.toml grant watch
(`exchange` is target/debug/exchange, or `cargo run --` in the repository.)

Any gRPC client works; with grpcurl:
  grpcurl -cacert {d}/pki/ca.pem -cert {d}/pki/js.dsj-admin.pem -key {d}/pki/js.dsj-admin-key.pem \
    localhost:{port} exchange.registry.v1.Registry/ListDepartments"#,
        port = endpoint.rsplit(':').next().unwrap_or_default(),
    );
}
