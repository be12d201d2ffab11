//! Everything bollard. The daemon side is a pool of builders, each a handle on one
//! Docker Engine with its own build slots; nothing else in dockpub talks to Docker.

mod auth;
mod build;
mod pool;
mod push;

use bollard::Docker;
use tokio::sync::OnceCell;

pub use build::{step_container, BuildSource, BuildSpec};
pub use pool::{BuilderPool, Slot};
pub use push::PushUpdate;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon of builder '{builder}': {source}")]
    Unreachable {
        builder: String,
        source: bollard::errors::Error,
    },
    /// A Dockerfile step failed: the daemon's own message.
    #[error("{0}")]
    BuildFailed(String),
    #[error("timed out after {secs} s")]
    TimedOut { secs: u64 },
    #[error("the daemon ended the build without reporting an image id")]
    NoImageId,
    #[error("push of {reference} failed: {message}")]
    PushRejected { reference: String, message: String },
    #[error("the registry did not confirm the push of {reference}: {reason}")]
    Unconfirmed { reference: String, reason: String },
    #[error("Docker daemon error: {0}")]
    Daemon(#[from] bollard::errors::Error),
}

impl DockerError {
    /// The daemon could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        use bollard::errors::Error as E;
        match self {
            DockerError::Unreachable { .. } => true,
            DockerError::Daemon(err) => matches!(
                err,
                E::IOError { .. }
                    | E::HyperLegacyError { .. }
                    | E::RequestTimeoutError
                    | E::SocketNotFoundError(_)
            ),
            _ => false,
        }
    }
}

/// How to reach one Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderConfig {
    pub name: String,
    /// `unix:///path` or `tcp://host:port`; None means DOCKER_HOST or the local socket.
    pub host: Option<String>,
    pub max_concurrent_builds: usize,
    pub build_network: Option<String>,
    /// Memory limit of each step's container (bollard takes i32: see config).
    pub build_memory_bytes: Option<i32>,
    pub build_cpu_shares: Option<i32>,
}

/// A handle on one Docker Engine.
pub struct Builder {
    config: BuilderConfig,
    /// Connected and version-negotiated on first use, so a daemon that is down at
    /// start is picked up once it answers.
    client: OnceCell<Docker>,
    push_locks: push::RepositoryLocks,
}

impl Builder {
    pub fn new(config: BuilderConfig) -> Self {
        Builder {
            config,
            client: OnceCell::new(),
            push_locks: push::RepositoryLocks::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    async fn client(&self) -> Result<&Docker, DockerError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match &self.config.host {
                    None => Docker::connect_with_defaults(),
                    Some(host) => Docker::connect_with_host(host),
                };
                let unreachable = |source| DockerError::Unreachable {
                    builder: self.config.name.clone(),
                    source,
                };
                let docker = docker.map_err(unreachable)?;
                docker.negotiate_version().await.map_err(unreachable)
            })
            .await
    }

    /// Whether the daemon answers right now.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.client().await?.ping().await?;
        Ok(())
    }

    /// Removes `reference` only while it still names `image_id`: a later build may
    /// have moved the tag, and that image is not ours to untag.
    /// Returns whether a tag was removed.
    pub async fn remove_tag_of(
        &self,
        reference: &str,
        image_id: &str,
    ) -> Result<bool, DockerError> {
        let docker = self.client().await?;
        let current = match docker.inspect_image(reference).await {
            Ok(image) => image.id,
            Err(err) if is_not_found(&err) => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        if current.as_deref() != Some(image_id) {
            return Ok(false);
        }
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        match docker.remove_image(reference, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
