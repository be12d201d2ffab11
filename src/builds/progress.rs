//! Live progress of a running build: the Dockerfile step while building, layers
//! and bytes while pushing, and for a build of several platforms each
//! platform's phase and counts. Published at most every 250 ms, whatever the
//! daemon's pace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::events::EventHub;
use crate::domain::{PlatformPhase, PlatformProgress, Progress, ProgressCounts, PushUpdate};
use crate::sync::Locked;

const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Gathers progress from a build's output and publishes it on a timer.
pub struct ProgressTracker {
    state: Arc<Mutex<State>>,
    publisher: JoinHandle<()>,
    events: Arc<EventHub>,
    build_id: i64,
}

#[derive(Default)]
struct State {
    /// The build's own counts, for a build of one platform.
    whole: Tally,
    /// Each platform's, for a build of several, in the request's order.
    platforms: Vec<PlatformTally>,
    changed: bool,
}

/// The counts of one build or platform, and what they are made from.
#[derive(Default)]
struct Tally {
    counts: ProgressCounts,
    /// Bytes pushed per layer. The daemon's push messages name no layer (bollard
    /// drops the id), so a layer is known by its size: two layers of exactly the
    /// same compressed size count as one in the byte totals.
    layer_bytes: HashMap<i64, i64>,
}

struct PlatformTally {
    platform: String,
    phase: PlatformPhase,
    builder: Option<String>,
    tally: Tally,
}

impl ProgressTracker {
    pub fn start(events: Arc<EventHub>, build_id: i64) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let publisher = tokio::spawn({
            let state = state.clone();
            let events = events.clone();
            async move {
                let mut ticks = tokio::time::interval(PUBLISH_EVERY);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Some(progress) = state.locked().take_change() {
                        events.set_progress(build_id, progress);
                    }
                }
            }
        });
        ProgressTracker {
            state,
            publisher,
            events,
            build_id,
        }
    }

    /// Steps done (BuildKit) or the step running (legacy), of the steps known.
    pub fn build_steps(&self, step: u32, steps: u32) {
        let mut state = self.state.locked();
        state.whole.steps(step, steps);
        state.changed = true;
    }

    pub fn push_update(&self, update: &PushUpdate) {
        let mut state = self.state.locked();
        state.whole.push_update(update);
        state.changed = true;
    }

    /// A build of several platforms: each waits for a slot until placed.
    pub fn platforms(&self, platforms: &[&str]) {
        let mut state = self.state.locked();
        state.platforms = platforms
            .iter()
            .map(|platform| PlatformTally {
                platform: platform.to_string(),
                phase: PlatformPhase::WaitingForSlot,
                builder: None,
                tally: Tally::default(),
            })
            .collect();
        state.changed = true;
    }

    /// `platform` has a slot on `builder` and is building there.
    pub fn platform_placed(&self, platform: &str, builder: &str) {
        self.with_platform(platform, |entry| {
            entry.phase = PlatformPhase::Building;
            entry.builder = Some(builder.to_string());
        });
    }

    pub fn platform_phase(&self, platform: &str, phase: PlatformPhase) {
        self.with_platform(platform, |entry| entry.phase = phase);
    }

    pub fn platform_steps(&self, platform: &str, step: u32, steps: u32) {
        self.with_platform(platform, |entry| entry.tally.steps(step, steps));
    }

    /// One message of `platform`'s push: its layers and bytes, not another's.
    pub fn platform_push_update(&self, platform: &str, update: &PushUpdate) {
        self.with_platform(platform, |entry| entry.tally.push_update(update));
    }

    fn with_platform(&self, platform: &str, change: impl FnOnce(&mut PlatformTally)) {
        let mut state = self.state.locked();
        if let Some(entry) = state.platforms.iter_mut().find(|p| p.platform == platform) {
            change(entry);
            state.changed = true;
        }
    }

    /// Stops publishing, after publishing what changed since the last tick:
    /// a build that ends within a tick of its last step still shows it done.
    /// A platform still under way was stopped with the build.
    pub fn stop(self) {
        self.publisher.abort();
        let mut state = self.state.locked();
        state.stop_platforms_under_way();
        if let Some(progress) = state.take_change() {
            self.events.set_progress(self.build_id, progress);
        }
    }
}

impl State {
    fn take_change(&mut self) -> Option<Progress> {
        std::mem::take(&mut self.changed).then(|| self.progress())
    }

    fn progress(&self) -> Progress {
        if self.platforms.is_empty() {
            return Progress {
                counts: self.whole.counts.clone(),
                platforms: Vec::new(),
            };
        }
        let platforms = self.platforms.iter().map(PlatformTally::progress).collect();
        Progress::of_platforms(platforms)
    }

    fn stop_platforms_under_way(&mut self) {
        for entry in &mut self.platforms {
            if entry.phase.is_under_way() {
                entry.phase = PlatformPhase::Stopped;
                self.changed = true;
            }
        }
    }
}

impl PlatformTally {
    fn progress(&self) -> PlatformProgress {
        PlatformProgress {
            platform: self.platform.clone(),
            phase: self.phase,
            builder: self.builder.clone(),
            counts: self.tally.counts.clone(),
        }
    }
}

impl Tally {
    fn steps(&mut self, step: u32, steps: u32) {
        self.counts.step = Some(step);
        self.counts.steps = Some(steps);
    }

    fn push_update(&mut self, update: &PushUpdate) {
        let counts = &mut self.counts;
        let status = update.status.as_str();
        if status == "Preparing" {
            *counts.layers_total.get_or_insert(0) += 1;
        } else if status == "Pushed"
            || status == "Layer already exists"
            || status.starts_with("Mounted from")
        {
            *counts.layers_done.get_or_insert(0) += 1;
        } else if status.contains("digest: ") {
            // The tag's manifest is written: every byte it needed is in the registry.
            counts.bytes_done = counts.bytes_total;
        }
        if let (Some(current), Some(total)) = (update.current, update.total) {
            self.layer_bytes.insert(total, current.min(total));
            counts.bytes_total = Some(self.layer_bytes.keys().map(|&t| t.max(0) as u64).sum());
            counts.bytes_done = Some(self.layer_bytes.values().map(|&c| c.max(0) as u64).sum());
        }
        counts.layers_total.get_or_insert(0);
        counts.layers_done.get_or_insert(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_change_is_published_when_the_tracker_stops() {
        let events = Arc::new(EventHub::default());
        let tracker = ProgressTracker::start(events.clone(), 7);
        // The first tick publishes at once; the next would come 250 ms later.
        tokio::time::sleep(Duration::from_millis(20)).await;
        tracker.build_steps(2, 2);
        tracker.stop();
        let published = events.progress(7).expect("published at the stop");
        assert_eq!(
            (published.counts.step, published.counts.steps),
            (Some(2), Some(2))
        );
    }

    fn update(status: &str, bytes: Option<(i64, i64)>) -> PushUpdate {
        PushUpdate {
            status: status.to_string(),
            current: bytes.map(|b| b.0),
            total: bytes.map(|b| b.1),
        }
    }

    #[test]
    fn counts_layers_and_bytes_of_a_push() {
        let mut state = State::default();
        for step in [
            update("The push refers to repository [r/x]", None),
            update("Preparing", None),
            update("Preparing", None),
            update("Layer already exists", None),
            update("Pushing", Some((100, 1000))),
            update("Pushing", Some((1000, 1000))),
            update("Pushed", None),
        ] {
            state.whole.push_update(&step);
        }
        state.changed = true;
        let progress = state.take_change().unwrap().counts;
        assert_eq!(
            (progress.layers_done, progress.layers_total),
            (Some(2), Some(2))
        );
        assert_eq!(
            (progress.bytes_done, progress.bytes_total),
            (Some(1000), Some(1000))
        );
        assert_eq!(state.take_change(), None, "nothing new to publish");
    }

    #[tokio::test]
    async fn each_platform_counts_its_own_push_and_the_build_their_sums() {
        let events = Arc::new(EventHub::default());
        let tracker = ProgressTracker::start(events.clone(), 8);
        tracker.platforms(&["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        tracker.platform_placed("linux/amd64", "local");
        tracker.platform_placed("linux/arm64", "arm");
        tracker.platform_steps("linux/arm64", 1, 2);
        // Both push one layer of the same size: per platform, each counts.
        for platform in ["linux/amd64", "linux/arm64"] {
            tracker.platform_phase(platform, PlatformPhase::Pushing);
            for step in [
                update("Preparing", None),
                update("Pushing", Some((500, 500))),
                update("Pushed", None),
            ] {
                tracker.platform_push_update(platform, &step);
            }
        }
        tracker.platform_phase("linux/amd64", PlatformPhase::Done);
        tracker.platform_phase("linux/arm64", PlatformPhase::Failed);
        tracker.stop();
        let published = events.progress(8).expect("published at the stop");
        let phases: Vec<_> = published.platforms.iter().map(|p| p.phase).collect();
        assert_eq!(
            phases,
            [
                PlatformPhase::Done,
                PlatformPhase::Failed,
                PlatformPhase::Stopped
            ]
        );
        let arm64 = &published.platforms[1];
        assert_eq!(arm64.builder.as_deref(), Some("arm"));
        assert_eq!(
            (arm64.counts.layers_done, arm64.counts.bytes_total),
            (Some(1), Some(500))
        );
        let whole = &published.counts;
        assert_eq!((whole.layers_done, whole.layers_total), (Some(2), Some(2)));
        assert_eq!(
            (whole.bytes_done, whole.bytes_total),
            (Some(1000), Some(1000))
        );
        assert_eq!((whole.step, whole.steps), (Some(1), Some(2)));
    }
}
