//! Registry credentials of queued and running builds, in memory only: a password
//! never reaches SQLite, so a restart forgets it.

use std::collections::HashMap;
use std::sync::Mutex;

use super::model::Credentials;

#[derive(Default)]
pub struct CredentialVault {
    by_build: Mutex<HashMap<i64, Credentials>>,
}

impl CredentialVault {
    pub fn insert(&self, build_id: i64, credentials: Credentials) {
        self.lock().insert(build_id, credentials);
    }

    pub fn get(&self, build_id: i64) -> Option<Credentials> {
        self.lock().get(&build_id).cloned()
    }

    pub fn remove(&self, build_id: i64) {
        self.lock().remove(&build_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Credentials>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.by_build
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
