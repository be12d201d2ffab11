//! Taking builds in: a request or a retry checked, its Dockerfile and context
//! (uploaded or fetched from git) staged, and the build queued.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::access::Grant;
use super::context::{self, ContextError, ContextUpload, DockerfileSource};
use super::git::{self, GitError, GitRequest};
use super::limits;
use super::options::{self, OptionError};
use super::{dockerfile, secrets, ssh, waiting, BuildError, BuildService, SubmitRequest};
use crate::domain::{
    Build, BuildOptions, BuildSecret, Credentials, NewBuild, PreparedContext, TagPlan, Timestamp,
};
use crate::store::StoreError;
use crate::sync::Locked;

impl BuildService {
    /// Queues a build for `caller`, who must be allowed its repository.
    pub async fn submit(
        &self,
        request: SubmitRequest,
        caller: &Grant,
    ) -> Result<Build, BuildError> {
        let slots = self.limits.git.fetch_slots.clone();
        self.submit_fetching_in(request, caller, &slots).await
    }

    /// [`submit`](Self::submit), with a git fetch run in one of `fetch_slots`
    /// (trigger events have their own, so other fetches never hold them up).
    pub async fn submit_fetching_in(
        &self,
        request: SubmitRequest,
        caller: &Grant,
        fetch_slots: &Semaphore,
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
        crate::domain::validate_repository(&repository)?;
        caller.check_repository(&repository)?;
        if let TagPlan::Listed(tags) = &tags {
            self.check_tag_count(tags)?;
            tags.iter()
                .try_for_each(|tag| crate::domain::validate_tag(tag))?;
        }
        let callback_url = callback_url
            .map(|url| self.engine.webhooks.check_callback_url(&url))
            .transpose()?;
        let dockerfile_field = options.dockerfile.clone();
        let ssh_ids = options.ssh.clone();
        let mut build_options = options.validate(&self.limits.networks, self.limits.buildkit)?;
        build_options.ssh = ssh::request_ssh(ssh_ids, |id| self.has_ssh_key(id))?;
        self.check_platform(&build_options, push)?;
        let secrets = secrets::request_secrets(secrets)?;
        build_options.secrets = secrets.iter().map(|s| s.id.clone()).collect();
        // Before a fetch: the git labels added later are checked at enqueue.
        limits::check_stored_options(&build_options)?;
        let git = git
            .map(|git| self.check_git(git, dockerfile.is_some() || context.is_some()))
            .transpose()?;
        // Before a context is fetched, unpacked or rewritten: a full queue refuses at once.
        self.check_queue_room().await?;
        let (context, source) = match git {
            Some(git) => {
                let fetched = self.fetch_git(git, fetch_slots).await?;
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
        ssh::check_build(&build_options, &dockerfile)?;
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

    /// Whether `[ssh.ID]` is configured.
    fn has_ssh_key(&self, id: &str) -> bool {
        self.engine.settings.ssh_keys.iter().any(|key| key.id == id)
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

    /// Fetches the checked ref on the blocking pool, under `git_timeout_secs`,
    /// `git_idle_timeout_secs` and the context limits, in one of `slots`.
    async fn fetch_git(
        &self,
        git: git::CheckedGit,
        slots: &Semaphore,
    ) -> Result<git::Fetched, BuildError> {
        let _slot = slots.acquire().await;
        let policy = self.limits.git.clone();
        let staging = self.engine.store.files().staging_dir().to_path_buf();
        let limits = self.limits.context;
        let fetched =
            tokio::task::spawn_blocking(move || git::fetch(git, &policy, &staging, limits))
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

    /// At most `max_tags_per_build` tags.
    fn check_tag_count(&self, tags: &[String]) -> Result<(), BuildError> {
        let limit = self.limits.max_tags;
        Ok(limits::check_count(
            "tag",
            tags.len(),
            limit,
            "max_tags_per_build",
        )?)
    }

    async fn enqueue(
        &self,
        new: NewBuild,
        credentials: Option<Credentials>,
        secrets: Vec<BuildSecret>,
    ) -> Result<Build, BuildError> {
        // Whatever the way in (a retry of a row stored before these limits, too),
        // no row is stored past them.
        if let TagPlan::Listed(tags) = &new.tags {
            self.check_tag_count(tags)?;
        }
        limits::check_stored_options(&new.options)?;
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
        // The answer says why it waits (no builder up, all busy), as a GET would;
        // read before the queue wakes, so a slot this build takes is not its reason.
        let build = self.with_progress(build);
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
        let builder = match options.buildkit {
            true => context::Builder::Buildkit,
            false => context::Builder::Legacy,
        };
        let prepared = tokio::task::spawn_blocking(move || {
            context::prepare(upload, source, limit, context_limits, builder)
        })
        .await
        .map_err(|err| ContextError::Io(std::io::Error::other(err)))??;
        options.context_bytes = Some(prepared.tar_bytes);
        let text = match prepared.dockerfile_in_context {
            Some(bytes) => dockerfile::validate_dockerfile(bytes, limit)?,
            None => uploaded.ok_or(BuildError::NoDockerfile)?,
        };
        Ok((text, Some(prepared.context)))
    }

    /// A platform that no builder has, or could have, is refused now rather
    /// than left waiting in the queue forever.
    /// Several platforms are pushed as one index: a build-only run has nowhere
    /// to keep it.
    fn check_platform(&self, options: &BuildOptions, push: bool) -> Result<(), BuildError> {
        let refuse = |message: String| -> BuildError {
            OptionError {
                field: "platform",
                message,
            }
            .into()
        };
        if options.is_multi_platform() && !push {
            return Err(refuse(
                "several platforms are pushed as one image index: they need push=true".into(),
            ));
        }
        let statuses = self.engine.pool.statuses();
        for platform in options.platforms() {
            if let Some(message) = waiting::unschedulable_platform(&statuses, platform) {
                return Err(refuse(message));
            }
        }
        Ok(())
    }
}
