//! Registry commands: departments, datasets, schemas, grants, demands, corrections, alerts,
//! watch. Each prints a table for people or, with `--json`, the API's own messages as proto3
//! JSON for scripts.
//!
//! # Layout
//! - this module: the command tree and `whoami`.
//! - `dept`, `dataset`, `schema`, `grant`, `demand`, `correction`, `alert`, `scoreboard`: each
//!   command family, its flags and its tables.

mod alert;
mod correction;
mod dataset;
mod demand;
mod dept;
mod grant;
pub(crate) use grant::parse_expiry;
mod schema;
mod scoreboard;

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
    /// Data demands: asking a department for data no dataset offers yet.
    Demand {
        #[command(subcommand)]
        command: demand::DemandCommand,
    },
    /// Correction requests: questioning a record you were served, and answering.
    Correction {
        #[command(subcommand)]
        command: correction::CorrectionCommand,
    },
    /// Alerts of the early warning: list, watch, acknowledge (admins and auditors).
    Alert {
        #[command(subcommand)]
        command: alert::AlertCommand,
    },
    /// The sharing scoreboard: each department's figures over a period, ranked (table, --csv,
    /// --json).
    Scoreboard(scoreboard::ScoreboardArgs),
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
        Command::Demand { command } => demand::run(command, common).await,
        Command::Correction { command } => correction::run(command, common).await,
        Command::Alert { command } => alert::run(command, common).await,
        Command::Scoreboard(args) => scoreboard::run(args, common).await,
    }
}

/// How many times an update is tried while the object keeps changing under it.
const UPDATE_ATTEMPTS: u32 = 3;

/// Runs a read-then-update `attempt` again while the registry answers ABORTED (the object
/// changed between the read and the write: a node announcing its endpoint, say), up to
/// [`UPDATE_ATTEMPTS`] times. An update's flags name only the fields to change, so applying them
/// to the newer object is what the user asked for.
async fn retry_aborted<T, Fut>(mut attempt: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(updated) => return Ok(updated),
            Err(status) if status.code() == tonic::Code::Aborted && attempts < UPDATE_ATTEMPTS => {}
            Err(status) => return Err(status_error(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn an_aborted_update_is_tried_again_up_to_three_times() {
        let calls = Cell::new(0);
        let flaky = |fail_first: u32| {
            let calls = &calls;
            move || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n <= fail_first {
                        Err(tonic::Status::aborted("changed since you read it"))
                    } else {
                        Ok(n)
                    }
                }
            }
        };
        assert_eq!(retry_aborted(flaky(2)).await.unwrap(), 3);
        calls.set(0);
        let err = retry_aborted(flaky(3)).await.unwrap_err();
        assert!(err.to_string().contains("changed since you read it"), "{err}");
        assert_eq!(calls.get(), 3);
        // Other refusals are not tried again.
        calls.set(0);
        let refused = retry_aborted(|| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(tonic::Status::permission_denied("no")) }
        });
        assert!(refused.await.is_err());
        assert_eq!(calls.get(), 1);
    }
}
