//! The domain: what a build is, what a valid request is, and the queue that runs them.

pub mod context;
pub mod credentials;
pub mod docker_config;
pub mod dockerfile;
mod logs;
pub mod model;
pub mod options;
mod queue;
pub mod reference;
mod runner;
pub mod status;
mod vault;

use std::sync::Arc;
use std::time::Duration;

use crate::docker::{BuilderPool, DockerError};
use crate::store::{Changes, ListFilter, Store, StoreError};
use context::{ContextError, ContextUpload, DockerfileSource, PreparedContext};
use credentials::CredentialResolver;
use dockerfile::DockerfileError;
use model::{Build, BuildOptions, Credentials, NewBuild, TagPlan, Timestamp};
use options::{NetworkPolicy, OptionError, OptionsRequest};
use reference::ReferenceError;
use status::Status;
use vault::CredentialVault;

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
    #[error("send the Dockerfile as 'file', or a 'context' archive that holds it")]
    NoDockerfile,
    #[error("build {0} not found")]
    NotFound(i64),
    #[error("build {id} is {status}; only a finished build can be deleted")]
    NotFinal { id: i64, status: Status },
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
}

/// What a submission may be.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_dockerfile_bytes: usize,
    pub networks: NetworkPolicy,
}

/// How builds run.
pub struct RunSettings {
    /// The daemon's part of a build is stopped past this.
    pub build_timeout: Duration,
    pub credentials: CredentialResolver,
}

/// The build service the HTTP layer talks to. Cheap to clone.
#[derive(Clone)]
pub struct BuildService {
    engine: Arc<Engine>,
    limits: Limits,
}

/// What the queue and the runners share.
struct Engine {
    store: Store,
    pool: BuilderPool,
    vault: CredentialVault,
    queue: queue::Wakeup,
    settings: RunSettings,
}

impl BuildService {
    /// Requeues builds a previous run left unfinished and starts the dispatcher.
    pub async fn start(
        store: Store,
        pool: BuilderPool,
        limits: Limits,
        settings: RunSettings,
    ) -> Result<Self, StoreError> {
        let engine = Arc::new(Engine {
            store,
            pool,
            vault: CredentialVault::default(),
            queue: queue::Wakeup::default(),
            settings,
        });
        for id in engine.store.requeue_interrupted().await? {
            log::info!("build {id}: queued (interrupted by a restart, will run again)");
        }
        queue::spawn_dispatcher(engine.clone());
        Ok(BuildService { engine, limits })
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    pub async fn submit(&self, request: SubmitRequest) -> Result<Build, BuildError> {
        let SubmitRequest {
            dockerfile,
            context,
            repository,
            tags,
            push,
            credentials,
            options,
        } = request;
        // The cheap checks first: a bad tag never waits for an archive to be read.
        reference::validate_repository(&repository)?;
        if let TagPlan::Listed(tags) = &tags {
            tags.iter()
                .try_for_each(|tag| reference::validate_tag(tag))?;
        }
        let dockerfile_field = options.dockerfile.clone();
        let mut build_options = options.validate(&self.limits.networks)?;
        let (dockerfile, context) = self
            .dockerfile_and_context(dockerfile, context, dockerfile_field, &mut build_options)
            .await?;
        let new = NewBuild {
            repository,
            tags,
            push,
            registry_username: credentials.as_ref().map(|c| c.username.clone()),
            dockerfile,
            context,
            options: build_options,
            created_at: Timestamp::now(),
        };
        let engine = self.engine.clone();
        let build = self
            .engine
            .store
            .insert_build(new, move |id| {
                // Before the row is visible, so the runner always finds them.
                if let Some(credentials) = credentials {
                    engine.vault.insert(id, credentials);
                }
            })
            .await?;
        log::info!("build {}: queued ({})", build.id, build.repository);
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
        let prepared = tokio::task::spawn_blocking(move || context::prepare(upload, source, limit))
            .await
            .map_err(|err| ContextError::Io(std::io::Error::other(err)))??;
        let text = match prepared.dockerfile_in_context {
            Some(bytes) => dockerfile::validate_dockerfile(bytes, limit)?,
            None => uploaded.ok_or(BuildError::NoDockerfile)?,
        };
        Ok((text, Some(prepared.context)))
    }

    pub async fn get(&self, id: i64) -> Result<Build, BuildError> {
        self.engine
            .store
            .get_build(id)
            .await?
            .ok_or(BuildError::NotFound(id))
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Build>, BuildError> {
        Ok(self.engine.store.list_builds(filter).await?)
    }

    pub async fn logs(&self, id: i64) -> Result<Vec<String>, BuildError> {
        self.get(id).await?;
        Ok(self.engine.store.read_logs(id).await?)
    }

    /// Deletes a finished build: first the local tags it created (only those still
    /// naming its image), then its row, logs and stored Dockerfile.
    pub async fn delete(&self, id: i64) -> Result<(), BuildError> {
        let build = self.get(id).await?;
        if !build.status.is_final() {
            return Err(BuildError::NotFinal {
                id,
                status: build.status,
            });
        }
        if let Some(image_id) = &build.image_id {
            for builder in self.engine.pool.builders() {
                for reference in build.image_references() {
                    if builder.remove_tag_of(&reference, image_id).await? {
                        log::info!("build {id}: removed local tag {reference}");
                    }
                }
            }
        }
        if !self.engine.store.delete_final_build(id).await? {
            return Err(BuildError::NotFound(id));
        }
        log::info!("build {id}: deleted");
        Ok(())
    }
}

impl Engine {
    /// Every status change of a running build goes through here: one log line each.
    async fn transition(
        &self,
        id: i64,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        let error = changes.error.clone();
        let moved = self.store.transition(id, to, changes).await?;
        match (&moved, error) {
            (Some(_), Some(error)) => log::info!("build {id}: {to}: {error}"),
            (Some(_), None) => log::info!("build {id}: {to}"),
            (None, _) => log::warn!("build {id}: could not move to {to} from its current status"),
        }
        Ok(moved)
    }
}
