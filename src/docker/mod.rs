//! Everything bollard. The daemon side is a pool of builders, each a handle on one
//! Docker Engine with its own build slots; nothing else in dockpub talks to Docker.

mod auth;
mod build;
mod build_status;
mod buildkit_session;
mod events;
mod health;
mod image_builder;
mod pool;
mod push;
mod secret_build;
mod secret_files;
mod spec;
mod ssh_forward;

use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::named_locks::NamedLocks;
use crate::sync::Locked;

pub use events::BuildEvent;
pub use health::spawn_health_checks;
pub use image_builder::ImageBuilder;
pub use pool::{BuilderPool, BuilderStatus, Slot};
pub use spec::{BuildSource, BuildSpec};

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
    /// The daemon cannot build with BuildKit at all; the legacy builder is tried.
    #[error("the daemon refused BuildKit: {0}")]
    BuildkitRefused(String),
    #[error("the daemon ended the build without reporting an image id")]
    NoImageId,
    #[error("push of {reference} failed: {message}")]
    PushRejected { reference: String, message: String },
    /// The push made no progress for the idle limit, twice.
    #[error("the registry {registry} stopped answering: the push of {reference} made no progress for {secs} s (push_idle_timeout_secs), also when tried once more")]
    RegistryStalled {
        registry: String,
        reference: String,
        secs: u64,
    },
    #[error("the registry did not confirm the push of {reference}: {reason}")]
    Unconfirmed { reference: String, reason: String },
    /// The push went by name, and the name no longer named this build's image.
    #[error("the push of {reference} sent another image than this build's {image_id} (manifest {pushed_digest}): the local tag was moved while it was pushed")]
    PushedAnotherImage {
        reference: String,
        image_id: String,
        pushed_digest: String,
    },
    /// Another push of the same tag landed after this one.
    #[error("the registry now serves {serves} for {reference}, not this build's manifest {pushed_digest}")]
    RegistryServesOther {
        reference: String,
        serves: String,
        pushed_digest: String,
    },
    #[error("Docker daemon error: {0}")]
    Daemon(#[from] bollard::errors::Error),
    #[error("builder '{builder}' did not answer within {secs} s")]
    NoAnswer { builder: String, secs: u64 },
}

impl DockerError {
    /// The daemon could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        use bollard::errors::Error as E;
        match self {
            DockerError::Unreachable { .. } | DockerError::NoAnswer { .. } => true,
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
    /// Builds that ask for BuildKit get it here; false builds everything legacy.
    pub buildkit: bool,
    /// Client certificate, key and CA for a `tcp://` daemon started with `--tlsverify`.
    pub tls: Option<TlsFiles>,
    /// Platforms (`os/arch`) builds may ask for here; empty means the daemon's own.
    pub platforms: Vec<String>,
}

/// PEM files for a daemon reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// bollard's request timeout for TLS connections: the one its other connect
/// functions use by default, so a TLS builder behaves like the others.
const CONNECT_TIMEOUT_SECS: u64 = 120;

/// A handle on one Docker Engine.
pub struct Builder {
    config: BuilderConfig,
    /// Connected and version-negotiated on first use, so a daemon that is down at
    /// start is picked up once it answers.
    client: OnceCell<Docker>,
    /// The connection before version negotiation, kept while a down daemon is
    /// retried so that its TLS files are read again only when they change.
    unnegotiated: std::sync::Mutex<Option<(Docker, TlsStamp)>>,
    push_locks: NamedLocks,
}

/// When each TLS file last changed; None without TLS.
type TlsStamp = Option<Vec<Option<std::time::SystemTime>>>;

impl Builder {
    pub fn new(config: BuilderConfig) -> Self {
        Builder {
            config,
            client: OnceCell::new(),
            unnegotiated: std::sync::Mutex::new(None),
            push_locks: NamedLocks::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Where the daemon is, as configured (or as DOCKER_HOST / the default socket
    /// say); never includes TLS material.
    pub fn host(&self) -> String {
        match &self.config.host {
            Some(host) => host.clone(),
            None => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
        }
    }

    pub fn uses_tls(&self) -> bool {
        self.config.tls.is_some()
    }

    pub fn slots(&self) -> usize {
        self.config.max_concurrent_builds
    }

    fn connect(&self) -> Result<Docker, bollard::errors::Error> {
        match (&self.config.host, &self.config.tls) {
            (Some(host), Some(tls)) => Docker::connect_with_ssl(
                host,
                &tls.key,
                &tls.cert,
                &tls.ca,
                CONNECT_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            ),
            (Some(host), None) => Docker::connect_with_host(host),
            (None, _) => Docker::connect_with_defaults(),
        }
    }

    /// A connection to negotiate on: the kept one while the TLS files are as they
    /// were, else a new one (which reads them).
    fn connection(&self) -> Result<Docker, bollard::errors::Error> {
        let stamp = self.config.tls.as_ref().map(|tls| {
            [&tls.ca, &tls.cert, &tls.key]
                .iter()
                .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
                .collect()
        });
        let mut kept = self.unnegotiated.locked();
        if let Some((docker, kept_stamp)) = kept.as_ref() {
            if *kept_stamp == stamp {
                return Ok(docker.clone());
            }
        }
        let docker = self.connect()?;
        *kept = Some((docker.clone(), stamp));
        Ok(docker)
    }

    async fn client(&self) -> Result<&Docker, DockerError> {
        self.client
            .get_or_try_init(|| async {
                let docker = self.connection();
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

    /// Like [`Builder::ping`], but a daemon that hangs counts as not answering.
    pub async fn ping_within(&self, limit: Duration) -> Result<(), DockerError> {
        match tokio::time::timeout(limit, self.ping()).await {
            Ok(result) => result,
            Err(_) => Err(DockerError::NoAnswer {
                builder: self.name().to_string(),
                secs: limit.as_secs(),
            }),
        }
    }

    /// The daemon's own platform, as `os/arch` in Go's names (`linux/amd64`).
    pub async fn daemon_platform(&self) -> Result<String, DockerError> {
        let info = self.client().await?.info().await?;
        let os = info.os_type.unwrap_or_else(|| "linux".into());
        let arch = info.architecture.unwrap_or_default();
        Ok(format!("{os}/{}", go_architecture(&arch)))
    }

    /// The local image `reference` names now, with all its tags; None when it names none.
    pub async fn local_image(&self, reference: &str) -> Result<Option<LocalImage>, DockerError> {
        match self.client().await?.inspect_image(reference).await {
            Ok(image) => Ok(Some(LocalImage {
                id: image.id.unwrap_or_default(),
                tags: image.repo_tags.unwrap_or_default(),
            })),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The platform a local image was built for, `os/arch[/variant]`.
    pub async fn image_platform(&self, image: &str) -> Result<String, DockerError> {
        let inspected = self.client().await?.inspect_image(image).await?;
        let os = inspected.os.unwrap_or_else(|| "linux".into());
        let arch = inspected.architecture.unwrap_or_default();
        Ok(match inspected.variant.filter(|v| !v.is_empty()) {
            Some(variant) => format!("{os}/{arch}/{variant}"),
            None => format!("{os}/{arch}"),
        })
    }

    /// Every `name:tag` on the daemon starting with `prefix` (`name:` and the
    /// tag's start).
    pub async fn names_starting_with(&self, prefix: &str) -> Result<Vec<String>, DockerError> {
        let filters = std::collections::HashMap::from([(
            "reference".to_string(),
            vec![format!("{prefix}*")],
        )]);
        let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self.client().await?.list_images(Some(options)).await?;
        Ok(images
            .into_iter()
            .flat_map(|image| image.repo_tags)
            .filter(|name| name.starts_with(prefix))
            .collect())
    }

    /// Removes the tag `reference`; the image goes too when that was its last tag.
    /// Returns whether there was such a tag.
    pub async fn untag(&self, reference: &str) -> Result<bool, DockerError> {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        let docker = self.client().await?;
        match docker.remove_image(reference, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// A local image as a tag finds it.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub id: String,
    /// Every `repository:tag` naming it, the one it was found by included.
    pub tags: Vec<String>,
}

/// `docker info` reports the kernel's machine name (`x86_64`); platforms use Go's.
fn go_architecture(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" => "arm",
        "i386" | "i686" => "386",
        other => other,
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
