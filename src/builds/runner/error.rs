//! How a run can end other than in success, and what each ending means for the
//! build: failed, cancelled, or back to the queue.

use crate::builds::credentials::CredentialError;
use crate::docker::DockerError;
use crate::domain::Status;
use crate::registry::RegistryError;
use crate::store::StoreError;

/// Why a run did not succeed; [`RunError::requeues`] tells a failure from a
/// run that goes back to the queue.
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("registry credentials are kept in memory only and were lost when dockpub restarted; submit the build again with its credentials")]
    CredentialsLost,
    #[error("build secrets are kept in memory only and were lost when dockpub restarted; retry the build with its secrets")]
    SecretsLost,
    #[error(
        "the build asks for the SSH key '{0}', which the server's config no longer has ([ssh.{0}])"
    )]
    SshKeyGone(String),
    #[error("the build was moved out of {0} while it ran")]
    Interrupted(Status),
    #[error("builder '{builder}' builds with the legacy builder, which cannot build {feature}: it needs BuildKit")]
    NeedsBuildkit {
        builder: String,
        feature: &'static str,
    },
    /// A failed build with what its Dockerfile tells of the cause.
    #[error("{error} ({hint})")]
    Hinted { error: DockerError, hint: String },
    #[error("no output and no progress from the daemon for {secs} s (build_idle_timeout_secs): the build was stopped")]
    Idle { secs: u64 },
    #[error("cancelled")]
    Cancelled,
    #[error("dockpub is shutting down; the build will run again at the next start")]
    ShuttingDown,
    #[error("builder '{builder}' stopped answering: {reason}")]
    BuilderLost { builder: String, reason: String },
    #[error("gave up after {attempts} attempts; the last one: {last}")]
    TooManyAttempts { attempts: u32, last: Box<RunError> },
    /// Another push of the tag landed after this one (from another dockpub, or
    /// from outside dockpub): the registry does not serve this build's image.
    #[error("{taken}{}", pushed_by(*.by))]
    TagTakenOver { taken: DockerError, by: Option<i64> },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// One platform of a build of several failed; the others were stopped.
    #[error("platform {platform}: {source}")]
    Platform {
        platform: String,
        source: Box<RunError>,
    },
    #[error(
        "no builder offering the platform had a free slot within {secs} s (build_timeout_secs)"
    )]
    NoSlotFor { secs: u64 },
    #[error("provenance: {0}")]
    Provenance(String),
}

fn pushed_by(build: Option<i64>) -> String {
    build.map_or_else(String::new, |id| format!(" (build {id} pushed it)"))
}

impl RunError {
    /// Errors after which the build goes back to the queue rather than failing.
    pub(super) fn requeues(&self) -> bool {
        match self {
            RunError::ShuttingDown | RunError::BuilderLost { .. } => true,
            RunError::Docker(err) => err.is_unreachable(),
            RunError::Platform { source, .. } => source.requeues(),
            _ => false,
        }
    }

    /// The builder was lost, not the build's own fault: it counts towards
    /// [`super::attempts::MAX_ATTEMPTS`]. A shutdown does not.
    pub(super) fn lost_builder(&self) -> bool {
        match self {
            RunError::Platform { source, .. } => source.lost_builder(),
            _ => self.requeues() && !matches!(self, RunError::ShuttingDown),
        }
    }
}
