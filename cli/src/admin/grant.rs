//! `exchange grant`: requests, decisions, listings and the watch of grants.

use clap::Subcommand;
use exchange_core::grant::GrantState;
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert::{self, grant_state_to_pb};

use crate::connect::Common;
use crate::output::{due, name_of, one_of, print_json, status_error, time, Table};

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
        /// A purpose (one of --purpose) that is investigative: reads for it may be withheld from
        /// the access report until a date (`get --withhold-until`). Repeat for more.
        #[arg(long = "investigative")]
        investigative_purposes: Vec<String>,
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
    /// Pass a request's review on to its owner (admins, for the data authority). Reject it at
    /// review with `grant reject`.
    PassReview {
        /// Grant id.
        id: String,
        /// A note (optional).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Appeal a rejection to the data authority (the consumer; once per grant).
    Appeal {
        /// Grant id.
        id: String,
        /// Why the rejection should be overturned.
        #[arg(long)]
        grounds: String,
    },
    /// Uphold an appeal's rejection (admins).
    Uphold {
        /// Grant id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Overturn a rejection on appeal, approving the grant (admins).
    Overturn {
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
        /// Only in this state.
        #[arg(long, value_parser = one_of::<GrantState>())]
        state: Option<GrantState>,
        /// Only what waits for you to act: for an admin, reviews, overdue steps and appeals;
        /// for a department, decisions on its datasets.
        #[arg(long)]
        waiting: bool,
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

/// The step a grant waits at and when it is due, for people: `review`, `decision` or `appeal`,
/// and the due time, marked OVERDUE once past.
fn step_and_due(g: &pb::Grant) -> (String, String) {
    let appeal = g
        .appeal
        .as_ref()
        .filter(|a| a.outcome == pb::AppealOutcome::Unspecified as i32);
    let (step, due_at) = match (appeal, pb::GrantStage::try_from(g.stage)) {
        (Some(a), _) => ("appeal", a.due_at),
        (None, Ok(pb::GrantStage::Review)) => ("review", g.due_at),
        (None, Ok(pb::GrantStage::Decision)) => ("decision", g.due_at),
        _ => return (String::new(), String::new()),
    };
    (step.to_string(), due(due_at, g.overdue))
}

fn print_grants(grants: &[pb::Grant]) {
    let mut table = Table::new(&[
        "ID", "CONSUMER", "DATASET", "STATE", "STEP", "DUE", "PURPOSES", "FIELDS", "EXPIRES",
    ]);
    for g in grants {
        let (step, due) = step_and_due(g);
        table.row(vec![
            g.id.clone(),
            g.consumer_id.clone(),
            g.dataset_id.clone(),
            name_of(convert::grant_state_from_pb(g.state)),
            step,
            due,
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
        println!("row filter:  {}", g.row_filter);
    }
    if !g.clear_fields.is_empty() {
        println!("in clear:    {}", g.clear_fields.join(","));
    }
    println!("legal basis: {}", g.legal_basis);
    if !g.demand_id.is_empty() {
        println!("demand:      answers {}", g.demand_id);
    }
    if !g.reason.is_empty() {
        println!("reason:      {}", g.reason);
    }
    let rejected_at_review = g.state == pb::GrantState::Rejected as i32 && g.decided_by == g.reviewed_by;
    match (g.reviewed_by.as_str(), rejected_at_review) {
        ("", _) => {}
        (by, true) => println!("review:      rejected by {by} at {}", time(g.reviewed_at)),
        (by, false) => println!("review:      passed by {by} at {}", time(g.reviewed_at)),
    }
    match (g.decided_by.as_str(), g.decided_in_place) {
        ("", _) => {}
        (by, true) => println!("decided:     by {by} for the data authority, in the owner's place"),
        (by, false) => println!("decided:     by {by}"),
    }
    if let Some(a) = &g.appeal {
        println!("rejected:    {}", a.rejected_for);
        println!(
            "appealed:    by {} at {}: {}",
            a.appealed_by,
            time(a.appealed_at),
            a.grounds
        );
        match pb::AppealOutcome::try_from(a.outcome) {
            Ok(pb::AppealOutcome::Upheld) => println!("appeal:      upheld by {}: {}", a.decided_by, a.reason),
            Ok(pb::AppealOutcome::Overturned) => println!("appeal:      overturned by {}: {}", a.decided_by, a.reason),
            _ => {}
        }
    }
}

pub(super) async fn run(command: GrantCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let decide = |id: String, reason: String| pb::DecideGrantRequest { grant_id: id, reason };
    let g = match command {
        GrantCommand::Request {
            dataset,
            fields,
            purposes,
            investigative_purposes,
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
                investigative_purposes,
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
        GrantCommand::PassReview { id, reason } => client
            .pass_review(decide(id, reason))
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::Appeal { id, grounds } => client
            .appeal_grant(decide(id, grounds))
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::Uphold { id, reason } => client
            .uphold_appeal(decide(id, reason))
            .await
            .map_err(status_error)?
            .into_inner(),
        GrantCommand::Overturn { id, reason } => client
            .overturn_appeal(decide(id, reason))
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
            waiting,
        } => {
            let request = pb::ListGrantsRequest {
                consumer_id: consumer.unwrap_or_default(),
                dataset_id: dataset.unwrap_or_default(),
                state: state.map(|st| grant_state_to_pb(st) as i32).unwrap_or(0),
                owner_id: owner.unwrap_or_default(),
                waiting_for_me: waiting,
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
            name_of(convert::grant_state_from_pb(g.state)),
            match g.reason.as_str() {
                "" => String::new(),
                reason => format!(" ({reason})"),
            }
        ),
        Some(Event::Dataset(d)) => format!(
            "dataset {} ({}): {}, schema version {}",
            d.id,
            d.title,
            name_of(convert::classification_from_pb(d.classification)),
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

    #[test]
    fn watch_lines_name_values_as_tables_and_flags_do() {
        use pb::watch_event::Event;
        let dataset = pb::WatchEvent {
            revision: 7,
            event: Some(Event::Dataset(pb::Dataset {
                id: "js.zrzy/secrets".into(),
                title: "t".into(),
                classification: pb::Classification::NotShared as i32,
                latest_version: 2,
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            watch_line(&dataset),
            "revision      7  dataset js.zrzy/secrets (t): not_shared, schema version 2"
        );
        let grant = pb::WatchEvent {
            revision: 8,
            event: Some(Event::Grant(pb::Grant {
                id: "g-000001".into(),
                consumer_id: "js.scjg".into(),
                dataset_id: "js.gongan/population".into(),
                state: pb::GrantState::Revoked as i32,
                reason: "case closed".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            watch_line(&grant),
            "revision      8  grant g-000001 of js.scjg on js.gongan/population: revoked (case closed)"
        );
        // Every state a flag accepts is the name a line prints.
        use clap::builder::TypedValueParser as _;
        let parser = one_of::<GrantState>();
        let command = clap::Command::new("x");
        for state in GrantState::ALL {
            let parsed = parser.parse_ref(&command, None, std::ffi::OsStr::new(state.as_str()));
            assert_eq!(parsed.unwrap(), state);
        }
        assert!(parser
            .parse_ref(&command, None, std::ffi::OsStr::new("notshared"))
            .is_err());
    }
}
