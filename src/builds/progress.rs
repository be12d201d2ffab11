//! Live progress of a running build: the Dockerfile step while building, layers
//! and bytes while pushing. Published at most every 250 ms, whatever the daemon's pace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::events::EventHub;
use crate::domain::{Progress, PushUpdate};
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
    progress: Progress,
    /// Bytes pushed per layer. The daemon's push messages name no layer (bollard
    /// drops the id), so a layer is known by its size: two layers of exactly the
    /// same compressed size count as one in the byte totals.
    layer_bytes: HashMap<i64, i64>,
    changed: bool,
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
        state.progress.step = Some(step);
        state.progress.steps = Some(steps);
        state.changed = true;
    }

    pub fn push_update(&self, update: &PushUpdate) {
        self.state.locked().push_update(update);
    }

    /// Stops publishing, after publishing what changed since the last tick:
    /// a build that ends within a tick of its last step still shows it done.
    pub fn stop(self) {
        self.publisher.abort();
        if let Some(progress) = self.state.locked().take_change() {
            self.events.set_progress(self.build_id, progress);
        }
    }
}

impl State {
    fn take_change(&mut self) -> Option<Progress> {
        std::mem::take(&mut self.changed).then(|| self.progress.clone())
    }

    fn push_update(&mut self, update: &PushUpdate) {
        let progress = &mut self.progress;
        let status = update.status.as_str();
        if status == "Preparing" {
            *progress.layers_total.get_or_insert(0) += 1;
        } else if status == "Pushed"
            || status == "Layer already exists"
            || status.starts_with("Mounted from")
        {
            *progress.layers_done.get_or_insert(0) += 1;
        } else if status.contains("digest: ") {
            // The tag's manifest is written: every byte it needed is in the registry.
            progress.bytes_done = progress.bytes_total;
        }
        if let (Some(current), Some(total)) = (update.current, update.total) {
            self.layer_bytes.insert(total, current.min(total));
            progress.bytes_total = Some(self.layer_bytes.keys().map(|&t| t.max(0) as u64).sum());
            progress.bytes_done = Some(self.layer_bytes.values().map(|&c| c.max(0) as u64).sum());
        }
        progress.layers_total.get_or_insert(0);
        progress.layers_done.get_or_insert(0);
        self.changed = true;
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
        assert_eq!((published.step, published.steps), (Some(2), Some(2)));
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
            state.push_update(&step);
        }
        let progress = state.take_change().unwrap();
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
}
