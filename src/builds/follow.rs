//! Following a build: what is stored so far, then what happens next, until it ends.
//!
//! A follower is pulled, never pushed: the next page of lines is read from the
//! store only when the response asks for more, which its HTTP connection does
//! only once the client has taken what it had. So a follower that stops reading
//! holds what its connection has buffered (at most a page past the server's
//! write buffer) and nothing more, however long the log grows; the build never
//! waits for it (the fan-out drops what a slow follower misses, and the follower
//! re-reads it from the store). How many follow at once is capped
//! (`followers.rs`).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::engine::Engine;
use super::events::{Event, Subscription};
use super::followers::FollowerSlot;
use super::{BuildError, BuildService};
use crate::domain::{Build, Progress};
use crate::store::RenderLine;

/// A follower's pages are smaller than a plain read's: what one that stops
/// reading holds is its connection's write buffer (32 KiB) plus about a page.
const FOLLOWER_PAGE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub enum Followed {
    /// The build as it is now; first the status at the start, then each change.
    Status(Build),
    /// A page of log lines, in order, as the follower's [`RenderLine`] made them.
    Lines(Bytes),
    Progress(Progress),
    /// The build reached a final state; nothing follows.
    Done(Build),
}

impl BuildService {
    /// Every log line after `after_seq` (read from the store in pages), status
    /// changes and progress, ending with [`Followed::Done`] once the build is final.
    /// Refused past `max_followers_per_build` or `max_followers`.
    pub async fn follow(
        &self,
        id: i64,
        after_seq: i64,
        render: RenderLine,
    ) -> Result<impl Stream<Item = Followed> + 'static, BuildError> {
        let slot = self.engine.followers.take(id)?;
        // Subscribed before reading, so nothing that happens after the read is missed.
        let subscription = self.engine.events.subscribe(id);
        let build = self.get(id).await?;
        let follower = Follower {
            engine: self.engine.clone(),
            id,
            last_seq: after_seq,
            render,
            subscription,
            step: Step::Status(Box::new(build)),
            _slot: slot,
        };
        Ok(futures_util::stream::unfold(
            follower,
            |mut follower| async move { follower.next().await.map(|item| (item, follower)) },
        ))
    }
}

struct Follower {
    engine: Arc<Engine>,
    id: i64,
    last_seq: i64,
    render: RenderLine,
    subscription: Subscription,
    step: Step,
    _slot: FollowerSlot,
}

/// What the follower sends next.
enum Step {
    /// The build as it was when the follow began.
    Status(Box<Build>),
    /// Read the build, then send the stored lines not sent yet.
    CatchUp,
    /// Send the stored lines not sent yet, a page at a time, then go on.
    Pages(AfterPages),
    /// Wait for what happens next.
    Live,
    Done(Box<Build>),
    Ended,
}

enum AfterPages {
    Live,
    Done(Box<Build>),
}

impl From<AfterPages> for Step {
    fn from(after: AfterPages) -> Step {
        match after {
            AfterPages::Live => Step::Live,
            AfterPages::Done(build) => Step::Done(build),
        }
    }
}

impl Follower {
    /// The next item, None once the follow is over.
    async fn next(&mut self) -> Option<Followed> {
        loop {
            match std::mem::replace(&mut self.step, Step::Ended) {
                Step::Status(build) => {
                    self.step = Step::CatchUp;
                    return Some(Followed::Status(*build));
                }
                Step::CatchUp => self.step = Step::Pages(self.read_build().await?),
                Step::Pages(after) => match self.next_page().await? {
                    Some((lines, more)) => {
                        self.step = if more {
                            Step::Pages(after)
                        } else {
                            after.into()
                        };
                        return Some(Followed::Lines(lines));
                    }
                    None => self.step = after.into(),
                },
                Step::Live => {
                    if let Some(item) = self.next_event().await? {
                        return Some(item);
                    }
                }
                Step::Done(build) => return Some(Followed::Done(*build)),
                Step::Ended => return None,
            }
        }
    }

    /// The build from the store: when it is final, every line is stored already.
    /// None when it is gone (deleted) or the store failed: the follow ends
    /// rather than hangs.
    async fn read_build(&self) -> Option<AfterPages> {
        match self.engine.store.get_build(self.id).await {
            Ok(Some(build)) if build.status.is_final() => Some(AfterPages::Done(Box::new(build))),
            Ok(Some(_)) => Some(AfterPages::Live),
            Ok(None) => None,
            Err(err) => {
                log::error!("build {}: follower stopped: {err}", self.id);
                None
            }
        }
    }

    /// The next page of stored lines after the last one sent, and whether more
    /// may follow it; Some(None) when none is left, None when the store failed.
    async fn next_page(&mut self) -> Option<Option<(Bytes, bool)>> {
        let page = self
            .engine
            .store
            .read_log_page(self.id, self.last_seq, self.render, FOLLOWER_PAGE_BYTES)
            .await;
        match page {
            Ok(Some(page)) => {
                self.last_seq = page.last_seq;
                Some(Some((Bytes::from(page.text), page.full)))
            }
            Ok(None) => Some(None),
            Err(err) => {
                log::error!("build {}: follower stopped: {err}", self.id);
                None
            }
        }
    }

    /// Waits for the next event and sets the next step; what to send at once,
    /// if anything. None when the follow is over.
    async fn next_event(&mut self) -> Option<Option<Followed>> {
        let (step, item) = match self.subscription.recv().await {
            Ok(Event::Logs(stored)) if stored <= self.last_seq => (Step::Live, None),
            Ok(Event::Logs(_)) => (Step::Pages(AfterPages::Live), None),
            Ok(Event::Progress(progress)) => (Step::Live, Some(Followed::Progress(progress))),
            Ok(Event::Status(build)) => {
                let build = (*build).clone();
                // The log was complete before the final status was stored.
                let step = if build.status.is_final() {
                    Step::Pages(AfterPages::Done(Box::new(build.clone())))
                } else {
                    Step::Live
                };
                (step, Some(Followed::Status(build)))
            }
            // Fell behind the fan-out: the store has everything.
            Err(RecvError::Lagged(_)) => (Step::CatchUp, None),
            Err(RecvError::Closed) => return None,
        };
        self.step = step;
        Some(item)
    }
}
