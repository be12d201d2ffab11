//! What the queue, the runners and the followers share, and the one place a
//! build's status changes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cancel::CancelSignals;
use super::events::{Event, EventHub};
use super::model::Build;
use super::queue;
use super::status::Status;
use super::vault::CredentialVault;
use super::RunSettings;
use crate::docker::BuilderPool;
use crate::store::{Changes, Store, StoreError};

pub struct Engine {
    pub store: Store,
    pub pool: Arc<BuilderPool>,
    pub vault: CredentialVault,
    pub queue: queue::Wakeup,
    pub events: Arc<EventHub>,
    pub cancels: CancelSignals,
    /// Every running build's task, so a shutdown can wait for them.
    pub runners: TaskTracker,
    /// Set at shutdown: no new build starts.
    pub stopping: CancellationToken,
    /// Set when the shutdown grace is over: running builds stop and go back to the queue.
    pub interrupting: CancellationToken,
    pub settings: RunSettings,
}

impl Engine {
    /// Every status change goes through here: one log line and one event each.
    pub async fn transition(
        &self,
        id: i64,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        self.transition_from_any(id, None, to, changes).await
    }

    /// Like [`Engine::transition`], but only out of `from`.
    pub async fn transition_from(
        &self,
        id: i64,
        from: Status,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        self.transition_from_any(id, Some(from), to, changes).await
    }

    async fn transition_from_any(
        &self,
        id: i64,
        from: Option<Status>,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        let error = changes.error.clone();
        let moved = self.store.transition(id, from, to, changes).await?;
        match (&moved, error) {
            (Some(_), Some(error)) => log::info!("build {id}: {to}: {error}"),
            (Some(_), None) => log::info!("build {id}: {to}"),
            (None, _) => log::debug!("build {id}: did not move to {to}: its status had changed"),
        }
        if let Some(build) = &moved {
            self.events
                .publish(id, Event::Status(Arc::new(build.clone())));
        }
        Ok(moved)
    }
}
