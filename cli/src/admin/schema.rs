//! `exchange schema`: publishing, checking and reading a dataset's schema versions.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use exchange_proto::registry::v1 as pb;

use crate::connect::Common;
use crate::output::{print_json, status_error};

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

fn read_schema(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

pub(super) async fn run(command: SchemaCommand, common: Common) -> anyhow::Result<()> {
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
