//! Who uses the shared Docker daemon. Every `dockpub` process the harness starts
//! holds a share; a test that deletes images holds the daemon alone, because the
//! classic builder fails a build with `unable to find image "sha256:…"` when a
//! sibling of its parent image (another child of the base image) is deleted while
//! it looks for a cached step. All modules run in one test binary, so this is
//! process-wide: a delete in one module waits for the builds of all others.

use std::cell::Cell;
use std::sync::{Condvar, Mutex, MutexGuard};

struct Users {
    shares: usize,
    alone: bool,
}

static USERS: Mutex<Users> = Mutex::new(Users {
    shares: 0,
    alone: false,
});
static CHANGED: Condvar = Condvar::new();

thread_local! {
    /// This thread's test holds the daemon alone: its own servers take no share.
    static HOLDS_IT_ALONE: Cell<bool> = const { Cell::new(false) };
}

fn users() -> MutexGuard<'static, Users> {
    USERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait_until(ready: impl Fn(&Users) -> bool) -> MutexGuard<'static, Users> {
    let mut users = users();
    while !ready(&users) {
        users = CHANGED
            .wait(users)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    users
}

/// A server's share; released when dropped. None inside a test that holds the
/// daemon alone. (A share never waits for a test that only waits to be alone: it
/// waits for one that is.)
pub struct Share(());

pub fn share() -> Option<Share> {
    if HOLDS_IT_ALONE.with(Cell::get) {
        return None;
    }
    wait_until(|users| !users.alone).shares += 1;
    Some(Share(()))
}

impl Drop for Share {
    fn drop(&mut self) {
        users().shares -= 1;
        CHANGED.notify_all();
    }
}

/// The daemon to this test alone until dropped: waits until no server holds a
/// share. Servers this thread starts meanwhile take none (servers started from
/// other threads would wait for it).
pub struct Alone(());

pub fn alone() -> Alone {
    wait_until(|users| users.shares == 0 && !users.alone).alone = true;
    HOLDS_IT_ALONE.with(|held| held.set(true));
    Alone(())
}

impl Drop for Alone {
    fn drop(&mut self) {
        HOLDS_IT_ALONE.with(|held| held.set(false));
        users().alone = false;
        CHANGED.notify_all();
    }
}
