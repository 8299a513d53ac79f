//! Registry commands: departments, datasets, schemas, grants, watch. Each prints a table for
//! people or, with `--json`, the API's own messages as proto3 JSON for scripts.
//!
//! # Layout
//! - this module: the command tree and `whoami`.
//! - `dept`, `dataset`, `schema`, `grant`: each command family, its flags and its tables.

mod dataset;
mod dept;
mod grant;
mod schema;

use clap::Subcommand;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert;

use crate::connect::Common;
use crate::output::{name_of, print_json, status_error, time};

/// Registry commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show who the registry thinks you are (read from your certificate).
    Whoami,
    /// Departments: the members of the exchange.
    Dept {
        #[command(subcommand)]
        command: dept::DeptCommand,
    },
    /// Datasets in the catalog.
    Dataset {
        #[command(subcommand)]
        command: dataset::DatasetCommand,
    },
    /// Schema versions of a dataset.
    Schema {
        #[command(subcommand)]
        command: schema::SchemaCommand,
    },
    /// Grants: who may read what, for which purpose, until when.
    Grant {
        #[command(subcommand)]
        command: grant::GrantCommand,
    },
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
            println!("role:        {}", name_of(convert::role_from_pb(me.role)));
            println!("cert expiry: {}", time(me.certificate_not_after));
            Ok(())
        }
        Command::Dept { command } => dept::run(command, common).await,
        Command::Dataset { command } => dataset::run(command, common).await,
        Command::Schema { command } => schema::run(command, common).await,
        Command::Grant { command } => grant::run(command, common).await,
    }
}
