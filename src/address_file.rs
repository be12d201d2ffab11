//! `--address-file`: where a running dockpub says which address it listens on, so
//! a script (or the test harness) that started it with `--bind HOST:0` learns the
//! port the system picked without reading the log.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The file while dockpub serves; dropping it (a clean stop) removes it.
pub(crate) struct AddressFile {
    path: PathBuf,
}

impl AddressFile {
    /// Writes `http://ADDRESS` and a newline. The text goes to a new file of a
    /// random name beside it first (created exclusively: a link planted there
    /// is never followed) and is renamed into place, so a reader that polls for
    /// the file never sees half of it.
    pub(crate) fn write(path: &Path, address: SocketAddr) -> std::io::Result<AddressFile> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let mut partial = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(folder)?;
        writeln!(partial, "http://{address}")?;
        // Readable as before: the address is no secret, and a script of another
        // user may wait for it.
        partial
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        partial.persist(path).map_err(|err| err.error)?;
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
