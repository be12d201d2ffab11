//! What queued and running builds must not store: registry credentials and
//! build secrets, in memory only. They never reach SQLite, so a restart forgets them.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{BuildSecret, Credentials};
use crate::sync::Locked;

pub type CredentialVault = MemoryVault<Credentials>;
pub type SecretVault = MemoryVault<Vec<BuildSecret>>;

pub struct MemoryVault<T> {
    by_build: Mutex<HashMap<i64, T>>,
}

impl<T> Default for MemoryVault<T> {
    fn default() -> Self {
        MemoryVault {
            by_build: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> MemoryVault<T> {
    pub fn insert(&self, build_id: i64, value: T) {
        self.lock().insert(build_id, value);
    }

    pub fn get(&self, build_id: i64) -> Option<T> {
        self.lock().get(&build_id).cloned()
    }

    pub fn remove(&self, build_id: i64) {
        self.lock().remove(&build_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, T>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.by_build.locked()
    }
}
