//! What the queue, the runners and the followers share, and the one place a
//! build's status changes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cancel::CancelSignals;
use super::events::{Event, EventHub};
use super::model::{Build, Timestamp};
use super::queue;
use super::status::Status;
use super::vault::{CredentialVault, SecretVault};
use super::RunSettings;
use crate::docker::BuilderPool;
use crate::metrics::Metrics;
use crate::store::{Changes, Store, StoreError};
use crate::webhooks::Webhooks;

pub struct Engine {
    pub store: Store,
    pub pool: Arc<BuilderPool>,
    pub vault: CredentialVault,
    /// Request secrets of queued and running builds.
    pub secrets: SecretVault,
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
    pub metrics: Arc<Metrics>,
    /// Told of every status change; sends nothing on the build's path.
    pub webhooks: Arc<Webhooks>,
}

impl Engine {
    /// Every status change goes through here: one log line, one event and the
    /// webhooks' delivery rows each.
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

    /// A build the store just claimed (queued → building, outside
    /// [`Engine::transition`]): its event and its `started` webhooks.
    pub async fn announce_start(&self, build: &Build) {
        self.events
            .publish(build.id, Event::Status(Arc::new(build.clone())));
        self.webhooks.notify(build).await;
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
            self.count(build);
            self.events
                .publish(id, Event::Status(Arc::new(build.clone())));
            self.webhooks.notify(build).await;
        }
        Ok(moved)
    }

    /// Final statuses and the time spent in each phase, for /metrics.
    fn count(&self, build: &Build) {
        if build.status.is_final() {
            self.metrics
                .builds_total
                .with_label_values(&[build.status.as_str()])
                .inc();
        }
        let seconds = |from: Option<Timestamp>, to: Option<Timestamp>| match (from, to) {
            (Some(from), Some(to)) => Some((to.0 - from.0).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        let phase = match build.status {
            Status::Pushing => seconds(build.started_at, build.built_at).map(|s| ("build", s)),
            Status::Succeeded if build.push => {
                seconds(build.built_at, build.finished_at).map(|s| ("push", s))
            }
            Status::Succeeded => seconds(build.started_at, build.finished_at).map(|s| ("build", s)),
            _ => None,
        };
        if let Some((phase, seconds)) = phase {
            self.metrics
                .phase_seconds
                .with_label_values(&[phase])
                .observe(seconds);
        }
    }
}
