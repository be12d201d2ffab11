//! How many follow builds live: a place per follower, counted per build and in
//! all, given back when its response is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::BuildError;
use crate::sync::Locked;

/// How many follow a build, and all builds, at most.
#[derive(Debug, Clone, Copy)]
pub struct FollowerLimits {
    pub per_build: usize,
    pub total: usize,
}

/// The followers counted, per build and in all.
pub struct FollowerSlots {
    limits: FollowerLimits,
    taken: Mutex<Taken>,
}

#[derive(Default)]
struct Taken {
    per_build: HashMap<i64, usize>,
    total: usize,
}

/// One follower's place; given back when the follower's response is dropped.
pub struct FollowerSlot {
    slots: Arc<FollowerSlots>,
    build_id: i64,
}

impl FollowerSlots {
    pub fn new(limits: FollowerLimits) -> Arc<Self> {
        Arc::new(FollowerSlots {
            limits,
            taken: Mutex::default(),
        })
    }

    pub fn take(self: &Arc<Self>, build_id: i64) -> Result<FollowerSlot, BuildError> {
        let mut taken = self.taken.locked();
        if taken.total >= self.limits.total {
            return Err(BuildError::TooManyFollowers {
                limit: self.limits.total,
                setting: "max_followers",
            });
        }
        let of_build = taken.per_build.get(&build_id).copied().unwrap_or(0);
        if of_build >= self.limits.per_build {
            return Err(BuildError::TooManyFollowers {
                limit: self.limits.per_build,
                setting: "max_followers_per_build",
            });
        }
        *taken.per_build.entry(build_id).or_default() += 1;
        taken.total += 1;
        Ok(FollowerSlot {
            slots: self.clone(),
            build_id,
        })
    }

    /// Followers now, in all.
    #[cfg(test)]
    fn total(&self) -> usize {
        self.taken.locked().total
    }
}

impl Drop for FollowerSlot {
    fn drop(&mut self) {
        let last_one = {
            let mut taken = self.slots.taken.locked();
            if let Some(of_build) = taken.per_build.get_mut(&self.build_id) {
                *of_build -= 1;
                if *of_build == 0 {
                    taken.per_build.remove(&self.build_id);
                }
            }
            taken.total -= 1;
            taken.total == 0
        };
        if last_one {
            // Many followers that each held a page leave memory the allocator
            // keeps for later; give it back once none is left.
            crate::sync::release_freed_memory();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_past_either_cap_are_refused_and_places_come_back() {
        let slots = FollowerSlots::new(FollowerLimits {
            per_build: 2,
            total: 3,
        });
        let first = slots.take(1).unwrap();
        let _second = slots.take(1).unwrap();
        assert!(matches!(
            slots.take(1),
            Err(BuildError::TooManyFollowers {
                setting: "max_followers_per_build",
                ..
            })
        ));
        let _other = slots.take(2).unwrap();
        assert!(matches!(
            slots.take(3),
            Err(BuildError::TooManyFollowers {
                setting: "max_followers",
                ..
            })
        ));
        assert_eq!(slots.total(), 3);
        drop(first);
        assert_eq!(slots.total(), 2);
        slots.take(1).unwrap();
        assert!(!slots.taken.locked().per_build.contains_key(&3));
    }
}
