//! What a run feeds as it goes (the build's log, progress, step container and
//! image) and what a successful run produced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::error::RunError;
use crate::builds::engine::Engine;
use crate::builds::logs::LogWriter;
use crate::builds::progress::ProgressTracker;
use crate::docker::{BuildEvent, Builder};
use crate::domain::PlatformImage;
use crate::named_locks::HeldLocks;
use crate::sync::Locked;

/// What a successful run produced.
pub(super) struct Outcome {
    /// The image built, now under the requested tags.
    pub(super) image_id: String,
    /// Per pushed tag; empty for a build-only run.
    pub(super) digests: BTreeMap<String, String>,
    /// The build's publish locks, held until its success is recorded: the last
    /// build to record a tag is the last to have published it.
    pub(super) publish_locks: HeldLocks,
    /// Each platform's image and manifest, for a build of several platforms.
    pub(super) platforms: Vec<PlatformImage>,
}

/// The build's log and progress, fed as its output arrives.
pub(super) struct Output {
    /// The build's log, stored in batches.
    pub(super) log: LogWriter,
    /// Steps built and layers pushed, for followers.
    pub(super) progress: ProgressTracker,
    /// The container of the step running now, to remove on cancel.
    pub(super) step_container: Mutex<Option<String>>,
    /// The name of the build's own the image is built under, before the requested
    /// tags are applied under their locks: a concurrent build of the same tag
    /// never moves it, and a delete of another build never takes the image away.
    pub(super) build_reference: String,
    /// The image, once built.
    pub(super) image_id: OnceLock<String>,
    /// For a build of several platforms: each platform's own name for its image
    /// and the builder it is on, to take back after a cancel.
    pub(super) platform_references: Mutex<Vec<(Arc<Builder>, String)>>,
}

impl Output {
    /// Starts the build's log after the lines an earlier attempt stored.
    pub(super) async fn start(engine: &Arc<Engine>, id: i64) -> Result<Output, RunError> {
        let last_seq = engine.store.last_log_seq(id).await?;
        Ok(Output {
            log: LogWriter::start(engine.store.clone(), engine.events.clone(), id, last_seq),
            progress: ProgressTracker::start(engine.events.clone(), id),
            step_container: Mutex::new(None),
            // Unique across dockpub processes sharing a daemon, whose build ids overlap.
            build_reference: format!("dockpub-build:{id}-{}", uuid::Uuid::new_v4().simple()),
            image_id: OnceLock::new(),
            platform_references: Mutex::new(Vec::new()),
        })
    }

    /// Notes one event of the build step: its log line, its progress, and the
    /// step container a cancel must remove.
    pub(super) fn build_event(&self, event: BuildEvent) {
        match &event {
            BuildEvent::StepContainer(container) => {
                *self.step_container.locked() = Some(container.clone());
            }
            BuildEvent::Progress { done, total } => self.progress.build_steps(*done, *total),
            _ => {}
        }
        if let Some(line) = event.log_line() {
            self.log.line(line);
        }
    }

    /// One event of one platform's build step (of a build of several): its log
    /// line says which platform. Steps are counted per build, not per platform.
    pub(super) fn platform_event(&self, platform: &str, event: BuildEvent) {
        if let Some(line) = event.log_line() {
            self.platform_line(platform, line);
        }
    }

    /// A log line of one platform, prefixed `[os/arch] `.
    pub(super) fn platform_line(&self, platform: &str, line: String) {
        self.log.line(format!("[{platform}] {line}"));
    }

    /// Removes the build's own name from its image; the requested tags keep it.
    pub(super) async fn remove_build_reference(&self, builder: &Builder) {
        let reference = &self.build_reference;
        if let Err(err) = builder.untag(reference).await {
            self.log.line(format!(
                "dockpub: could not remove the build's own tag {reference}: {err}"
            ));
        }
    }
}
