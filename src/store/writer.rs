//! The one connection that writes. Every write runs on this connection's own
//! thread, one after another in the order they were sent, so no writer ever
//! meets another's lock and sleeps in SQLite's busy handler, and a build's log
//! batches land in the order its log writer sent them.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use rusqlite::Connection;

use super::StoreError;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Moves `conn` to a thread of its own; the thread ends when the last
    /// [`Writer`] handle is dropped.
    pub fn start(mut conn: Connection) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("dockpub-sqlite-writer".into())
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })?;
        Ok(Writer { jobs })
    }

    /// Runs `work` on the writer's connection and waits for it without holding
    /// an async thread.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // A panic rolls back the job's transaction (its guard is dropped) and
            // drops `answer`, so the caller gets an error and the writer lives on.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(|| work(conn))) {
                let _ = answer.send(value);
            }
        });
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        answered.await.map_err(|_| StoreError::WriterGone)
    }
}
