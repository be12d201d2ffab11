//! A build's log on its way to SQLite: lines are queued in memory and written in
//! batches, one transaction per batch rather than per line. Each batch is
//! announced to followers (by its last line number) only once it is stored;
//! followers read the lines from the store, so a follower that reads the store
//! and then listens never misses a line, and no follower holds a batch.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::events::{Event, EventHub};
use crate::domain::LogLine;
use crate::store::{Store, StoreError};

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
            let mut lost = Lost::default();
            let mut texts = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut texts, MAX_BATCH).await > 0 {
                if let Some(notice) = lost.notice() {
                    texts.insert(0, notice);
                }
                let batch: Vec<LogLine> = texts
                    .drain(..)
                    .zip(next_seq..)
                    .map(|(line, seq)| LogLine { seq, line })
                    .collect();
                next_seq += batch.len() as i64;
                let count = batch.len();
                match store.append_logs(build_id, Arc::new(batch)).await {
                    Ok(()) => {
                        lost.declared();
                        events.publish(build_id, Event::Logs(next_seq - 1));
                    }
                    Err(err) => {
                        log::error!("build {build_id}: {count} log lines lost: {err}");
                        lost.add(count, &err);
                    }
                }
            }
            if lost.lines > 0 {
                tokio::spawn(declare_when_stored(store, events, build_id, next_seq, lost));
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

/// Lines the store refused, and why: the log says so as soon as it can.
#[derive(Default)]
struct Lost {
    lines: usize,
    why: String,
    /// The notice in the batch being written (not yet known to be stored).
    pending: bool,
}

impl Lost {
    fn add(&mut self, count: usize, err: &StoreError) {
        // A refused batch that carried the notice still owes it, plus its own lines.
        let own = if self.pending { count - 1 } else { count };
        self.pending = false;
        self.lines += own;
        self.why = if err.is_disk_full() {
            "the data directory's disk was full".to_string()
        } else {
            "the store refused them".to_string()
        };
    }

    /// The line that declares the loss, when there is one to declare.
    fn notice(&mut self) -> Option<String> {
        if self.lines == 0 {
            return None;
        }
        self.pending = true;
        Some(format!(
            "dockpub: {} log lines are missing here: {}",
            self.lines, self.why
        ))
    }

    fn declared(&mut self) {
        if self.pending {
            *self = Lost::default();
        }
    }
}

/// After the build's last line: keeps trying to store the notice of lines lost,
/// so the log ends by saying so once the disk has room again.
async fn declare_when_stored(
    store: Store,
    events: Arc<EventHub>,
    build_id: i64,
    seq: i64,
    mut lost: Lost,
) {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
    const ATTEMPTS: usize = 600;
    for _ in 0..ATTEMPTS {
        let Some(line) = lost.notice() else { return };
        let notice = Arc::new(vec![LogLine { seq, line }]);
        if store.append_logs(build_id, notice).await.is_ok() {
            events.publish(build_id, Event::Logs(seq));
            return;
        }
        lost.pending = false;
        tokio::time::sleep(RETRY).await;
    }
    log::error!(
        "build {build_id}: could not record that {} log lines are missing",
        lost.lines
    );
}
