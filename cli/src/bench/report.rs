//! The bench's report: a markdown table for people, its section of BENCHMARKS.md, and JSON.

use std::path::Path;
use std::time::Duration;

use super::{Args, Row};

/// Where the bench's section of BENCHMARKS.md begins and ends; what is outside is kept.
const BEGIN: &str = "<!-- exchange bench: the latest run begins here; written by `exchange bench` -->";
const END: &str = "<!-- exchange bench: the latest run ends here -->";

/// The facts of a run that make its numbers comparable.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Run {
    pub(crate) date: String,
    pub(crate) commit: String,
    pub(crate) command: String,
    pub(crate) machine: String,
    pub(crate) cores: String,
    pub(crate) minutes: f64,
}

impl Run {
    pub(crate) fn describe(args: &Args, took: Duration) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Run {
            date,
            commit: commit(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: machine(),
            cores: format!(
                "registry, node, baseline server and clients share one tokio runtime of {workers} worker threads (one per core) plus the node's writer thread; in row 7 the node is a process of its own beside the bench's clients; {} connections × {} Gets in flight, {} s per closed-loop measurement",
                args.connections, args.in_flight, args.seconds
            ),
            minutes: took.as_secs_f64() / 60.0,
        }
    }
}

/// The commit the binary was built from (and whether its tree had changes then).
fn commit() -> String {
    match option_env!("EXCHANGE_BUILD_COMMIT") {
        Some(commit) if !commit.is_empty() => commit.to_string(),
        _ => "unknown (not built from a git checkout)".into(),
    }
}

/// CPU model, cores, memory and kernel, from `/proc` (Linux).
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("unknown memory".to_string(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let kernel = read("/proc/sys/kernel/osrelease");
    format!("{cores} cores of {model}, {memory}, Linux {}", kernel.trim())
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|")
}

/// The run as markdown: its facts, then one line per row.
pub(crate) fn table(run: &Run, rows: &[Row]) -> String {
    let mut out = format!(
        "Run of {} from commit {}, {:.1} minutes: `{}`\n\nMachine: {}.\nCores: {}.\nStores: the node's records in fjall (a new node's default), the registry's state in sled, its index of shipped events in fjall; 64 MiB caches.\n\n",
        run.date, run.commit, run.minutes, run.command, run.machine, run.cores
    );
    out.push_str("| # | what | measured | baseline in the same run | target | outcome |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} {} |\n",
            row.number,
            escape(&row.what),
            escape(&row.measured),
            escape(&row.baseline),
            escape(&row.target),
            if row.met { "**met**:" } else { "**missed**:" },
            escape(&row.outcome)
        ));
    }
    let met = rows.iter().filter(|r| r.met).count();
    out.push_str(&format!("\n{met} of {} targets met.\n", rows.len()));
    out
}

/// Puts the run into `path` between the markers (at the top when they are not there yet),
/// keeping everything else in the file.
pub(crate) fn write(path: &Path, run: &Run, rows: &[Row]) -> anyhow::Result<()> {
    let section = format!(
        "{BEGIN}\n## The latest run of `exchange bench`\n\n{}{END}\n",
        table(run, rows)
    );
    write_section(path, BEGIN, END, &section)
}

/// Puts `section` into `path` in place of what is between `begin` and `end` (after the title
/// when they are not there yet), keeping everything else.
pub(crate) fn write_section(path: &Path, begin: &str, end: &str, section: &str) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    let text = match (existing.find(begin), existing.find(end)) {
        (Some(start), Some(stop)) if start < stop => {
            let after = existing[stop + end.len()..].trim_start_matches('\n');
            format!("{}{section}\n{after}", &existing[..start])
        }
        _ => match existing.split_once('\n') {
            // After the title, when the file has one.
            Some((title, rest)) if title.starts_with("# ") => {
                format!("{title}\n\n{section}\n{}", rest.trim_start_matches('\n'))
            }
            _ => format!("# Benchmarks\n\n{section}\n{existing}"),
        },
    };
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The run and its rows as JSON.
pub(crate) fn json(run: &Run, rows: &[Row]) -> serde_json::Value {
    serde_json::json!({
        "run": run,
        "rows": rows.iter().map(|r| serde_json::json!({
            "number": r.number,
            "what": r.what,
            "measured": r.measured,
            "baseline": r.baseline,
            "target": r.target,
            "outcome": r.outcome,
            "met": r.met,
            "figures": r.figures.iter().cloned().collect::<std::collections::BTreeMap<String, f64>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        Run {
            date: "2026-12-01T00:00:00Z".into(),
            commit: "abc".into(),
            command: "exchange bench".into(),
            machine: "2 cores".into(),
            cores: "shared".into(),
            minutes: 1.0,
        }
    }

    fn row(number: u8, measured: &str) -> Row {
        Row {
            number,
            what: "w".into(),
            measured: measured.into(),
            baseline: "b".into(),
            target: "t".into(),
            outcome: "o".into(),
            met: false,
            figures: vec![],
        }
    }

    #[test]
    fn the_section_is_replaced_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("BENCHMARKS.md");
        std::fs::write(&path, "# Benchmarks\n\nHistory kept.\n").unwrap();
        write(&path, &run(), &[row(1, "first | run")]).unwrap();
        write(&path, &run(), &[row(1, "second run")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Benchmarks\n\n<!-- exchange bench"), "{text}");
        assert!(text.contains("second run") && !text.contains("first"), "{text}");
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.trim_end().ends_with("History kept."), "{text}");
    }
}
