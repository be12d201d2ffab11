//! `max_queue_wait_secs`: a build that waited too long in the queue fails, and
//! says what it waited for, rather than waiting on in silence.

use std::time::Duration;

use chrono::Utc;

use super::BuildService;
use crate::domain::{Status, Timestamp};
use crate::store::Changes;

/// How often the queue is looked at for builds past their wait.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub fn spawn_queue_deadline(service: BuildService, limit: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECK_EVERY.min(limit));
        loop {
            tokio::select! {
                _ = ticks.tick() => fail_overdue(&service, limit).await,
                () = service.engine.stopping.cancelled() => return,
            }
        }
    });
}

async fn fail_overdue(service: &BuildService, limit: Duration) {
    let engine = &service.engine;
    let Ok(waited) = chrono::Duration::from_std(limit) else {
        return;
    };
    let cutoff = Timestamp(Utc::now() - waited);
    let overdue = match engine.store.queued_unstarted_before(cutoff).await {
        Ok(ids) => ids,
        Err(err) => {
            log::warn!("queue wait: cannot read the queue: {err}");
            return;
        }
    };
    for id in overdue {
        let Ok(build) = service.get(id).await else {
            continue;
        };
        // `get` has already read it off the builders, as every read does.
        let reason = match engine.dispatcher_fault.get() {
            Some(fault) => format!("the store, which the dispatcher could not read ({fault})"),
            None => build
                .waiting_for
                .unwrap_or_else(|| "a free slot".to_string()),
        };
        let changes = Changes {
            error: Some(format!(
                "waited longer than max_queue_wait_secs ({} s) in the queue, for: {reason}",
                limit.as_secs()
            )),
            ..Changes::default()
        };
        if let Err(err) = engine
            .transition_from(id, Status::Queued, Status::Failed, changes)
            .await
        {
            log::warn!("build {id}: cannot fail it after its queue wait: {err}");
        }
    }
}
