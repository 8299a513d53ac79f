//! `exchange dataset`: the catalog.

use clap::{Args, Subcommand};
use exchange_core::catalog::Classification;
use exchange_core::compat::CompatMode;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert::{self, classification_to_pb, compat_to_pb};

use super::retry_aborted;
use crate::connect::Common;
use crate::output::{name_of, one_of, print_json, status_error, time, Table};

#[derive(Debug, Clone, Args)]
pub(crate) struct DatasetFields {
    /// Dataset id, owner/name, e.g. js.gongan/population.
    #[arg(long)]
    id: String,
    /// Title, e.g. 人口基础信息.
    #[arg(long)]
    title: String,
    /// Who may read it.
    #[arg(long, value_parser = one_of::<Classification>())]
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
    /// How often it changes: realtime, hourly, daily, weekly, monthly, quarterly, yearly or
    /// irregular (what the early warning and the scoreboard judge freshness by).
    #[arg(long, default_value = "")]
    frequency: String,
    /// Who answers for the data (name and contact).
    #[arg(long, default_value = "")]
    steward: String,
    /// A tag; repeat for more.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Compatibility mode for new schema versions (any case).
    #[arg(long, default_value = "BACKWARD", ignore_case = true, value_parser = one_of::<CompatMode>())]
    compatibility: CompatMode,
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
    /// New classification.
    #[arg(long, value_parser = one_of::<Classification>())]
    classification: Option<Classification>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// New subject area.
    #[arg(long)]
    domain: Option<String>,
    /// New update frequency: realtime, hourly, daily, weekly, monthly, quarterly, yearly or
    /// irregular ("" declares none).
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
    /// New compatibility mode for later schema versions (any case).
    #[arg(long, ignore_case = true, value_parser = one_of::<CompatMode>())]
    compatibility: Option<CompatMode>,
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
        #[arg(long, value_parser = one_of::<Classification>())]
        classification: Option<Classification>,
        /// Text in the id, title, description or tags.
        text: Option<String>,
    },
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

/// Sets the fields the flags name on `d`, as read from the registry; the rest stay as they are.
fn apply_update(u: &DatasetUpdate, d: &mut pb::Dataset) {
    d.versions.clear();
    if let Some(title) = &u.title {
        d.title.clone_from(title);
    }
    if let Some(classification) = u.classification {
        d.classification = classification_to_pb(classification) as i32;
    }
    if let Some(description) = &u.description {
        d.description.clone_from(description);
    }
    if let Some(domain) = &u.domain {
        d.domain.clone_from(domain);
    }
    if let Some(frequency) = &u.frequency {
        d.update_frequency.clone_from(frequency);
    }
    if let Some(steward) = &u.steward {
        d.steward.clone_from(steward);
    }
    if u.clear_tags || !u.tags.is_empty() {
        d.tags.clone_from(&u.tags);
    }
    if let Some(mode) = u.compatibility {
        d.compatibility = compat_to_pb(mode) as i32;
    }
}

fn print_datasets(datasets: &[pb::Dataset]) {
    let mut table = Table::new(&["ID", "TITLE", "DOMAIN", "CLASSIFICATION", "KEY", "VERSION"]);
    for d in datasets {
        table.row(vec![
            d.id.clone(),
            d.title.clone(),
            d.domain.clone(),
            name_of(convert::classification_from_pb(d.classification)),
            d.key_field.clone(),
            d.latest_version.to_string(),
        ]);
    }
    table.print();
}

pub(super) async fn run(command: DatasetCommand, common: Common) -> anyhow::Result<()> {
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
            retry_aborted(|| {
                let (mut client, u) = (client.clone(), &u);
                async move {
                    let mut d = client
                        .get_dataset(pb::GetDatasetRequest { id: u.id.clone() })
                        .await?
                        .into_inner();
                    apply_update(u, &mut d);
                    let request = pb::UpdateDatasetRequest { dataset: Some(d) };
                    Ok(client.update_dataset(request).await?.into_inner())
                }
            })
            .await?
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
        name_of(convert::compat_from_pb(dataset.compatibility).map(Some))
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
