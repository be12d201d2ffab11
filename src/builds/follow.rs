//! Following a build: what is stored so far, then what happens next, until it ends.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::engine::Engine;
use super::events::{Event, Subscription};
use super::{BuildError, BuildService};
use crate::domain::{Build, Progress};
use crate::store::RenderLine;

/// Items a slow reader has not taken yet; past them the follower waits (and, if
/// it falls behind the fan-out, re-reads the store), never the build. Small,
/// because an item may be a whole page of lines.
const FOLLOWER_BUFFER: usize = 4;

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
    pub async fn follow(
        &self,
        id: i64,
        after_seq: i64,
        render: RenderLine,
    ) -> Result<impl Stream<Item = Followed> + 'static, BuildError> {
        // Subscribed before reading, so nothing that happens after the read is missed.
        let subscription = self.engine.events.subscribe(id);
        let build = self.get(id).await?;
        let (sender, receiver) = mpsc::channel(FOLLOWER_BUFFER);
        let follower = Follower {
            engine: self.engine.clone(),
            id,
            last_seq: after_seq,
            render,
            sender,
        };
        tokio::spawn(follower.run(subscription, build));
        Ok(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        ))
    }
}

struct Follower {
    engine: Arc<Engine>,
    id: i64,
    last_seq: i64,
    render: RenderLine,
    sender: mpsc::Sender<Followed>,
}

/// The reader went away.
struct Gone;

impl Follower {
    async fn run(mut self, mut subscription: Subscription, build: Build) {
        let _ = self.follow(&mut subscription, build).await;
    }

    async fn follow(&mut self, subscription: &mut Subscription, build: Build) -> Result<(), Gone> {
        self.send(Followed::Status(build)).await?;
        if self.catch_up().await? {
            return Ok(());
        }
        loop {
            let done = match subscription.recv().await {
                Ok(Event::Logs(stored)) if stored <= self.last_seq => false,
                Ok(Event::Logs(_)) => !self.send_stored_lines().await?,
                Ok(Event::Progress(progress)) => self
                    .send(Followed::Progress(progress))
                    .await
                    .map(|()| false)?,
                Ok(Event::Status(build)) => self.status((*build).clone()).await?,
                // Fell behind the fan-out: the store has everything.
                Err(RecvError::Lagged(_)) => self.catch_up().await?,
                Err(RecvError::Closed) => true,
            };
            if done {
                return Ok(());
            }
        }
    }

    /// Sends the stored lines not yet sent, and the end if the build is final.
    /// Returns whether the follow is over.
    async fn catch_up(&mut self) -> Result<bool, Gone> {
        // The build first: when it is final, every line is stored already.
        let build = match self.engine.store.get_build(self.id).await {
            Ok(Some(build)) => build,
            // Deleted: end the stream rather than hang.
            Ok(None) => return Ok(true),
            Err(err) => {
                log::error!("build {}: follower stopped: {err}", self.id);
                return Ok(true);
            }
        };
        if !self.send_stored_lines().await? {
            return Ok(true);
        }
        if build.status.is_final() {
            self.send(Followed::Done(build)).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn status(&mut self, build: Build) -> Result<bool, Gone> {
        self.send(Followed::Status(build.clone())).await?;
        if !build.status.is_final() {
            return Ok(false);
        }
        // The log was complete before the final status was stored.
        self.send_stored_lines().await?;
        self.send(Followed::Done(build)).await?;
        Ok(true)
    }

    /// Sends the stored lines after the last one sent, a page at a time, until
    /// none is left; false when the store failed (the follow ends).
    async fn send_stored_lines(&mut self) -> Result<bool, Gone> {
        loop {
            let page = self
                .engine
                .store
                .read_log_page(self.id, self.last_seq, self.render)
                .await;
            match page {
                Ok(Some(page)) => {
                    self.last_seq = page.last_seq;
                    self.send(Followed::Lines(Bytes::from(page.text))).await?;
                    if !page.full {
                        return Ok(true);
                    }
                }
                Ok(None) => return Ok(true),
                Err(err) => {
                    log::error!("build {}: follower stopped: {err}", self.id);
                    return Ok(false);
                }
            }
        }
    }

    async fn send(&self, item: Followed) -> Result<(), Gone> {
        self.sender.send(item).await.map_err(|_| Gone)
    }
}
