//! What `/metrics` and `/readyz` read off the service.

use std::sync::Arc;
use std::time::Duration;

use super::{BuildError, BuildService};
use crate::domain::Status;
use crate::store::Store;

impl BuildService {
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
            // /readyz is open: the detail (paths, SQLite's words) stays in the log.
            Err(err) => {
                log::warn!("readiness: the store does not answer: {err}");
                readiness.reasons.push("store: does not answer".into());
                false
            }
        };
        if self.engine.store.disk_full() {
            readiness.reasons.push(
                "store: the data directory's disk is full; nothing new can be recorded".into(),
            );
            store_ok = false;
        }
        if let Some(fault) = self.engine.dispatcher_fault.get() {
            readiness.reasons.push(format!(
                "dispatcher: cannot read the queue ({fault}); no queued build starts until it can, it tries again by itself"
            ));
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
                    let name = builder.name();
                    log::warn!("readiness: builder '{name}' does not answer: {err}");
                    readiness.builders_down.push(name.to_string());
                    readiness
                        .reasons
                        .push(format!("builder '{name}' does not answer"));
                }
            }
        }
        readiness.ready = store_ok && any_up;
        readiness
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
