//! In-memory fan-out of what happens to running builds: log batches, status
//! changes and progress. SQLite stays the record; this only tells followers what
//! to read next, so a build never waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::{Build, Progress};
use crate::sync::Locked;

/// Events a follower may fall behind by before it re-reads from the store.
const BACKLOG: usize = 256;

#[derive(Debug, Clone)]
pub enum Event {
    /// Lines up to this line number are stored.
    Logs(i64),
    Status(Arc<Build>),
    Progress(Progress),
}

#[derive(Default)]
pub struct EventHub {
    /// A channel exists only while someone follows that build.
    channels: Mutex<HashMap<i64, broadcast::Sender<Event>>>,
    progress: Mutex<HashMap<i64, Progress>>,
}

pub struct Subscription {
    hub: Arc<EventHub>,
    build_id: i64,
    receiver: Option<broadcast::Receiver<Event>>,
}

impl EventHub {
    pub fn subscribe(self: &Arc<Self>, build_id: i64) -> Subscription {
        let receiver = self
            .channels
            .locked()
            .entry(build_id)
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            build_id,
            receiver: Some(receiver),
        }
    }

    pub fn publish(&self, build_id: i64, event: Event) {
        if let Some(sender) = self.channels.locked().get(&build_id) {
            // An error only means every follower just left.
            let _ = sender.send(event);
        }
    }

    pub fn set_progress(&self, build_id: i64, progress: Progress) {
        self.progress.locked().insert(build_id, progress.clone());
        self.publish(build_id, Event::Progress(progress));
    }

    pub fn progress(&self, build_id: i64) -> Option<Progress> {
        self.progress.locked().get(&build_id).cloned()
    }

    pub fn clear_progress(&self, build_id: i64) {
        self.progress.locked().remove(&build_id);
    }
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Event, broadcast::error::RecvError> {
        match &mut self.receiver {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut channels = self.hub.channels.locked();
        if channels
            .get(&self.build_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.build_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: i64) -> Event {
        Event::Logs(seq)
    }

    #[tokio::test]
    async fn every_follower_gets_every_event() {
        let hub = Arc::new(EventHub::default());
        let mut first = hub.subscribe(7);
        let mut second = hub.subscribe(7);
        hub.publish(7, line(1));
        hub.publish(8, line(99));
        for follower in [&mut first, &mut second] {
            match follower.recv().await.unwrap() {
                Event::Logs(seq) => assert_eq!(seq, 1),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn channels_go_away_with_their_last_follower() {
        let hub = Arc::new(EventHub::default());
        let first = hub.subscribe(1);
        let second = hub.subscribe(1);
        drop(first);
        assert_eq!(hub.channels.locked().len(), 1);
        drop(second);
        assert!(hub.channels.locked().is_empty());
        hub.publish(1, line(1));
    }
}
