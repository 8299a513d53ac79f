//! `exchange publish`: a streaming, resumable import of an NDJSON or CSV file into a dataset.
//!
//! The file is read a batch at a time on its own thread while earlier batches are on the wire
//! and at the node (the node's `Import` stream validates them in parallel and commits them in
//! order), so memory holds a few batches whatever the file's size. What the node acknowledged is
//! written to a small state file beside the input: after Ctrl-C, a lost connection or a node
//! restart, `--resume` goes on from the last acknowledged batch. Batches the node stored but
//! whose acknowledgement never came are recognised by the node (each carries the import's id and
//! number), so every line is published exactly once, in file order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exchange_proto::node::v1 as npb;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::connect::Common;
use crate::output::status_error;

/// The most changes a batch holds: the node lists up to 1000 rejections a reply, so every
/// rejection of a batch reaches the rejects file.
pub(crate) const MAX_BATCH: usize = 1000;
/// A batch also ends at this many bytes, well under the node's message limit.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// How often the state file is rewritten while acknowledgements arrive. A state file behind the
/// node is safe: the batches after it are sent again with the same numbers and boundaries, and
/// the node acknowledges those it holds without storing them twice.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// `exchange publish`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Dataset id.
    dataset: String,
    /// The file: .ndjson/.jsonl (one JSON object a line; {"$delete": "<key>"} deletes) or .csv
    /// (a header row of field names; values typed by the dataset's schema, empty cells left out).
    file: PathBuf,
    /// Schema version to validate against (default: the latest when the import begins).
    #[arg(long, default_value_t = 0)]
    schema_version: u32,
    /// Records per batch (at most 1000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batches sent ahead of the node's acknowledgements.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Where to write rejected lines with their errors (default: <file>.rejects.ndjson).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Go on with an interrupted import of this file from its last acknowledged line (the
    /// state is in <file>.import-state.json).
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Forget an interrupted import of this file and begin again from its first line.
    #[arg(long)]
    restart: bool,
}

/// Where an import stands: the state file beside the input.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    import_id: String,
    dataset: String,
    /// The input's size and modification time when the import began: a changed file cannot be
    /// resumed (its lines after the resume point would not be the ones the node counted).
    file_bytes: u64,
    file_modified_ns: u128,
    csv: bool,
    batch_size: usize,
    /// Pinned by the first acknowledgement, so a schema version published during the import
    /// does not change what its later batches are checked against (0 until then).
    schema_version: u32,
    /// Batches acknowledged, and where the next one starts (byte offset, last line number read).
    batches: u64,
    offset: u64,
    line: u64,
    accepted: u64,
    rejected: u64,
    rejects: PathBuf,
    /// The rejects file's length after the last acknowledged batch (a longer file is cut back).
    rejects_bytes: u64,
}

impl State {
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::statefile::save(self, path)
    }
}

fn modified_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn new_import_id() -> anyhow::Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for an import id"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// One change of a batch: its line and where it is in the file (to quote it if rejected).
#[derive(Debug, Clone, Copy)]
struct Span {
    line: u64,
    start: u64,
    end: u64,
}

/// A batch read from the file.
struct Batch {
    changes: Vec<npb::Change>,
    spans: Vec<Span>,
    /// Lines refused before sending (not UTF-8, a CSV row of the wrong width): reject entries.
    refused: Vec<Value>,
    /// Where the next batch starts.
    end_offset: u64,
    end_line: u64,
}

/// Counts the lines read and not yet acknowledged: what the client holds.
#[derive(Default)]
struct Held {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Held {
    fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Ordering::SeqCst) + n;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn remove(&self, n: usize) {
        self.now.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Reads the input from a byte offset, a batch at a time.
enum Reader {
    Ndjson(BufReader<File>),
    Csv {
        reader: csv::Reader<File>,
        headers: Vec<String>,
        types: Map<String, Value>,
    },
}

struct Source {
    reader: Reader,
    offset: u64,
    line: u64,
    batch_size: usize,
    held: Arc<Held>,
}

fn reject(line: u64, key: &str, errors: Value, input: &str) -> Value {
    json!({"line": line, "key": key, "errors": errors, "input": input})
}

impl Source {
    fn open(
        path: &Path,
        types: Option<Map<String, Value>>,
        offset: u64,
        line: u64,
        batch_size: usize,
        held: Arc<Held>,
    ) -> anyhow::Result<Self> {
        let open = || File::open(path).with_context(|| format!("cannot read {}", path.display()));
        let (reader, offset, line) = match types {
            None => {
                let mut file = open()?;
                file.seek(SeekFrom::Start(offset))?;
                (Reader::Ndjson(BufReader::with_capacity(1 << 16, file)), offset, line)
            }
            Some(types) => {
                let mut header_reader = csv::ReaderBuilder::new().flexible(true).from_reader(open()?);
                let headers: Vec<String> = header_reader.headers()?.iter().map(str::to_string).collect();
                // A misspelt header would fail every row the same way: say it once.
                let unknown: Vec<&str> = headers
                    .iter()
                    .map(String::as_str)
                    .filter(|h| !types.contains_key(*h))
                    .collect();
                if !unknown.is_empty() {
                    anyhow::bail!(
                        "{}: unknown columns {}; the dataset's fields are {}",
                        path.display(),
                        unknown.join(", "),
                        types.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                // A fresh import starts after the header row.
                let (offset, line) = match offset {
                    0 => (header_reader.position().byte(), header_reader.position().line() - 1),
                    _ => (offset, line),
                };
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .has_headers(false)
                    .from_reader(open()?);
                let mut position = csv::Position::new();
                position.set_byte(offset).set_line(line + 1);
                reader.seek(position)?;
                (Reader::Csv { reader, headers, types }, offset, line)
            }
        };
        Ok(Self {
            reader,
            offset,
            line,
            batch_size,
            held,
        })
    }

    /// The next batch, or `None` at the end of the file.
    fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let mut batch = Batch {
            changes: Vec::with_capacity(self.batch_size),
            spans: Vec::with_capacity(self.batch_size),
            refused: Vec::new(),
            end_offset: self.offset,
            end_line: self.line,
        };
        let mut bytes = 0usize;
        let mut line = Vec::new();
        let mut record = csv::StringRecord::new();
        while batch.changes.len() < self.batch_size && bytes < MAX_BATCH_BYTES {
            let start = self.offset;
            let (op, at) = match &mut self.reader {
                Reader::Ndjson(reader) => {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line)?;
                    if n == 0 {
                        break;
                    }
                    self.offset += n as u64;
                    self.line += 1;
                    let text = match std::str::from_utf8(&line) {
                        Ok(text) => text.trim_end_matches(['\n', '\r']),
                        Err(e) => {
                            let errors = json!([{"pointer": "", "message": format!("not UTF-8: {e}")}]);
                            let input = String::from_utf8_lossy(&line);
                            batch.refused.push(reject(self.line, "", errors, input.trim_end()));
                            continue;
                        }
                    };
                    if text.trim().is_empty() {
                        continue;
                    }
                    // Parsing every line here would cost more than sending it: only a line that
                    // names "$delete" can be one.
                    let delete = text
                        .contains("\"$delete\"")
                        .then(|| serde_json::from_str::<Value>(text).ok())
                        .flatten()
                        .and_then(|v| v.get("$delete").and_then(Value::as_str).map(str::to_string));
                    let op = match delete {
                        Some(key) => npb::change::Op::DeleteKey(key),
                        // Sent as written: the node says exactly what is wrong with a bad line.
                        None => npb::change::Op::Upsert(text.as_bytes().to_vec()),
                    };
                    (op, self.line)
                }
                Reader::Csv { reader, headers, types } => {
                    if !reader.read_record(&mut record)? {
                        break;
                    }
                    let position = reader.position();
                    self.offset = position.byte();
                    let row_line = record.position().map_or(self.line + 1, csv::Position::line);
                    // The next record's line, less one: the last line this row took.
                    self.line = position.line().saturating_sub(1).max(row_line);
                    if record.len() != headers.len() {
                        let errors = json!([{"pointer": "", "message": format!("the row has {} cells; the header has {}", record.len(), headers.len())}]);
                        let input = record.iter().collect::<Vec<_>>().join(",");
                        batch.refused.push(reject(row_line, "", errors, &input));
                        continue;
                    }
                    let mut fields = Map::new();
                    for (field, cell) in headers.iter().zip(record.iter()) {
                        if !cell.is_empty() {
                            fields.insert(field.clone(), csv_cell(types, field, cell));
                        }
                    }
                    (npb::change::Op::Upsert(serde_json::to_vec(&fields)?), row_line)
                }
            };
            bytes += match &op {
                npb::change::Op::Upsert(json) => json.len(),
                npb::change::Op::DeleteKey(key) => key.len(),
            };
            batch.spans.push(Span {
                line: at,
                start,
                end: self.offset,
            });
            batch.changes.push(npb::Change { op: Some(op) });
        }
        batch.end_offset = self.offset;
        batch.end_line = self.line;
        if batch.changes.is_empty() && batch.refused.is_empty() {
            return Ok(None);
        }
        self.held.add(batch.changes.len() + batch.refused.len());
        Ok(Some(batch))
    }
}

/// Types a CSV cell by the JSON types its field's schema declares.
pub(crate) fn csv_cell(types: &Map<String, Value>, field: &str, cell: &str) -> Value {
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

/// The text of a rejected line, read back from the file (the client does not keep what it sent).
fn quote(file: &mut File, span: Span) -> String {
    let mut text = vec![0u8; span.end.saturating_sub(span.start).min(1 << 20) as usize];
    if file.seek(SeekFrom::Start(span.start)).is_err() || file.read_exact(&mut text).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&text)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

/// The rejects file, appended to as batches are acknowledged and made at the first rejection;
/// for its writer only, as the rejected lines are records with personal data in them.
struct Rejects {
    path: PathBuf,
    file: Option<File>,
}

impl Rejects {
    /// Resuming, the file is cut back to what the acknowledged batches wrote; otherwise a file
    /// left by an earlier import of this input is removed (its lines are not this import's).
    fn open(path: &Path, resumed: bool, keep: u64) -> anyhow::Result<Self> {
        let mut rejects = Self {
            path: path.to_path_buf(),
            file: None,
        };
        match (resumed, path.exists()) {
            (true, true) => {
                let file = rejects.file()?;
                file.set_len(keep)?;
                file.seek(SeekFrom::End(0))?;
            }
            (false, true) => std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?,
            _ => {}
        }
        Ok(rejects)
    }

    fn file(&mut self) -> anyhow::Result<&mut File> {
        if self.file.is_none() {
            let mut file = crate::statefile::open_private(&self.path)?;
            file.seek(SeekFrom::End(0))?;
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("cannot open {}", self.path.display()))
    }

    fn append(&mut self, text: &str) -> anyhow::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        self.file()?
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        match &mut self.file {
            Some(file) => Ok(file.sync_all()?),
            None => Ok(()),
        }
    }
}

/// The JSON types of each top-level property of the dataset's schema, for typing CSV cells.
pub(crate) async fn property_types(common: &Common, dataset: &str, version: u32) -> anyhow::Result<Map<String, Value>> {
    let mut registry = common.connect.registry().await?;
    let schema = registry
        .get_schema(exchange_proto::registry::v1::GetSchemaRequest {
            dataset_id: dataset.to_string(),
            version,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let schema: Value = serde_json::from_str(&schema.schema_json)?;
    Ok(schema["properties"].as_object().cloned().unwrap_or_default())
}

/// Where the import's state comes from: a new import, or the one in the state file.
fn begin(args: &Args, state_file: &Path, csv: bool) -> anyhow::Result<(State, bool)> {
    let meta = std::fs::metadata(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| crate::statefile::beside(&args.file, ".rejects.ndjson"));
    let saved: Option<State> = crate::statefile::load(state_file, "an import state file")?;
    match (saved, args.resume, args.restart) {
        (Some(saved), false, false) => anyhow::bail!(
            "an import of {} into {} stopped after line {} ({} stored, state in {}): go on with --resume, or begin again with --restart",
            args.file.display(),
            saved.dataset,
            saved.line,
            saved.accepted,
            state_file.display()
        ),
        (None, true, _) => anyhow::bail!(
            "nothing to resume: there is no {} (the import finished, or never began); run without --resume",
            state_file.display()
        ),
        (Some(saved), true, _) => {
            anyhow::ensure!(
                saved.dataset == args.dataset,
                "the interrupted import of {} was into {}, not {}",
                args.file.display(),
                saved.dataset,
                args.dataset
            );
            anyhow::ensure!(
                saved.file_bytes == meta.len() && saved.file_modified_ns == modified_ns(&meta),
                "{} changed since its import began (size or modification time): it cannot be resumed; begin again with --restart",
                args.file.display()
            );
            if args.batch != saved.batch_size {
                eprintln!(
                    "resuming in batches of {} as the import began (not {})",
                    saved.batch_size, args.batch
                );
            }
            Ok((saved, true))
        }
        (_, false, _) => Ok((
            State {
                import_id: new_import_id()?,
                dataset: args.dataset.clone(),
                file_bytes: meta.len(),
                file_modified_ns: modified_ns(&meta),
                csv,
                batch_size: args.batch,
                schema_version: args.schema_version,
                batches: 0,
                offset: 0,
                line: 0,
                accepted: 0,
                rejected: 0,
                rejects,
                rejects_bytes: 0,
            },
            false,
        )),
    }
}

/// How an import run ended.
enum End {
    Done,
    Interrupted,
    Failed(anyhow::Error),
}

pub(crate) async fn publish(common: &Common, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_BATCH).contains(&args.batch),
        "--batch must be 1 to {MAX_BATCH} (a reply lists up to {MAX_BATCH} rejections)"
    );
    let csv = args
        .file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let state_file = crate::statefile::beside(&args.file, ".import-state.json");
    let (mut state, resumed) = begin(&args, &state_file, csv)?;
    let types = match csv {
        true => Some(property_types(common, &args.dataset, state.schema_version).await?),
        false => None,
    };
    let held = Arc::new(Held::default());
    let mut source = Source::open(
        &args.file,
        types,
        state.offset,
        state.line,
        state.batch_size,
        held.clone(),
    )?;
    if !resumed {
        // The header row of a CSV file is where a fresh import starts.
        state.offset = source.offset;
        state.line = source.line;
    }
    let mut rejects = Rejects::open(&state.rejects, resumed, state.rejects_bytes)?;
    let mut quoting = File::open(&args.file)?;
    state.save(&state_file)?;
    let (started_line, started_accepted) = (state.line, state.accepted);

    // The reading thread: a batch or two ahead of the wire, no more.
    let (batch_tx, mut batches) = mpsc::channel::<anyhow::Result<Batch>>(2);
    std::thread::Builder::new()
        .name("publish-reader".into())
        .spawn(move || loop {
            let next = source.next_batch();
            let last = !matches!(next, Ok(Some(_)));
            let sent = match next {
                Ok(Some(batch)) => batch_tx.blocking_send(Ok(batch)),
                Ok(None) => Ok(()),
                Err(e) => batch_tx.blocking_send(Err(e)),
            };
            if last || sent.is_err() {
                return;
            }
        })
        .context("cannot start the reading thread")?;

    let mut node = common.connect.node_of(&args.dataset).await?;
    let (request_tx, request_rx) = mpsc::channel::<npb::ImportBatch>(args.in_flight.max(1));
    let mut acks = node
        .import(tokio_stream::wrappers::ReceiverStream::new(request_rx))
        .await
        .map_err(status_error)?
        .into_inner();
    let mut request_tx = Some(request_tx);

    let progress = indicatif::ProgressBar::new(state.file_bytes);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_position(state.offset);
    let began = Instant::now();
    let mut window: VecDeque<Batch> = VecDeque::new();
    let mut next_batch = state.batches + 1;
    let mut reading = true;
    let mut already_stored = 0u64;
    let mut last_save = Instant::now();
    let in_flight = args.in_flight.max(1);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let end = loop {
        // Until the first acknowledgement pins the schema version, one batch at a time.
        let room = window.len() < if state.schema_version == 0 { 1 } else { in_flight };
        tokio::select! {
            biased;
            _ = &mut ctrl_c => break End::Interrupted,
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    let Some(batch) = window.pop_front() else {
                        break End::Failed(anyhow::anyhow!("the node acknowledged batch {} that was not sent", ack.batch));
                    };
                    if ack.batch != state.batches + 1 {
                        break End::Failed(anyhow::anyhow!("the node acknowledged batch {} where {} was due", ack.batch, state.batches + 1));
                    }
                    let result = ack.result.unwrap_or_default();
                    let read = batch.spans.len() + batch.refused.len();
                    let refused = batch.refused.len() as u64;
                    already_stored += u64::from(ack.already_stored);
                    if state.schema_version == 0 {
                        state.schema_version = result.schema_version;
                    }
                    let mut lines = batch.refused;
                    for r in &result.rejections {
                        let Some(&span) = batch.spans.get(r.position as usize) else { continue };
                        let errors: Vec<Value> = r.errors.iter().map(|e| json!({"pointer": e.pointer, "message": e.message})).collect();
                        lines.push(reject(span.line, &r.key, json!(errors), &quote(&mut quoting, span)));
                    }
                    lines.sort_by_key(|l| l["line"].as_u64());
                    let mut text = String::new();
                    for line in &lines {
                        text.push_str(&line.to_string());
                        text.push('\n');
                    }
                    if let Err(e) = rejects.append(&text) {
                        break End::Failed(e);
                    }
                    state.rejects_bytes += text.len() as u64;
                    state.batches = ack.batch;
                    state.offset = batch.end_offset;
                    state.line = batch.end_line;
                    state.accepted += result.accepted;
                    state.rejected += result.rejected + refused;
                    held.remove(read);
                    progress.set_position(state.offset);
                    let rate = (state.accepted - started_accepted) as f64 / began.elapsed().as_secs_f64().max(1e-3);
                    progress.set_message(format!("{} stored ({rate:.0}/s), {} rejected", state.accepted, state.rejected));
                    if last_save.elapsed() >= SAVE_EVERY {
                        if let Err(e) = state.save(&state_file) {
                            break End::Failed(e);
                        }
                        last_save = Instant::now();
                    }
                    if !reading && window.is_empty() {
                        break End::Done;
                    }
                }
                Ok(None) if !reading && window.is_empty() => break End::Done,
                Ok(None) => break End::Failed(anyhow::anyhow!("the node ended the import before acknowledging every batch")),
                Err(status) => break End::Failed(status_error(status)),
            },
            next = batches.recv(), if reading && room => match next {
                Some(Ok(mut batch)) => {
                    let request = npb::ImportBatch {
                        import_id: state.import_id.clone(),
                        batch: next_batch,
                        publish: Some(npb::PublishRequest {
                            dataset_id: args.dataset.clone(),
                            schema_version: state.schema_version,
                            changes: std::mem::take(&mut batch.changes),
                            atomic: false,
                        }),
                    };
                    next_batch += 1;
                    let sent = match &request_tx {
                        Some(tx) => tx.send(request).await.is_ok(),
                        None => false,
                    };
                    window.push_back(batch);
                    if !sent {
                        // The node closed the stream: its status says why, on the next message.
                        reading = false;
                    }
                }
                Some(Err(e)) => break End::Failed(e),
                None => {
                    reading = false;
                    request_tx = None;
                    if window.is_empty() {
                        break End::Done;
                    }
                }
            },
        }
    };
    drop(request_tx);
    progress.finish_and_clear();
    let summary = |state: &State| {
        json!({
            "dataset": state.dataset,
            "file": args.file.display().to_string(),
            "accepted": state.accepted,
            "rejected": state.rejected,
            "last_line": state.line,
            "resumed_after_line": if resumed { Some(started_line) } else { None },
            "batches": state.batches,
            "batches_already_stored": already_stored,
            "schema_version": state.schema_version,
            "lines_held_at_most": held.most.load(Ordering::SeqCst),
            "rejects": if state.rejected > 0 { Some(state.rejects.display().to_string()) } else { None },
            "seconds": began.elapsed().as_secs_f64(),
        })
    };
    match end {
        End::Done => {
            rejects.sync()?;
            let _ = std::fs::remove_file(&state_file);
        }
        End::Interrupted | End::Failed(_) => {
            state.save(&state_file)?;
            let how = match &end {
                End::Failed(e) => format!("stopped: {e:#}"),
                _ => "interrupted".to_string(),
            };
            anyhow::bail!(
                "{how}\n{} lines of {} acknowledged ({} stored, {} rejected so far); run the same command with --resume to go on",
                state.line,
                args.file.display(),
                state.accepted,
                state.rejected
            );
        }
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&summary(&state))?);
    } else {
        println!(
            "{}: {} stored, {} rejected, from {}{}",
            state.dataset,
            state.accepted,
            state.rejected,
            args.file.display(),
            if resumed {
                format!(" (resumed after line {started_line})")
            } else {
                String::new()
            }
        );
    }
    if state.rejected > 0 {
        if !common.json {
            println!("rejected lines and their errors: {}", state.rejects.display());
            let first = std::fs::read_to_string(&state.rejects)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| serde_json::from_str::<Value>(l).ok()));
            if let Some(first) = first {
                println!("first: line {}: {}", first["line"], first["errors"]);
            }
        }
        match state.rejected {
            1 => anyhow::bail!("1 record was rejected"),
            n => anyhow::bail!("{n} records were rejected"),
        }
    }
    Ok(())
}
