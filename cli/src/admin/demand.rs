//! `exchange demand`: asking a department for data no dataset offers yet, and answering.

use clap::Subcommand;
use exchange_core::demand::DemandState;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert;

use super::parse_expiry;
use crate::connect::Common;
use crate::output::{due, name_of, one_of, print_json, status_error, Table};

#[derive(Debug, Subcommand)]
pub(crate) enum DemandCommand {
    /// Ask a department for data no dataset offers yet (your department's node or system).
    Raise {
        /// The department asked.
        #[arg(long)]
        provider: String,
        /// What data, in a line.
        #[arg(long)]
        title: String,
        /// The fields you need, comma-separated, as you would name them.
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
        /// The purpose code, e.g. business-licensing.
        #[arg(long)]
        purpose: String,
        /// The law or document that allows this sharing.
        #[arg(long)]
        legal_basis: String,
        /// When the grant it becomes should expire: 90d, 12h, 2027-06-30 or an RFC 3339 time.
        #[arg(long, value_parser = parse_expiry)]
        expires: i64,
    },
    /// Answer a demand with a dataset of the department asked (registered for it): it becomes
    /// the consumer's grant request (the department asked, or an admin in its place).
    Answer {
        /// Demand id.
        id: String,
        /// The dataset (yours, with a published schema).
        #[arg(long)]
        dataset: String,
        /// Its fields that meet the demand, comma-separated (the key field is always added).
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
    },
    /// Refuse a demand, saying why (the department asked, or an admin).
    Refuse {
        /// Demand id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Show one demand.
    Get {
        /// Demand id.
        id: String,
    },
    /// List demands you may see.
    List {
        /// Only this consumer's.
        #[arg(long)]
        consumer: Option<String>,
        /// Only those addressed to this department.
        #[arg(long)]
        provider: Option<String>,
        /// Only in this state.
        #[arg(long, value_parser = one_of::<DemandState>())]
        state: Option<DemandState>,
        /// Only what waits for you: the open demands addressed to your department, or for an
        /// admin the overdue ones.
        #[arg(long)]
        waiting: bool,
    },
}

fn state_of(value: i32) -> String {
    name_of(convert::demand_state_from_pb(value))
}

fn print_demands(demands: &[pb::Demand]) {
    let mut table = Table::new(&["ID", "CONSUMER", "PROVIDER", "STATE", "DUE", "TITLE", "GRANT"]);
    for d in demands {
        let due = match d.state == pb::DemandState::Open as i32 {
            true => due(d.due_at, d.overdue),
            false => String::new(),
        };
        table.row(vec![
            d.id.clone(),
            d.consumer_id.clone(),
            d.provider_id.clone(),
            state_of(d.state),
            due,
            d.title.clone(),
            d.grant_id.clone(),
        ]);
    }
    table.print();
}

fn print_demand(d: &pb::Demand) {
    print_demands(std::slice::from_ref(d));
    println!("fields:      {}", d.fields.join(","));
    println!("purpose:     {}", d.purpose);
    println!("legal basis: {}", d.legal_basis);
    if !d.dataset_id.is_empty() {
        println!("answered:    with {}, grant request {}", d.dataset_id, d.grant_id);
    }
    if !d.reason.is_empty() {
        println!("reason:      {}", d.reason);
    }
    if d.decided_in_place {
        println!(
            "decided:     by {} for the data authority, in the provider's place",
            d.decided_by
        );
    }
}

pub(super) async fn run(command: DemandCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let d = match command {
        DemandCommand::Raise {
            provider,
            title,
            fields,
            purpose,
            legal_basis,
            expires,
        } => {
            let request = pb::RaiseDemandRequest {
                provider_id: provider,
                title,
                fields,
                purpose,
                legal_basis,
                expires_at: expires,
            };
            client.raise_demand(request).await.map_err(status_error)?.into_inner()
        }
        DemandCommand::Answer { id, dataset, fields } => {
            let request = pb::AnswerDemandRequest {
                demand_id: id,
                dataset_id: dataset,
                fields,
            };
            let answered = client.answer_demand(request).await.map_err(status_error)?.into_inner();
            if common.json {
                return print_json(&answered);
            }
            let (demand, grant) = (answered.demand.unwrap_or_default(), answered.grant.unwrap_or_default());
            print_demand(&demand);
            println!(
                "grant {} requested for {}: {}",
                grant.id,
                grant.consumer_id,
                name_of(convert::grant_state_from_pb(grant.state))
            );
            return Ok(());
        }
        DemandCommand::Refuse { id, reason } => client
            .refuse_demand(pb::RefuseDemandRequest { demand_id: id, reason })
            .await
            .map_err(status_error)?
            .into_inner(),
        DemandCommand::Get { id } => client
            .get_demand(pb::GetDemandRequest { demand_id: id })
            .await
            .map_err(status_error)?
            .into_inner(),
        DemandCommand::List {
            consumer,
            provider,
            state,
            waiting,
        } => {
            let request = pb::ListDemandsRequest {
                consumer_id: consumer.unwrap_or_default(),
                provider_id: provider.unwrap_or_default(),
                state: state.map(|s| convert::demand_state_to_pb(s) as i32).unwrap_or(0),
                waiting_for_me: waiting,
            };
            let response = client.list_demands(request).await.map_err(status_error)?.into_inner();
            if common.json {
                return print_json(&response);
            }
            print_demands(&response.demands);
            return Ok(());
        }
    };
    if common.json {
        return print_json(&d);
    }
    print_demand(&d);
    Ok(())
}
