//! A build's log on its way to SQLite: lines are queued in memory and written in
//! batches, one transaction per batch rather than per line.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::Store;

/// Lines waiting at most this many per transaction.
const MAX_BATCH: usize = 1024;

pub struct LogWriter {
    lines: mpsc::UnboundedSender<String>,
    task: JoinHandle<()>,
}

impl LogWriter {
    pub fn start(store: Store, build_id: i64) -> Self {
        let (lines, mut receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let lines = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                if let Err(err) = store.append_logs(build_id, lines).await {
                    log::error!("build {build_id}: log lines lost: {err}");
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
