//! `exchange dept`: the members of the exchange.

use clap::{Args, Subcommand};
use exchange_core::department::Level;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert::{self, level_to_pb};

use super::retry_aborted;
use crate::connect::Common;
use crate::output::{name_of, one_of, print_json, status_error, Table};

#[derive(Debug, Clone, Args)]
pub(crate) struct DeptFields {
    /// Department id: region prefix plus department, e.g. js.gongan.
    #[arg(long)]
    id: String,
    /// Official name, e.g. 江苏省公安厅.
    #[arg(long)]
    name: String,
    /// Administrative level.
    #[arg(long, value_parser = one_of::<Level>())]
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
    /// New level.
    #[arg(long, value_parser = one_of::<Level>())]
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
        #[arg(long, value_parser = one_of::<Level>())]
        level: Option<Level>,
    },
    /// What the registry holds of a department's audit ledger: events shipped, the last
    /// checkpoint accepted, the pinned log key, and whether the ledger is refused.
    Ledger {
        /// Department id.
        id: String,
    },
    /// Pin another log key for a department's node after its operator replaced the key (the
    /// history must go on unchanged); recorded in the registry's ledger (admin).
    RotateLogKey {
        /// Department id.
        id: String,
        /// The node's new verifier key (`exchange status` prints it as `log vkey`).
        #[arg(long)]
        vkey: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

fn print_shipped(held: &pb::ShippedLedger, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(held);
    }
    println!("department: {}", held.department_id);
    println!(
        "log key:    {}",
        if held.vkey.is_empty() {
            "(none pinned yet)"
        } else {
            &held.vkey
        }
    );
    println!(
        "events:     {} held; last checkpoint accepted covers {}",
        held.size, held.checkpoint_size
    );
    if !held.refused.is_empty() {
        println!(
            "REFUSED since {}: {}",
            crate::output::time(held.refused_at),
            held.refused
        );
    }
    Ok(())
}

/// A department message from the flags.
fn department_pb(f: DeptFields) -> pb::Department {
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

/// Sets the fields the flags name on `d`, as read from the registry; the rest stay as they are.
fn apply_update(u: &DeptUpdate, d: &mut pb::Department) {
    if let Some(name) = &u.name {
        d.name.clone_from(name);
    }
    if let Some(level) = u.level {
        d.level = level_to_pb(level) as i32;
    }
    if let Some(region) = &u.region {
        d.region_code.clone_from(region);
    }
    match (&u.parent, u.clear_parent) {
        (Some(parent), _) => d.parent_id.clone_from(parent),
        (None, true) => d.parent_id.clear(),
        (None, false) => {}
    }
    match (&u.endpoint, u.clear_endpoint) {
        (Some(endpoint), _) => d.node_endpoint.clone_from(endpoint),
        (None, true) => d.node_endpoint.clear(),
        (None, false) => {}
    }
}

fn print_departments(departments: &[pb::Department]) {
    let mut table = Table::new(&["ID", "NAME", "LEVEL", "REGION", "PARENT", "NODE"]);
    for d in departments {
        table.row(vec![
            d.id.clone(),
            d.name.clone(),
            name_of(convert::level_from_pb(d.level, "level")),
            d.region_code.clone(),
            d.parent_id.clone(),
            d.node_endpoint.clone(),
        ]);
    }
    table.print();
}

pub(super) async fn run(command: DeptCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let departments = match command {
        DeptCommand::Ledger { id } => {
            let held = client
                .get_shipped_ledger(pb::GetShippedLedgerRequest { department_id: id })
                .await
                .map_err(status_error)?
                .into_inner();
            return print_shipped(&held, common.json);
        }
        DeptCommand::RotateLogKey { id, vkey, reason } => {
            let held = client
                .rotate_log_key(pb::RotateLogKeyRequest {
                    department_id: id,
                    vkey,
                    reason,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            return print_shipped(&held, common.json);
        }
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
            let updated = retry_aborted(|| {
                let (mut client, u) = (client.clone(), &u);
                async move {
                    let mut d = client
                        .get_department(pb::GetDepartmentRequest { id: u.id.clone() })
                        .await?
                        .into_inner();
                    apply_update(u, &mut d);
                    let request = pb::UpdateDepartmentRequest { department: Some(d) };
                    Ok(client.update_department(request).await?.into_inner())
                }
            })
            .await?;
            vec![updated]
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        update: DeptUpdate,
    }

    /// What makes retrying after ABORTED right: the flags change only what they name, so applied
    /// to a department another writer changed meanwhile, they keep that writer's change.
    #[test]
    fn an_update_changes_only_what_its_flags_name() {
        let flags = Flags::parse_from(["x", "--id", "js.gongan", "--name", "江苏省公安厅"]);
        let mut changed_meanwhile = pb::Department {
            id: "js.gongan".into(),
            name: "old".into(),
            region_code: "320000".into(),
            node_endpoint: "https://node.gongan.example:7401".into(),
            revision: 9,
            ..Default::default()
        };
        apply_update(&flags.update, &mut changed_meanwhile);
        assert_eq!(changed_meanwhile.name, "江苏省公安厅");
        assert_eq!(changed_meanwhile.node_endpoint, "https://node.gongan.example:7401");
        assert_eq!(
            (changed_meanwhile.region_code.as_str(), changed_meanwhile.revision),
            ("320000", 9)
        );
    }
}
