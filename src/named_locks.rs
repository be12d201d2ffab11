//! Async locks looked up by name (a repository, a `repository:tag`), made on first
//! use and forgotten once nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::sync::Locked;
use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct NamedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// Held locks; dropping it releases them all.
pub struct HeldLocks(#[allow(dead_code)] Vec<OwnedMutexGuard<()>>);

impl NamedLocks {
    pub async fn lock(&self, name: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.locked();
            // Forget locks nobody holds or waits for, so the map stays small.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(name.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Every named lock, taken in sorted order (so two callers wanting overlapping
    /// sets never wait for each other in a circle); a name given twice counts once.
    pub async fn lock_all<I>(&self, names: I) -> HeldLocks
    where
        I: IntoIterator<Item = String>,
    {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        let mut held = Vec::with_capacity(names.len());
        for name in &names {
            held.push(self.lock(name).await);
        }
        HeldLocks(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_sets_wait_for_each_other_and_never_deadlock() {
        let locks = Arc::new(NamedLocks::default());
        let held = locks.lock_all(["b".to_string(), "a".to_string()]).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _held = locks
                    .lock_all(["a".to_string(), "c".to_string(), "a".to_string()])
                    .await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "took 'a' while it was held");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released locks are taken")
            .unwrap();
    }
}
