//! The domain: what a build is, what a valid request is, and the queue that runs them.

pub mod dockerfile;
mod logs;
pub mod model;
mod queue;
pub mod reference;
mod runner;
pub mod status;
mod vault;

use std::sync::Arc;

use crate::docker::{BuilderPool, DockerError};
use crate::store::{Changes, ListFilter, Store, StoreError};
use dockerfile::DockerfileError;
use model::{Build, Credentials, NewBuild, TagPlan, Timestamp};
use reference::ReferenceError;
use status::Status;
use vault::CredentialVault;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    InvalidDockerfile(#[from] DockerfileError),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
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
    pub dockerfile: Vec<u8>,
    pub repository: String,
    pub tags: TagPlan,
    pub push: bool,
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_dockerfile_bytes: usize,
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
}

impl BuildService {
    /// Requeues builds a previous run left unfinished and starts the dispatcher.
    pub async fn start(
        store: Store,
        pool: BuilderPool,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let engine = Arc::new(Engine {
            store,
            pool,
            vault: CredentialVault::default(),
            queue: queue::Wakeup::default(),
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
        let new = self.validate(request.dockerfile, &request.repository, &request.tags)?;
        let new = NewBuild {
            push: request.push,
            registry_username: request.credentials.as_ref().map(|c| c.username.clone()),
            ..new
        };
        let engine = self.engine.clone();
        let credentials = request.credentials;
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

    fn validate(
        &self,
        dockerfile: Vec<u8>,
        repository: &str,
        tags: &TagPlan,
    ) -> Result<NewBuild, BuildError> {
        let dockerfile =
            dockerfile::validate_dockerfile(dockerfile, self.limits.max_dockerfile_bytes)?;
        reference::validate_repository(repository)?;
        if let TagPlan::Listed(tags) = tags {
            tags.iter()
                .try_for_each(|tag| reference::validate_tag(tag))?;
        }
        Ok(NewBuild {
            repository: repository.to_string(),
            tags: tags.clone(),
            push: true,
            registry_username: None,
            dockerfile,
            created_at: Timestamp::now(),
        })
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
