//! Build slots across builders. The queue asks for a slot; a slot is a builder
//! with room for one more build, held until the build ends.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{Builder, BuilderConfig};

pub struct BuilderPool {
    members: Vec<Member>,
    slot_freed: Arc<Notify>,
}

struct Member {
    builder: Arc<Builder>,
    slots: Arc<Semaphore>,
}

/// One running build's claim on a builder. Dropping it frees the slot.
pub struct Slot {
    builder: Arc<Builder>,
    permit: Option<OwnedSemaphorePermit>,
    slot_freed: Arc<Notify>,
}

impl BuilderPool {
    pub fn new(configs: Vec<BuilderConfig>) -> Self {
        let members = configs
            .into_iter()
            .map(|config| Member {
                slots: Arc::new(Semaphore::new(config.max_concurrent_builds)),
                builder: Arc::new(Builder::new(config)),
            })
            .collect();
        BuilderPool {
            members,
            slot_freed: Arc::new(Notify::new()),
        }
    }

    pub fn builders(&self) -> impl Iterator<Item = &Arc<Builder>> {
        self.members.iter().map(|m| &m.builder)
    }

    /// The builder named `name`, if it is in the pool.
    pub fn builder(&self, name: &str) -> Option<&Arc<Builder>> {
        self.builders().find(|b| b.name() == name)
    }

    /// Waits for a free slot on the builder with the most free slots.
    pub async fn acquire(&self) -> Slot {
        loop {
            // Registered before looking, so a slot freed in between still wakes us.
            let freed = self.slot_freed.notified();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            freed.await;
        }
    }

    fn try_acquire(&self) -> Option<Slot> {
        let member = self
            .members
            .iter()
            .max_by_key(|m| m.slots.available_permits())?;
        let permit = member.slots.clone().try_acquire_owned().ok()?;
        Some(Slot {
            builder: member.builder.clone(),
            permit: Some(permit),
            slot_freed: self.slot_freed.clone(),
        })
    }
}

impl Slot {
    pub fn builder(&self) -> &Arc<Builder> {
        &self.builder
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Release before notifying, or the woken waiter finds the slot still taken.
        drop(self.permit.take());
        self.slot_freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pool(slots: usize) -> BuilderPool {
        BuilderPool::new(vec![BuilderConfig {
            name: "local".into(),
            host: None,
            max_concurrent_builds: slots,
            build_network: None,
            build_memory_bytes: None,
            build_cpu_shares: None,
        }])
    }

    #[tokio::test]
    async fn never_hands_out_more_slots_than_configured() {
        let pool = pool(2);
        let first = pool.acquire().await;
        let _second = pool.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), pool.acquire()).await;
        assert!(third.is_err(), "a third slot was handed out");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await;
        assert!(third.is_ok(), "a freed slot was not handed out again");
    }

    #[tokio::test]
    async fn a_waiting_acquire_wakes_when_a_slot_is_freed() {
        let pool = Arc::new(pool(1));
        let held = pool.acquire().await;
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire().await.builder().name().to_string() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        let name = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("waiter never woke")
            .unwrap();
        assert_eq!(name, "local");
    }
}
