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

/// Makes `dir` a private data directory (see the module documentation).
#[cfg(unix)]
pub fn prepare(dir: &Path) -> io::Result<Prepared> {
    use std::os::unix::fs::DirBuilderExt as _;

    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    let mut prepared = Prepared::default();
    tighten(dir, &mut prepared)?;
    Ok(prepared)
}

#[cfg(unix)]
fn tighten(path: &Path, prepared: &mut Prepared) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;

    // Symbolic links are not followed: what they point to is not ours to change.
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let wanted = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    if mode & 0o077 != 0 {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)) {
            Ok(()) => prepared.fixed.push((path.to_path_buf(), mode)),
            Err(e) => prepared.unfixed.push((path.to_path_buf(), e.to_string())),
        }
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path(), prepared)?;
        }
    }
    Ok(())
}

/// Elsewhere only the directory is created; file modes are the platform's business.
#[cfg(not(unix))]
pub fn prepare(dir: &Path) -> io::Result<Prepared> {
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
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let prepared = prepare(&dir).unwrap();
        assert!(prepared.fixed.is_empty());
        assert_eq!(mode(&dir), 0o700);
        std::fs::write(dir.join("later"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(mode(&dir.join("later")), 0o600);
        assert_eq!(mode(&dir.join("sub")), 0o700);
    }

    #[test]
    fn modes_open_to_others_are_tightened_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("store")).unwrap();
        std::fs::write(dir.join("audit.ledger"), b"x").unwrap();
        std::fs::write(dir.join("store/db"), b"x").unwrap();
        for (path, m) in [
            ("", 0o755),
            ("store", 0o775),
            ("audit.ledger", 0o644),
            ("store/db", 0o600),
        ] {
            std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(m)).unwrap();
        }
        let prepared = prepare(&dir).unwrap();
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
        // A second start finds nothing to say.
        assert!(prepare(&dir).unwrap().fixed.is_empty());
    }
}
