//! Ledger exports: a range of events with a signed checkpoint and each event's inclusion proof,
//! in one file that anyone checks offline with the log's verifier key.
//!
//! The file is JSON lines. The first is the header:
//! `{"format":"exchange-audit-export/v1","origin":…,"vkey":…,"from":A,"to":B,"checkpoint":"<note>"}`;
//! then one line per event, `{"index":i,"event":<the leaf, verbatim>,"proof":["<base64>",…]}`,
//! for every index from `A` to `B - 1` in order. Each proof leads the leaf to the checkpoint's
//! root, so an event changed, dropped, swapped or added is found by index, and a file cut short
//! is found against the header's range (itself covered by nothing but the checkpoint's size:
//! `to` may not exceed it).

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::{LedgerError, VerifyError};
use crate::tlog::{self, Checkpoint, LogVerifier};

/// The first line's `format`.
pub const EXPORT_FORMAT: &str = "exchange-audit-export/v1";

/// An export's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// The log's origin.
    pub origin: String,
    /// The verifier key the exporter says signed it (check against the pinned one).
    pub vkey: String,
    /// The first index.
    pub from: u64,
    /// One past the last index.
    pub to: u64,
    /// The signed checkpoint every proof leads to.
    pub checkpoint: String,
}

#[derive(Serialize)]
struct LineOut<'a> {
    index: u64,
    event: &'a serde_json::value::RawValue,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct LineIn<'a> {
    index: u64,
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
    proof: Vec<String>,
}

/// The header line.
pub fn header_line(header: &ExportHeader) -> String {
    serde_json::to_string(header).expect("a header encodes")
}

/// One event's line: the leaf verbatim (it is one JSON object), its index and proof.
pub fn event_line(index: u64, leaf: &[u8], proof: &[tlog::Hash]) -> Result<String, LedgerError> {
    let text = std::str::from_utf8(leaf).map_err(|e| LedgerError::Encode(format!("leaf {index}: {e}")))?;
    let event: &serde_json::value::RawValue =
        serde_json::from_str(text).map_err(|e| LedgerError::Encode(format!("leaf {index}: {e}")))?;
    let line = LineOut {
        index,
        event,
        proof: proof.iter().map(|h| tlog::base64(&h.0)).collect(),
    };
    serde_json::to_string(&line).map_err(|e| LedgerError::Encode(e.to_string()))
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportVerified {
    /// Its header.
    pub header: ExportHeader,
    /// The checkpoint, opened.
    pub checkpoint: Checkpoint,
    /// How many events.
    pub events: u64,
}

fn fail(index: u64, why: impl Into<String>) -> VerifyError {
    VerifyError { index, why: why.into() }
}

struct Parsed {
    index: u64,
    leaf: Vec<u8>,
    proof: Vec<Vec<u8>>,
}

fn included(checkpoint: &Checkpoint, index: u64, leaf: &[u8], proof: &[Vec<u8>]) -> bool {
    tlog::verify_inclusion(
        index,
        checkpoint.size,
        &tlog::leaf_hash(leaf).0,
        proof,
        &checkpoint.root.0,
    )
    .is_ok()
}

/// Checks an export against checkpoints signed by `log`, naming the first broken entry.
pub fn verify_export(input: impl BufRead, log: &LogVerifier) -> Result<ExportVerified, VerifyError> {
    let mut lines = input.lines();
    let first = lines
        .next()
        .ok_or_else(|| fail(0, "the file is empty"))?
        .map_err(|e| fail(0, e.to_string()))?;
    let header: ExportHeader =
        serde_json::from_str(&first).map_err(|e| fail(0, format!("the first line is not an export header ({e})")))?;
    if header.format != EXPORT_FORMAT {
        return Err(fail(0, format!("format {:?}, not {EXPORT_FORMAT}", header.format)));
    }
    let checkpoint = log.open_checkpoint(header.checkpoint.as_bytes()).map_err(|e| {
        fail(
            header.from,
            format!(
                "its checkpoint does not verify with {} ({e}): it was altered, or another key signed it (is this the export of that log?)",
                log.text()
            ),
        )
    })?;
    if header.to > checkpoint.size || header.from > header.to {
        return Err(fail(
            header.to,
            format!(
                "the range {}..{} is not within the checkpoint's {} entries",
                header.from, header.to, checkpoint.size
            ),
        ));
    }
    let mut parsed = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| fail(header.from + n as u64, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: LineIn<'_> = serde_json::from_str(&line).map_err(|e| {
            fail(
                header.from + n as u64,
                format!("line {} is not an exported event ({e})", n + 2),
            )
        })?;
        let proof = entry
            .proof
            .iter()
            .map(|h| tlog::parse_hash(h).map(|h| h.0.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(entry.index, e.to_string()))?;
        parsed.push(Parsed {
            index: entry.index,
            leaf: entry.event.get().as_bytes().to_vec(),
            proof,
        });
    }
    for (n, entry) in parsed.iter().enumerate() {
        let expected = header.from + n as u64;
        if expected >= header.to {
            return Err(fail(
                expected,
                format!("entry beyond the export's range {}..{}", header.from, header.to),
            ));
        }
        let next = parsed.get(n + 1);
        if entry.index != expected {
            let why = match next {
                Some(next) if entry.index == expected + 1 && next.index == expected => {
                    format!("swapped with entry {}", expected + 1)
                }
                _ if entry.index > expected => format!("dropped (entry {} is where it should be)", entry.index),
                _ => format!("out of order (entry {} is where it should be)", entry.index),
            };
            return Err(fail(expected, why));
        }
        if !included(&checkpoint, entry.index, &entry.leaf, &entry.proof) {
            // Two events exchanged, each keeping its place's index and proof.
            let swapped = next.is_some_and(|next| {
                included(&checkpoint, next.index, &entry.leaf, &next.proof)
                    && included(&checkpoint, entry.index, &next.leaf, &entry.proof)
            });
            return Err(fail(
                expected,
                match swapped {
                    true => format!("swapped with entry {}", expected + 1),
                    false => "changed (its proof does not lead to the signed root)".to_string(),
                },
            ));
        }
        if serde_json::from_slice::<super::AuditEvent>(&entry.leaf).is_err() {
            return Err(fail(expected, "not an audit event"));
        }
    }
    let have = header.from + parsed.len() as u64;
    if have < header.to {
        return Err(fail(
            have,
            format!(
                "cut off the end: the export covers {}..{}, the file stops at {have}",
                header.from, header.to
            ),
        ));
    }
    Ok(ExportVerified {
        events: parsed.len() as u64,
        header,
        checkpoint,
    })
}

/// Writes the export of `[from, to)` of `reader`'s log against `checkpoint` (which must cover
/// `to`) to `sink`, a line at a time (memory stays that of one chunk of events).
pub fn export(
    reader: &super::LedgerReader,
    checkpoint: &Checkpoint,
    from: u64,
    to: u64,
    mut sink: impl FnMut(String) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    if from > to || to > checkpoint.size {
        return Err(LedgerError::OutOfRange(format!(
            "export {from}..{to}: the range must be within the checkpoint's {} entries",
            checkpoint.size
        )));
    }
    sink(header_line(&ExportHeader {
        format: EXPORT_FORMAT.into(),
        origin: checkpoint.origin.clone(),
        vkey: reader.verifier().text().to_string(),
        from,
        to,
        checkpoint: checkpoint.note.clone(),
    }))?;
    let mut at = from;
    while at < to {
        let leaves = reader.leaves(at, (to - at).min(1000))?;
        for leaf in leaves {
            sink(event_line(at, &leaf, &reader.inclusion_proof(at, checkpoint.size)?)?)?;
            at += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::event;
    use crate::ledger::Ledger;
    use crate::tlog::LogKey;

    fn exported(from: u64, to: u64) -> (LogKey, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let key = LogKey::generate("exchange.test/node/js.gongan").unwrap().0;
        let mut ledger = Ledger::open(dir.path(), key.clone()).unwrap();
        let mut group = ledger.begin().unwrap();
        group.stage(&(0..12).map(event).collect::<Vec<_>>()).unwrap();
        ledger.commit(group).unwrap();
        let checkpoint = ledger.checkpoint().unwrap();
        let mut lines = Vec::new();
        export(&ledger.reader().unwrap(), &checkpoint, from, to, |l| {
            lines.push(l);
            Ok(())
        })
        .unwrap();
        (key, lines)
    }

    fn verify(key: &LogKey, lines: &[String]) -> Result<ExportVerified, VerifyError> {
        verify_export(std::io::Cursor::new(lines.join("\n")), &key.verifier())
    }

    #[test]
    fn an_export_verifies_offline_and_every_alteration_is_located() {
        let (key, lines) = exported(3, 10);
        assert_eq!(lines.len(), 8);
        let verified = verify(&key, &lines).unwrap();
        assert_eq!((verified.events, verified.header.from, verified.header.to), (7, 3, 10));
        assert_eq!(verified.checkpoint.size, 12);

        let check = |alter: &dyn Fn(&mut Vec<String>), index: u64, what: &str| {
            let mut altered = lines.clone();
            alter(&mut altered);
            let err = verify(&key, &altered).unwrap_err();
            assert_eq!(err.index, index, "{what}: {err}");
            assert!(err.why.contains(what), "{what}: {err}");
        };
        check(&|l| l[3] = l[3].replace("\"allow\"", "\"deny\""), 5, "changed");
        check(&|l| drop(l.remove(4)), 6, "dropped");
        check(&|l| l.swap(2, 3), 4, "swapped with entry 5");
        // The events exchanged, each line keeping its index and proof.
        check(
            &|l| {
                let (a, b) = (l[2].clone(), l[3].clone());
                let event =
                    |line: &str| line[line.find("\"event\":").unwrap()..line.find(",\"proof\"").unwrap()].to_string();
                l[2] = a.replace(&event(&a), &event(&b));
                l[3] = b.replace(&event(&b), &event(&a));
            },
            4,
            "swapped with entry 5",
        );
        check(&|l| l.truncate(6), 8, "cut off the end");
        check(&|l| l.push(l[7].clone()), 10, "beyond the export's range");
        let (other, _) = LogKey::generate("exchange.test/node/js.gongan").unwrap();
        let err = verify(&other, &lines).unwrap_err();
        assert!(err.why.contains("another key signed it"), "{err}");
    }
}
