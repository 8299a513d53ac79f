//! `exchange correction`: questioning a record you were served, and answering.

use clap::{ArgGroup, Subcommand};
use exchange_core::correction::CorrectionState;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert;

use crate::connect::Common;
use crate::output::{due, name_of, one_of, print_json, status_error, time, Table};

#[derive(Debug, Subcommand)]
pub(crate) enum CorrectionCommand {
    /// Question a record your department was served, under a grant it holds (its node or
    /// system). The read must have reached the registry (nodes ship their reads within seconds).
    Raise {
        /// The dataset.
        #[arg(long)]
        dataset: String,
        /// The record's key.
        #[arg(long)]
        record: String,
        /// The fields that look wrong, comma-separated (fields you were served).
        #[arg(long, value_delimiter = ',', required = true)]
        fields: Vec<String>,
        /// The record's sequence as you read it (`exchange get` prints it).
        #[arg(long)]
        sequence: u64,
        /// What looks wrong, and what you believe is right.
        #[arg(long)]
        problem: String,
        /// What that rests on: a document, a register, a case number.
        #[arg(long)]
        evidence: String,
    },
    /// Answer a correction request on your department's record (or, as an admin, in its
    /// place): corrected, confirmed or rejected.
    #[command(group(ArgGroup::new("outcome").required(true).args(["corrected", "confirmed", "rejected"])))]
    Answer {
        /// Correction id.
        id: String,
        /// Corrected by the change at this change-feed sequence: publish the corrected record,
        /// then `exchange get DATASET KEY --sequences` prints the sequence to name.
        #[arg(long, value_name = "SEQUENCE")]
        corrected: Option<u64>,
        /// Checked: the record is right as it is.
        #[arg(long)]
        confirmed: bool,
        /// Not acted on (say why with --note).
        #[arg(long)]
        rejected: bool,
        /// The answer in words (required with --rejected).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Show one correction request.
    Get {
        /// Correction id.
        id: String,
    },
    /// List correction requests you may see.
    List {
        /// Only this consumer's.
        #[arg(long)]
        consumer: Option<String>,
        /// Only on this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Only those on this department's records.
        #[arg(long)]
        provider: Option<String>,
        /// Only in this state.
        #[arg(long, value_parser = one_of::<CorrectionState>())]
        state: Option<CorrectionState>,
        /// Only what waits for you: the open requests on your department's records, or for an
        /// admin the overdue ones.
        #[arg(long)]
        waiting: bool,
    },
}

fn state_of(value: i32) -> String {
    name_of(convert::correction_state_from_pb(value))
}

fn print_corrections(corrections: &[pb::Correction]) {
    let mut table = Table::new(&["ID", "CONSUMER", "DATASET", "KEY", "FIELDS", "STATE", "DUE"]);
    for c in corrections {
        let due = match c.state == pb::CorrectionState::Open as i32 {
            true => due(c.due_at, c.overdue),
            false => String::new(),
        };
        let state = match c.state == pb::CorrectionState::Corrected as i32 {
            true => format!("corrected at {}", c.corrected_sequence),
            false => state_of(c.state),
        };
        table.row(vec![
            c.id.clone(),
            c.consumer_id.clone(),
            c.dataset_id.clone(),
            c.key.clone(),
            c.fields.join(","),
            state,
            due,
        ]);
    }
    table.print();
}

fn print_correction(c: &pb::Correction) {
    print_corrections(std::slice::from_ref(c));
    println!("read at:     sequence {}, under grant {}", c.sequence, c.grant_id);
    println!("problem:     {}", c.problem);
    println!("evidence:    {}", c.evidence);
    println!("raised:      {} by {}", time(c.created_at), c.requested_by);
    if c.answered_at != 0 {
        let place = match c.decided_in_place {
            true => ", for the data authority in the provider's place",
            false => "",
        };
        println!("answered:    {} by {}{place}", time(c.answered_at), c.decided_by);
    }
    if !c.answer.is_empty() {
        println!("answer:      {}", c.answer);
    }
}

pub(super) async fn run(command: CorrectionCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let c = match command {
        CorrectionCommand::Raise {
            dataset,
            record,
            fields,
            sequence,
            problem,
            evidence,
        } => {
            let request = pb::RaiseCorrectionRequest {
                dataset_id: dataset,
                key: record,
                fields,
                sequence,
                problem,
                evidence,
            };
            client
                .raise_correction(request)
                .await
                .map_err(status_error)?
                .into_inner()
        }
        CorrectionCommand::Answer {
            id,
            corrected,
            confirmed,
            rejected: _,
            note,
        } => {
            // clap's group makes exactly one of the three present.
            let outcome = match (corrected, confirmed) {
                (Some(_), _) => pb::CorrectionState::Corrected,
                (None, true) => pb::CorrectionState::Confirmed,
                (None, false) => pb::CorrectionState::Rejected,
            };
            let request = pb::AnswerCorrectionRequest {
                correction_id: id,
                outcome: outcome as i32,
                corrected_sequence: corrected.unwrap_or(0),
                answer: note,
            };
            client
                .answer_correction(request)
                .await
                .map_err(status_error)?
                .into_inner()
        }
        CorrectionCommand::Get { id } => client
            .get_correction(pb::GetCorrectionRequest { correction_id: id })
            .await
            .map_err(status_error)?
            .into_inner(),
        CorrectionCommand::List {
            consumer,
            dataset,
            provider,
            state,
            waiting,
        } => {
            let request = pb::ListCorrectionsRequest {
                consumer_id: consumer.unwrap_or_default(),
                dataset_id: dataset.unwrap_or_default(),
                provider_id: provider.unwrap_or_default(),
                state: state.map(|s| convert::correction_state_to_pb(s) as i32).unwrap_or(0),
                waiting_for_me: waiting,
            };
            let response = client
                .list_corrections(request)
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return print_json(&response);
            }
            print_corrections(&response.corrections);
            return Ok(());
        }
    };
    if common.json {
        return print_json(&c);
    }
    print_correction(&c);
    Ok(())
}
