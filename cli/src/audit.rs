//! `exchange audit ...`: a node's ledger checkpoints and proofs, and checking receipts.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use exchange_core::ledger::AuditEvent;
use exchange_core::tlog::{LogVerifier, ProofFile};
use exchange_proto::node::v1 as npb;

use crate::connect::Common;
use crate::output::status_error;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print a node's latest signed ledger checkpoint (a C2SP signed note).
    Checkpoint,
    /// Print one audit event's proof as a C2SP tlog-proof file (the event in its `extra` line).
    Proof {
        /// The event's index (a receipt's `index`).
        index: u64,
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
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write receipts to {}", path.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}

/// The digest a receipt names: each record's JSON followed by a newline.
fn digest(lines: &[String]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for line in lines {
        context.update(line.as_bytes());
        context.update(b"\n");
    }
    let digest: [u8; 32] = context.finish().as_ref().try_into().expect("32 bytes");
    exchange_core::ledger::hex(&digest)
}

pub(crate) async fn run(command: Command, common: Common) -> anyhow::Result<()> {
    let mut node = common.connect.node().await?;
    match command {
        Command::Checkpoint => {
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
        Command::Proof { index } => {
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
        Command::Receipt {
            receipts,
            records,
            vkey,
        } => {
            let read_lines = |path: &PathBuf| -> anyhow::Result<Vec<String>> {
                let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
                std::io::BufReader::new(file)
                    .lines()
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            let receipts: Vec<ReceiptLine> = read_lines(&receipts)?
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).context("not a receipts file (one JSON receipt a line)"))
                .collect::<anyhow::Result<_>>()?;
            let records = read_lines(&records)?;
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
                    Ok(event) if event.served_sha256 != digest(mine) => {
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
                    e.map(|e| crate::output::time(e.time_ms / 1000)).unwrap_or_default(),
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
}
