//! `exchange export`: every record of a dataset a query matches, into an NDJSON or CSV file,
//! following page tokens, with memory bounded by a message, and resumable.
//!
//! After each message the output is flushed and a state file beside it records the output's
//! length, the records written and the message's resume token (a page token for the position
//! after its last record). `--resume` cuts the output back to that length and goes on with that
//! token, so every record is written exactly once, in key order, whatever stopped the export.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exchange_proto::node::v1 as npb;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connect::Common;
use crate::output::status_error;

/// How often the state file is rewritten; one behind is safe (the output is cut back to it).
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// What `exchange export` was asked.
pub(crate) struct Args {
    pub(crate) dataset: String,
    pub(crate) out: PathBuf,
    pub(crate) csv: bool,
    pub(crate) filter: String,
    pub(crate) fields: Vec<String>,
    pub(crate) purpose: String,
    pub(crate) case_id: String,
    pub(crate) withhold_until: i64,
    /// Records per query (0: the node's maximum); the export follows the page tokens.
    pub(crate) page: u32,
    pub(crate) receipts: Option<PathBuf>,
    pub(crate) resume: bool,
    pub(crate) restart: bool,
}

/// The query an export runs: a resumed export must run the same one (its tokens are bound to it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Query {
    dataset: String,
    filter: String,
    fields: Vec<String>,
    purpose: String,
    case_id: String,
    withhold_until: i64,
    csv: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    query: Query,
    /// CSV columns, in order (empty for NDJSON).
    columns: Vec<String>,
    /// Where to go on: after the last record written ("" before the first).
    page_token: String,
    out_bytes: u64,
    records: u64,
}

impl State {
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::statefile::save(self, path)
    }
}

/// An exported file holds people's records: for its writer only.
fn open_out(path: &Path, keep: u64) -> anyhow::Result<std::fs::File> {
    let mut file = crate::statefile::open_private(path)?;
    let length = file.metadata()?.len();
    anyhow::ensure!(
        length >= keep,
        "{} is shorter ({length} bytes) than the {keep} its export had written: it cannot be resumed; begin again with --restart",
        path.display()
    );
    file.set_len(keep)?;
    file.seek(SeekFrom::End(0))?;
    Ok(file)
}

/// The CSV columns: the fields asked for, else every field of the dataset's latest schema.
async fn columns(common: &Common, query: &Query) -> anyhow::Result<Vec<String>> {
    if !query.fields.is_empty() {
        return Ok(query.fields.clone());
    }
    let properties = crate::import::property_types(common, &query.dataset, 0).await?;
    Ok(properties.keys().cloned().collect())
}

/// One record as a CSV row: strings as they are, other values as JSON, absent fields empty.
fn csv_row(columns: &[String], json: &[u8]) -> anyhow::Result<Vec<u8>> {
    let record: serde_json::Map<String, Value> =
        serde_json::from_slice(json).context("the node sent a record that is not a JSON object")?;
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    writer.write_record(columns.iter().map(|c| match record.get(c) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }))?;
    writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) async fn run(common: &Common, args: Args) -> anyhow::Result<()> {
    let query = Query {
        dataset: args.dataset.clone(),
        filter: args.filter.trim().to_string(),
        fields: args.fields.clone(),
        purpose: args.purpose.clone(),
        case_id: args.case_id.clone(),
        withhold_until: args.withhold_until,
        csv: args.csv || args.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    let state_file = crate::statefile::beside(&args.out, ".export-state.json");
    let saved: Option<State> = crate::statefile::load(&state_file, "an export state file")?;
    let (mut state, resumed) = match (saved, args.resume, args.restart) {
        (Some(saved), false, false) => anyhow::bail!(
            "an export into {} stopped after {} records (state in {}): go on with --resume, or begin again with --restart",
            args.out.display(),
            saved.records,
            state_file.display()
        ),
        (None, true, _) => anyhow::bail!(
            "nothing to resume: there is no {} (the export finished, or never began); run without --resume",
            state_file.display()
        ),
        (Some(saved), true, _) => {
            anyhow::ensure!(
                saved.query == query,
                "the interrupted export into {} ran another query ({:?}); resume it with the same dataset, filter, fields, purpose and case, or begin again with --restart",
                args.out.display(),
                saved.query
            );
            (saved, true)
        }
        (_, false, _) => {
            let columns = match query.csv {
                true => columns(common, &query).await?,
                false => Vec::new(),
            };
            (
                State {
                    query: query.clone(),
                    columns,
                    page_token: String::new(),
                    out_bytes: 0,
                    records: 0,
                },
                false,
            )
        }
    };
    let mut out = open_out(&args.out, state.out_bytes)?;
    if state.out_bytes == 0 && query.csv {
        let mut header = csv::Writer::from_writer(Vec::new());
        header.write_record(&state.columns)?;
        let header = header.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        out.write_all(&header)?;
        state.out_bytes = header.len() as u64;
    }
    state.save(&state_file)?;
    let started = state.records;

    let mut node = common.connect.node_of(&args.dataset).await?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let began = Instant::now();
    let mut last_save = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut buffer = Vec::with_capacity(1 << 20);
    let failure: Option<anyhow::Error> = 'export: loop {
        let request = npb::QueryRequest {
            dataset_id: query.dataset.clone(),
            filter: query.filter.clone(),
            fields: query.fields.clone(),
            purpose: query.purpose.clone(),
            case_id: query.case_id.clone(),
            limit: args.page,
            page_token: state.page_token.clone(),
            withhold_until: query.withhold_until,
        };
        let mut stream = match node.query(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => break Some(status_error(status)),
        };
        let mut next_page = String::new();
        loop {
            let message = tokio::select! {
                biased;
                _ = &mut ctrl_c => break 'export Some(anyhow::anyhow!("interrupted")),
                message = stream.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => break 'export Some(status_error(status)),
            };
            buffer.clear();
            for record in &message.records {
                if query.csv {
                    buffer.extend_from_slice(&csv_row(&state.columns, &record.json)?);
                } else {
                    anyhow::ensure!(
                        !record.json.contains(&b'\n'),
                        "the node sent a record on more than one line"
                    );
                    buffer.extend_from_slice(&record.json);
                    buffer.push(b'\n');
                }
            }
            out.write_all(&buffer)?;
            if let Some(path) = &args.receipts {
                crate::audit::append_receipt(path, message.receipt.as_ref(), message.records.len())?;
            }
            state.out_bytes += buffer.len() as u64;
            state.records += message.records.len() as u64;
            if !message.resume_token.is_empty() {
                state.page_token = message.resume_token;
            }
            next_page = message.next_page_token;
            let rate = (state.records - started) as f64 / began.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!("{} records ({rate:.0}/s)", state.records));
            if last_save.elapsed() >= SAVE_EVERY {
                state.save(&state_file)?;
                last_save = Instant::now();
            }
        }
        if next_page.is_empty() {
            break None;
        }
        state.page_token = next_page;
    };
    progress.finish_and_clear();
    if let Some(e) = failure {
        state.save(&state_file)?;
        anyhow::bail!(
            "{e:#}\n{} records written to {}; run the same command with --resume to go on",
            state.records,
            args.out.display()
        );
    }
    out.sync_all()?;
    let _ = std::fs::remove_file(&state_file);
    let summary = serde_json::json!({
        "dataset": query.dataset,
        "out": args.out.display().to_string(),
        "records": state.records,
        "resumed_after": if resumed { Some(started) } else { None },
        "bytes": state.out_bytes,
        "seconds": began.elapsed().as_secs_f64(),
    });
    if common.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: {} records written to {}{}",
            query.dataset,
            state.records,
            args.out.display(),
            if resumed {
                format!(" (resumed after {started})")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_row_has_a_cell_per_column_in_order() {
        let columns = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let row = csv_row(&columns, br#"{"c":1.5,"a":"x, y","d":true}"#).unwrap();
        assert_eq!(String::from_utf8(row).unwrap(), "\"x, y\",,1.5\n");
    }

    #[test]
    fn a_resumed_output_is_cut_back_to_what_its_state_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "one\ntwo\nthree, half writ").unwrap();
        let mut file = open_out(&path, 8).unwrap();
        file.write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
        let error = open_out(&path, 100).unwrap_err().to_string();
        assert!(error.contains("cannot be resumed"), "{error}");
    }
}
