//! What the queue, the runners and the followers share, and the one place a
//! build's status changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cancel::CancelSignals;
use super::events::{Event, EventHub};
use super::followers::FollowerSlots;
use super::silence::Silences;
use super::vault::{CredentialVault, SecretVault};
use super::RunSettings;
use crate::docker::BuilderPool;
use crate::domain::{Build, Status, Timestamp};
use crate::metrics::Metrics;
use crate::named_locks::NamedLocks;
use crate::store::{Changes, Store, StoreError};
use crate::sync::Locked;
use crate::webhooks::Webhooks;

/// How often an end the store refused is tried again.
const END_RETRY: Duration = Duration::from_secs(1);

pub struct Engine {
    pub store: Store,
    pub pool: Arc<BuilderPool>,
    pub vault: CredentialVault,
    /// Request secrets of queued and running builds.
    pub secrets: SecretVault,
    pub queue: Wakeup,
    pub events: Arc<EventHub>,
    /// Who follows builds live, counted against their caps.
    pub followers: Arc<FollowerSlots>,
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
    /// Builds whose end the store could not take yet (a full disk), as they
    /// ended: reads show these, and they are written as soon as the store can.
    pub unrecorded_ends: Mutex<HashMap<i64, Build>>,
    /// One per `repository:tag`, across builders: held from applying a build's
    /// tags through pushing and confirming them to recording its end, so builds
    /// of one tag publish one after the other.
    pub publish_locks: NamedLocks,
    /// One per `repository:tag`: held while a build applies its local tags, and
    /// while a tag is checked and taken back (delete, retention, cancel). Short,
    /// so a delete never waits for a push.
    pub tag_locks: NamedLocks,
    /// Why the dispatcher cannot read the queue right now (a store error it
    /// retries); None while it can.
    pub dispatcher_fault: Fault,
    /// When each running build was last heard from.
    pub silences: Arc<Silences>,
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

    /// A build's end that the store refused: kept in memory, shown by reads in
    /// place of the stored row, and written again every second until it is taken.
    /// `held` (the build's publish locks) is let go only then, so the last build
    /// to record a tag is still the last to have published it.
    pub fn record_end_later(
        engine: &Arc<Engine>,
        build: &Build,
        status: Status,
        changes: Changes,
        held: impl Send + 'static,
    ) {
        let ended = Build {
            status,
            image_id: changes.image_id.clone().or_else(|| build.image_id.clone()),
            digest: changes.digest.clone(),
            digests: changes.digests.clone().unwrap_or_default(),
            error: changes.error.clone(),
            finished_at: status.is_final().then(Timestamp::now),
            progress: None,
            ..build.clone()
        };
        engine.ends().insert(build.id, ended);
        let engine = engine.clone();
        let id = build.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(END_RETRY).await;
                match engine.transition(id, status, changes.clone()).await {
                    Ok(_) => break,
                    Err(err) => log::debug!("build {id}: its end still cannot be stored: {err}"),
                }
            }
            engine.ends().remove(&id);
            drop(held);
            log::info!("build {id}: its end ({status}) is stored now");
        });
    }

    /// The end of build `id` that waits to be stored, if any.
    pub fn unrecorded_end(&self, id: i64) -> Option<Build> {
        self.ends().get(&id).cloned()
    }

    fn ends(&self) -> MutexGuard<'_, HashMap<i64, Build>> {
        // Each critical section is one insert, remove or clone: never half done.
        self.unrecorded_ends.locked()
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

/// A fault something retries on its own, for /readyz to report meanwhile.
#[derive(Default)]
pub struct Fault(Mutex<Option<String>>);

impl Fault {
    pub fn set(&self, reason: String) {
        *self.0.locked() = Some(reason);
    }

    /// Clears the fault; returns the one there was.
    pub fn take(&self) -> Option<String> {
        self.0.locked().take()
    }

    pub fn get(&self) -> Option<String> {
        self.0.locked().clone()
    }
}

/// Tells the dispatcher that a build was queued.
#[derive(Default)]
pub struct Wakeup(pub(super) Notify);

impl Wakeup {
    pub fn wake(&self) {
        // notify_one keeps the wake-up if the dispatcher is not waiting yet.
        self.0.notify_one();
    }
}
