//! The files a build keeps beside its row: `builds/{id}/Dockerfile` and, when one
//! was sent, `builds/{id}/context.tar` (the checked archive, streamed to the daemon
//! on every run, so a build recovered after a restart has it too). Uploads wait in
//! the staging folder until they are checked and kept, or removed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::TempPath;

#[derive(Debug, Clone)]
pub struct BuildFiles {
    root: PathBuf,
    staging: PathBuf,
}

impl BuildFiles {
    /// Bytes the data directory's filesystem has free for dockpub; None when
    /// the filesystem cannot say.
    pub fn free_bytes(&self) -> Option<u64> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: a zeroed statvfs is a valid value for the call to fill in.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `stats` is writable for the call.
        if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
            return None;
        }
        Some(stats.f_bavail as u64 * stats.f_frsize as u64)
    }

    /// Opens `root`, and empties `staging`: what is there was left by a crash mid-upload.
    pub fn open(root: PathBuf, staging: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        match std::fs::remove_dir_all(&staging) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        std::fs::create_dir_all(&staging)?;
        Ok(BuildFiles { root, staging })
    }

    /// Where uploads are written while they arrive; on the same file system as the
    /// builds' folders, so keeping one is a rename.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    pub fn context_path(&self, id: i64) -> PathBuf {
        self.dir(id).join("context.tar")
    }

    /// A copy of a build's stored context in the staging folder, for a retry to keep.
    pub fn stage_copy_of_context(&self, id: i64) -> io::Result<TempPath> {
        let mut copy = tempfile::NamedTempFile::new_in(&self.staging)?;
        std::io::copy(
            &mut std::fs::File::open(self.context_path(id))?,
            copy.as_file_mut(),
        )?;
        copy.as_file().sync_all()?;
        Ok(copy.into_temp_path())
    }

    pub fn keep_context(&self, id: i64, archive: TempPath) -> io::Result<()> {
        self.keep(id, archive, self.context_path(id))
    }

    /// Moves a staged file into build `id`'s folder as `path`.
    fn keep(&self, id: i64, staged: TempPath, path: PathBuf) -> io::Result<()> {
        std::fs::create_dir_all(self.dir(id))?;
        staged.persist(path).map_err(|err| err.error)
    }

    fn dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    pub fn dockerfile_path(&self, id: i64) -> PathBuf {
        self.dir(id).join("Dockerfile")
    }

    /// Writes and syncs a Dockerfile in the staging folder, so that keeping it
    /// under its build's id is a rename (done by the store's writer, which must
    /// not wait for a disk sync) and a crash never leaves half a Dockerfile.
    pub fn stage_dockerfile(&self, content: &str) -> io::Result<TempPath> {
        let mut temp = tempfile::NamedTempFile::new_in(&self.staging)?;
        temp.write_all(content.as_bytes())?;
        temp.as_file().sync_all()?;
        Ok(temp.into_temp_path())
    }

    pub fn keep_dockerfile(&self, id: i64, staged: TempPath) -> io::Result<()> {
        self.keep(id, staged, self.dockerfile_path(id))
    }

    /// The build's provenance document: the statement, or its signed envelope.
    fn provenance_path(&self, id: i64) -> PathBuf {
        self.dir(id).join("provenance.json")
    }

    pub fn write_provenance(&self, id: i64, document: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(self.dir(id))?;
        let mut staged = tempfile::NamedTempFile::new_in(&self.staging)?;
        staged.write_all(document)?;
        staged.as_file().sync_all()?;
        self.keep(id, staged.into_temp_path(), self.provenance_path(id))
    }

    /// None when the build has none.
    pub fn read_provenance(&self, id: i64) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.provenance_path(id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub fn read_dockerfile(&self, id: i64) -> io::Result<String> {
        std::fs::read_to_string(self.dockerfile_path(id))
    }

    pub fn remove(&self, id: i64) -> io::Result<()> {
        match std::fs::remove_dir_all(self.dir(id)) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
