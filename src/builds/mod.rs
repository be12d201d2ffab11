//! The build service: it composes the layers below (docker, store, webhooks)
//! over the domain types: a request checked, the queue, the runner, the live
//! state of running builds. This file holds the service's parts and its start and
//! stop; taking builds in is `submit.rs`, reading them `reads.rs`, cancel and
//! delete `ending.rs`, what `/metrics` and `/readyz` read `readiness.rs`.

pub mod access;
mod build_names;
mod cancel;
pub mod context;
pub mod credentials;
mod deadline;
pub mod docker_config;
pub mod dockerfile;
mod ending;
mod engine;
mod events;
mod follow;
mod followers;
pub mod git;
mod hints;
pub mod limits;
mod local_tags;
mod logs;
pub mod options;
mod progress;
mod provenance;
mod queue;
mod readiness;
mod reads;
mod retention;
mod runner;
pub mod secrets;
mod silence;
pub mod ssh;
mod submit;
pub mod triggers;
mod vault;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::docker::{BuilderPool, BuilderStatus, DockerError};
use crate::domain::{BuildSecret, Credentials, ReferenceError, Secret, Status, TagPlan};
use crate::store::{Store, StoreError};
use crate::webhooks::callback::CallbackError;
use crate::webhooks::Webhooks;
use access::AccessError;
use cancel::CancelSignals;
use context::{ContextError, ContextLimits, ContextUpload};
use credentials::CredentialResolver;
use dockerfile::DockerfileError;
use engine::Engine;
pub use follow::Followed;
pub use followers::FollowerLimits;
use git::{GitError, GitPolicy, GitRequest};
use limits::LimitError;
pub use logs::LogLimits;
use options::{NetworkPolicy, OptionError, OptionsError, OptionsRequest};
pub use readiness::Readiness;
pub use retention::Retention;
pub use silence::SilentBuild;
use vault::{CredentialVault, SecretVault};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    InvalidDockerfile(#[from] DockerfileError),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error(transparent)]
    InvalidOption(#[from] OptionError),
    /// A repeated field, a key or value, or the stored options past their limit.
    #[error(transparent)]
    OverLimit(#[from] LimitError),
    #[error(transparent)]
    InvalidContext(#[from] ContextError),
    #[error(transparent)]
    InvalidCallback(#[from] CallbackError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("send the Dockerfile as 'file', or a 'context' archive that holds it")]
    NoDockerfile,
    #[error("build {0} not found")]
    NotFound(i64),
    #[error("build {0} has no provenance: it pushed none (not pushed, not finished, or provenance was off)")]
    NoProvenance(i64),
    #[error("this server signs no provenance: [provenance] signing_key_file is not set")]
    NoSigningKey,
    #[error("build {id} is {status}; only a finished build can be {action}")]
    NotFinal {
        id: i64,
        status: Status,
        action: &'static str,
    },
    #[error("build {id} has ended, but its end is not stored yet (the store's disk is full); try again once it is")]
    EndNotStored { id: i64 },
    #[error("build {id} has already ended: {status}")]
    AlreadyFinal { id: i64, status: Status },
    #[error("the queue is full ({limit} builds wait); try again later")]
    QueueFull { limit: usize },
    #[error("{limit} followers already ({setting}); try again later")]
    TooManyFollowers { limit: usize, setting: &'static str },
    #[error(transparent)]
    Forbidden(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl From<OptionsError> for BuildError {
    fn from(err: OptionsError) -> Self {
        match err {
            OptionsError::Invalid(err) => BuildError::InvalidOption(err),
            OptionsError::OverLimit(err) => BuildError::OverLimit(err),
        }
    }
}

/// A build request as it arrives, before validation.
pub struct SubmitRequest {
    /// The `file` field: the Dockerfile itself.
    pub dockerfile: Option<Vec<u8>>,
    pub context: Option<ContextUpload>,
    pub repository: String,
    pub tags: TagPlan,
    pub push: bool,
    pub credentials: Option<Credentials>,
    pub options: OptionsRequest,
    /// The `secret` parts as sent: a file part's filename (the id) and its bytes.
    pub secrets: Vec<(Option<String>, Vec<u8>)>,
    /// Told when the build ends; only hosts in `allowed_callback_hosts`.
    pub callback_url: Option<String>,
    /// The `git` fields: the context is fetched from there instead of uploaded.
    pub git: Option<GitRequest>,
}

/// What a submission may be.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_dockerfile_bytes: usize,
    pub max_queued_builds: usize,
    /// A queued build that never started fails after this long.
    pub max_queue_wait: Option<Duration>,
    /// What an uploaded context may hold once decompressed.
    pub context: ContextLimits,
    pub networks: NetworkPolicy,
    /// Builds use BuildKit unless they ask otherwise.
    pub buildkit: bool,
    /// `max_tags_per_build`.
    pub max_tags: usize,
    /// What builds from git may fetch.
    pub git: GitPolicy,
    /// How many may follow builds live.
    pub followers: FollowerLimits,
}

/// How builds run.
pub struct RunSettings {
    /// The daemon's part of a build is stopped past this.
    pub build_timeout: Duration,
    /// The daemon's part of a build is stopped after this long without output or progress.
    pub build_idle_timeout: Duration,
    /// A push without progress for this long is cut (and tried once more).
    pub push_idle_timeout: Duration,
    /// A BuildKit cache import under way this long is given up.
    pub cache_import_timeout: Duration,
    pub credentials: CredentialResolver,
    /// `[secrets.ID]`: offered to every build, read at start.
    pub secrets: Vec<BuildSecret>,
    /// `[ssh.ID]`: the keys a build may ask for by id, read at start.
    pub ssh_keys: Vec<crate::ssh_agent::AgentKey>,
    /// BuildKit builds push inline cache and use their own tags as cache sources.
    pub registry_cache: bool,
    /// `max_log_lines`, `max_log_bytes`.
    pub log_limits: LogLimits,
    /// Every password the config holds (`[registries]`, `[git."HOST"]`), masked
    /// in build logs.
    pub config_passwords: Vec<Secret>,
    /// The registries' own API, for the image index of a build of several platforms.
    pub registry: crate::registry::Registry,
    /// `[provenance]`.
    pub provenance: ProvenanceSettings,
}

/// `[provenance]`: whether pushed images get an attestation, and what signs it.
#[derive(Debug, Clone)]
pub struct ProvenanceSettings {
    pub enabled: bool,
    /// None: statements are pushed unsigned.
    pub key: Option<crate::provenance::SigningKey>,
    /// How statements name this dockpub (`runDetails.builder.id`).
    pub builder_id: String,
}

/// What a delete did besides removing the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The builder that built the image, when it was down (or is no longer
    /// configured) and the image and its local tags were left on it.
    pub image_left_on: Option<String>,
}

/// The build service the HTTP layer talks to. Cheap to clone.
#[derive(Clone)]
pub struct BuildService {
    engine: Arc<Engine>,
    limits: Limits,
}

impl BuildService {
    /// Requeues builds a previous run left unfinished and starts the dispatcher.
    pub async fn start(
        store: Store,
        pool: Arc<BuilderPool>,
        limits: Limits,
        settings: RunSettings,
        retention: Retention,
        webhooks: Arc<Webhooks>,
    ) -> Result<Self, StoreError> {
        let engine = Arc::new(Engine {
            store,
            pool,
            vault: CredentialVault::default(),
            secrets: SecretVault::default(),
            queue: engine::Wakeup::default(),
            events: Arc::default(),
            followers: followers::FollowerSlots::new(limits.followers),
            cancels: CancelSignals::default(),
            runners: TaskTracker::new(),
            stopping: CancellationToken::new(),
            interrupting: CancellationToken::new(),
            settings,
            metrics: Arc::default(),
            webhooks,
            publish_locks: Default::default(),
            tag_locks: Default::default(),
            unrecorded_ends: Default::default(),
            dispatcher_fault: Default::default(),
            silences: Default::default(),
        });
        for id in engine.store.requeue_interrupted().await? {
            log::info!("build {id}: queued (interrupted by a restart, will run again)");
        }
        // Until builds are interrupted at shutdown, a lost builder must still requeue them.
        crate::docker::spawn_health_checks(engine.pool.clone(), engine.interrupting.clone());
        build_names::remove_left_at_start(&engine).await;
        queue::spawn_dispatcher(engine.clone());
        let service = BuildService { engine, limits };
        retention::spawn_pruner(service.clone(), retention);
        if let Some(limit) = service.limits.max_queue_wait {
            deadline::spawn_queue_deadline(service.clone(), limit);
        }
        Ok(service)
    }

    /// Stops starting builds, gives running ones `grace` to finish, then stops
    /// them and leaves them queued for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let engine = &self.engine;
        engine.stopping.cancel();
        engine.runners.close();
        if tokio::time::timeout(grace, engine.runners.wait())
            .await
            .is_err()
        {
            log::warn!(
                "shutdown: builds still running after {grace:?}; stopping them, they stay queued"
            );
            engine.interrupting.cancel();
            engine.runners.wait().await;
        }
        log::info!("shutdown: no build is running");
    }

    /// Every builder with its health and load, in configuration order.
    pub fn builders(&self) -> Vec<BuilderStatus> {
        self.engine.pool.statuses()
    }

    /// Running builds that have been silent for more than a minute.
    pub fn silent_builds(&self) -> Vec<SilentBuild> {
        self.engine.silences.silent()
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.engine.webhooks
    }
}
