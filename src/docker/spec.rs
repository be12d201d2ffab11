//! What a build asks of a daemon, whichever way it is built (the build API or,
//! with secrets, BuildKit's session).

use std::path::Path;
use std::time::Duration;

use super::DockerError;
use crate::domain::{BuildOptions, BuildSecret, Credentials};
use crate::ssh_agent::AgentKey;

/// The build arg that makes BuildKit write cache metadata into the image.
pub const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

/// What the daemon builds from.
pub enum BuildSource<'a> {
    /// A lone Dockerfile, packed into a one-file context here.
    Dockerfile(&'a str),
    /// A stored context archive (plain or gzip tar) and the Dockerfile's path in it.
    Archive { path: &'a Path, dockerfile: &'a str },
}

pub struct BuildSpec<'a> {
    pub source: BuildSource<'a>,
    /// `repository:tag` the image is tagged with when it is built.
    pub reference: &'a str,
    pub options: &'a BuildOptions,
    /// Logins for the registries the build pulls from, by auth server address.
    pub pull_logins: &'a [(String, Credentials)],
    /// Secrets its `RUN --mount=type=secret` steps read; BuildKit only.
    pub secrets: &'a [BuildSecret],
    /// The `[ssh.ID]` keys its `RUN --mount=type=ssh` steps may use; BuildKit
    /// only, over dockpub's own session.
    pub ssh: &'a [AgentKey],
    /// Images whose layers the build may reuse; one that does not exist is skipped.
    pub cache_from: &'a [String],
    /// BuildKit writes cache metadata into the image, for `cache_from` elsewhere.
    pub inline_cache: bool,
    /// The build is stopped, and fails, past this.
    pub timeout: Duration,
}

/// The build context of a lone Dockerfile: a tar archive holding only it.
pub fn dockerfile_context(dockerfile: &str) -> Result<Vec<u8>, DockerError> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let io_error = |err: std::io::Error| {
        DockerError::BuildFailed(format!("cannot pack the Dockerfile: {err}"))
    };
    archive
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(io_error)?;
    archive.into_inner().map_err(io_error)
}
