//! Registry commands: departments, datasets, schemas, grants, watch. Each prints a table for
//! people or, with `--json`, the API's own messages as proto3 JSON for scripts.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use exchange_core::catalog::Classification;
use exchange_core::compat::CompatMode;
use exchange_core::department::Level;
use exchange_core::grant::GrantState;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert::{classification_to_pb, compat_to_pb, grant_state_to_pb, level_to_pb};

use crate::connect::ConnectArgs;
use crate::output::{print_json, time, Table};

/// Registry commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show who the registry thinks you are (read from your certificate).
    Whoami,
    /// Departments: the members of the exchange.
    Dept {
        #[command(subcommand)]
        command: DeptCommand,
    },
    /// Datasets in the catalog.
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Schema versions of a dataset.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Grants: who may read what, for which purpose, until when.
    Grant {
        #[command(subcommand)]
        command: GrantCommand,
    },
}

/// Flags every registry command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Print JSON (the API's messages, proto3 JSON mapping) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DeptFields {
    /// Department id: region prefix plus department, e.g. js.gongan.
    #[arg(long)]
    id: String,
    /// Official name, e.g. 江苏省公安厅.
    #[arg(long)]
    name: String,
    /// province, city, district, street or community.
    #[arg(long, value_parser = parse_level)]
    level: Level,
    /// Six-digit GB/T 2260 region code, e.g. 320000.
    #[arg(long)]
    region: String,
    /// Parent department id.
    #[arg(long)]
    parent: Option<String>,
    /// Its exchange node's URL, e.g. https://node.gongan.example:7443.
    #[arg(long)]
    endpoint: Option<String>,
}

/// A department update: only the flags given change; the rest stay as they are.
#[derive(Debug, Clone, Args)]
pub(crate) struct DeptUpdate {
    /// Department id.
    #[arg(long)]
    id: String,
    /// New official name.
    #[arg(long)]
    name: Option<String>,
    /// New level: province, city, district, street or community.
    #[arg(long, value_parser = parse_level)]
    level: Option<Level>,
    /// New six-digit GB/T 2260 region code.
    #[arg(long)]
    region: Option<String>,
    /// New parent department id.
    #[arg(long, conflicts_with = "clear_parent")]
    parent: Option<String>,
    /// Remove the parent.
    #[arg(long)]
    clear_parent: bool,
    /// New node URL (a node with `advertise` set announces its own).
    #[arg(long, conflicts_with = "clear_endpoint")]
    endpoint: Option<String>,
    /// Remove the node URL.
    #[arg(long)]
    clear_endpoint: bool,
}

/// A dataset update: only the flags given change; the rest stay as they are.
#[derive(Debug, Clone, Args)]
pub(crate) struct DatasetUpdate {
    /// Dataset id, owner/name.
    #[arg(long)]
    id: String,
    /// New title.
    #[arg(long)]
    title: Option<String>,
    /// New classification: unconditional, conditional, not_shared or open.
    #[arg(long, value_parser = parse_classification)]
    classification: Option<Classification>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// New subject area.
    #[arg(long)]
    domain: Option<String>,
    /// New update frequency.
    #[arg(long)]
    frequency: Option<String>,
    /// New steward.
    #[arg(long)]
    steward: Option<String>,
    /// Replace the tags with these; repeat for more.
    #[arg(long = "tag", conflicts_with = "clear_tags")]
    tags: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    clear_tags: bool,
    /// New compatibility mode for later schema versions.
    #[arg(long, value_parser = parse_compat)]
    compatibility: Option<CompatMode>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeptCommand {
    /// Register a department (admin).
    Register(DeptFields),
    /// Change a department: only the flags given change (admin).
    Update(DeptUpdate),
    /// Show one department.
    Get {
        /// Department id.
        id: String,
    },
    /// List departments.
    List {
        /// Only children of this department.
        #[arg(long)]
        parent: Option<String>,
        /// Only this level.
        #[arg(long, value_parser = parse_level)]
        level: Option<Level>,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DatasetFields {
    /// Dataset id, owner/name, e.g. js.gongan/population.
    #[arg(long)]
    id: String,
    /// Title, e.g. 人口基础信息.
    #[arg(long)]
    title: String,
    /// unconditional, conditional, not_shared or open.
    #[arg(long, value_parser = parse_classification)]
    classification: Classification,
    /// The key field: a required string property of every schema version.
    #[arg(long)]
    key_field: String,
    /// What the dataset holds.
    #[arg(long, default_value = "")]
    description: String,
    /// Subject area, e.g. population.
    #[arg(long, default_value = "")]
    domain: String,
    /// How often it changes, e.g. daily.
    #[arg(long, default_value = "")]
    frequency: String,
    /// Who answers for the data (name and contact).
    #[arg(long, default_value = "")]
    steward: String,
    /// A tag; repeat for more.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Compatibility mode for new schema versions: BACKWARD (default), BACKWARD_TRANSITIVE,
    /// FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.
    #[arg(long, default_value = "BACKWARD", value_parser = parse_compat)]
    compatibility: CompatMode,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DatasetCommand {
    /// Register a dataset (its owner's node or system, or an admin).
    Register(DatasetFields),
    /// Change a dataset's descriptive fields: only the flags given change (not its id or key).
    Update(DatasetUpdate),
    /// Show a dataset with its schema versions.
    Get {
        /// Dataset id.
        id: String,
    },
    /// Search the catalog.
    Search {
        /// Owner department.
        #[arg(long)]
        owner: Option<String>,
        /// Domain.
        #[arg(long)]
        domain: Option<String>,
        /// Classification.
        #[arg(long, value_parser = parse_classification)]
        classification: Option<Classification>,
        /// Text in the id, title, description or tags.
        text: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Publish the next schema version from a JSON Schema file.
    Publish {
        /// Dataset id.
        dataset: String,
        /// The JSON Schema (draft 2020-12) file.
        file: PathBuf,
    },
    /// Say whether a schema would be accepted and which grants it would break; stores nothing.
    Check {
        /// Dataset id.
        dataset: String,
        /// The JSON Schema file.
        file: PathBuf,
    },
    /// Print a schema version (the latest by default).
    Get {
        /// Dataset id.
        dataset: String,
        /// Version number.
        #[arg(long, default_value_t = 0)]
        version: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GrantCommand {
    /// Request a grant for your department (or, as admin, for --consumer).
    Request {
        /// Dataset id.
        #[arg(long)]
        dataset: String,
        /// Fields, comma-separated (the key is always included).
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
        /// Purpose code; repeat for more, e.g. --purpose business-licensing.
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// The law or document that allows this sharing.
        #[arg(long)]
        legal_basis: String,
        /// Expiry: a duration like 90d or 12h, a date (2027-06-30, end of that day UTC) or an RFC 3339 time.
        #[arg(long, value_parser = parse_expiry)]
        expires: i64,
        /// Row filter over string fields, e.g. 'household_register_region STARTS WITH "3201"'.
        #[arg(long, default_value = "")]
        filter: String,
        /// Fields to be served unmasked, comma-separated.
        #[arg(long, value_delimiter = ',')]
        clear: Vec<String>,
        /// The consumer department (admins only; default: yours).
        #[arg(long, default_value = "")]
        consumer: String,
    },
    /// Approve a requested grant (dataset owner or admin).
    Approve {
        /// Grant id.
        id: String,
        /// Why (optional).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reject a requested grant (dataset owner or admin).
    Reject {
        /// Grant id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Revoke a grant (owner, consumer or admin).
    Revoke {
        /// Grant id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Show one grant.
    Get {
        /// Grant id.
        id: String,
    },
    /// List grants you may see.
    List {
        /// Only this consumer's.
        #[arg(long)]
        consumer: Option<String>,
        /// Only on this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Only on datasets this department owns.
        #[arg(long)]
        owner: Option<String>,
        /// Only in this state: requested, approved, rejected, revoked, expired.
        #[arg(long, value_parser = parse_state)]
        state: Option<GrantState>,
    },
    /// Follow the datasets and grants of a department as they change (a line each; --json for the messages).
    Watch {
        /// The department (default: yours; admins and auditors see every department by default).
        #[arg(long)]
        dept: Option<String>,
        /// Every department (admin and auditor).
        #[arg(long)]
        all: bool,
        /// Resume after this revision.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
}

fn parse_level(s: &str) -> Result<Level, String> {
    s.parse().map_err(|e: exchange_core::ValidationError| e.message)
}

fn parse_classification(s: &str) -> Result<Classification, String> {
    s.parse().map_err(|e: exchange_core::ValidationError| e.message)
}

fn parse_compat(s: &str) -> Result<CompatMode, String> {
    s.parse()
}

fn parse_state(s: &str) -> Result<GrantState, String> {
    [
        GrantState::Requested,
        GrantState::Approved,
        GrantState::Rejected,
        GrantState::Revoked,
        GrantState::Expired,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
    .ok_or_else(|| format!("\"{s}\" is not a state; use requested, approved, rejected, revoked or expired"))
}

/// Parses `90d`, `12h`, `2027-06-30` or an RFC 3339 time into Unix seconds.
pub(crate) fn parse_expiry(s: &str) -> Result<i64, String> {
    let now = exchange_core::now();
    let bad = || format!("\"{s}\" is not an expiry; use 90d, 12h, 2027-06-30 or 2027-06-30T18:00:00+08:00");
    if let Some(days) = s.strip_suffix('d') {
        return days.parse::<i64>().map(|d| now + d * 86_400).map_err(|_| bad());
    }
    if let Some(hours) = s.strip_suffix('h') {
        return hours.parse::<i64>().map(|h| now + h * 3_600).map_err(|_| bad());
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format)
        .map(|d| {
            d.with_hms(23, 59, 59)
                .map(|t| t.assume_utc().unix_timestamp())
                .unwrap_or(0)
        })
        .map_err(|_| bad())
}

/// A department message from the flags.
pub(crate) fn department_pb(f: DeptFields) -> pb::Department {
    pb::Department {
        id: f.id,
        name: f.name,
        level: level_to_pb(f.level) as i32,
        region_code: f.region,
        parent_id: f.parent.unwrap_or_default(),
        node_endpoint: f.endpoint.unwrap_or_default(),
        ..Default::default()
    }
}

fn dataset_pb(f: DatasetFields) -> pb::Dataset {
    pb::Dataset {
        id: f.id,
        title: f.title,
        description: f.description,
        domain: f.domain,
        classification: classification_to_pb(f.classification) as i32,
        update_frequency: f.frequency,
        steward: f.steward,
        key_field: f.key_field,
        tags: f.tags,
        compatibility: compat_to_pb(f.compatibility) as i32,
        ..Default::default()
    }
}

/// Turns a gRPC status into an error a person reads: the code in words, then the message.
pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    // The server does not know the call at all: the URL points at the wrong kind of server.
    if status.code() == tonic::Code::Unimplemented && status.message().is_empty() {
        return anyhow::anyhow!(
            "that server does not serve this call: is --node pointing at a department's node and --registry at the registry (or the profile's URLs)?"
        );
    }
    let code = format!("{:?}", status.code());
    let mut words = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    anyhow::anyhow!("{words}: {}", status.message())
}

fn enum_name<E: std::fmt::Debug>(value: Result<E, prost::UnknownEnumValue>) -> String {
    value
        .map(|e| format!("{e:?}").to_lowercase())
        .unwrap_or_else(|_| "?".into())
}

fn print_departments(departments: &[pb::Department]) {
    let mut table = Table::new(&["ID", "NAME", "LEVEL", "REGION", "PARENT", "NODE"]);
    for d in departments {
        table.row(vec![
            d.id.clone(),
            d.name.clone(),
            enum_name(pb::Level::try_from(d.level)),
            d.region_code.clone(),
            d.parent_id.clone(),
            d.node_endpoint.clone(),
        ]);
    }
    table.print();
}

fn print_datasets(datasets: &[pb::Dataset]) {
    let mut table = Table::new(&["ID", "TITLE", "DOMAIN", "CLASSIFICATION", "KEY", "VERSION"]);
    for d in datasets {
        table.row(vec![
            d.id.clone(),
            d.title.clone(),
            d.domain.clone(),
            classification_name(d.classification),
            d.key_field.clone(),
            d.latest_version.to_string(),
        ]);
    }
    table.print();
}

fn classification_name(value: i32) -> String {
    match pb::Classification::try_from(value) {
        Ok(pb::Classification::NotShared) => "not_shared".into(),
        other => enum_name(other),
    }
}

fn print_grants(grants: &[pb::Grant]) {
    let mut table = Table::new(&["ID", "CONSUMER", "DATASET", "STATE", "PURPOSES", "FIELDS", "EXPIRES"]);
    for g in grants {
        table.row(vec![
            g.id.clone(),
            g.consumer_id.clone(),
            g.dataset_id.clone(),
            enum_name(pb::GrantState::try_from(g.state)),
            g.purposes.join(","),
            g.fields.join(","),
            time(g.expires_at),
        ]);
    }
    table.print();
}

fn print_grant(g: &pb::Grant) {
    print_grants(std::slice::from_ref(g));
    if !g.row_filter.is_empty() {
        println!("row filter: {}", g.row_filter);
    }
    if !g.clear_fields.is_empty() {
        println!("in clear:   {}", g.clear_fields.join(","));
    }
    println!("legal basis: {}", g.legal_basis);
    if !g.reason.is_empty() {
        println!("reason:      {}", g.reason);
    }
}

fn read_schema(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Runs a registry command.
pub(crate) async fn run(command: Command, common: Common) -> anyhow::Result<()> {
    match command {
        Command::Whoami => {
            let mut client = common.connect.registry().await?;
            let me = client
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return print_json(&me);
            }
            println!("identity:    {}", me.uri);
            println!(
                "department:  {} ({})",
                me.department_id,
                if me.department_registered {
                    "registered"
                } else {
                    "not registered"
                }
            );
            println!("role:        {}", enum_name(pb::Role::try_from(me.role)));
            println!("cert expiry: {}", time(me.certificate_not_after));
            Ok(())
        }
        Command::Dept { command } => dept(command, common).await,
        Command::Dataset { command } => dataset(command, common).await,
        Command::Schema { command } => schema(command, common).await,
        Command::Grant { command } => grant(command, common).await,
    }
}

async fn dept(command: DeptCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let departments = match command {
        DeptCommand::Register(fields) => {
            let request = pb::RegisterDepartmentRequest {
                department: Some(department_pb(fields)),
            };
            vec![client
                .register_department(request)
                .await
                .map_err(status_error)?
                .into_inner()]
        }
        DeptCommand::Update(u) => {
            let mut d = client
                .get_department(pb::GetDepartmentRequest { id: u.id.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            if let Some(name) = u.name {
                d.name = name;
            }
            if let Some(level) = u.level {
                d.level = level_to_pb(level) as i32;
            }
            if let Some(region) = u.region {
                d.region_code = region;
            }
            match (u.parent, u.clear_parent) {
                (Some(parent), _) => d.parent_id = parent,
                (None, true) => d.parent_id.clear(),
                (None, false) => {}
            }
            match (u.endpoint, u.clear_endpoint) {
                (Some(endpoint), _) => d.node_endpoint = endpoint,
                (None, true) => d.node_endpoint.clear(),
                (None, false) => {}
            }
            let request = pb::UpdateDepartmentRequest { department: Some(d) };
            vec![client
                .update_department(request)
                .await
                .map_err(status_error)?
                .into_inner()]
        }
        DeptCommand::Get { id } => {
            vec![client
                .get_department(pb::GetDepartmentRequest { id })
                .await
                .map_err(status_error)?
                .into_inner()]
        }
        DeptCommand::List { parent, level } => {
            let request = pb::ListDepartmentsRequest {
                parent_id: parent.unwrap_or_default(),
                level: level.map(|l| level_to_pb(l) as i32).unwrap_or(0),
            };
            let response = client
                .list_departments(request)
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return print_json(&response);
            }
            response.departments
        }
    };
    if common.json {
        for d in &departments {
            print_json(d)?;
        }
        return Ok(());
    }
    print_departments(&departments);
    Ok(())
}

async fn dataset(command: DatasetCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let dataset = match command {
        DatasetCommand::Register(fields) => {
            let request = pb::RegisterDatasetRequest {
                dataset: Some(dataset_pb(fields)),
            };
            client
                .register_dataset(request)
                .await
                .map_err(status_error)?
                .into_inner()
        }
        DatasetCommand::Update(u) => {
            let mut d = client
                .get_dataset(pb::GetDatasetRequest { id: u.id.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            d.versions.clear();
            if let Some(title) = u.title {
                d.title = title;
            }
            if let Some(classification) = u.classification {
                d.classification = classification_to_pb(classification) as i32;
            }
            if let Some(description) = u.description {
                d.description = description;
            }
            if let Some(domain) = u.domain {
                d.domain = domain;
            }
            if let Some(frequency) = u.frequency {
                d.update_frequency = frequency;
            }
            if let Some(steward) = u.steward {
                d.steward = steward;
            }
            if u.clear_tags || !u.tags.is_empty() {
                d.tags = u.tags;
            }
            if let Some(mode) = u.compatibility {
                d.compatibility = compat_to_pb(mode) as i32;
            }
            let request = pb::UpdateDatasetRequest { dataset: Some(d) };
            client.update_dataset(request).await.map_err(status_error)?.into_inner()
        }
        DatasetCommand::Get { id } => client
            .get_dataset(pb::GetDatasetRequest { id })
            .await
            .map_err(status_error)?
            .into_inner(),
        DatasetCommand::Search {
            owner,
            domain,
            classification,
            text,
        } => {
            let request = pb::SearchDatasetsRequest {
                owner_id: owner.unwrap_or_default(),
                domain: domain.unwrap_or_default(),
                classification: classification.map(|c| classification_to_pb(c) as i32).unwrap_or(0),
                text: text.unwrap_or_default(),
            };
            let response = client
                .search_datasets(request)
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return print_json(&response);
            }
            print_datasets(&response.datasets);
            return Ok(());
        }
    };
    if common.json {
        return print_json(&dataset);
    }
    print_datasets(std::slice::from_ref(&dataset));
    if !dataset.description.is_empty() {
        println!("description:   {}", dataset.description);
    }
    println!(
        "compatibility: {}",
        enum_name(pb::CompatibilityMode::try_from(dataset.compatibility)).to_uppercase()
    );
    for v in &dataset.versions {
        let sensitive: Vec<String> = v
            .sensitive_fields
            .iter()
            .map(|s| format!("{}={}", s.pointer.trim_start_matches("/properties/"), s.sensitivity))
            .collect();
        println!(
            "version {}: published {}; sensitive: {}",
            v.version,
            time(v.created_at),
            sensitive.join(", ")
        );
    }
    Ok(())
}

async fn schema(command: SchemaCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    match command {
        SchemaCommand::Publish { dataset, file } => {
            let request = pb::PublishSchemaRequest {
                dataset_id: dataset,
                schema_json: read_schema(&file)?,
            };
            let v = client.publish_schema(request).await.map_err(status_error)?.into_inner();
            if common.json {
                return print_json(&v);
            }
            println!("published {} version {}", v.dataset_id, v.version);
        }
        SchemaCommand::Check { dataset, file } => {
            let request = pb::CheckSchemaRequest {
                dataset_id: dataset,
                schema_json: read_schema(&file)?,
            };
            let c = client.check_schema(request).await.map_err(status_error)?.into_inner();
            if common.json {
                return print_json(&c);
            }
            let verdict = if c.accepted {
                "would be accepted"
            } else {
                "would be refused"
            };
            println!("version {} {verdict}", c.version);
            for e in &c.errors {
                println!("  invalid: {e}");
            }
            for i in &c.incompatibilities {
                println!(
                    "  {} against version {}: {}: {}",
                    i.direction, i.against_version, i.pointer, i.message
                );
            }
            for b in &c.broken_grants {
                println!("  breaks grant {} of {}: {}", b.grant_id, b.consumer_id, b.reason);
            }
            if !c.accepted {
                anyhow::bail!("schema check failed");
            }
        }
        SchemaCommand::Get { dataset, version } => {
            let v = client
                .get_schema(pb::GetSchemaRequest {
                    dataset_id: dataset,
                    version,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return print_json(&v);
            }
            println!("{}", v.schema_json);
        }
    }
    Ok(())
}

async fn grant(command: GrantCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let decide = |id: String, reason: String| pb::DecideGrantRequest { grant_id: id, reason };
    let g = match command {
        GrantCommand::Request {
            dataset,
            fields,
            purposes,
            legal_basis,
            expires,
            filter,
            clear,
            consumer,
        } => {
            let request = pb::RequestGrantRequest {
                consumer_id: consumer,
                dataset_id: dataset,
                fields,
                row_filter: filter,
                purposes,
                legal_basis,
                expires_at: expires,
                clear_fields: clear,
            };
            client.request_grant(request).await.map_err(status_error)?.into_inner()
        }
        GrantCommand::Approve { id, reason } => client
            .approve_grant(decide(id, reason))
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::Reject { id, reason } => client
            .reject_grant(decide(id, reason))
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::Revoke { id, reason } => client
            .revoke_grant(decide(id, reason))
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::Get { id } => client
            .get_grant(pb::GetGrantRequest { grant_id: id })
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::List {
            consumer,
            dataset,
            owner,
            state,
        } => {
            let request = pb::ListGrantsRequest {
                consumer_id: consumer.unwrap_or_default(),
                dataset_id: dataset.unwrap_or_default(),
                state: state.map(|st| grant_state_to_pb(st) as i32).unwrap_or(0),
                owner_id: owner.unwrap_or_default(),
            };
            let response = client.list_grants(request).await.map_err(status_error)?.into_inner();
            if common.json {
                return print_json(&response);
            }
            print_grants(&response.grants);
            return Ok(());
        }
        GrantCommand::Watch { dept, all, from } => {
            let request = pb::WatchRequest {
                department_id: dept.unwrap_or_default(),
                all_departments: all,
                from_revision: from,
                // A person resuming by number from a log line; nodes send the fingerprint.
                from_history: String::new(),
            };
            let mut stream = client.watch(request).await.map_err(status_error)?.into_inner();
            while let Some(event) = stream.message().await.map_err(status_error)? {
                if common.json {
                    println!("{}", serde_json::to_string(&event)?);
                } else {
                    println!("{}", watch_line(&event));
                }
            }
            return Ok(());
        }
    };
    if common.json {
        return print_json(&g);
    }
    print_grant(&g);
    Ok(())
}

/// One Watch event as a line for people (`--json` prints the whole message, schemas included).
fn watch_line(event: &pb::WatchEvent) -> String {
    use pb::watch_event::Event;
    let what = match &event.event {
        Some(Event::Grant(g)) => format!(
            "grant {} of {} on {}: {}{}",
            g.id,
            g.consumer_id,
            g.dataset_id,
            enum_name(pb::GrantState::try_from(g.state)),
            match g.reason.as_str() {
                "" => String::new(),
                reason => format!(" ({reason})"),
            }
        ),
        Some(Event::Dataset(d)) => format!(
            "dataset {} ({}): {}, schema version {}",
            d.id,
            d.title,
            enum_name(pb::Classification::try_from(d.classification)),
            d.latest_version
        ),
        Some(Event::CaughtUp(_)) => "caught up: live changes follow".to_string(),
        None => "(empty event)".to_string(),
    };
    format!("revision {:>6}  {}", event.revision, what.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries() {
        let now = exchange_core::now();
        let in_90 = parse_expiry("90d").unwrap();
        assert!((in_90 - now - 90 * 86_400).abs() < 5);
        assert_eq!(parse_expiry("2027-06-30").unwrap(), 1_814_399_999);
        assert_eq!(parse_expiry("2027-06-30T18:00:00+08:00").unwrap(), 1_814_349_600);
        assert!(parse_expiry("soon").unwrap_err().contains("90d"));
    }
}
