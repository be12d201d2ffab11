//! Following a build: what is stored so far, then what happens next, until it ends.

use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::engine::Engine;
use super::events::{Event, Subscription};
use super::model::{Build, LogLine};
use super::progress::Progress;
use super::{BuildError, BuildService};

/// Room for items a slow reader has not taken yet; past it the follower waits
/// (and, if it falls further behind, re-reads the store), never the build.
const FOLLOWER_BUFFER: usize = 64;

#[derive(Debug, Clone)]
pub enum Followed {
    /// The build as it is now; first the status at the start, then each change.
    Status(Build),
    Log(LogLine),
    Progress(Progress),
    /// The build reached a final state; nothing follows.
    Done(Build),
}

impl BuildService {
    /// Every log line after `after_seq`, status changes and progress, ending with
    /// [`Followed::Done`] once the build is final.
    pub async fn follow(
        &self,
        id: i64,
        after_seq: i64,
    ) -> Result<impl Stream<Item = Followed> + 'static, BuildError> {
        // Subscribed before reading, so nothing that happens after the read is missed.
        let subscription = self.engine.events.subscribe(id);
        let build = self.get(id).await?;
        let (sender, receiver) = mpsc::channel(FOLLOWER_BUFFER);
        let follower = Follower {
            engine: self.engine.clone(),
            id,
            last_seq: after_seq,
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
    sender: mpsc::Sender<Followed>,
}

/// The reader went away.
struct Gone;

impl Follower {
    async fn run(mut self, mut subscription: Subscription, build: Build) {
        let _ = self.follow(&mut subscription, build).await;
    }

    async fn follow(&mut self, subscription: &mut Subscription, build: Build) -> Result<(), Gone> {
        self.send(Followed::Status(build.clone())).await?;
        if self.catch_up().await? {
            return Ok(());
        }
        loop {
            let done = match subscription.recv().await {
                Ok(Event::Logs(lines)) => self.send_lines(lines.iter()).await.map(|()| false)?,
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

    /// Sends the stored lines not yet sent, and the end if the build is final by now.
    /// Returns whether the build was final.
    async fn catch_up(&mut self) -> Result<bool, Gone> {
        let store = &self.engine.store;
        let (lines, build) = match (
            store.read_logs_after(self.id, self.last_seq).await,
            store.get_build(self.id).await,
        ) {
            (Ok(lines), Ok(Some(build))) => (lines, build),
            // Deleted, or the store failed: end the stream rather than hang.
            (Ok(_), Ok(None)) => return Ok(true),
            (Err(err), _) | (_, Err(err)) => {
                log::error!("build {}: follower stopped: {err}", self.id);
                return Ok(true);
            }
        };
        self.send_lines(lines.iter()).await?;
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
        self.send(Followed::Done(build)).await?;
        Ok(true)
    }

    async fn send_lines(&mut self, lines: impl Iterator<Item = &LogLine>) -> Result<(), Gone> {
        for line in lines {
            if line.seq > self.last_seq {
                self.last_seq = line.seq;
                self.send(Followed::Log(line.clone())).await?;
            }
        }
        Ok(())
    }

    async fn send(&self, item: Followed) -> Result<(), Gone> {
        self.sender.send(item).await.map_err(|_| Gone)
    }
}
