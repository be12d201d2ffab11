//! Build slots across builders. The dispatcher asks for a slot on a builder that
//! is up and can run the build; a slot is held until the build ends. The health
//! checks (see `health.rs`) mark builders up and down here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{Builder, BuilderConfig};
use crate::sync::Locked;

pub struct BuilderPool {
    members: Vec<Arc<Member>>,
    /// A slot was freed or a builder came up: worth looking at the queue again.
    changed: Arc<Notify>,
}

pub(super) struct Member {
    pub(super) builder: Arc<Builder>,
    slots: Arc<Semaphore>,
    health: Mutex<Health>,
    /// Builds that ended (not requeued) on this builder since dockpub started.
    done: AtomicU64,
}

/// What the last health check found.
struct Health {
    /// Until the first check, a builder counts as down but has not been logged as such.
    checked: bool,
    up: bool,
    last_error: Option<String>,
    platforms: Vec<String>,
    /// Cancelled when the builder is marked down: its running builds stop and requeue.
    lost: CancellationToken,
}

/// What a health check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// The first check: the builder was neither up nor down before.
    First,
    /// It was the other way before.
    Flipped,
    Unchanged,
}

/// One builder's health and load, for `/api/v1/builders` and the web page.
#[derive(Debug, Clone)]
pub struct BuilderStatus {
    pub name: String,
    pub host: String,
    pub tls: bool,
    pub up: bool,
    pub running: usize,
    pub slots: usize,
    pub platforms: Vec<String>,
    pub last_error: Option<String>,
    pub builds_done: u64,
}

/// One running build's claim on a builder. Dropping it frees the slot.
pub struct Slot {
    member: Arc<Member>,
    permit: Option<OwnedSemaphorePermit>,
    changed: Arc<Notify>,
    /// False for a slot given back unused: nothing new to look at then.
    wake_on_drop: bool,
}

impl BuilderPool {
    pub fn new(configs: Vec<BuilderConfig>) -> Self {
        let members = configs
            .into_iter()
            .map(|config| {
                Arc::new(Member {
                    slots: Arc::new(Semaphore::new(config.max_concurrent_builds)),
                    health: Mutex::new(Health {
                        checked: false,
                        up: false,
                        last_error: None,
                        platforms: config.platforms.clone(),
                        lost: CancellationToken::new(),
                    }),
                    builder: Arc::new(Builder::new(config)),
                    done: AtomicU64::new(0),
                })
            })
            .collect();
        BuilderPool {
            members,
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn builders(&self) -> impl Iterator<Item = &Arc<Builder>> {
        self.members.iter().map(|m| &m.builder)
    }

    pub(super) fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// The builder named `name`, if it is in the pool.
    pub fn builder(&self, name: &str) -> Option<&Arc<Builder>> {
        self.builders().find(|b| b.name() == name)
    }

    /// Whether the builder named `name` passed its last health check.
    pub fn is_up(&self, name: &str) -> bool {
        self.members
            .iter()
            .any(|m| m.builder.name() == name && m.health().up)
    }

    /// Resolves when a slot was freed or a builder came up since the last call
    /// (a wake-up is kept when nobody waits, so none is lost).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub(super) fn notify_changed(&self) {
        self.changed.notify_one();
    }

    /// Free slots on builders that are up, best first: most free slots, then
    /// fewest builds running, then configuration order. The caller tries them in
    /// turn until one has a build it can run.
    pub fn free_slots(&self) -> Vec<Slot> {
        let mut candidates: Vec<&Arc<Member>> = self
            .members
            .iter()
            .filter(|m| m.health().up && m.slots.available_permits() > 0)
            .collect();
        candidates.sort_by_key(|m| (std::cmp::Reverse(m.slots.available_permits()), m.running()));
        candidates
            .into_iter()
            .filter_map(|member| {
                let permit = member.slots.clone().try_acquire_owned().ok()?;
                Some(Slot {
                    member: member.clone(),
                    permit: Some(permit),
                    changed: self.changed.clone(),
                    wake_on_drop: true,
                })
            })
            .collect()
    }

    /// A free slot on a builder that is up and offers `platform`, for one
    /// platform of a build of several (the build's own slot is elsewhere).
    pub fn free_slot_for(&self, platform: &str) -> Option<Slot> {
        let mut offering: Vec<&Arc<Member>> = self
            .members
            .iter()
            .filter(|m| {
                let health = m.health();
                health.up && health.platforms.iter().any(|p| p == platform)
            })
            .collect();
        offering.sort_by_key(|m| (std::cmp::Reverse(m.slots.available_permits()), m.running()));
        offering.into_iter().find_map(|member| {
            let permit = member.slots.clone().try_acquire_owned().ok()?;
            Some(Slot {
                member: member.clone(),
                permit: Some(permit),
                changed: self.changed.clone(),
                wake_on_drop: true,
            })
        })
    }

    pub fn statuses(&self) -> Vec<BuilderStatus> {
        self.members.iter().map(|m| m.status()).collect()
    }
}

impl Member {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.locked()
    }

    fn running(&self) -> usize {
        self.builder.slots() - self.slots.available_permits()
    }

    fn status(&self) -> BuilderStatus {
        let health = self.health();
        BuilderStatus {
            name: self.builder.name().to_string(),
            host: self.builder.host(),
            tls: self.builder.uses_tls(),
            up: health.up,
            running: self.running(),
            slots: self.builder.slots(),
            platforms: health.platforms.clone(),
            last_error: health.last_error.clone(),
            builds_done: self.done.load(Ordering::Relaxed),
        }
    }

    /// Records a passed check.
    pub(super) fn mark_up(&self, platforms: Option<Vec<String>>) -> Change {
        let mut health = self.health();
        let change = health.change_to(true);
        if let Some(platforms) = platforms {
            health.platforms = platforms;
        }
        if change != Change::Unchanged {
            // Builds that start from now on must not see the old loss.
            health.lost = CancellationToken::new();
        }
        change
    }

    /// Records a failed check; builds running on the builder are told to stop.
    fn mark_down(&self, error: String) -> Change {
        let mut health = self.health();
        let change = health.change_to(false);
        health.last_error = Some(error);
        health.lost.cancel();
        change
    }

    /// Marks the builder down (its running builds are told to stop); one log
    /// line when it was up before.
    pub(super) fn report_down(&self, reason: String) {
        if self.mark_down(reason.clone()) != Change::Unchanged {
            log::warn!(
                "builder '{}': the Docker daemon does not answer ({reason}); it gets no builds, \
                 and builds running there go back to the queue",
                self.builder.name()
            );
        }
    }

    pub(super) fn knows_platforms(&self) -> bool {
        !self.health().platforms.is_empty()
    }
}

impl Health {
    fn change_to(&mut self, up: bool) -> Change {
        let change = match (self.checked, self.up == up) {
            (false, _) => Change::First,
            (true, false) => Change::Flipped,
            (true, true) => Change::Unchanged,
        };
        self.checked = true;
        self.up = up;
        change
    }
}

impl Slot {
    pub fn builder(&self) -> &Arc<Builder> {
        &self.member.builder
    }

    /// The platforms builds may ask for on this builder.
    pub fn platforms(&self) -> Vec<String> {
        self.member.health().platforms.clone()
    }

    /// Cancelled when this builder is marked down while the build runs.
    pub fn lost(&self) -> CancellationToken {
        self.member.health().lost.clone()
    }

    /// Frees the slot without waking the dispatcher: it had no build for it,
    /// and a wake-up would only make it look again at once.
    pub fn give_back(mut self) {
        self.wake_on_drop = false;
    }

    /// A build found the builder gone: it is marked down at once, so the build
    /// does not go straight back to it, until a health check sees it answer.
    pub fn report_lost(&self, reason: String) {
        self.member.report_down(reason);
    }

    /// Counts a build that ended here (not one sent back to the queue).
    pub fn record_done(&self) {
        self.member.done.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Release before notifying, or the woken dispatcher finds the slot still taken.
        drop(self.permit.take());
        if self.wake_on_drop {
            self.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(name: &str, slots: usize) -> BuilderConfig {
        BuilderConfig {
            name: name.into(),
            host: None,
            max_concurrent_builds: slots,
            build_network: None,
            build_memory_bytes: None,
            build_cpu_shares: None,
            buildkit: true,
            tls: None,
            platforms: Vec::new(),
        }
    }

    fn pool_of(configs: Vec<BuilderConfig>) -> BuilderPool {
        let pool = BuilderPool::new(configs);
        for member in pool.members() {
            member.mark_up(None);
        }
        pool
    }

    fn first_free(pool: &BuilderPool) -> Option<Slot> {
        pool.free_slots().into_iter().next()
    }

    #[test]
    fn never_hands_out_more_slots_than_configured() {
        let pool = pool_of(vec![config("local", 2)]);
        let first = first_free(&pool).unwrap();
        let _second = first_free(&pool).unwrap();
        assert!(first_free(&pool).is_none(), "a third slot was handed out");
        drop(first);
        assert!(
            first_free(&pool).is_some(),
            "a freed slot was not handed out again"
        );
    }

    #[test]
    fn prefers_the_builder_with_most_free_slots_and_skips_down_ones() {
        let pool = pool_of(vec![config("a", 1), config("b", 2), config("c", 3)]);
        let on_c = first_free(&pool).unwrap();
        assert_eq!(on_c.builder().name(), "c");
        pool.members()[2].mark_down("gone".into());
        let names: Vec<String> = pool
            .free_slots()
            .iter()
            .map(|s| s.builder().name().to_string())
            .collect();
        assert_eq!(names, ["b", "a"]);
        assert!(
            on_c.lost().is_cancelled(),
            "a build on a lost builder is not told"
        );
        let down: Vec<(String, Option<String>)> = pool
            .statuses()
            .into_iter()
            .filter(|status| !status.up)
            .map(|status| (status.name, status.last_error))
            .collect();
        assert_eq!(down, [("c".to_string(), Some("gone".to_string()))]);
    }

    #[test]
    fn ties_go_to_the_builder_with_fewer_builds_running() {
        let pool = pool_of(vec![config("a", 2), config("b", 1)]);
        let on_a = first_free(&pool).unwrap();
        assert_eq!(on_a.builder().name(), "a");
        // a: 1 free, 1 running; b: 1 free, 0 running.
        assert_eq!(first_free(&pool).unwrap().builder().name(), "b");
    }

    #[test]
    fn a_platform_slot_comes_from_a_builder_offering_it() {
        let pool = pool_of(vec![config("x86", 1), config("pi", 1)]);
        pool.members()[0].mark_up(Some(vec!["linux/amd64".into()]));
        pool.members()[1].mark_up(Some(vec!["linux/arm64".into()]));
        let arm = pool.free_slot_for("linux/arm64").unwrap();
        assert_eq!(arm.builder().name(), "pi");
        assert!(
            pool.free_slot_for("linux/arm64").is_none(),
            "pi has one slot"
        );
        assert!(pool.free_slot_for("linux/s390x").is_none());
        assert_eq!(
            pool.free_slot_for("linux/amd64").unwrap().builder().name(),
            "x86"
        );
    }

    #[tokio::test]
    async fn a_freed_slot_wakes_the_dispatcher() {
        let pool = Arc::new(pool_of(vec![config("local", 1)]));
        let held = first_free(&pool).unwrap();
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.changed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("waiter never woke")
            .unwrap();
    }
}
