//! C2SP `tlog-proof` files: one leaf, its inclusion proof and the checkpoint it leads to, to be
//! handed to someone outside and checked with nothing but the log's verifier key.

use super::{base64, leaf_hash, parse_hash, verify_inclusion, Checkpoint, Hash, LogVerifier, TlogError};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A proof that one leaf is in a log.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofFile {
    /// The leaf itself (our `extra` line: the verifier needs it to compute the leaf hash).
    pub leaf: Vec<u8>,
    /// The leaf's zero-based index.
    pub index: u64,
    /// Its inclusion proof in the checkpoint's tree, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

impl ProofFile {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\nextra {}\nindex {}\n", base64(&self.leaf), self.index);
        for hash in &self.proof {
            out.push_str(&base64(&hash.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a file's text (nothing is verified yet; see [`ProofFile::verify`]).
    pub fn parse(text: &str) -> Result<Self, TlogError> {
        let bad = |why: &str| TlogError::Format(why.to_string());
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        let mut leaf = None;
        if let Some(extra) = line.strip_prefix("extra ") {
            leaf = Some(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, extra)
                    .map_err(|_| bad("the extra line is not base64"))?,
            );
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let index = line.strip_prefix("index ").ok_or_else(|| bad("no index line"))?;
        let parsed: u64 = index.parse().map_err(|_| bad("the index is not a number"))?;
        if parsed.to_string() != index {
            return Err(bad("the index is not a plain decimal"));
        }
        let proof = lines.map(parse_hash).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            leaf: leaf.ok_or_else(|| bad("no extra line with the leaf (an audit event) in it"))?,
            index: parsed,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Checks the checkpoint's signature by `log` and the leaf's inclusion in it; returns the
    /// checkpoint.
    pub fn verify(&self, log: &LogVerifier) -> Result<Checkpoint, TlogError> {
        let checkpoint = log.open_checkpoint(self.checkpoint.as_bytes())?;
        verify_inclusion(
            self.index,
            checkpoint.size,
            &leaf_hash(&self.leaf).0,
            &self.proof.iter().map(|h| h.0).collect::<Vec<_>>(),
            &checkpoint.root.0,
        )?;
        Ok(checkpoint)
    }
}
