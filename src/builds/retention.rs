//! Pruning old final builds on a timer: stored files, logs, rows and local tags.
//! Queued and running builds are never touched.

use std::time::Duration;

use chrono::Utc;

use super::BuildService;
use crate::domain::Timestamp;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Prune final builds that finished more than this many days ago.
    pub days: Option<u64>,
    /// Keep the newest this-many succeeded builds, every build newer than the
    /// oldest of them (failed and cancelled builds do not count), and the
    /// owner of any tag those name.
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
        loop {
            let waiting = prune(&service, retention).await;
            // Builds left for a builder that was not up are tried again soon, not
            // an interval later.
            let pause = match waiting {
                true => retention.interval.min(RETRY_WAITING),
                false => retention.interval,
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = service.engine.stopping.cancelled() => return,
            }
        }
    });
}

/// When a pass left builds for a builder that was not up, the next pass comes after this.
const RETRY_WAITING: Duration = Duration::from_secs(5);

/// One pass; says whether builds were left for a builder that was not up.
async fn prune(service: &BuildService, retention: Retention) -> bool {
    let finished_before = retention
        .days
        .map(|days| Timestamp(Utc::now() - chrono::Duration::days(days.min(365_000) as i64)));
    let ids = match service
        .store()
        .prunable_builds(finished_before, retention.keep_last)
        .await
    {
        Ok(ids) => ids,
        Err(err) => {
            log::error!("retention: cannot list builds to prune: {err}");
            return false;
        }
    };
    let mut waiting = false;
    for id in ids {
        if let Some(builder) = builder_not_up(service, id).await {
            // Deleting now would leave its tags behind; the next pass tries again.
            log::debug!("retention: build {id} waits for builder '{builder}' to answer");
            waiting = true;
            continue;
        }
        match service.delete(id, false).await {
            Ok(_) => log::info!("retention: pruned build {id}"),
            Err(err) => log::warn!("retention: build {id} kept: {err}"),
        }
    }
    waiting
}

/// The builder holding the build's image, when it is configured but not known to
/// be up (down, or not yet checked at start); for a build from before the pool,
/// any builder, while none is up.
async fn builder_not_up(service: &BuildService, id: i64) -> Option<String> {
    let build = service.get(id).await.ok()?;
    build.image_id.as_ref()?;
    let pool = &service.engine.pool;
    match build.builder {
        Some(name) => (pool.builder(&name).is_some() && !pool.is_up(&name)).then_some(name),
        None => (!pool.builders().any(|b| pool.is_up(b.name()))).then(|| "any".to_string()),
    }
}
