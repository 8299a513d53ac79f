//! Data directories are private: a node's ledger and store hold the identity numbers of the
//! citizens it served, so nobody but the server's own user may read them.
//!
//! [`prepare`] runs before a server opens anything in its data directory. It sets the process's
//! file-creation mask to `077`, so every file and directory created from then on (by us, and by
//! sled, which creates segment and snapshot files as it goes) is `0600` or `0700`; it creates the
//! directory `0700` when missing; and it tightens what an earlier version, a copy or an operator
//! left readable by others, reporting each path so the server can say so at start.

use std::io;
use std::path::{Path, PathBuf};

/// The mode of every directory a server keeps data in.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file a server keeps data in.
pub const FILE_MODE: u32 = 0o600;

/// What [`prepare`] found.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Paths that were readable or writable by others, with the mode they had, now tightened.
    pub fixed: Vec<(PathBuf, u32)>,
    /// Paths still open to others because their mode could not be changed (owned by another
    /// user, say), with why.
    pub unfixed: Vec<(PathBuf, String)>,
}

/// Makes `dir` a private data directory (see the module documentation). Of what is in it, only
/// the entries `owns` names (and what is below them) are the server's: those are tightened, and
/// anything else is left as it is.
#[cfg(unix)]
pub fn prepare(dir: &Path, owns: impl Fn(&str) -> bool) -> io::Result<Prepared> {
    use std::os::unix::fs::DirBuilderExt as _;

    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    let mut prepared = Prepared::default();
    // The directory itself may be a link to where the data really is: that is what is tightened.
    tighten_one(dir, &std::fs::metadata(dir)?, &mut prepared);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(&owns) {
            tighten(&entry.path(), &mut prepared);
        }
    }
    Ok(prepared)
}

/// Tightens `path` and, when it is a directory, everything below it; links are not followed
/// (what they point to is not ours to change). What cannot be read or changed is reported.
#[cfg(unix)]
fn tighten(path: &Path, prepared: &mut Prepared) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return prepared.unfixed.push((path.to_path_buf(), e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return;
    }
    tighten_one(path, &meta, prepared);
    if meta.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(entry) => tighten(&entry.path(), prepared),
                        Err(e) => prepared.unfixed.push((path.to_path_buf(), e.to_string())),
                    }
                }
            }
            Err(e) => prepared.unfixed.push((path.to_path_buf(), e.to_string())),
        }
    }
}

/// Tightens one file or directory open to others, if this process's user owns it.
#[cfg(unix)]
fn tighten_one(path: &Path, meta: &std::fs::Metadata, prepared: &mut Prepared) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        let why = format!("owned by user {}, not by this server's", meta.uid());
        return prepared.unfixed.push((path.to_path_buf(), why));
    }
    let wanted = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)) {
        Ok(()) => prepared.fixed.push((path.to_path_buf(), mode)),
        Err(e) => prepared.unfixed.push((path.to_path_buf(), e.to_string())),
    }
}

/// Elsewhere only the directory is created; file modes are the platform's business.
#[cfg(not(unix))]
pub fn prepare(dir: &Path, _owns: impl Fn(&str) -> bool) -> io::Result<Prepared> {
    std::fs::create_dir_all(dir)?;
    Ok(Prepared::default())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_and_what_is_created_in_it_are_private() {
        let _umask = crate::testing::UMASK.lock().unwrap_or_else(|p| p.into_inner());
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let prepared = prepare(&dir, |_| true).unwrap();
        assert!(prepared.fixed.is_empty());
        assert_eq!(mode(&dir), 0o700);
        std::fs::write(dir.join("later"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(mode(&dir.join("later")), 0o600);
        assert_eq!(mode(&dir.join("sub")), 0o700);
    }

    #[test]
    fn modes_open_to_others_are_tightened_and_reported() {
        let _umask = crate::testing::UMASK.lock().unwrap_or_else(|p| p.into_inner());
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("store")).unwrap();
        std::fs::write(dir.join("audit.ledger"), b"x").unwrap();
        std::fs::write(dir.join("store/db"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"not the server's").unwrap();
        for (path, m) in [
            ("", 0o755),
            ("store", 0o775),
            ("audit.ledger", 0o644),
            ("store/db", 0o600),
            ("notes.txt", 0o644),
        ] {
            std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(m)).unwrap();
        }
        let owns = |name: &str| name == "store" || name == "audit.ledger";
        let prepared = prepare(&dir, owns).unwrap();
        let mut fixed: Vec<(String, u32)> = prepared
            .fixed
            .iter()
            .map(|(p, m)| (p.strip_prefix(&dir).unwrap().display().to_string(), *m))
            .collect();
        fixed.sort();
        assert_eq!(
            fixed,
            [
                ("".to_string(), 0o755),
                ("audit.ledger".into(), 0o644),
                ("store".into(), 0o775)
            ]
        );
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store")), 0o700);
        assert_eq!(mode(&dir.join("audit.ledger")), 0o600);
        assert_eq!(mode(&dir.join("store/db")), 0o600);
        assert_eq!(
            mode(&dir.join("notes.txt")),
            0o644,
            "what the server does not own is left alone"
        );
        // A second start finds nothing to say.
        assert!(prepare(&dir, owns).unwrap().fixed.is_empty());

        // A data directory that is a link: where it points is what is checked.
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let prepared = prepare(&link, owns).unwrap();
        assert_eq!(prepared.fixed.len(), 1);
        assert_eq!(mode(&real), 0o700);
    }
}
