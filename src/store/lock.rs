//! One dockpub per data directory: two would each requeue the other's running
//! builds as "interrupted" and run them twice.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "dockpub.lock";

/// Why dockpub may not use a data directory.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another dockpub is serving from it.
    #[error("the data directory {dir} is in use by another dockpub (pid {pid}); stop it or choose another --data-dir")]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it into the lock file.
        pid: String,
    },
    /// The directory or its lock file could not be created, opened or locked.
    #[error("cannot lock the data directory {dir}: {source}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Held for as long as the server runs; the OS releases it when the process
/// ends, also after `kill -9`, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, or says which process holds it. Creates the directory
    /// (0700) and the lock file (0600), and nothing else in it, before the
    /// lock is held.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io {
            dir: data_dir.to_path_buf(),
            source,
        };
        super::private::private_dir(data_dir).map_err(io)?;
        let path = data_dir.join(LOCK_FILE);
        super::private::private_file(&path).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                writeln!(file, "{}", std::process::id()).map_err(io)?;
                Ok(DataDirLock { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Err(LockError::Held {
                    dir: data_dir.to_path_buf(),
                    pid: pid.trim().to_string(),
                })
            }
            Err(TryLockError::Error(err)) => Err(io(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again");
    }
}
