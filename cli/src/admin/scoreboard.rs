//! `exchange scoreboard`: how each department serves the others, ranked.

use clap::Args;
use exchange_proto::registry::v1 as pb;

use crate::connect::Common;
use crate::output::{print_json, status_error, time, Table};

#[derive(Debug, Args)]
pub(crate) struct ScoreboardArgs {
    /// The first day (yyyy-mm-dd, the registry calendar's days; default: 29 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// The last day (default: today).
    #[arg(long)]
    to: Option<String>,
    /// Print CSV (a header line, then a line per department) instead of a table (`--json`
    /// prints the API's message).
    #[arg(long)]
    csv: bool,
}

/// The columns, as CSV names them, and each department's values.
fn columns(d: &pb::DepartmentScore) -> Vec<(&'static str, String)> {
    let decimal = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    vec![
        ("rank", d.rank.to_string()),
        ("department", d.department_id.clone()),
        ("score", decimal(d.score)),
        ("datasets_unconditional", d.datasets_unconditional.to_string()),
        ("datasets_conditional", d.datasets_conditional.to_string()),
        ("datasets_not_shared", d.datasets_not_shared.to_string()),
        ("datasets_open", d.datasets_open.to_string()),
        ("datasets_judged", d.datasets_judged.to_string()),
        ("datasets_fresh", d.datasets_fresh.to_string()),
        ("grants_requested", d.grants_requested.to_string()),
        ("grants_given", d.grants_given.to_string()),
        ("decisions", d.decisions.to_string()),
        ("decisions_on_time", d.decisions_on_time.to_string()),
        ("median_decision_days", decimal(d.median_decision_days)),
        ("pending", d.pending.to_string()),
        ("overdue", d.overdue.to_string()),
        ("reads_served", d.reads_served.to_string()),
        ("reads_denied", d.reads_denied.to_string()),
        ("corrections_answered", d.corrections_answered.to_string()),
        ("corrections_on_time", d.corrections_on_time.to_string()),
    ]
}

fn of(part: u32, whole: u32) -> String {
    match whole {
        0 => "-".into(),
        _ => format!("{part}/{whole}"),
    }
}

fn print_table(board: &pb::Scoreboard) {
    let mut table = Table::new(&[
        "RANK",
        "DEPARTMENT",
        "SCORE",
        "DATASETS U/C/N/O",
        "FRESH",
        "REQUESTED",
        "GIVEN",
        "ON TIME",
        "MEDIAN DAYS",
        "PENDING",
        "OVERDUE",
        "SERVED",
        "DENIED",
        "CORRECTIONS ON TIME",
    ]);
    for d in &board.departments {
        table.row(vec![
            d.rank.to_string(),
            d.department_id.clone(),
            d.score.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
            format!(
                "{}/{}/{}/{}",
                d.datasets_unconditional, d.datasets_conditional, d.datasets_not_shared, d.datasets_open
            ),
            of(d.datasets_fresh, d.datasets_judged),
            d.grants_requested.to_string(),
            d.grants_given.to_string(),
            of(d.decisions_on_time, d.decisions),
            d.median_decision_days
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "-".into()),
            d.pending.to_string(),
            d.overdue.to_string(),
            d.reads_served.to_string(),
            d.reads_denied.to_string(),
            of(d.corrections_on_time, d.corrections_answered),
        ]);
    }
    println!(
        "sharing scoreboard {} to {} (pending, overdue and freshness as of {})",
        board.from_day,
        board.to_day,
        time(board.as_of)
    );
    table.print();
    println!("{}", board.formula);
}

pub(crate) async fn run(args: ScoreboardArgs, common: Common) -> anyhow::Result<()> {
    let mut client = common.connect.registry().await?;
    let request = pb::GetScoreboardRequest {
        from_day: args.from.unwrap_or_default(),
        to_day: args.to.unwrap_or_default(),
    };
    let board = client.get_scoreboard(request).await.map_err(status_error)?.into_inner();
    if common.json {
        return print_json(&board);
    }
    if args.csv {
        let mut out = csv::Writer::from_writer(std::io::stdout().lock());
        let header: Vec<&str> = match board.departments.first() {
            Some(first) => columns(first).into_iter().map(|(name, _)| name).collect(),
            None => columns(&pb::DepartmentScore::default())
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        };
        out.write_record(&header)?;
        for d in &board.departments {
            out.write_record(columns(d).into_iter().map(|(_, value)| value))?;
        }
        out.flush()?;
        return Ok(());
    }
    print_table(&board);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_named_once_each_and_empty_when_unknown() {
        let d = pb::DepartmentScore {
            department_id: "js.rsj".into(),
            rank: 5,
            ..Default::default()
        };
        let cols = columns(&d);
        let mut names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cols.len());
        assert_eq!(cols[2], ("score", String::new()), "no score: an empty cell");
        assert_eq!(of(0, 0), "-");
        assert_eq!(of(1, 2), "1/2");
    }
}
