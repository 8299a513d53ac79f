//! `exchange audit ...`: a node's ledger checkpoints and proofs, and checking receipts.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use exchange_core::ledger::AuditEvent;
use exchange_core::tlog::{LogVerifier, ProofFile};
use exchange_proto::node::v1 as npb;
use exchange_proto::registry::v1 as pb;

use crate::connect::Common;
use crate::output::status_error;

/// Filters of `audit query`; every one given must match.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct QueryArgs {
    /// Events at or after this time: yyyy-mm-dd (UTC) or RFC 3339.
    #[arg(long)]
    from: Option<String>,
    /// Events before this time: yyyy-mm-dd (UTC) or RFC 3339.
    #[arg(long)]
    to: Option<String>,
    /// The department that read.
    #[arg(long)]
    consumer: Option<String>,
    /// The node that served (the dataset owner), or `registry` for the registry's own events.
    #[arg(long)]
    provider: Option<String>,
    /// The dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// The purpose stated.
    #[arg(long)]
    purpose: Option<String>,
    /// allow or deny.
    #[arg(long, value_parser = crate::output::one_of::<exchange_core::ledger::Decision>())]
    decision: Option<exchange_core::ledger::Decision>,
    /// The grant relied on.
    #[arg(long)]
    grant: Option<String>,
    /// The case id stated.
    #[arg(long)]
    case: Option<String>,
    /// A record key read (e.g. an id number).
    #[arg(long = "record")]
    record: Option<String>,
    /// At most this many events (the registry pages; this follows its pages).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// Unix milliseconds of `yyyy-mm-dd` (midnight UTC) or an RFC 3339 time.
fn parse_time(flag: &str, text: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(text, &format).map_err(|_| {
        anyhow::anyhow!("--{flag} {text:?}: give a day (2026-12-01) or an RFC 3339 time (2026-12-01T08:00:00+08:00)")
    })?;
    Ok(day.midnight().assume_utc().unix_timestamp() * 1000)
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Search every audit event the registry holds (auditors and admins): nodes' reads and the
    /// registry's own changes and questions. Each row names its event as NODE#INDEX.
    Query(QueryArgs),
    /// Who read one record: every read of a record key of a dataset, with purpose, grant and
    /// legal basis (the dataset's owner, auditors and admins).
    WhoRead {
        /// Dataset id.
        dataset: String,
        /// The record key (e.g. an id number).
        record: String,
    },
    /// A report of events per consumer, provider, dataset, decision or provider and decision,
    /// per day (auditors and admins).
    #[command(alias = "counts")]
    Report {
        /// consumer, provider, dataset, decision or provider_decision.
        #[arg(long, value_parser = crate::output::one_of::<exchange_core::audit_index::CountBy>())]
        by: exchange_core::audit_index::CountBy,
        /// From this day (yyyy-mm-dd, UTC), inclusive.
        #[arg(long, default_value = "")]
        from_day: String,
        /// To this day, inclusive.
        #[arg(long, default_value = "")]
        to_day: String,
    },
    /// Check an export file offline: every event's proof against the signed checkpoint, the
    /// range whole and in order. Names the first broken entry; exits non-zero if there is one.
    Verify {
        /// The file `audit export` wrote.
        file: PathBuf,
        /// The node's verifier key as the registry pinned it (`exchange dept ledger DEPT`).
        /// Without it, the key the file names is used, which proves nothing against its writer.
        #[arg(long)]
        vkey: Option<String>,
    },
    /// Check receipts: each names an audit event whose inclusion proof must verify and whose
    /// digest must be that of the records received. Exits non-zero if any does not.
    Receipt {
        /// The receipts file written by `get` or `query` with `--receipts`.
        #[arg(long)]
        receipts: PathBuf,
        /// The records those reads printed (one JSON object a line, in order).
        #[arg(long)]
        records: PathBuf,
        /// The node's verifier key as the registry pinned it (default: the key the node reports,
        /// which proves the bytes only to whoever trusts the node).
        #[arg(long)]
        vkey: Option<String>,
    },
    /// The commands that ask a node.
    #[command(flatten)]
    Node(NodeCommand),
}

/// `exchange audit` commands answered by a node (`--node`).
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Print a node's latest signed ledger checkpoint (a C2SP signed note).
    Checkpoint,
    /// Print the consistency proof from the ledger's tree of OLD entries to its latest checkpoint's
    /// (or NEW entries'), one base64 hash a line: what shows a later checkpoint extends an earlier
    /// one (the Go checker in tests/go-verify takes it with both checkpoints).
    Consistency {
        /// The older size (a checkpoint's entries).
        old: u64,
        /// The newer size (default: the latest checkpoint's).
        new: Option<u64>,
    },
    /// Print one audit event's proof as a C2SP tlog-proof file (the event in its `extra` line).
    Proof {
        /// The event's index (a receipt's `index`).
        index: u64,
    },
    /// Export a range of a node's ledger with its checkpoint and every event's proof, to check
    /// offline (`audit verify`) or hand to someone outside. The node's own department, admins and
    /// auditors.
    Export {
        /// The first event index (not a time).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One past the last event index (not a time); default: everything signed.
        #[arg(long)]
        to: Option<u64>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// One receipt as `--receipts` writes it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ReceiptLine {
    pub(crate) node: String,
    pub(crate) index: u64,
    pub(crate) served_sha256: String,
    /// How many of the records printed it covers.
    pub(crate) records: usize,
}

/// Appends a response's receipt to the `--receipts` file.
pub(crate) fn append_receipt(
    path: &std::path::Path,
    receipt: Option<&npb::Receipt>,
    records: usize,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let Some(receipt) = receipt else { return Ok(()) };
    let line = serde_json::to_string(&ReceiptLine {
        node: receipt.node.clone(),
        index: receipt.index,
        served_sha256: receipt.served_sha256.clone(),
        records,
    })?;
    let mut file = private_file(path, true)?;
    writeln!(file, "{line}")?;
    Ok(())
}

/// A file only its owner reads (mode 0600): exports and receipts name people and records.
fn private_file(path: &std::path::Path, append: bool) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).mode(0o600);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub(crate) async fn run(command: Command, common: Common) -> anyhow::Result<()> {
    match command {
        Command::Query(args) => query(args, &common).await,
        Command::WhoRead { dataset, record } => who_read(&dataset, &record, &common).await,
        Command::Report { by, from_day, to_day } => {
            let mut registry = common.connect.registry().await?;
            let counts = registry
                .count_audit_events(pb::CountAuditEventsRequest {
                    by: by.to_string(),
                    from_day,
                    to_day,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return crate::output::print_json(&counts);
            }
            let mut table = crate::output::Table::new(&["DAY", "VALUE", "EVENTS"]);
            let mut rows = counts.counts;
            rows.sort_by(|a, b| (&a.day, &a.value).cmp(&(&b.day, &b.value)));
            for c in rows {
                table.row(vec![c.day, c.value, c.count.to_string()]);
            }
            table.print();
            Ok(())
        }
        Command::Verify { file, vkey } => verify(&file, vkey.as_deref()),
        Command::Receipt {
            receipts,
            records,
            vkey,
        } => receipt(&receipts, &records, vkey, &common).await,
        Command::Node(command) => node_command(command, common).await,
    }
}

async fn node_command(command: NodeCommand, common: Common) -> anyhow::Result<()> {
    let mut node = common.connect.node().await?;
    match command {
        NodeCommand::Checkpoint => {
            let checkpoint = node
                .get_checkpoint(npb::GetCheckpointRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return crate::output::print_json(&checkpoint);
            }
            print!("{}", checkpoint.note);
            Ok(())
        }
        NodeCommand::Export { from, to, out } => {
            use std::io::Write as _;
            let mut stream = node
                .export_ledger(npb::ExportLedgerRequest {
                    from_index: from,
                    to_index: to.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let mut sink: Box<dyn std::io::Write> = match &out {
                // It names the people whose records were read: private to you.
                Some(path) => Box::new(std::io::BufWriter::new(private_file(path, false)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut lines = 0u64;
            while let Some(chunk) = stream.message().await.map_err(status_error)? {
                for line in chunk.lines {
                    writeln!(sink, "{line}")?;
                    lines += 1;
                }
            }
            sink.flush()?;
            if let Some(path) = &out {
                eprintln!("wrote {} events to {}", lines.saturating_sub(1), path.display());
            }
            Ok(())
        }
        NodeCommand::Consistency { old, new } => {
            let proof = node
                .prove_consistency(npb::ProveConsistencyRequest {
                    old_size: old,
                    new_size: new.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return crate::output::print_json(&proof);
            }
            for hash in &proof.proof {
                println!("{}", exchange_core::tlog::base64(hash));
            }
            eprintln!(
                "from {} entries (root {}) to {} (root {})",
                proof.old_size,
                exchange_core::tlog::base64(&proof.old_root),
                proof.new_size,
                exchange_core::tlog::base64(&proof.new_root)
            );
            Ok(())
        }
        NodeCommand::Proof { index } => {
            let proof = node
                .prove_event(npb::ProveEventRequest { index })
                .await
                .map_err(status_error)?
                .into_inner();
            if common.json {
                return crate::output::print_json(&proof);
            }
            print!("{}", proof.proof_file);
            Ok(())
        }
    }
}

async fn receipt(receipts: &PathBuf, records: &PathBuf, vkey: Option<String>, common: &Common) -> anyhow::Result<()> {
    {
        let read_lines = |path: &PathBuf| -> anyhow::Result<Vec<String>> {
            let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            std::io::BufReader::new(file)
                .lines()
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let receipts: Vec<ReceiptLine> = read_lines(receipts)?
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("not a receipts file (one JSON receipt a line)"))
            .collect::<anyhow::Result<_>>()?;
        let records = read_lines(records)?;
        let Some(first) = receipts.first() else {
            anyhow::bail!("the receipts file has no receipts");
        };
        if let Some(other) = receipts.iter().find(|r| r.node != first.node) {
            anyhow::bail!(
                "the receipts name two nodes ({} and {}); check each node's receipts on their own",
                first.node,
                other.node
            );
        }
        // The node whose ledger holds the events, and which must prove it is that node.
        let mut node = common.connect.node_of_department(&first.node).await?;
        let (verifier, trusted) = match vkey {
            Some(text) => (LogVerifier::parse(&text)?, true),
            None => {
                let checkpoint = node
                    .get_checkpoint(npb::GetCheckpointRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                (LogVerifier::parse(&checkpoint.vkey)?, false)
            }
        };
        let mut table =
            crate::output::Table::new(&["INDEX", "TIME", "READER", "PURPOSE", "GRANT", "RECORDS", "RESULT"]);
        let mut failed = 0;
        let mut at = 0usize;
        for receipt in &receipts {
            let mine = records.get(at..at + receipt.records).ok_or_else(|| {
                anyhow::anyhow!(
                    "the receipts cover {} records but the records file has {}",
                    receipts.iter().map(|r| r.records).sum::<usize>(),
                    records.len()
                )
            })?;
            at += receipt.records;
            let proof = node
                .prove_event(npb::ProveEventRequest { index: receipt.index })
                .await
                .map_err(status_error)?
                .into_inner();
            let file = ProofFile::parse(&proof.proof_file)?;
            let checked = file.verify(&verifier).map_err(anyhow::Error::from).and_then(|_| {
                let event: AuditEvent = serde_json::from_slice(&file.leaf)?;
                Ok(event)
            });
            let (event, result) = match checked {
                Ok(event) if file.index != receipt.index => (Some(event), "proof is for another event".to_string()),
                Ok(event)
                    if event.served_sha256
                        != exchange_core::ledger::served_digest(mine.iter().map(|l| l.as_bytes())) =>
                {
                    (Some(event), "the records are not the ones served".to_string())
                }
                Ok(event) if event.served_sha256 != receipt.served_sha256 => {
                    (Some(event), "the receipt names another digest".to_string())
                }
                Ok(event) => (Some(event), "proved".to_string()),
                Err(e) => (None, format!("proof does not verify: {e}")),
            };
            if result != "proved" {
                failed += 1;
            }
            let e = event.as_ref();
            table.row(vec![
                receipt.index.to_string(),
                e.map(|e| crate::output::time_ms(e.time_ms)).unwrap_or_default(),
                e.map(|e| e.department.clone()).unwrap_or_default(),
                e.map(|e| e.purpose.clone()).unwrap_or_default(),
                e.map(|e| e.grant_id.clone()).unwrap_or_default(),
                receipt.records.to_string(),
                result,
            ]);
        }
        print!("{}", table.render());
        if at != records.len() {
            anyhow::bail!(
                "the records file has {} records the receipts do not cover",
                records.len() - at
            );
        }
        if !trusted {
            println!(
                "checked against the key the node reports ({}); pass --vkey with the key the registry pinned",
                verifier.text()
            );
        }
        if failed > 0 {
            anyhow::bail!("{failed} of {} receipts did not prove the records", receipts.len());
        }
        Ok(())
    }
}

async fn query(args: QueryArgs, common: &Common) -> anyhow::Result<()> {
    let mut registry = common.connect.registry().await?;
    let mut request = pb::SearchAuditEventsRequest {
        from_ms: args
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?
            .unwrap_or(0),
        to_ms: args
            .to
            .as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?
            .unwrap_or(0),
        consumer_id: args.consumer.unwrap_or_default(),
        provider_id: args.provider.unwrap_or_default(),
        dataset_id: args.dataset.unwrap_or_default(),
        purpose: args.purpose.unwrap_or_default(),
        decision: args.decision.map(|d| d.to_string()).unwrap_or_default(),
        grant_id: args.grant.unwrap_or_default(),
        case_id: args.case.unwrap_or_default(),
        record_key: args.record.unwrap_or_default(),
        limit: args.limit.clamp(1, 1000) as u32,
        page_token: String::new(),
    };
    let mut table = crate::output::Table::new(&[
        "TIME",
        "EVENT",
        "CONSUMER",
        "OPERATION",
        "DATASET",
        "PURPOSE",
        "DECISION",
        "GRANT",
        "RECORDS",
        "REASON",
    ]);
    let mut shown = 0;
    loop {
        let page = registry
            .search_audit_events(request.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        for found in &page.events {
            if shown == args.limit {
                break;
            }
            shown += 1;
            let event: AuditEvent =
                serde_json::from_slice(&found.event).context("the registry sent an event that is not one")?;
            if common.json {
                let raw: serde_json::Value = serde_json::from_slice(&found.event)?;
                println!(
                    "{}",
                    serde_json::json!({"node": found.node, "index": found.index, "event": raw})
                );
                continue;
            }
            table.row(vec![
                crate::output::time_ms(event.time_ms),
                format!("{}#{}", found.node, found.index),
                event.department,
                event.operation,
                event.dataset,
                event.purpose,
                event.decision.to_string(),
                event.grant_id,
                event.count.to_string(),
                event.reason,
            ]);
        }
        if page.next_page_token.is_empty() || shown == args.limit {
            if !page.next_page_token.is_empty() {
                eprintln!("more events match; raise --limit to see them");
            }
            break;
        }
        request.page_token = page.next_page_token;
    }
    if !common.json {
        table.print();
    }
    Ok(())
}

async fn who_read(dataset: &str, key: &str, common: &Common) -> anyhow::Result<()> {
    let mut registry = common.connect.registry().await?;
    let mut request = pb::AccessReportRequest {
        dataset_id: dataset.to_string(),
        record_key: key.to_string(),
        limit: 1000,
        page_token: String::new(),
    };
    let mut table = crate::output::Table::new(&[
        "TIME",
        "DEPARTMENT",
        "OPERATION",
        "PURPOSE",
        "GRANT",
        "LEGAL BASIS",
        "DECISION",
        "EVENT",
    ]);
    let mut reads = 0;
    loop {
        let page = registry
            .access_report(request.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        for read in &page.reads {
            reads += 1;
            if common.json {
                crate::output::print_json(read)?;
                continue;
            }
            table.row(vec![
                crate::output::time_ms(read.time_ms),
                read.department_id.clone(),
                read.operation.clone(),
                read.purpose.clone(),
                read.grant_id.clone(),
                read.legal_basis.clone(),
                read.decision.clone(),
                format!("{}#{}", read.node, read.index),
            ]);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if !common.json {
        table.print();
        println!("{reads} reads of {key} in {dataset} (as shipped to the registry; a node ships within seconds)");
    }
    Ok(())
}

fn verify(file: &std::path::Path, vkey: Option<&str>) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        Ok(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        ))
    };
    let mut first = String::new();
    std::io::BufRead::read_line(&mut open()?, &mut first)?;
    if first.starts_with("c2sp.org/tlog-proof@v1") {
        anyhow::bail!(
            "{} is a tlog-proof file (one event's proof), not an export: check it with any C2SP tlog-proof \
             verifier (tests/go-verify/main.go with Go), or `exchange audit receipt` for your reads",
            file.display()
        );
    }
    let (verifier, trusted) = match vkey {
        Some(text) => (LogVerifier::parse(text)?, true),
        None => {
            let header: exchange_core::ledger::export::ExportHeader =
                serde_json::from_str(&first).context("not an export file (its first line is not a header)")?;
            (LogVerifier::parse(&header.vkey)?, false)
        }
    };
    let verified = exchange_core::ledger::export::verify_export(open()?, &verifier)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!(
        "export verified: entries {}..{} of {} ({} events), each proved against the checkpoint of {} entries signed by {}",
        verified.header.from,
        verified.header.to,
        verified.header.origin,
        verified.events,
        verified.checkpoint.size,
        verifier.text()
    );
    // The header's range is not signed: what the file leaves out, it leaves out.
    if verified.header.from > 0 || verified.header.to < verified.checkpoint.size {
        println!(
            "the log holds {} signed entries; this file has only {}..{}: check that is the range you asked for",
            verified.checkpoint.size, verified.header.from, verified.header.to
        );
    }
    if !trusted {
        println!("checked against the key the file names: pass --vkey with the key the registry pinned to know it is the node's");
    }
    Ok(())
}
