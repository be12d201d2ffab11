//! A build's log on its way to SQLite: lines are queued in memory and written in
//! batches, one transaction per batch rather than per line. Each batch is
//! announced to followers (by its last line number) only once it is stored;
//! followers read the lines from the store, so a follower that reads the store
//! and then listens never misses a line, and no follower holds a batch.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::events::{Event, EventHub};
use super::model::LogLine;
use crate::store::Store;

/// Lines written at most per transaction.
const MAX_BATCH: usize = 1024;

pub struct LogWriter {
    lines: mpsc::UnboundedSender<String>,
    task: JoinHandle<()>,
}

impl LogWriter {
    /// Starts numbering after `last_seq`, the last line an earlier attempt stored.
    pub fn start(store: Store, events: Arc<EventHub>, build_id: i64, last_seq: i64) -> Self {
        let (lines, mut receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut next_seq = last_seq + 1;
            let mut texts = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut texts, MAX_BATCH).await > 0 {
                let batch: Vec<LogLine> = texts
                    .drain(..)
                    .zip(next_seq..)
                    .map(|(line, seq)| LogLine { seq, line })
                    .collect();
                next_seq += batch.len() as i64;
                match store.append_logs(build_id, Arc::new(batch)).await {
                    Ok(()) => events.publish(build_id, Event::Logs(next_seq - 1)),
                    Err(err) => log::error!("build {build_id}: log lines lost: {err}"),
                }
            }
        });
        LogWriter { lines, task }
    }

    pub fn line(&self, line: String) {
        // Fails only once the writer task is gone, and then there is nowhere to write.
        let _ = self.lines.send(line);
    }

    /// Waits until every line sent so far is stored.
    pub async fn finish(self) {
        drop(self.lines);
        if let Err(err) = self.task.await {
            log::error!("log writer stopped: {err}");
        }
    }
}
