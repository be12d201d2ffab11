//! The names builds are built under on a daemon, `dockpub-build:INSTANCE-ID-RANDOM`
//! (see README, "Builds side by side"), and the ones a crash left behind: a
//! dockpub killed during a build or a push never removed its attempt's name.
//! INSTANCE is the data directory's own (see `Store::instance`), so names of
//! another dockpub sharing the daemon are never touched.

use std::time::Duration;

use super::engine::Engine;
use crate::docker::Builder;

/// How long the start waits for each builder while removing names left behind.
const AT_START: Duration = Duration::from_secs(10);

/// How the names of this dockpub's builds start.
fn of_instance(instance: &str) -> String {
    format!("dockpub-build:{instance}-")
}

/// How the names of build `id` start; each attempt adds a random part.
pub fn of_build(instance: &str, id: i64) -> String {
    format!("{}{id}-", of_instance(instance))
}

/// Removes the names starting with `prefix` on `builder`, but `keep`; returns
/// the names removed. A name that was an image's last one takes the image along.
pub async fn remove_stale(builder: &Builder, prefix: &str, keep: Option<&str>) -> Vec<String> {
    let names = match builder.names_starting_with(prefix).await {
        Ok(names) => names,
        Err(err) => {
            log::warn!(
                "builder '{}': cannot list build names left behind: {err}",
                builder.name()
            );
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for name in names.into_iter().filter(|name| Some(name.as_str()) != keep) {
        match builder.untag(&name).await {
            Ok(_) => removed.push(name),
            Err(err) => log::warn!("builder '{}': cannot remove {name}: {err}", builder.name()),
        }
    }
    removed
}

/// At start, before any build runs: every name of this dockpub's builds on a
/// builder is one a crash left behind. Builders that do not answer keep theirs
/// until a build's next attempt there.
pub async fn remove_left_at_start(engine: &Engine) {
    let prefix = of_instance(engine.store.instance());
    let passes = engine.pool.builders().map(|builder| {
        let prefix = prefix.clone();
        async move {
            let removed =
                tokio::time::timeout(AT_START, remove_stale(builder, &prefix, None)).await;
            for name in removed.unwrap_or_default() {
                log::info!(
                    "builder '{}': removed {name}, left by an interrupted build",
                    builder.name()
                );
            }
        }
    });
    futures_util::future::join_all(passes).await;
}
