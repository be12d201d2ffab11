//! When each running build was last heard from: a line of output or a progress
//! message of its build or its push. A build silent for more than a minute says
//! since when (`silent_since`), and the builders panel lists it; a build step
//! silent for `build_idle_timeout_secs` is stopped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::Timestamp;
use crate::sync::Locked;

/// Silence shorter than this is normal work (a quiet step, a big layer) and is
/// not shown.
pub const SHOWN_AFTER: Duration = Duration::from_secs(60);

/// A running build that has been silent for longer than [`SHOWN_AFTER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentBuild {
    pub id: i64,
    pub builder: String,
    /// When it was last heard from.
    pub since: Timestamp,
}

struct Heard {
    builder: String,
    at: Instant,
    wall: Timestamp,
}

/// Running builds, by id: when each was last heard from.
pub struct Silences {
    heard: Mutex<HashMap<i64, Heard>>,
    /// [`SHOWN_AFTER`], shorter in unit tests.
    shown_after: Duration,
}

impl Default for Silences {
    fn default() -> Self {
        Silences::showing_after(SHOWN_AFTER)
    }
}

impl Silences {
    fn showing_after(shown_after: Duration) -> Self {
        Silences {
            heard: Mutex::default(),
            shown_after,
        }
    }

    /// Build `id`, running on `builder`, was heard from just now.
    pub fn heard(&self, id: i64, builder: &str) {
        let mut heard = self.heard.locked();
        match heard.get_mut(&id) {
            Some(last) => {
                last.at = Instant::now();
                last.wall = Timestamp::now();
            }
            None => {
                heard.insert(
                    id,
                    Heard {
                        builder: builder.to_string(),
                        at: Instant::now(),
                        wall: Timestamp::now(),
                    },
                );
            }
        }
    }

    /// The build ended (or went back to the queue).
    pub fn forget(&self, id: i64) {
        self.heard.locked().remove(&id);
    }

    /// How long build `id` has been silent; zero when it is not running.
    pub fn silent_for(&self, id: i64) -> Duration {
        self.heard
            .locked()
            .get(&id)
            .map_or(Duration::ZERO, |heard| heard.at.elapsed())
    }

    /// When build `id` was last heard from, if that is more than [`SHOWN_AFTER`] ago.
    pub fn silent_since(&self, id: i64) -> Option<Timestamp> {
        let heard = self.heard.locked();
        let last = heard.get(&id)?;
        (last.at.elapsed() > self.shown_after).then_some(last.wall)
    }

    /// Every running build silent for more than [`SHOWN_AFTER`], by id.
    pub fn silent(&self) -> Vec<SilentBuild> {
        let heard = self.heard.locked();
        let mut silent: Vec<SilentBuild> = heard
            .iter()
            .filter(|(_, last)| last.at.elapsed() > self.shown_after)
            .map(|(&id, last)| SilentBuild {
                id,
                builder: last.builder.clone(),
                since: last.wall,
            })
            .collect();
        silent.sort_by_key(|build| build.id);
        silent
    }

    /// Resolves once build `id` has been silent for `limit`.
    pub async fn until_silent_for(&self, id: i64, limit: Duration) {
        loop {
            let silent = self.silent_for(id);
            if silent >= limit {
                return;
            }
            tokio::time::sleep(limit - silent).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_build_is_shown_silent_once_nothing_came_for_a_while() {
        let silences = Silences::showing_after(Duration::from_millis(200));
        silences.heard(7, "local");
        silences.heard(8, "other");
        assert_eq!(silences.silent_since(7), None);
        silences
            .until_silent_for(7, Duration::from_millis(300))
            .await;
        assert!(silences.silent_for(7) >= Duration::from_millis(300));
        silences.heard(8, "other");
        let silent = silences.silent();
        assert_eq!(silent.len(), 1, "{silent:?}");
        assert_eq!((silent[0].id, silent[0].builder.as_str()), (7, "local"));
        assert_eq!(silences.silent_since(7), Some(silent[0].since));
        silences.heard(7, "local");
        assert_eq!(silences.silent_since(7), None);
        silences.forget(7);
        assert_eq!(silences.silent_for(7), Duration::ZERO);
        assert_eq!(silences.silent_since(7), None);
    }
}
