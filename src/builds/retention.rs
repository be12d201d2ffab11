//! Pruning old final builds on a timer: stored files, logs, rows and local tags.
//! Queued and running builds are never touched.

use std::time::Duration;

use chrono::Utc;

use super::model::Timestamp;
use super::BuildService;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Prune final builds that finished more than this many days ago.
    pub days: Option<u64>,
    /// Keep the newest this-many succeeded builds, and every build newer than
    /// the oldest of them (failed and cancelled builds do not count).
    pub keep_last: Option<usize>,
    pub interval: Duration,
}

/// Starts the pruner if any rule is set. A build is pruned when every rule that
/// is set says so: older than `days`, and older than the `keep_last`-th newest
/// succeeded build. A pruned build's local tags go as on a delete: only those no
/// other build needs.
pub fn spawn_pruner(service: BuildService, retention: Retention) {
    if retention.days.is_none() && retention.keep_last.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(retention.interval);
        loop {
            tokio::select! {
                _ = ticks.tick() => prune(&service, retention).await,
                () = service.engine.stopping.cancelled() => return,
            }
        }
    });
}

async fn prune(service: &BuildService, retention: Retention) {
    let finished_before = retention
        .days
        .map(|days| Timestamp(Utc::now() - chrono::Duration::days(days.min(365_000) as i64)));
    let ids = match service
        .store()
        .prunable_builds(finished_before, retention.keep_last)
        .await
    {
        Ok(ids) => ids,
        Err(err) => return log::error!("retention: cannot list builds to prune: {err}"),
    };
    for id in ids {
        match service.delete(id, false).await {
            Ok(_) => log::info!("retention: pruned build {id}"),
            Err(err) => log::warn!("retention: build {id} kept: {err}"),
        }
    }
}
