//! The data directory holds what the API keeps behind tokens (every build's
//! options, registry user names, callback URLs, full logs): only dockpub's own
//! user may read it, whatever the umask. The directory is 0700 and its database
//! and lock files 0600 (SQLite gives the `-wal` and `-shm` files the database
//! file's mode). A directory or file an earlier version left readable by
//! others is tightened, once, with a log line.
//!
//! Not by setting the process umask: git checkouts are made inside the data
//! directory and their files' modes go into the build context as they are.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What only the owner may read and write.
const OWNER_ONLY: u32 = 0o077;

/// Creates `dir` 0700 (its parents as the umask says), or takes an existing
/// one's permissions for others away.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists && dir.is_dir() => tighten(dir),
        Err(err) => Err(err),
    }
}

/// Creates `path` empty with mode 0600 when it does not exist yet, so what
/// opens it next (SQLite) keeps that mode; tightens an existing one.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => tighten(path),
        Err(err) => Err(err),
    }
}

/// Tightens `path` when it exists; nothing when it does not.
pub fn tighten_if_present(path: &Path) -> std::io::Result<()> {
    match tighten(path) {
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes the group's and others' permissions from `path`, saying so.
fn tighten(path: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & OWNER_ONLY == 0 {
        return Ok(());
    }
    let private = mode & !OWNER_ONLY;
    std::fs::set_permissions(path, Permissions::from_mode(private))?;
    log::warn!(
        "{}: was mode {mode:04o}, readable by other users; now {private:04o}",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_and_existing_paths_end_up_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/data");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("db");
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);

        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        private_dir(&dir).unwrap();
        private_file(&db).unwrap();
        assert_eq!((mode(&dir), mode(&db)), (0o700, 0o600));
        tighten_if_present(&dir.join("missing")).unwrap();
    }
}
