//! The dispatcher: one task that hands queued builds, oldest first, to free slots
//! on builders that are up. SQLite is the queue; this only decides when to look at
//! it and for which builder. While no builder answers, builds wait queued.

use std::sync::Arc;
use std::time::Duration;

use super::engine::Engine;
use super::runner;
use crate::docker::Slot;
use crate::store::StoreError;

/// Wait after the first store error before looking at the queue again; it
/// doubles with each error after that, up to [`STORE_RETRY_MAX`].
const STORE_RETRY: Duration = Duration::from_secs(1);
const STORE_RETRY_MAX: Duration = Duration::from_secs(15);

pub fn spawn_dispatcher(engine: Arc<Engine>) {
    tokio::spawn(async move {
        let mut retry = STORE_RETRY;
        loop {
            match start_one(&engine).await {
                Ok(started) => {
                    if engine.dispatcher_fault.take().is_some() {
                        log::info!("dispatcher: reads the queue again");
                    }
                    retry = STORE_RETRY;
                    if started {
                        continue;
                    }
                }
                Err(err) => {
                    // Nothing else may come to wake the dispatcher (a freed
                    // slot has already been told), so it looks again by itself
                    // until the store answers; /readyz says it cannot meanwhile.
                    log::error!(
                        "dispatcher: cannot read the queue: {err}; trying again in {} s",
                        retry.as_secs()
                    );
                    engine.dispatcher_fault.set(err.to_string());
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = engine.stopping.cancelled() => break,
                    }
                    retry = (retry * 2).min(STORE_RETRY_MAX);
                    continue;
                }
            }
            tokio::select! {
                () = engine.queue.0.notified() => {}
                () = engine.pool.changed() => {}
                () = engine.stopping.cancelled() => break,
            }
        }
        log::info!("dispatcher: stopped, no new build starts");
    });
}

/// Starts the oldest queued build that a free slot can take, trying the best
/// slot first; false when none can start now.
async fn start_one(engine: &Arc<Engine>) -> Result<bool, StoreError> {
    if engine.stopping.is_cancelled() {
        return Ok(false);
    }
    let mut slots = engine.pool.free_slots().into_iter();
    while let Some(slot) = slots.next() {
        let name = slot.builder().name().to_string();
        let claimed = engine.store.claim_next_queued(name, slot.platforms()).await;
        match claimed {
            Ok(Some(build)) => {
                slots.for_each(Slot::give_back);
                log::info!("build {}: building on {}", build.id, slot.builder().name());
                engine.announce_start(&build).await;
                engine
                    .runners
                    .spawn(runner::run_guarded(engine.clone(), build, slot));
                return Ok(true);
            }
            Ok(None) => slot.give_back(),
            Err(err) => {
                slot.give_back();
                slots.for_each(Slot::give_back);
                return Err(err);
            }
        }
    }
    Ok(false)
}
