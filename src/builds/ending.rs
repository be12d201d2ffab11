//! Ending builds: cancelling a queued or running one, deleting a final one with
//! its local tags.

use std::time::Duration;

use super::access::Grant;
use super::events::{self, Event};
use super::{local_tags, BuildError, BuildService, Deleted};
use crate::docker::Builder;
use crate::domain::{Build, Status};
use crate::store::Changes;

/// How long a cancel request waits for the runner to stop the daemon's work.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

impl BuildService {
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
