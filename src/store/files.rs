//! The files a build keeps beside its row: `builds/{id}/Dockerfile`.

use std::io::{self, Write};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct BuildFiles {
    root: PathBuf,
}

impl BuildFiles {
    pub fn open(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(BuildFiles { root })
    }

    fn dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    pub fn dockerfile_path(&self, id: i64) -> PathBuf {
        self.dir(id).join("Dockerfile")
    }

    /// Writes to a temporary file first so a crash never leaves half a Dockerfile.
    pub fn write_dockerfile(&self, id: i64, content: &str) -> io::Result<()> {
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(&dir)?;
        temp.write_all(content.as_bytes())?;
        temp.as_file().sync_all()?;
        temp.persist(self.dockerfile_path(id))
            .map_err(|err| err.error)?;
        Ok(())
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
