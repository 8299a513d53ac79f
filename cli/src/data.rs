//! Node commands: publish records from NDJSON or CSV, get, query and subscribe (JSON lines), and
//! a node's status.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;
use serde_json::{json, Map, Value};

use crate::connect::Common;
use crate::output::status_error;

/// Node commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish records to your node from an NDJSON or CSV file.
    Publish {
        /// Dataset id.
        dataset: String,
        /// The file: .ndjson/.jsonl (one JSON object a line; {"$delete": "<key>"} deletes) or .csv
        /// (a header row of field names; values typed by the dataset's schema, empty cells left out).
        file: PathBuf,
        /// Schema version to validate against (default: the latest).
        #[arg(long, default_value_t = 0)]
        schema_version: u32,
        /// Records per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Where to write rejected lines with their errors (default: <file>.rejects.ndjson).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Read records by key; prints one JSON object a line.
    Get {
        /// Dataset id.
        dataset: String,
        /// Record keys.
        #[arg(required = true)]
        keys: Vec<String>,
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
    /// Follow a dataset's changes after a cursor; prints one JSON object a line.
    Subscribe {
        /// Dataset id.
        dataset: String,
        /// Resume after this sequence number (the `cursor` of the last line you processed).
        #[arg(long, default_value_t = 0)]
        after: u64,
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
    purpose: String,
    /// The case the read is for (recorded in the audit ledger).
    #[arg(long, default_value = "")]
    case: String,
    /// Fields, comma-separated (default: every field your grant allows).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Withhold the read from the access report of the records read until this time (a date,
    /// end of that day UTC, or RFC 3339): only for a purpose your grant marks investigative.
    #[arg(long, value_parser = crate::admin::parse_expiry)]
    withhold_until: Option<i64>,
    /// Append each response's receipt (its audit event) to this file, one JSON line each, to
    /// prove later what was received (`exchange audit receipt`).
    #[arg(long)]
    receipts: Option<std::path::PathBuf>,
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
        Command::Publish {
            dataset,
            file,
            schema_version,
            batch,
            rejects,
        } => publish(&common, &dataset, &file, schema_version, batch.max(1), rejects).await,
        Command::Get { dataset, keys, read } => {
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
                println!("{}", record_line(record)?);
            }
            if let Some(path) = &read.receipts {
                crate::audit::append_receipt(path, response.receipt.as_ref(), response.records.len())?;
            }
            if !response.missing_keys.is_empty() {
                eprintln!(
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
        Command::Subscribe {
            dataset,
            after,
            filter,
            read,
        } => {
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
                let mut out = std::io::stdout().lock();
                for event in &batch.events {
                    let line = match &event.change {
                        Some(npb::change_event::Change::Upsert(json)) => {
                            let record: Value = serde_json::from_slice(json)?;
                            json!({"cursor": event.sequence, "key": event.key, "record": record})
                        }
                        _ => json!({"cursor": event.sequence, "key": event.key, "removed": true}),
                    };
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
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

/// A line of the input, ready to send.
struct Line {
    number: usize,
    text: String,
    change: npb::Change,
}

/// The JSON types of each top-level property of the dataset's schema, for typing CSV cells.
async fn property_types(common: &Common, dataset: &str, version: u32) -> anyhow::Result<Map<String, Value>> {
    let mut registry = common.connect.registry().await?;
    let schema = registry
        .get_schema(pb::GetSchemaRequest {
            dataset_id: dataset.to_string(),
            version,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let schema: Value = serde_json::from_str(&schema.schema_json)?;
    Ok(schema["properties"].as_object().cloned().unwrap_or_default())
}

fn csv_cell(types: &Map<String, Value>, field: &str, cell: &str) -> Value {
    let declared = exchange_core::schema::types_of(types.get(field).unwrap_or(&Value::Null));
    let has = |t: &str| declared.iter().any(|d| d == t);
    if has("integer") {
        if let Ok(i) = cell.parse::<i64>() {
            return json!(i);
        }
    }
    if has("number") {
        // As written: "2500000" stays an integer, not 2500000.0.
        if let Ok(n @ Value::Number(_)) = serde_json::from_str::<Value>(cell.trim()) {
            return n;
        }
        // "007" or "1." are numbers to a person, not to JSON.
        if let Some(n) = cell.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    if has("boolean") {
        if let Ok(b) = cell.parse::<bool>() {
            return json!(b);
        }
    }
    // Anything else stays a string: the node's validation will say what is wrong with it.
    json!(cell)
}

/// The lines of a file as changes to send, and the lines refused before sending (reject-file
/// entries), such as a CSV row with the wrong number of cells.
fn read_lines(path: &Path, types: Option<&Map<String, Value>>) -> anyhow::Result<(Vec<Line>, Vec<Value>)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = Vec::new();
    let mut refused = Vec::new();
    if let Some(types) = types {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
        let headers = reader.headers()?.clone();
        // A misspelt header would fail every row the same way: say it once.
        let unknown: Vec<&str> = headers.iter().filter(|h| !types.contains_key(*h)).collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "{}: unknown columns {}; the dataset's fields are {}",
                path.display(),
                unknown.join(", "),
                types.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        for (i, row) in reader.records().enumerate() {
            let row = row.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
            let number = row.position().map_or(i + 2, |p| p.line() as usize);
            if row.len() != headers.len() {
                refused.push(json!({
                    "line": number,
                    "key": "",
                    "errors": [{"pointer": "", "message": format!("the row has {} cells; the header has {}", row.len(), headers.len())}],
                    "input": row.iter().collect::<Vec<_>>().join(","),
                }));
                continue;
            }
            let mut record = Map::new();
            for (field, cell) in headers.iter().zip(row.iter()) {
                if !cell.is_empty() {
                    record.insert(field.to_string(), csv_cell(types, field, cell));
                }
            }
            let text = serde_json::to_string(&record)?;
            lines.push(Line {
                number,
                change: npb::Change {
                    op: Some(npb::change::Op::Upsert(text.clone().into_bytes())),
                },
                text,
            });
        }
        return Ok((lines, refused));
    }
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let text = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        if text.trim().is_empty() {
            continue;
        }
        let delete = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("$delete").and_then(Value::as_str).map(str::to_string));
        let op = match delete {
            Some(key) => npb::change::Op::DeleteKey(key),
            // Sent as written: the node says exactly what is wrong with a bad line.
            None => npb::change::Op::Upsert(text.clone().into_bytes()),
        };
        lines.push(Line {
            number: i + 1,
            change: npb::Change { op: Some(op) },
            text,
        });
    }
    Ok((lines, refused))
}

async fn publish(
    common: &Common,
    dataset: &str,
    file: &Path,
    schema_version: u32,
    batch: usize,
    rejects: Option<PathBuf>,
) -> anyhow::Result<()> {
    let is_csv = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let types = if is_csv {
        Some(property_types(common, dataset, schema_version).await?)
    } else {
        None
    };
    let (lines, refused) = read_lines(file, types.as_ref())?;
    let mut node = common.connect.node_of(dataset).await?;
    let progress = indicatif::ProgressBar::new(lines.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rejects_path = rejects.unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".rejects.ndjson");
        PathBuf::from(name)
    });
    let (mut accepted, mut rejected) = (0u64, refused.len() as u64);
    let mut rejected_lines = refused;
    for chunk in lines.chunks(batch) {
        let response = node
            .publish(npb::PublishRequest {
                dataset_id: dataset.to_string(),
                schema_version,
                changes: chunk.iter().map(|l| l.change.clone()).collect(),
                atomic: false,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        accepted += response.accepted;
        rejected += response.rejected;
        for r in response.rejections {
            let Some(line) = chunk.get(r.position as usize) else {
                continue;
            };
            let errors: Vec<Value> = r
                .errors
                .iter()
                .map(|e| json!({"pointer": e.pointer, "message": e.message}))
                .collect();
            rejected_lines.push(json!({"line": line.number, "key": r.key, "errors": errors, "input": line.text}));
        }
        progress.inc(chunk.len() as u64);
        progress.set_message(format!("{rejected} rejected"));
    }
    progress.finish_and_clear();
    rejected_lines.sort_by_key(|l| l["line"].as_u64());
    if !rejected_lines.is_empty() {
        // The rejected lines are records, with the personal data in them: for their writer only.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options
            .open(&rejects_path)
            .with_context(|| format!("cannot write {}", rejects_path.display()))?;
        for line in &rejected_lines {
            writeln!(out, "{line}")?;
        }
    }
    println!(
        "{dataset}: {accepted} stored, {rejected} rejected, from {}",
        file.display()
    );
    if rejected > 0 {
        println!("rejected lines and their errors: {}", rejects_path.display());
        if let Some(first) = rejected_lines.first() {
            println!("first: line {}: {}", first["line"], first["errors"]);
        }
        match rejected {
            1 => anyhow::bail!("1 record was rejected"),
            n => anyhow::bail!("{n} records were rejected"),
        }
    }
    Ok(())
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
