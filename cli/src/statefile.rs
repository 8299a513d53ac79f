//! What the resumable commands (`publish`, `export`, `subscribe --out`) share: a small JSON state
//! file beside the file they read or write, replaced whole on every save, and private output
//! files (their lines are records, personal data in them).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `path` with `suffix` added to its name: `people.ndjson` → `people.ndjson.import-state.json`.
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `state` to `path` through a temporary file renamed over it, so a crash leaves the old
/// state or the new one, never half of one.
pub(crate) fn save<T: Serialize>(state: &T, path: &Path) -> anyhow::Result<()> {
    let tmp = beside(path, ".tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The state in `path`, or `None` when there is none; `what` names it in an error.
pub(crate) fn load<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not {what}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Opens `path` for writing (and reading), made if missing with mode 0600, kept as it is.
pub(crate) fn open_private(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_saved_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = beside(&dir.path().join("people.ndjson"), ".import-state.json");
        assert!(path.ends_with("people.ndjson.import-state.json"));
        assert_eq!(load::<Vec<u32>>(&path, "a state file").unwrap(), None);
        save(&vec![1u32, 2], &path).unwrap();
        assert_eq!(load::<Vec<u32>>(&path, "a state file").unwrap(), Some(vec![1, 2]));
        std::fs::write(&path, "{").unwrap();
        let error = load::<Vec<u32>>(&path, "a state file").unwrap_err().to_string();
        assert!(error.contains("is not a state file"), "{error}");
        let file = open_private(&dir.path().join("out")).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }
}
