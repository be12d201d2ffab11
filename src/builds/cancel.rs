//! Cancellation signals for running builds.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::Locked;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct CancelSignals(Mutex<HashMap<i64, CancellationToken>>);

impl CancelSignals {
    /// The build's token; whoever comes first (the runner or a cancel request)
    /// makes it, so a cancel that arrives before the runner starts still counts.
    pub fn token(&self, build_id: i64) -> CancellationToken {
        self.lock().entry(build_id).or_default().clone()
    }

    pub fn remove(&self, build_id: i64) {
        self.lock().remove(&build_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CancellationToken>> {
        self.0.locked()
    }
}
