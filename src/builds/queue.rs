//! The dispatcher: one task that hands queued builds, oldest first, to free slots
//! on builders that are up. SQLite is the queue; this only decides when to look at
//! it and for which builder. While no builder answers, builds wait queued.

use std::sync::Arc;
use std::time::Duration;

use super::engine::Engine;
use super::runner;
use crate::docker::Slot;
use crate::store::StoreError;

/// Wait after a store error before looking at the queue again.
const STORE_RETRY: Duration = Duration::from_secs(1);

pub fn spawn_dispatcher(engine: Arc<Engine>) {
    tokio::spawn(async move {
        loop {
            match start_one(&engine).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => {
                    log::error!("dispatcher: cannot read the queue: {err}");
                    tokio::time::sleep(STORE_RETRY).await;
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
                    .spawn(runner::run(engine.clone(), build, slot));
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
