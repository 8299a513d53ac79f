//! `exchange alert`: the early warning's alerts, for admins and auditors.

use clap::Subcommand;
use exchange_core::alert::{AlertRule, AlertState};
use exchange_proto::registry::v1 as pb;
use exchange_transport::convert;

use crate::connect::Common;
use crate::output::{name_of, one_of, print_json, status_error, time_ms, Table};

#[derive(Debug, Subcommand)]
pub(crate) enum AlertCommand {
    /// List alerts, newest first (admins and auditors).
    List {
        /// Only of this rule.
        #[arg(long, value_parser = one_of::<AlertRule>())]
        rule: Option<AlertRule>,
        /// Only in this state (open: not acknowledged yet).
        #[arg(long, value_parser = one_of::<AlertState>())]
        state: Option<AlertState>,
        /// Only about this department.
        #[arg(long)]
        dept: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one alert.
    Get {
        /// Alert id (a-000012).
        id: String,
    },
    /// Say what was found or done about an alert (admins); the note is recorded.
    Ack {
        /// Alert id.
        id: String,
        /// What was found or done.
        #[arg(long)]
        note: String,
    },
    /// Print alerts as they are raised, after those raised so far (a line each; --json for the
    /// messages).
    Watch {
        /// Start after this alert (default: from the first).
        #[arg(long)]
        after: Option<String>,
    },
}

fn rule_of(a: &pb::Alert) -> String {
    name_of(convert::alert_rule_from_pb(a.rule))
}

fn state_of(a: &pb::Alert) -> String {
    name_of(convert::alert_state_from_pb(a.state))
}

/// What an alert is about beyond its department: the request, grant or dataset.
fn about(a: &pb::Alert) -> String {
    [&a.subject, &a.grant_id, &a.dataset_id]
        .into_iter()
        .find(|what| !what.is_empty() && **what != a.department_id)
        .cloned()
        .unwrap_or_default()
}

fn print_alerts(alerts: &[pb::Alert]) {
    let mut table = Table::new(&["ID", "RAISED", "RULE", "DEPARTMENT", "ABOUT", "STATE", "SUMMARY"]);
    for a in alerts {
        table.row(vec![
            a.id.clone(),
            time_ms(a.raised_at_ms),
            rule_of(a),
            a.department_id.clone(),
            about(a),
            state_of(a),
            a.summary.clone(),
        ]);
    }
    table.print();
}

fn print_alert(a: &pb::Alert) {
    println!("id:          {}", a.id);
    println!("rule:        {}", rule_of(a));
    println!("department:  {}", a.department_id);
    println!("subject:     {}", a.subject);
    if !a.dataset_id.is_empty() {
        println!("dataset:     {}", a.dataset_id);
    }
    if !a.grant_id.is_empty() {
        println!("grant:       {}", a.grant_id);
    }
    println!("summary:     {}", a.summary);
    println!("observed:    {} (limit {})", a.observed, a.threshold);
    println!(
        "period:      {} to {}",
        time_ms(a.window_from_ms),
        time_ms(a.window_to_ms)
    );
    println!("raised:      {}", time_ms(a.raised_at_ms));
    println!("state:       {}", state_of(a));
    if a.acknowledged_at_ms != 0 {
        println!(
            "acked:       {} by {}",
            time_ms(a.acknowledged_at_ms),
            a.acknowledged_by
        );
        println!("note:        {}", a.note);
    }
}

/// One alert as a line, as `watch` prints it.
fn alert_line(a: &pb::Alert) -> String {
    format!(
        "{} {} {} [{}] {}",
        a.id,
        time_ms(a.raised_at_ms),
        rule_of(a),
        a.department_id,
        a.summary
    )
}

pub(super) async fn run(command: AlertCommand, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let alert = match command {
        AlertCommand::List {
            rule,
            state,
            dept,
            limit,
        } => {
            let request = pb::ListAlertsRequest {
                rule: rule.map(|r| convert::alert_rule_to_pb(r) as i32).unwrap_or(0),
                state: state.map(|s| convert::alert_state_to_pb(s) as i32).unwrap_or(0),
                department_id: dept.unwrap_or_default(),
                limit,
                ..Default::default()
            };
            let response = client.list_alerts(request).await.map_err(status_error)?.into_inner();
            if common.json {
                return print_json(&response);
            }
            print_alerts(&response.alerts);
            return Ok(());
        }
        AlertCommand::Get { id } => client
            .get_alert(pb::GetAlertRequest { alert_id: id })
            .await
            .map_err(status_error)?
            .into_inner(),
        AlertCommand::Ack { id, note } => client
            .acknowledge_alert(pb::AcknowledgeAlertRequest { alert_id: id, note })
            .await
            .map_err(status_error)?
            .into_inner(),
        AlertCommand::Watch { after } => {
            let request = pb::WatchAlertsRequest {
                after_id: after.unwrap_or_default(),
            };
            let mut stream = client.watch_alerts(request).await.map_err(status_error)?.into_inner();
            while let Some(alert) = stream.message().await.map_err(status_error)? {
                if common.json {
                    println!("{}", serde_json::to_string(&alert)?);
                } else {
                    println!("{}", alert_line(&alert));
                }
            }
            return Ok(());
        }
    };
    if common.json {
        return print_json(&alert);
    }
    print_alert(&alert);
    Ok(())
}
