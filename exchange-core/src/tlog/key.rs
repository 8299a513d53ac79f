//! Log keys, verifier keys and signed checkpoints.

use std::io::Write as _;
use std::path::Path;

use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, Verifier as _, VerifierList};

use super::{base64, Hash, TlogError};

/// Ed25519, the only signature type of C2SP signed notes we sign with.
const ALG_ED25519: u8 = 0x01;

/// A log's signing key; its name is the log's origin.
#[derive(Clone)]
pub struct LogKey {
    signer: StandardSigner,
    vkey: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("vkey", &self.vkey)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A new random key named `name`, and its private text (keep it secret).
    pub fn generate(name: &str) -> Result<(Self, String), TlogError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(TlogError::Key(format!(
                "{name:?} cannot name a key (it must be non-empty, without spaces or '+')"
            )));
        }
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| TlogError::Key("the system's random source failed".into()))?;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| TlogError::Key("could not derive an Ed25519 key".into()))?;
        let public = [&[ALG_ED25519], ring::signature::KeyPair::public_key(&pair).as_ref()].concat();
        let id = signed_note::key_id(name, &public);
        let secret = [&[ALG_ED25519], seed.as_slice()].concat();
        let text = format!("PRIVATE+KEY+{name}+{id:08x}+{}", base64(&secret));
        Ok((Self::from_text(&text)?, text))
    }

    /// The key in Go's private-key text (`PRIVATE+KEY+<name>+<id>+<base64>`).
    pub fn from_text(text: &str) -> Result<Self, TlogError> {
        let text = text.trim();
        let bad = || TlogError::Key("not a private key text (PRIVATE+KEY+<name>+<key id>+<base64>)".into());
        // Checks the form, the type and that the key id is this key's.
        let signer = StandardSigner::new(text).map_err(|_| bad())?;
        let parts: Vec<&str> = text.splitn(5, '+').collect();
        let [_, _, name, id, secret] = parts[..] else {
            return Err(bad());
        };
        let secret = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret).map_err(|_| bad())?;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(secret.get(1..).unwrap_or_default())
            .map_err(|_| bad())?;
        let public = [&[ALG_ED25519], ring::signature::KeyPair::public_key(&pair).as_ref()].concat();
        let vkey = format!("{name}+{id}+{}", base64(&public));
        Ok(Self { signer, vkey })
    }

    /// Reads the key at `path`, or creates one named `name` there (mode 0600) when there is
    /// none; says whether it was created. A key that names another log is refused: the log it
    /// signs for is fixed by its name.
    pub fn load_or_create(path: &Path, name: &str) -> Result<(Self, bool), TlogError> {
        let io = |e: std::io::Error| TlogError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = Self::from_text(&text).map_err(|e| TlogError::Io {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                if key.name() != name {
                    return Err(TlogError::Io {
                        path: path.to_path_buf(),
                        message: format!(
                            "the key signs for {:?}, not {name:?}; a log's key cannot change its name \
                             (move the file away to start a new log, and have an admin rotate the pin)",
                            key.name()
                        ),
                    });
                }
                Ok((key, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, text) = Self::generate(name)?;
                let tmp = path.with_extension("new");
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::datadir::FILE_MODE);
                let mut file = options.open(&tmp).map_err(io)?;
                file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                std::fs::rename(&tmp, path).map_err(io)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                }
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's name: the origin of the log it signs.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key text anyone checks this key's signatures with.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The verifier of this key's signatures.
    pub fn verifier(&self) -> LogVerifier {
        LogVerifier::parse(&self.vkey).expect("a key's own verifier key parses")
    }

    /// Signs the checkpoint of a tree of `size` leaves with root `root`, origin the key's name.
    pub fn sign_checkpoint(&self, size: u64, root: Hash) -> Result<Checkpoint, TlogError> {
        let body =
            tlog_tiles::Checkpoint::new(self.name(), size, root, "").map_err(|e| TlogError::Note(e.to_string()))?;
        let mut note = Note::new(&body.to_bytes(), &[]).map_err(|e| TlogError::Note(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| TlogError::Note(e.to_string()))?;
        let text = String::from_utf8(note.to_bytes()).map_err(|e| TlogError::Note(e.to_string()))?;
        Ok(Checkpoint {
            origin: self.name().to_string(),
            size,
            root,
            note: text,
        })
    }
}

/// A verifier key: checks one log's signatures.
#[derive(Clone)]
pub struct LogVerifier {
    inner: StandardVerifier,
    text: String,
}

impl std::fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl LogVerifier {
    /// Parses verifier key text (`<name>+<key id>+<base64(type ‖ public key)>`).
    pub fn parse(vkey: &str) -> Result<Self, TlogError> {
        let inner = StandardVerifier::new(vkey.trim()).map_err(|e| {
            TlogError::Key(format!(
                "{:?} is not a verifier key ({e}); a key reads <name>+<8 hex digits>+<base64>, as `exchange status` \
                     prints it (log vkey) and `exchange dept ledger DEPT` shows the one the registry pinned",
                vkey.trim()
            ))
        })?;
        Ok(Self {
            inner,
            text: vkey.trim().to_string(),
        })
    }

    /// The name of the log whose signatures this checks.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The key's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Opens a signed note: its text, once a signature by this key verifies. Other signatures
    /// (a witness's cosignature) are allowed and not checked here.
    pub fn open_note(&self, note: &[u8]) -> Result<Vec<u8>, TlogError> {
        let parsed = Note::from_bytes(note).map_err(|e| TlogError::Note(e.to_string()))?;
        let known = VerifierList::new(vec![Box::new(self.inner.clone())]);
        parsed.verify(&known).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => TlogError::Note(format!("not signed by {}", self.text)),
            other => TlogError::Note(other.to_string()),
        })?;
        Ok(parsed.text().to_vec())
    }

    /// Opens a checkpoint signed by this key for the log it names.
    pub fn open_checkpoint(&self, note: &[u8]) -> Result<Checkpoint, TlogError> {
        let text = self.open_note(note)?;
        let body = tlog_tiles::Checkpoint::from_bytes(&text).map_err(|e| TlogError::Note(e.to_string()))?;
        if body.origin() != self.name() {
            return Err(TlogError::Note(format!(
                "origin {:?} is not the log {:?} this key signs for",
                body.origin(),
                self.name()
            )));
        }
        Ok(Checkpoint {
            origin: body.origin().to_string(),
            size: body.size(),
            root: *body.hash(),
            note: String::from_utf8_lossy(note).into_owned(),
        })
    }
}

/// A signed checkpoint: a log's size and root at one moment, and the note that says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The log's origin.
    pub origin: String,
    /// How many leaves.
    pub size: u64,
    /// The Merkle root of those leaves.
    pub root: Hash,
    /// The signed note, verbatim.
    pub note: String,
}
