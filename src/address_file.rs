//! `--address-file`: where a running dockpub says which address it listens on, so
//! a script (or the test harness) that started it with `--bind HOST:0` learns the
//! port the system picked without reading the log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file while dockpub serves; dropping it (a clean stop) removes it.
pub(crate) struct AddressFile {
    path: PathBuf,
}

impl AddressFile {
    /// Writes `http://ADDRESS` and a newline. The text goes to a temporary file
    /// beside it first and is renamed into place, so a reader that polls for the
    /// file never sees half of it.
    pub(crate) fn write(path: &Path, address: SocketAddr) -> std::io::Result<AddressFile> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let partial = path.with_file_name(format!(".{name}.partial"));
        std::fs::write(&partial, format!("http://{address}\n"))?;
        std::fs::rename(&partial, path)?;
        Ok(AddressFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for AddressFile {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            log::warn!(
                "cannot remove the address file {}: {err}",
                self.path.display()
            );
        }
    }
}
