//! The domain: what a build is, what a valid request is, and the queue that runs them.

pub mod access;
mod cancel;
pub mod context;
pub mod credentials;
mod deadline;
pub mod docker_config;
pub mod dockerfile;
mod engine;
mod events;
mod follow;
pub mod git;
mod hints;
mod local_tags;
mod logs;
pub mod model;
pub mod options;
pub mod progress;
mod queue;
pub mod reference;
mod retention;
mod runner;
pub mod secrets;
pub mod status;
pub mod triggers;
mod vault;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::docker::{Builder, BuilderPool, BuilderStatus, DockerError};
use crate::store::{Changes, ListFilter, LogRange, RenderLine, Store, StoreError};
use crate::sync::Locked;
use crate::webhooks::callback::CallbackError;
use crate::webhooks::Webhooks;
use access::{AccessError, Grant};
use cancel::CancelSignals;
use context::{ContextError, ContextLimits, ContextUpload, DockerfileSource, PreparedContext};
use credentials::CredentialResolver;
use dockerfile::DockerfileError;
use engine::Engine;
use events::Event;
pub use follow::Followed;
use git::{GitError, GitPolicy, GitRequest};
use model::{Build, BuildOptions, Credentials, NewBuild, TagPlan, Timestamp};
use options::{NetworkPolicy, OptionError, OptionsRequest};
use reference::ReferenceError;
pub use retention::Retention;
use secrets::BuildSecret;
use status::Status;
use vault::{CredentialVault, SecretVault};

/// How long a cancel request waits for the runner to stop the daemon's work.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    InvalidDockerfile(#[from] DockerfileError),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error(transparent)]
    InvalidOption(#[from] OptionError),
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
    #[error(transparent)]
    Forbidden(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
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
    /// What builds from git may fetch.
    pub git: GitPolicy,
}

/// How builds run.
pub struct RunSettings {
    /// The daemon's part of a build is stopped past this.
    pub build_timeout: Duration,
    pub credentials: CredentialResolver,
    /// `[secrets.ID]`: offered to every build, read at start.
    pub secrets: Vec<BuildSecret>,
    /// BuildKit builds push inline cache and use their own tags as cache sources.
    pub registry_cache: bool,
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
            queue: queue::Wakeup::default(),
            events: Arc::default(),
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
        });
        for id in engine.store.requeue_interrupted().await? {
            log::info!("build {id}: queued (interrupted by a restart, will run again)");
        }
        // Until builds are interrupted at shutdown, a lost builder must still requeue them.
        crate::docker::spawn_health_checks(engine.pool.clone(), engine.interrupting.clone());
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

    /// Every metric in Prometheus' text format, gauges read fresh from the store
    /// and the daemons.
    pub async fn metrics_text(&self) -> Result<String, BuildError> {
        let metrics = &self.engine.metrics;
        let counts = self.engine.store.status_counts().await?;
        let count = |status: Status| counts.get(status.as_str()).copied().unwrap_or(0);
        metrics.queue_depth.set(count(Status::Queued));
        metrics
            .running_builds
            .set(count(Status::Building) + count(Status::Pushing));
        metrics
            .sqlite_busy_waits
            .set(Store::busy_waits().try_into().unwrap_or(i64::MAX));
        for builder in self.engine.pool.statuses() {
            let name = [builder.name.as_str()];
            metrics
                .docker_up
                .with_label_values(&name)
                .set(i64::from(builder.up));
            metrics
                .builder_running
                .with_label_values(&name)
                .set(builder.running as i64);
            metrics
                .builder_slots
                .with_label_values(&name)
                .set(builder.slots as i64);
        }
        Ok(metrics.render())
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.engine.metrics
    }

    /// Whether dockpub can build right now: the store answers and at least one
    /// builder does. Builders are pinged now rather than trusting the last health
    /// check, so a daemon that just went away shows at once.
    pub async fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        let mut store_ok = match self.engine.store.ping().await {
            Ok(()) => true,
            Err(err) => {
                readiness.reasons.push(format!("store: {err}"));
                false
            }
        };
        if self.engine.store.disk_full() {
            readiness.reasons.push(
                "store: the data directory's disk is full; nothing new can be recorded".into(),
            );
            store_ok = false;
        }
        let pings =
            self.engine.pool.builders().map(|builder| async move {
                (builder, builder.ping_within(READY_PING_LIMIT).await)
            });
        let mut any_up = false;
        for (builder, answer) in futures_util::future::join_all(pings).await {
            match answer {
                Ok(()) => any_up = true,
                Err(err) => {
                    readiness.builders_down.push(builder.name().to_string());
                    readiness
                        .reasons
                        .push(format!("builder '{}': {err}", builder.name()));
                }
            }
        }
        readiness.ready = store_ok && any_up;
        readiness
    }

    /// Every builder with its health and load, in configuration order.
    pub fn builders(&self) -> Vec<BuilderStatus> {
        self.engine.pool.statuses()
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.engine.webhooks
    }

    /// Queues a build for `caller`, who must be allowed its repository.
    pub async fn submit(
        &self,
        request: SubmitRequest,
        caller: &Grant,
    ) -> Result<Build, BuildError> {
        let SubmitRequest {
            dockerfile,
            context,
            repository,
            tags,
            push,
            credentials,
            options,
            secrets,
            callback_url,
            git,
        } = request;
        // The cheap checks first: a bad tag never waits for an archive to be read.
        reference::validate_repository(&repository)?;
        caller.check_repository(&repository)?;
        if let TagPlan::Listed(tags) = &tags {
            tags.iter()
                .try_for_each(|tag| reference::validate_tag(tag))?;
        }
        let callback_url = callback_url
            .map(|url| self.engine.webhooks.check_callback_url(&url))
            .transpose()?;
        let dockerfile_field = options.dockerfile.clone();
        let mut build_options = options.validate(&self.limits.networks, self.limits.buildkit)?;
        self.check_platform(&build_options)?;
        let secrets = secrets::request_secrets(secrets)?;
        build_options.secrets = secrets.iter().map(|s| s.id.clone()).collect();
        let git = git
            .map(|git| self.check_git(git, dockerfile.is_some() || context.is_some()))
            .transpose()?;
        // Before a context is fetched, unpacked or rewritten: a full queue refuses at once.
        self.check_queue_room().await?;
        let (context, source) = match git {
            Some(git) => {
                let fetched = self.fetch_git(git).await?;
                let labels = &mut build_options.labels;
                labels.insert(git::SOURCE_LABEL.into(), fetched.source.git.clone());
                labels.insert(git::REVISION_LABEL.into(), fetched.source.commit.clone());
                (Some(fetched.archive), Some(fetched.source))
            }
            None => (context, None),
        };
        let (dockerfile, context) = self
            .dockerfile_and_context(dockerfile, context, dockerfile_field, &mut build_options)
            .await?;
        options::check_builder(&build_options, &dockerfile)?;
        let new = NewBuild {
            repository,
            tags,
            push,
            registry_username: None,
            dockerfile,
            context,
            options: build_options,
            created_at: Timestamp::now(),
            retry_of: None,
            callback_url,
            submitted_by: caller.name.clone(),
            source,
        };
        self.enqueue(new, credentials, secrets).await
    }

    /// The git fields checked; they replace `file` and `context`.
    fn check_git(&self, git: GitRequest, uploaded: bool) -> Result<git::CheckedGit, BuildError> {
        if uploaded {
            return Err(GitError::Invalid {
                field: "git",
                message: "not with 'file' or 'context': the context comes from the repository \
                          (name its Dockerfile with 'dockerfile')"
                    .into(),
            }
            .into());
        }
        Ok(git::check(git, &self.limits.git)?)
    }

    /// Fetches the checked ref on the blocking pool, under `git_timeout_secs`.
    async fn fetch_git(&self, git: git::CheckedGit) -> Result<git::Fetched, BuildError> {
        let _slot = self.limits.git.fetch_slots.acquire().await;
        let policy = self.limits.git.clone();
        let staging = self.engine.store.files().staging_dir().to_path_buf();
        let fetched = tokio::task::spawn_blocking(move || git::fetch(git, &policy, &staging))
            .await
            .map_err(|err| GitError::Io(std::io::Error::other(err)))?;
        match &fetched {
            Ok(done) => log::info!(
                "git: fetched {} at {} ({})",
                done.source.git,
                done.source.commit,
                done.source.git_ref
            ),
            Err(err) => log::info!("git: {err}"),
        }
        Ok(fetched?)
    }

    /// A new build from a finished one's stored Dockerfile and settings, pushed
    /// with `credentials` (a password is never kept, so it comes with the request).
    ///
    /// Atomic with respect to a delete of the original: the new row is inserted
    /// naming the original (a foreign key, checked under SQLite's write lock), so
    /// either the retry is in before the delete, or it fails, and then, as when the
    /// original's files vanished while they were copied, the answer is the delete's
    /// `404`, not a store error.
    pub async fn retry(
        &self,
        id: i64,
        credentials: Option<Credentials>,
        caller: &Grant,
        secret_parts: Vec<(Option<String>, Vec<u8>)>,
    ) -> Result<Build, BuildError> {
        let secrets = secrets::request_secrets(secret_parts)?;
        let original = self.get(id).await?;
        caller.check_owner(&original)?;
        if !original.status.is_final() {
            return Err(BuildError::NotFinal {
                id,
                status: original.status,
                action: "retried",
            });
        }
        let copied = self.copy_for_retry(id, original.context_dockerfile).await;
        let (dockerfile, context) = self.not_found_if_deleted(id, copied).await?;
        let new = NewBuild {
            repository: original.repository,
            tags: TagPlan::Listed(original.tags),
            push: original.push,
            registry_username: None,
            dockerfile,
            context,
            // Secret values are never kept: the retry's are the ones sent with it.
            options: BuildOptions {
                secrets: secrets.iter().map(|s| s.id.clone()).collect(),
                ..original.options
            },
            created_at: Timestamp::now(),
            retry_of: Some(id),
            // Checked again when a delivery is made, in case the host is no longer allowed.
            callback_url: original.callback_url,
            submitted_by: caller.name.clone(),
            // The stored context is the commit the original fetched, not the ref's tip now.
            source: original.source,
        };
        let enqueued = self.enqueue(new, credentials, secrets).await;
        self.not_found_if_deleted(id, enqueued).await
    }

    /// The original's Dockerfile and a staged copy of its context, for a retry.
    async fn copy_for_retry(
        &self,
        id: i64,
        context_dockerfile: Option<String>,
    ) -> Result<(String, Option<PreparedContext>), BuildError> {
        let context = match context_dockerfile {
            Some(dockerfile_path) => Some(PreparedContext {
                archive: self.engine.store.stage_copy_of_context(id).await?,
                dockerfile_path,
            }),
            None => None,
        };
        Ok((self.engine.store.read_dockerfile(id).await?, context))
    }

    /// A store error about build `id` that a delete of it explains is `NotFound`.
    async fn not_found_if_deleted<T>(
        &self,
        id: i64,
        result: Result<T, BuildError>,
    ) -> Result<T, BuildError> {
        match result {
            Err(BuildError::Store(err)) => match self.engine.store.get_build(id).await {
                Ok(None) => Err(BuildError::NotFound(id)),
                _ => Err(BuildError::Store(err)),
            },
            other => other,
        }
    }

    /// Refuses when the queue is full; the insert checks again under its lock.
    async fn check_queue_room(&self) -> Result<(), BuildError> {
        let limit = self.limits.max_queued_builds;
        let queued = self.engine.store.queued_count().await?;
        if queued >= limit as i64 {
            return Err(BuildError::QueueFull { limit });
        }
        Ok(())
    }

    async fn enqueue(
        &self,
        new: NewBuild,
        credentials: Option<Credentials>,
        secrets: Vec<BuildSecret>,
    ) -> Result<Build, BuildError> {
        let new = NewBuild {
            registry_username: credentials.as_ref().map(|c| c.username.clone()),
            ..new
        };
        let engine = self.engine.clone();
        // The id the values were kept under: a commit that fails after them
        // leaves that id free for the next build, which must not inherit them.
        let kept_for = Arc::new(std::sync::Mutex::new(None));
        let keeping = kept_for.clone();
        let inserted = self
            .engine
            .store
            .insert_build(new, self.limits.max_queued_builds, move |id| {
                // Before the row is visible, so the runner always finds them.
                if let Some(credentials) = credentials {
                    engine.vault.insert(id, credentials);
                }
                if !secrets.is_empty() {
                    engine.secrets.insert(id, secrets);
                }
                *keeping.locked() = Some(id);
            })
            .await;
        let build = match inserted {
            Ok(build) => build,
            Err(err) => {
                if let Some(id) = kept_for.locked().take() {
                    self.engine.vault.remove(id);
                    self.engine.secrets.remove(id);
                }
                return Err(match err {
                    StoreError::QueueFull { limit } => BuildError::QueueFull { limit },
                    other => BuildError::Store(other),
                });
            }
        };
        match build.retry_of {
            Some(original) => log::info!(
                "build {}: queued ({}, retrying build {original})",
                build.id,
                build.repository
            ),
            None => log::info!("build {}: queued ({})", build.id, build.repository),
        }
        self.engine.queue.wake();
        Ok(build)
    }

    /// The Dockerfile's text and the checked context, from whichever of the two
    /// fields were sent; records where the Dockerfile came from in `options`.
    async fn dockerfile_and_context(
        &self,
        file: Option<Vec<u8>>,
        upload: Option<ContextUpload>,
        dockerfile_field: Option<String>,
        options: &mut BuildOptions,
    ) -> Result<(String, Option<PreparedContext>), BuildError> {
        let limit = self.limits.max_dockerfile_bytes;
        let Some(upload) = upload else {
            if dockerfile_field.is_some() {
                return Err(OptionError {
                    field: "dockerfile",
                    message: "names a path inside a context; send a 'context' archive".into(),
                }
                .into());
            }
            let file = file.ok_or(BuildError::NoDockerfile)?;
            return Ok((dockerfile::validate_dockerfile(file, limit)?, None));
        };
        options.context_bytes = Some(upload.bytes);
        let source = match (file, dockerfile_field) {
            (Some(_), Some(_)) => {
                return Err(OptionError {
                    field: "dockerfile",
                    message: "not with 'file': the uploaded file is the Dockerfile".into(),
                }
                .into())
            }
            (Some(file), None) => {
                DockerfileSource::Uploaded(dockerfile::validate_dockerfile(file, limit)?)
            }
            (None, path) => {
                let path = options::dockerfile_path(path.as_deref().unwrap_or("Dockerfile"))?;
                options.dockerfile = Some(path.clone());
                DockerfileSource::InContext(path)
            }
        };
        let uploaded = match &source {
            DockerfileSource::Uploaded(text) => Some(text.clone()),
            DockerfileSource::InContext(_) => None,
        };
        let context_limits = self.limits.context;
        let prepared = tokio::task::spawn_blocking(move || {
            context::prepare(upload, source, limit, context_limits)
        })
        .await
        .map_err(|err| ContextError::Io(std::io::Error::other(err)))??;
        let text = match prepared.dockerfile_in_context {
            Some(bytes) => dockerfile::validate_dockerfile(bytes, limit)?,
            None => uploaded.ok_or(BuildError::NoDockerfile)?,
        };
        Ok((text, Some(prepared.context)))
    }

    pub async fn get(&self, id: i64) -> Result<Build, BuildError> {
        let build = self.engine.store.get_build(id).await?;
        build
            .map(|b| self.with_progress(b))
            .ok_or(BuildError::NotFound(id))
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Build>, BuildError> {
        let builds = self.engine.store.list_builds(filter).await?;
        Ok(builds.into_iter().map(|b| self.with_progress(b)).collect())
    }

    /// The store's generation (see [`Store::generation`]): read it before a read
    /// whose answer is kept, to know when that answer is out of date.
    pub fn generation(&self) -> u64 {
        self.engine.store.generation()
    }

    /// Build `id` as stored, handed to `render` on the blocking pool. Its
    /// progress is not set: that lives in memory (see [`BuildService::progress`]).
    pub async fn get_then<T, F>(&self, id: i64, render: F) -> Result<T, BuildError>
    where
        T: Send + 'static,
        F: FnOnce(Build) -> T + Send + 'static,
    {
        self.engine
            .store
            .get_build_then(id, move |build| build.map(render))
            .await?
            .ok_or(BuildError::NotFound(id))
    }

    /// Like [`BuildService::get_then`], for a page of builds.
    pub async fn list_then<T, F>(&self, filter: ListFilter, render: F) -> Result<T, BuildError>
    where
        T: Send + 'static,
        F: FnOnce(Vec<Build>) -> T + Send + 'static,
    {
        Ok(self.engine.store.list_builds_then(filter, render).await?)
    }

    /// A running build's progress now.
    fn progress(&self, build: &Build) -> Option<progress::Progress> {
        if !build.status.is_running() {
            return None;
        }
        self.engine.events.progress(build.id)
    }

    /// Why a queued build waits, now (see [`waiting::waiting_for`]).
    fn waiting_for(&self, build: &Build) -> Option<String> {
        if build.status != Status::Queued {
            return None;
        }
        waiting::waiting_for(
            &self.engine.pool.statuses(),
            build.options.platform.as_deref(),
        )
    }

    /// Whether a build's JSON changes without a write to the store: a running
    /// build's progress and a queued build's `waiting_for` live in memory.
    pub fn shows_live_state(build: &Build) -> bool {
        build.status == Status::Queued || build.status.is_running()
    }

    /// The parts of a build that live in memory: a running build's progress, why
    /// a queued one waits, and an end the store has not taken yet.
    pub fn with_progress(&self, build: Build) -> Build {
        if let Some(ended) = self.engine.unrecorded_end(build.id) {
            return ended;
        }
        Build {
            progress: self.progress(&build),
            waiting_for: self.waiting_for(&build),
            ..build
        }
    }

    /// A platform that no builder has, or could have, is refused now rather
    /// than left waiting in the queue forever.
    fn check_platform(&self, options: &BuildOptions) -> Result<(), BuildError> {
        let Some(platform) = &options.platform else {
            return Ok(());
        };
        match waiting::unschedulable_platform(&self.engine.pool.statuses(), platform) {
            Some(message) => Err(OptionError {
                field: "platform",
                message,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// The line number after which `range` of build `id`'s log starts.
    pub async fn log_start(&self, id: i64, range: LogRange) -> Result<i64, BuildError> {
        self.get(id).await?;
        Ok(self.engine.store.log_start(id, range).await?)
    }

    /// The stored lines after line `after`, read and rendered a page at a time as
    /// the stream is polled, so a reader holds one page whatever the log's size.
    pub fn log_pages(
        &self,
        id: i64,
        after: i64,
        render: RenderLine,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, BuildError>> + 'static {
        let store = self.engine.store.clone();
        futures_util::stream::unfold(Some(after), move |after| {
            let store = store.clone();
            async move {
                match store.read_log_page(id, after?, render).await {
                    Ok(Some(page)) => Some((
                        Ok(bytes::Bytes::from(page.text)),
                        page.full.then_some(page.last_seq),
                    )),
                    Ok(None) => None,
                    Err(err) => Some((Err(err.into()), None)),
                }
            }
        })
    }

    /// Cancels a queued build at once; stops a running one's daemon work and waits
    /// (up to [`CANCEL_WAIT`]) until it ends. Returns the build as it is then.
    pub async fn cancel(&self, id: i64, caller: &Grant) -> Result<Build, BuildError> {
        let mut subscription = self.engine.events.subscribe(id);
        let build = self.get(id).await?;
        caller.check_owner(&build)?;
        if build.status.is_final() {
            return Err(BuildError::AlreadyFinal {
                id,
                status: build.status,
            });
        }
        if build.status == Status::Queued {
            let cancelled = self
                .engine
                .transition_from(id, Status::Queued, Status::Cancelled, Changes::default())
                .await?;
            if let Some(cancelled) = cancelled {
                return Ok(cancelled);
            }
        }
        // Running, or claimed since we looked: the runner stops it.
        self.engine.cancels.token(id).cancel();
        let ended = tokio::time::timeout(CANCEL_WAIT, wait_until_final(&mut subscription)).await;
        let build = self.get(id).await?;
        if ended.is_ok() {
            self.engine.cancels.remove(id);
        }
        match build.status {
            Status::Cancelled => Ok(build),
            status if status.is_final() => Err(BuildError::AlreadyFinal { id, status }),
            _ => Ok(build),
        }
    }

    /// Deletes a finished build: first the local tags it created (only those still
    /// naming its image), then its row, logs and stored Dockerfile. With `force`,
    /// an unfinished build is cancelled first.
    pub async fn delete(&self, id: i64, force: bool) -> Result<Deleted, BuildError> {
        if self.engine.unrecorded_end(id).is_some() {
            return Err(BuildError::EndNotStored { id });
        }
        let mut build = self.get(id).await?;
        if force && !build.status.is_final() {
            // Delete is the admin's, so its cancel is too.
            build = match self.cancel(id, &Grant::open()).await {
                Ok(build) => build,
                Err(BuildError::AlreadyFinal { .. }) => self.get(id).await?,
                Err(err) => return Err(err),
            };
        }
        if !build.status.is_final() {
            return Err(BuildError::NotFinal {
                id,
                status: build.status,
                action: "deleted",
            });
        }
        // Held until the row is gone: a delete of another build of the same image
        // that comes next must no longer count this one as needing the tag.
        let tag_locks = local_tags::lock(&self.engine, &build).await;
        let deleted = self.remove_local_tags(&build).await?;
        if !self.engine.store.delete_final_build(id).await? {
            return Err(BuildError::NotFound(id));
        }
        drop(tag_locks);
        match &deleted.image_left_on {
            Some(builder) => {
                log::info!("build {id}: deleted; its image was left on builder '{builder}'")
            }
            None => log::info!("build {id}: deleted"),
        }
        Ok(deleted)
    }

    /// Removes the build's local tags from the builder that built it, except those
    /// another build still needs (see [`local_tags::release`]). A builder that is
    /// down (or gone from the config) keeps them; the delete goes on.
    async fn remove_local_tags(&self, build: &Build) -> Result<Deleted, BuildError> {
        let nothing_left = Deleted {
            image_left_on: None,
        };
        let Some(image_id) = &build.image_id else {
            return Ok(nothing_left);
        };
        let pool = &self.engine.pool;
        let Some(name) = &build.builder else {
            // Built before builders were recorded: any builder that answers may hold it.
            for builder in pool.builders().filter(|b| pool.is_up(b.name())) {
                self.release_tags_on(builder, build, image_id).await?;
            }
            return Ok(nothing_left);
        };
        let left_on = Deleted {
            image_left_on: Some(name.clone()),
        };
        let Some(builder) = pool.builder(name).filter(|b| pool.is_up(b.name())) else {
            return Ok(left_on);
        };
        match self.release_tags_on(builder, build, image_id).await {
            Ok(()) => Ok(nothing_left),
            Err(BuildError::Docker(err)) if err.is_unreachable() => Ok(left_on),
            Err(err) => Err(err),
        }
    }

    async fn release_tags_on(
        &self,
        builder: &Builder,
        build: &Build,
        image_id: &str,
    ) -> Result<(), BuildError> {
        let released = local_tags::release(&self.engine, builder, build, image_id).await?;
        for release in released {
            log::info!(
                "build {}: {release} on builder '{}'",
                build.id,
                builder.name()
            );
        }
        Ok(())
    }
}

/// How long `/readyz` waits for each builder's ping.
const READY_PING_LIMIT: Duration = Duration::from_secs(3);

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The store answers and at least one builder does.
    pub ready: bool,
    /// The names of the builders that do not answer (dockpub is still ready while
    /// another does).
    pub builders_down: Vec<String>,
    /// Why: one sentence per thing that does not answer (the store, each builder).
    pub reasons: Vec<String>,
}

/// Returns once the subscription reports a final status (or can report nothing more).
async fn wait_until_final(subscription: &mut events::Subscription) {
    loop {
        match subscription.recv().await {
            Ok(Event::Status(build)) if build.status.is_final() => return,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
