//! Node commands: publish records from NDJSON or CSV, get, query and subscribe (JSON lines), and
//! a node's status.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use exchange_proto::node::v1 as npb;
use serde_json::{json, Value};

use crate::connect::Common;
use crate::output::status_error;

/// Node commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish records to your node from an NDJSON or CSV file of any size, streamed in batches
    /// with several in flight; an interrupted import goes on with --resume.
    Publish(crate::import::Args),
    /// Read records by key; prints one JSON object a line, and fails (after printing those
    /// found) when a key is not found or not visible under your grant.
    Get {
        /// Dataset id.
        dataset: String,
        /// Record keys.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Print each record as {"key": ..., "sequence": ..., "record": ...}: with the sequence
        /// of the change that wrote it (what `exchange correction raise` names). Receipts
        /// digest the records as printed without it.
        #[arg(long)]
        sequences: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Read records matching a row filter; prints one JSON object a line.
    Query {
        /// Dataset id.
        dataset: String,
        /// Row filter over string fields, e.g. 'household_register_region STARTS WITH "3201"'.
        #[arg(long, default_value = "")]
        filter: String,
        /// At most this many records (0: the node's maximum).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Go on where an earlier query stopped at its limit (the token it printed).
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Write every record a query matches into an NDJSON or CSV file, following page tokens;
    /// an interrupted export goes on with --resume.
    Export {
        /// Dataset id.
        dataset: String,
        /// The file to write (CSV when it ends in .csv); its state is in <out>.export-state.json
        /// until the export ends.
        #[arg(long, short)]
        out: PathBuf,
        /// Write CSV (a header row, then a row a record) whatever the file's name.
        #[arg(long)]
        csv: bool,
        /// Row filter over string fields.
        #[arg(long, default_value = "")]
        filter: String,
        /// Records per query (0: the node's maximum); the export goes on with each page token.
        #[arg(long, default_value_t = 0)]
        page: u32,
        /// Go on with an interrupted export into this file from its last written record.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Forget an interrupted export into this file and begin again.
        #[arg(long)]
        restart: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Follow a dataset's changes after a cursor; prints one JSON object a line.
    Subscribe {
        /// Dataset id.
        dataset: String,
        /// Resume after this sequence number (the `cursor` of the last line you processed).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Append the changes to this file instead of printing them.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// With --out: go on after the last complete line of the file (its cursor).
        #[arg(long, requires = "out", conflicts_with = "after")]
        resume: bool,
        /// Row filter.
        #[arg(long, default_value = "")]
        filter: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show a node's datasets, registry view and audit ledger head.
    Status {
        /// Print Prometheus text format (for node_exporter's textfile collector) instead.
        #[arg(long)]
        prometheus: bool,
    },
}

/// Flags every read takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReadArgs {
    /// Why you read: a purpose code of your grant, e.g. business-licensing.
    #[arg(long)]
    pub(crate) purpose: String,
    /// The case the read is for (recorded in the audit ledger).
    #[arg(long, default_value = "")]
    pub(crate) case: String,
    /// Fields, comma-separated (default: every field your grant allows).
    #[arg(long, value_delimiter = ',')]
    pub(crate) fields: Vec<String>,
    /// Withhold the read from the access report of the records read until this time (a date,
    /// end of that day UTC, or RFC 3339): only for a purpose your grant marks investigative.
    #[arg(long, value_parser = crate::admin::parse_expiry)]
    pub(crate) withhold_until: Option<i64>,
    /// Append each response's receipt (its audit event) to this file, one JSON line each, to
    /// prove later what was received (`exchange audit receipt`).
    #[arg(long)]
    pub(crate) receipts: Option<std::path::PathBuf>,
}

/// The record's JSON exactly as served (one line: the node sends it compact), so that a receipt's
/// digest is the digest of what is printed.
fn record_line(record: &npb::Record) -> anyhow::Result<&str> {
    serde_json::from_slice::<serde::de::IgnoredAny>(&record.json).context("the node sent a record that is not JSON")?;
    let text = std::str::from_utf8(&record.json).context("the node sent a record that is not UTF-8")?;
    anyhow::ensure!(!text.contains('\n'), "the node sent a record on more than one line");
    Ok(text)
}

/// Runs a node command.
pub(crate) async fn run(command: Command, common: Common) -> anyhow::Result<()> {
    match command {
        Command::Publish(args) => crate::import::publish(&common, args).await,
        Command::Get {
            dataset,
            keys,
            sequences,
            read,
        } => {
            let mut node = common.connect.node_of(&dataset).await?;
            let response = node
                .get(npb::GetRequest {
                    dataset_id: dataset,
                    keys,
                    fields: read.fields,
                    purpose: read.purpose,
                    case_id: read.case,
                    withhold_until: read.withhold_until.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            for record in &response.records {
                let line = record_line(record)?;
                match sequences {
                    true => println!(
                        "{{\"key\":{},\"sequence\":{},\"record\":{line}}}",
                        serde_json::Value::from(record.key.as_str()),
                        record.sequence
                    ),
                    false => println!("{line}"),
                }
            }
            if let Some(path) = &read.receipts {
                crate::audit::append_receipt(path, response.receipt.as_ref(), response.records.len())?;
            }
            // What was found is out; a key that was not fails the command, so a script can tell.
            if !response.missing_keys.is_empty() {
                anyhow::bail!(
                    "not found or not visible under your grant: {}",
                    response.missing_keys.join(", ")
                );
            }
            Ok(())
        }
        Command::Query {
            dataset,
            filter,
            limit,
            page_token,
            read,
        } => {
            let mut node = common.connect.node_of(&dataset).await?;
            let mut stream = node
                .query(npb::QueryRequest {
                    dataset_id: dataset,
                    filter,
                    fields: read.fields,
                    purpose: read.purpose,
                    case_id: read.case,
                    limit,
                    page_token,
                    withhold_until: read.withhold_until.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let mut out = std::io::stdout().lock();
            while let Some(batch) = stream.message().await.map_err(status_error)? {
                for record in &batch.records {
                    writeln!(out, "{}", record_line(record)?)?;
                }
                if let Some(path) = &read.receipts {
                    crate::audit::append_receipt(path, batch.receipt.as_ref(), batch.records.len())?;
                }
                if !batch.next_page_token.is_empty() {
                    out.flush()?;
                    eprintln!(
                        "the limit was reached; more records may match: go on with --page-token {}",
                        batch.next_page_token
                    );
                }
            }
            Ok(())
        }
        Command::Export {
            dataset,
            out,
            csv,
            filter,
            page,
            resume,
            restart,
            read,
        } => {
            let args = crate::export::Args {
                dataset,
                out,
                csv,
                filter,
                fields: read.fields,
                purpose: read.purpose,
                case_id: read.case,
                withhold_until: read.withhold_until.unwrap_or(0),
                page,
                receipts: read.receipts,
                resume,
                restart,
            };
            crate::export::run(&common, args).await
        }
        Command::Subscribe {
            dataset,
            after,
            out,
            resume,
            filter,
            read,
        } => {
            let (after, mut file) = match &out {
                None => (after, None),
                Some(path) => {
                    let (cursor, file) = feed_file(path, resume)?;
                    (cursor.unwrap_or(after), Some(file))
                }
            };
            let mut node = common.connect.node_of(&dataset).await?;
            let mut stream = node
                .subscribe(npb::SubscribeRequest {
                    dataset_id: dataset,
                    after_sequence: after,
                    filter,
                    fields: read.fields,
                    purpose: read.purpose,
                    case_id: read.case,
                    withhold_until: read.withhold_until.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(batch) = stream.message().await.map_err(status_error)? {
                let mut text = String::new();
                for event in &batch.events {
                    let line = match &event.change {
                        Some(npb::change_event::Change::Upsert(json)) => {
                            let record: Value = serde_json::from_slice(json)?;
                            json!({"cursor": event.sequence, "key": event.key, "record": record})
                        }
                        _ => json!({"cursor": event.sequence, "key": event.key, "removed": true}),
                    };
                    text.push_str(&line.to_string());
                    text.push('\n');
                }
                // A batch goes out whole: a file cut by a crash ends at most in a partial line,
                // which --resume drops.
                match &mut file {
                    Some(file) => file.write_all(text.as_bytes())?,
                    None => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(text.as_bytes())?;
                        out.flush()?;
                    }
                }
            }
            Ok(())
        }
        Command::Status { prometheus } => {
            let mut node = common.connect.node().await?;
            let status = node
                .status(npb::StatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return crate::output::print_json(&status);
            }
            if prometheus {
                print!("{}", prometheus_text(&status));
                return Ok(());
            }
            print!("{}", status_text(&status));
            Ok(())
        }
    }
}

/// Opens a subscription's output file. Resuming, a partial last line (cut by a crash) is
/// dropped and the cursor of the last complete one returned; otherwise the file must not hold
/// changes already (appending a second subscription to it would repeat them).
fn feed_file(path: &std::path::Path, resume: bool) -> anyhow::Result<(Option<u64>, std::fs::File)> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = crate::statefile::open_private(path)?;
    let length = file.metadata()?.len();
    if !resume {
        anyhow::ensure!(
            length == 0,
            "{} holds changes already: go on after its last one with --resume, or write to a new file",
            path.display()
        );
        return Ok((None, file));
    }
    // The last complete line is within the file's tail: read back until a newline before it.
    let mut tail = Vec::new();
    let mut start = length;
    let (complete, cursor) = loop {
        let step = 64 * 1024;
        let from = start.saturating_sub(step);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        let end = match tail.iter().rposition(|&b| b == b'\n') {
            Some(end) => end,
            None if start == 0 => break (0, None),
            None => continue,
        };
        let line_start = tail[..end].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        if line_start.is_none() && start > 0 {
            continue;
        }
        let line = &tail[line_start.unwrap_or(0)..end];
        let cursor = serde_json::from_slice::<Value>(line)
            .ok()
            .and_then(|v| v["cursor"].as_u64())
            .with_context(|| {
                format!(
                    "{}: its last line has no cursor; is it a subscription's output?",
                    path.display()
                )
            })?;
        break (start + end as u64 + 1, Some(cursor));
    };
    file.set_len(complete)?;
    file.seek(SeekFrom::End(0))?;
    Ok((cursor, file))
}

/// A node's status for people.
fn status_text(status: &npb::NodeStatus) -> String {
    let mut out = format!("node:     {}\n", status.department_id);
    out.push_str(&format!(
        "registry: {} (revision {}, view age {} s)\n",
        if status.registry_connected {
            "connected, current"
        } else {
            "NOT CONNECTED"
        },
        status.registry_revision,
        status.view_age_seconds
    ));
    if !status.registry_diverged.is_empty() {
        out.push_str(&format!(
            "          NOT FOLLOWING the registry: {}; after checking the registry, run `exchange node --config <file> --resync-registry-view` with the node stopped\n",
            status.registry_diverged
        ));
    }
    let root = exchange_core::ledger::parse_hex(&status.audit_head)
        .map(|h| exchange_core::tlog::base64(&h))
        .unwrap_or_else(|| status.audit_head.clone());
    out.push_str(&format!(
        "audit:    {} entries, root {root}, {} signed\n",
        status.audit_entries, status.audit_signed
    ));
    out.push_str(&format!("log vkey: {}\n", status.log_vkey));
    out.push_str(&format!(
        "shipped:  {} of {} entries to the registry{}\n",
        status.audit_shipped,
        status.audit_entries,
        if status.ship_error.is_empty() {
            String::new()
        } else {
            format!(" (NOT SHIPPING: {})", status.ship_error)
        }
    ));
    let mut table = crate::output::Table::new(&["DATASET", "VERSION", "RECORDS", "LAST SEQUENCE"]);
    for d in &status.datasets {
        table.row(vec![
            d.dataset_id.clone(),
            d.latest_version.to_string(),
            d.records.to_string(),
            d.last_sequence.to_string(),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// A node's status as Prometheus metrics.
fn prometheus_text(status: &npb::NodeStatus) -> String {
    let dept = &status.department_id;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    };
    let node = format!("department=\"{dept}\"");
    gauge(
        "exchange_node_registry_view_current",
        "1 while the node's view of the registry is current, else 0.",
        vec![(node.clone(), u8::from(status.registry_connected).to_string())],
    );
    gauge(
        "exchange_node_registry_view_age_seconds",
        "Seconds since the node's view of the registry was last known current.",
        vec![(node.clone(), status.view_age_seconds.to_string())],
    );
    gauge(
        "exchange_node_registry_view_diverged",
        "1 when the node stopped following a registry whose history is not the one it applied (restored from a backup), else 0.",
        vec![(node.clone(), u8::from(!status.registry_diverged.is_empty()).to_string())],
    );
    gauge(
        "exchange_node_registry_revision",
        "The last registry revision the node applied.",
        vec![(node.clone(), status.registry_revision.to_string())],
    );
    gauge(
        "exchange_node_audit_entries",
        "Entries in the node's audit ledger.",
        vec![(node.clone(), status.audit_entries.to_string())],
    );
    gauge(
        "exchange_node_audit_shipped_entries",
        "Entries of the node's audit ledger the registry holds (the lag is entries minus this).",
        vec![(node.clone(), status.audit_shipped.to_string())],
    );
    gauge(
        "exchange_node_audit_shipping_failing",
        "1 while shipping the ledger to the registry fails (down, or refusing it), else 0.",
        vec![(node.clone(), u8::from(!status.ship_error.is_empty()).to_string())],
    );
    gauge(
        "exchange_node_audit_signed_entries",
        "Entries covered by the node's last signed ledger checkpoint.",
        vec![(node.clone(), status.audit_signed.to_string())],
    );
    let per_dataset = |f: fn(&npb::DatasetStatus) -> String| {
        status
            .datasets
            .iter()
            .map(|d| (format!("{node},dataset=\"{}\"", d.dataset_id), f(d)))
            .collect()
    };
    gauge(
        "exchange_node_dataset_records",
        "Records stored.",
        per_dataset(|d| d.records.to_string()),
    );
    gauge(
        "exchange_node_dataset_last_sequence",
        "The dataset's last change sequence number.",
        per_dataset(|d| d.last_sequence.to_string()),
    );
    gauge(
        "exchange_node_dataset_schema_version",
        "The latest schema version the node knows.",
        per_dataset(|d| d.latest_version.to_string()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diverged() -> npb::NodeStatus {
        npb::NodeStatus {
            department_id: "js.gongan".into(),
            registry_connected: false,
            registry_revision: 17,
            view_age_seconds: 30,
            registry_diverged: "the registry's history does not match this node's view".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_resumed_feed_goes_on_after_its_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.ndjson");
        let line = |n: u64| {
            format!(
                "{{\"cursor\":{n},\"key\":\"k{n}\",\"record\":{{\"pad\":\"{}\"}}}}\n",
                "x".repeat(300)
            )
        };
        // Longer than one read back from the end, and cut inside its last line.
        let mut text: String = (1..=400).map(line).collect();
        text.push_str("{\"cursor\":401,\"key\"");
        std::fs::write(&path, &text).unwrap();
        let (cursor, _) = feed_file(&path, true).unwrap();
        assert_eq!(cursor, Some(400));
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.ends_with("}}\n") && kept.lines().count() == 400);
        // Without --resume, a file that holds changes is not appended to.
        let error = feed_file(&path, false).unwrap_err().to_string();
        assert!(error.contains("--resume"), "{error}");
        // An empty file resumes from nothing.
        let empty = dir.path().join("empty.ndjson");
        assert_eq!(feed_file(&empty, true).unwrap().0, None);
    }

    #[test]
    fn a_node_that_stopped_following_says_so_and_what_to_do() {
        let text = status_text(&diverged());
        assert!(
            text.contains("NOT FOLLOWING the registry: the registry's history does not match"),
            "{text}"
        );
        assert!(text.contains("--resync-registry-view"), "{text}");
        let following = status_text(&npb::NodeStatus {
            registry_diverged: String::new(),
            ..diverged()
        });
        assert!(!following.contains("NOT FOLLOWING"), "{following}");
    }

    #[test]
    fn metrics_say_whether_the_node_follows_the_registry() {
        let text = prometheus_text(&diverged());
        assert!(
            text.contains("exchange_node_registry_view_diverged{department=\"js.gongan\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("exchange_node_registry_view_current{department=\"js.gongan\"} 0\n"),
            "{text}"
        );
        let following = prometheus_text(&npb::NodeStatus {
            registry_diverged: String::new(),
            ..diverged()
        });
        assert!(following.contains("exchange_node_registry_view_diverged{department=\"js.gongan\"} 0\n"));
    }
}
