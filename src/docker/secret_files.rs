//! Secrets for bollard's gRPC build (TLS daemons): each value in an anonymous
//! memory file (memfd) that BuildKit's secret provider reads by path, never on disk.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::DockerError;
use crate::domain::BuildSecret;

/// Each secret in a memory file, readable at `/proc/self/fd/N` while this lives.
pub(super) struct SecretFiles {
    files: Vec<(String, File)>,
}

impl SecretFiles {
    pub(super) fn new(secrets: &[BuildSecret]) -> Result<Self, DockerError> {
        let files = secrets
            .iter()
            .map(|secret| Ok((secret.id.clone(), memory_file(secret.value())?)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|err| {
                DockerError::BuildFailed(format!("cannot hold a build secret: {err}"))
            })?;
        Ok(SecretFiles { files })
    }

    pub(super) fn paths(&self) -> impl Iterator<Item = (&str, PathBuf)> {
        self.files.iter().map(|(id, file)| {
            let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            (id.as_str(), path)
        })
    }
}

fn memory_file(value: &[u8]) -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create("dockpub-secret", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = File::from(fd);
    file.write_all(value)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_reads_back_its_value_from_memory() {
        let secret = BuildSecret::new("token", b"s3cr3t".to_vec()).unwrap();
        let files = SecretFiles::new(&[secret]).unwrap();
        let (id, path) = files.paths().next().unwrap();
        assert_eq!(id, "token");
        assert_eq!(std::fs::read(&path).unwrap(), b"s3cr3t");
    }
}
