//! The dispatcher: one task that hands queued builds, oldest first, to free
//! builder slots. SQLite is the queue; this only decides when to look at it.
//! While a builder's daemon does not answer, builds wait queued instead of failing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::engine::Engine;
use super::runner;
use crate::docker::Builder;

/// Wait after a store error before looking at the queue again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Waits between pings of a daemon that does not answer: doubling up to the last.
const DAEMON_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(10));

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
        while let Some(()) = dispatch_one(&engine).await {}
        log::info!("dispatcher: stopped, no new build starts");
    });
}

/// Starts at most one build; None once dockpub is stopping.
async fn dispatch_one(engine: &Arc<Engine>) -> Option<()> {
    let slot = tokio::select! {
        slot = engine.pool.acquire() => slot,
        () = engine.stopping.cancelled() => return None,
    };
    wait_for_daemon(engine, slot.builder()).await?;
    match engine.store.claim_next_queued().await {
        Ok(Some(build)) => {
            log::info!("build {}: building on {}", build.id, slot.builder().name());
            engine.announce_start(&build).await;
            engine
                .runners
                .spawn(runner::run(engine.clone(), build, slot));
        }
        Ok(None) => {
            drop(slot);
            tokio::select! {
                () = engine.queue.0.notified() => {}
                () = engine.stopping.cancelled() => return None,
            }
        }
        Err(err) => {
            drop(slot);
            log::error!("dispatcher: cannot read the queue: {err}");
            tokio::time::sleep(STORE_RETRY).await;
        }
    }
    Some(())
}

/// Returns once the builder's daemon answers; one log line when it goes away and
/// one when it is back. None if dockpub starts stopping meanwhile.
async fn wait_for_daemon(engine: &Engine, builder: &Builder) -> Option<()> {
    let (mut pause, longest) = DAEMON_BACKOFF;
    let mut was_down = false;
    loop {
        match builder.ping().await {
            Ok(()) if was_down => {
                log::info!(
                    "builder '{}': the Docker daemon is back; queued builds start again",
                    builder.name()
                );
                return Some(());
            }
            Ok(()) => return Some(()),
            Err(err) if !was_down => {
                log::warn!(
                    "builder '{}': the Docker daemon does not answer ({err}); builds wait queued",
                    builder.name()
                );
                was_down = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = engine.stopping.cancelled() => return None,
        }
        pause = (pause * 2).min(longest);
    }
}
