//! Transparency-log formats: RFC 6962 Merkle trees, C2SP signed notes and checkpoints, and
//! C2SP tlog-proof files. Everything here is an open standard, so that anyone can check our logs
//! with their own tools (Go's `golang.org/x/mod/sumdb/note` and `sumdb/tlog`, for example).
//!
//! - A **leaf** is a byte string; its hash is `SHA-256(0x00 ‖ leaf)` and an interior node's is
//!   `SHA-256(0x01 ‖ left ‖ right)` (RFC 6962 §2.1). What a leaf holds is the ledger's business
//!   (`crate::ledger`: one audit event's JSON).
//! - A **checkpoint** is the C2SP `tlog-checkpoint` text `<origin>\n<size>\n<base64 root>\n`,
//!   signed as a C2SP `signed-note` with an Ed25519 key whose name is the origin.
//! - A **log key** ([`LogKey`]) is kept as Go's private-key text
//!   (`PRIVATE+KEY+<name>+<key id>+<base64>`); its public half is the verifier key text
//!   `<name>+<key id>+<base64(0x01 ‖ public key)>` ([`LogKey::vkey`]).
//! - A **proof file** ([`ProofFile`]) is a C2SP `tlog-proof`: one leaf's inclusion proof with the
//!   checkpoint it leads to, the leaf itself in its `extra` line.
//!
//! Merkle arithmetic is `tlog_tiles` (a port of Go's `sumdb/tlog`): hashes are stored by Go's
//! stored-hash index ([`stored_hash_index`]), so a log keeps one 32-byte hash per node in a flat
//! file and proves any leaf or any two sizes from it. The verification rules at the edges
//! (empty trees, equal sizes) are those of the RFC 6962 test vectors of transparency-dev/merkle,
//! which the tests run in full.

mod key;
mod proof_file;
#[cfg(test)]
mod tests;

pub use key::{Checkpoint, LogKey, LogVerifier};
pub use proof_file::ProofFile;
pub use tlog_tiles::{
    prove_record, prove_tree, record_hash as leaf_hash, split_stored_hash_index, stored_hash_count, stored_hash_index,
    stored_hashes, tree_hash, Hash, HashReader, EMPTY_HASH,
};

use base64::Engine as _;

/// Why a proof, checkpoint, key or proof file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    /// A proof does not lead to the root it should.
    #[error("proof does not verify: {0}")]
    Proof(String),
    /// A signed note or checkpoint is malformed or not signed by the expected key.
    #[error("checkpoint: {0}")]
    Note(String),
    /// A key's text is malformed, or names another log.
    #[error("log key: {0}")]
    Key(String),
    /// A proof file is malformed.
    #[error("proof file: {0}")]
    Format(String),
    /// A key file could not be read or written.
    #[error("log key {path}: {message}")]
    Io {
        /// The key file.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
}

fn proof_error(why: impl std::fmt::Display) -> TlogError {
    TlogError::Proof(why.to_string())
}

/// Standard base64 (RFC 4648 §4), the encoding of every hash in these formats.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Parses one base64 hash.
pub fn parse_hash(text: &str) -> Result<Hash, TlogError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| TlogError::Format(format!("hash {text:?} is not base64: {e}")))?;
    to_hash(&bytes).ok_or_else(|| TlogError::Format(format!("hash {text:?} is not 32 bytes")))
}

fn to_hash(bytes: &[u8]) -> Option<Hash> {
    Some(Hash(bytes.try_into().ok()?))
}

fn to_hashes<H: AsRef<[u8]>>(proof: &[H]) -> Result<Vec<Hash>, TlogError> {
    proof
        .iter()
        .enumerate()
        .map(|(i, h)| to_hash(h.as_ref()).ok_or_else(|| proof_error(format!("proof hash {i} is not 32 bytes"))))
        .collect()
}

/// Checks that `proof` shows the leaf with hash `leaf_hash` at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 6962 §2.1.1). Hashes are taken as bytes, so that a hash of
/// the wrong length is a failed proof rather than a panic.
pub fn verify_inclusion<H: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[H],
    root: &[u8],
) -> Result<(), TlogError> {
    if index >= size {
        return Err(proof_error(format!("index {index} is not in a tree of {size}")));
    }
    let leaf = to_hash(leaf_hash).ok_or_else(|| proof_error("the leaf hash is not 32 bytes"))?;
    let root = to_hash(root).ok_or_else(|| proof_error("the root is not 32 bytes"))?;
    tlog_tiles::check_record(&to_hashes(proof)?, size, root, index, leaf)
        .map_err(|e| proof_error(format!("leaf {index} in a tree of {size}: {e}")))
}

/// Checks that `proof` shows the tree of `size1` leaves with root `root1` is a prefix of the
/// tree of `size2` leaves with root `root2` (RFC 6962 §2.1.2). Equal sizes need an empty proof
/// and equal roots; a proof from the empty tree proves nothing and is refused, as a witness
/// refuses it (a log's first checkpoint is taken on its own).
pub fn verify_consistency<H: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[H],
) -> Result<(), TlogError> {
    if size1 > size2 {
        return Err(proof_error(format!("a tree of {size2} cannot extend one of {size1}")));
    }
    if size1 == 0 {
        return Err(proof_error("a consistency proof from the empty tree proves nothing"));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(proof_error("trees of the same size need an empty proof"));
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(proof_error(format!("two different roots for the same size {size1}")))
        };
    }
    let root1 = to_hash(root1).ok_or_else(|| proof_error("the first root is not 32 bytes"))?;
    let root2 = to_hash(root2).ok_or_else(|| proof_error("the second root is not 32 bytes"))?;
    tlog_tiles::check_tree(&to_hashes(proof)?, size2, root2, size1, root1)
        .map_err(|e| proof_error(format!("tree {size1} to tree {size2}: {e}")))
}

/// The newest stored hash of each level of a tree: all that appending a leaf or computing the
/// root needs (the left siblings of the next leaf's path are each the newest complete node of
/// their level), so a log can be grown and checked in constant memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    levels: Vec<Option<(u64, [u8; 32])>>,
}

impl Frontier {
    /// How many leaves the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Records stored hash `index` (as read from a log's hash file).
    fn insert(&mut self, index: u64, hash: Hash) {
        let level = usize::from(split_stored_hash_index(index).0);
        if self.levels.len() <= level {
            self.levels.resize(level + 1, None);
        }
        self.levels[level] = Some((index, hash.0));
    }

    /// The frontier of a tree of `size` leaves, read from its stored hashes.
    pub fn read(size: u64, hashes: &impl HashReader) -> Result<Self, tlog_tiles::Error> {
        let mut frontier = Self {
            size,
            levels: Vec::new(),
        };
        let mut level = 0u8;
        while level < 64 && size >> level > 0 {
            let index = stored_hash_index(level, (size >> level) - 1);
            frontier.insert(index, hashes.read_hashes(&[index])?[0]);
            level += 1;
        }
        Ok(frontier)
    }

    /// Appends a leaf by its hash; returns the hashes to store for it, from stored-hash index
    /// `stored_hash_index(0, size)` on.
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<Hash> {
        let hashes = tlog_tiles::stored_hashes_for_record_hash(self.size, leaf_hash, self)
            .expect("the frontier holds every hash a new leaf needs");
        let first = stored_hash_index(0, self.size);
        for (i, hash) in hashes.iter().enumerate() {
            self.insert(first + i as u64, *hash);
        }
        self.size += 1;
        hashes
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        tree_hash(self.size, self).expect("the frontier holds the root's subtrees")
    }

    /// The frontier as text (for storing it): the size, then `index:base64` per level.
    pub fn to_text(&self) -> String {
        let mut out = self.size.to_string();
        for (index, hash) in self.levels.iter().flatten() {
            out.push_str(&format!(" {index}:{}", base64(hash)));
        }
        out
    }

    /// Reads [`Frontier::to_text`].
    pub fn from_text(text: &str) -> Result<Self, TlogError> {
        let bad = || TlogError::Format(format!("not a tree frontier: {text:?}"));
        let mut parts = text.split(' ');
        let size = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let mut frontier = Self {
            size,
            levels: Vec::new(),
        };
        for part in parts {
            let (index, hash) = part.split_once(':').ok_or_else(bad)?;
            frontier.insert(index.parse().map_err(|_| bad())?, parse_hash(hash)?);
        }
        // What the size needs, and nothing else: a tree of another size is another frontier.
        let expected = Self::read(size, &frontier).map_err(|_| bad())?;
        if expected != frontier {
            return Err(bad());
        }
        Ok(frontier)
    }
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&index| {
                let level = usize::from(split_stored_hash_index(index).0);
                match self.levels.get(level) {
                    Some(Some((at, hash))) if *at == index => Ok(Hash(*hash)),
                    _ => Err(tlog_tiles::Error::IndexesNotInTree),
                }
            })
            .collect()
    }
}
