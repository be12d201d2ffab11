//! The dispatcher: one task that hands queued builds, oldest first, to free
//! builder slots. SQLite is the queue; this only decides when to look at it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::events::Event;
use super::{runner, Engine};

/// Wait after a store error before looking at the queue again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Tells the dispatcher that a build was queued.
#[derive(Default)]
pub struct Wakeup(Notify);

impl Wakeup {
    pub fn wake(&self) {
        // notify_one keeps the wake-up if the dispatcher is not waiting yet.
        self.0.notify_one();
    }
}

pub fn spawn_dispatcher(engine: Arc<Engine>) {
    tokio::spawn(async move {
        loop {
            let slot = engine.pool.acquire().await;
            match engine.store.claim_next_queued().await {
                Ok(Some(build)) => {
                    log::info!("build {}: building on {}", build.id, slot.builder().name());
                    engine
                        .events
                        .publish(build.id, Event::Status(Arc::new(build.clone())));
                    tokio::spawn(runner::run(engine.clone(), build, slot));
                }
                Ok(None) => {
                    drop(slot);
                    engine.queue.0.notified().await;
                }
                Err(err) => {
                    drop(slot);
                    log::error!("dispatcher: cannot read the queue: {err}");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    });
}
