//! A build's log on its way to SQLite: lines are queued in memory and written in
//! batches, one transaction per batch rather than per line. Each batch is
//! announced to followers (by its last line number) only once it is stored;
//! followers read the lines from the store, so a follower that reads the store
//! and then listens never misses a line, and no follower holds a batch.
//!
//! Two things happen before a line is queued: known secret values in it are
//! masked ([`SecretMask`]), and the builder's output is counted against the
//! build's log limits ([`LogLimits`]); past them it is dropped, after one line
//! that says so. dockpub's own lines (what the build did, how it ended) are
//! always kept: there are a handful per build.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::events::{Event, EventHub};
use crate::domain::LogLine;
use crate::store::{LogTotals, Store, StoreError};
use crate::sync::Locked;

/// Lines written at most per transaction.
const MAX_BATCH: usize = 1024;

/// What replaces a secret value in a stored line, as CI systems print it.
pub const MASK: &str = "***";
/// Shorter values are not masked: `***` in place of every `a` or `12` would
/// hide the log and tell the value anyway.
pub const MIN_MASKED_BYTES: usize = 4;

/// How much of a build's output its log keeps (`max_log_lines`, `max_log_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_lines: u64,
    pub max_bytes: u64,
}

pub struct LogWriter {
    lines: mpsc::UnboundedSender<String>,
    task: JoinHandle<()>,
    limits: LogLimits,
    /// Lines and bytes stored or queued for this build, across attempts.
    kept: Mutex<Kept>,
    mask: SecretMask,
}

#[derive(Debug, Default)]
struct Kept {
    lines: u64,
    bytes: u64,
    /// The builder's output is dropped from here on.
    full: bool,
}

impl LogWriter {
    /// Starts numbering after the last line an earlier attempt stored, and
    /// counts what it stored against `limits`.
    pub fn start(
        store: Store,
        events: Arc<EventHub>,
        build_id: i64,
        earlier: LogTotals,
        limits: LogLimits,
    ) -> Self {
        let (lines, mut receiver) = mpsc::unbounded_channel();
        let last_seq = earlier.last_seq;
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
        LogWriter {
            lines,
            task,
            limits,
            kept: Mutex::new(Kept {
                lines: earlier.lines,
                bytes: earlier.bytes,
                full: false,
            }),
            mask: SecretMask::default(),
        }
    }

    /// A line of dockpub's own (what it did, how the build ended): always kept.
    pub fn line(&self, line: String) {
        let line = self.mask.apply(line);
        let mut kept = self.kept.locked();
        kept.lines += 1;
        kept.bytes += line.len() as u64;
        self.send(line);
    }

    /// A line of the builder's or the registry's output: kept while the log is
    /// within its limits. The first line past them is replaced by one that says
    /// the rest is dropped; the build goes on.
    pub fn output(&self, line: String) {
        let line = self.mask.apply(line);
        let mut kept = self.kept.locked();
        if kept.full {
            return;
        }
        let setting = if kept.lines + 1 > self.limits.max_lines {
            Some(format!("max_log_lines ({} lines)", self.limits.max_lines))
        } else if kept.bytes + line.len() as u64 > self.limits.max_bytes {
            Some(format!("max_log_bytes ({} bytes)", self.limits.max_bytes))
        } else {
            None
        };
        if let Some(setting) = setting {
            kept.full = true;
            drop(kept);
            return self.line(format!(
                "dockpub: the log reached {setting}; the rest of the build's output is dropped \
                 (the build goes on)"
            ));
        }
        kept.lines += 1;
        kept.bytes += line.len() as u64;
        self.send(line);
    }

    /// From here on, `value` (and each of its lines) is written as `***`.
    pub fn mask(&self, value: &[u8]) {
        self.mask.add(value);
    }

    fn send(&self, line: String) {
        // Fails only once the writer task is gone, and then there is nowhere to write.
        let _ = self.lines.send(line);
    }

    /// Waits until every line sent so far is stored.
    /// Returns the mask, for the build's `error` text.
    pub async fn finish(self) -> SecretMask {
        drop(self.lines);
        if let Err(err) = self.task.await {
            log::error!("log writer stopped: {err}");
        }
        self.mask
    }
}

/// Known secret values, each replaced by [`MASK`] in every line: whole, and
/// line by line (a value of several lines is printed over several log lines).
/// Values that are not UTF-8 text, and pieces shorter than
/// [`MIN_MASKED_BYTES`], are not masked.
#[derive(Default)]
pub struct SecretMask {
    /// Longest first, so a value that contains another is masked whole.
    values: RwLock<Vec<String>>,
}

impl SecretMask {
    pub fn add(&self, value: &[u8]) {
        let Ok(text) = std::str::from_utf8(value) else {
            return;
        };
        let pieces = std::iter::once(text.trim_end_matches(['\r', '\n']))
            .chain(text.lines().map(|line| line.trim_end_matches('\r')))
            .filter(|piece| piece.len() >= MIN_MASKED_BYTES);
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        for piece in pieces {
            if !values.iter().any(|known| known == piece) {
                values.push(piece.to_string());
            }
        }
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    }

    pub fn apply(&self, line: String) -> String {
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        let mut line = line;
        for value in values.iter() {
            if line.contains(value.as_str()) {
                line = line.replace(value.as_str(), MASK);
            }
        }
        line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_masked_whole_and_line_by_line() {
        let mask = SecretMask::default();
        mask.add(b"s3cr3t-token");
        mask.add(b"first line\nsecond line\n");
        mask.add(b"abc");
        mask.add(&[0xff, 0xfe, 0xfd, 0xfc]);
        assert_eq!(mask.apply("token=s3cr3t-token!".into()), "token=***!");
        assert_eq!(mask.apply("#5 0.1 second line".into()), "#5 0.1 ***");
        assert_eq!(
            mask.apply("first line\nsecond line".into()),
            "***",
            "the whole value before its pieces"
        );
        assert_eq!(mask.apply("abc is short".into()), "abc is short");
    }

    #[tokio::test]
    async fn output_past_the_limits_is_dropped_after_one_line_and_own_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let new = crate::domain::NewBuild {
            repository: "logs/app".into(),
            tags: crate::domain::TagPlan::Listed(vec!["t".into()]),
            push: false,
            registry_username: None,
            dockerfile: "FROM scratch\n".into(),
            context: None,
            options: crate::domain::BuildOptions::default(),
            created_at: crate::domain::Timestamp::now(),
            retry_of: None,
            callback_url: None,
            submitted_by: None,
            source: None,
        };
        let id = store.insert_build(new, 1, |_| {}).await.unwrap().id;
        let events = Arc::new(EventHub::default());
        let limits = LogLimits {
            max_lines: 3,
            max_bytes: 1024,
        };
        let earlier = LogTotals {
            last_seq: 0,
            lines: 1,
            bytes: 10,
        };
        let log = LogWriter::start(store.clone(), events, id, earlier, limits);
        for n in 0..10 {
            log.output(format!("output {n}"));
        }
        log.line("dockpub: build failed".into());
        log.finish().await;
        let totals = store.log_totals(id).await.unwrap();
        assert_eq!(totals.lines, 4, "two lines of output, the notice, the end");
        let page = store
            .read_log_page(
                id,
                0,
                |text, _, line| {
                    text.push_str(line);
                    text.push('\n');
                },
                crate::store::PAGE_BYTES,
            )
            .await
            .unwrap()
            .unwrap();
        let lines: Vec<&str> = page.text.lines().collect();
        assert_eq!(lines[..2], ["output 0", "output 1"]);
        assert!(lines[2].contains("max_log_lines (3 lines)"), "{}", lines[2]);
        assert_eq!(lines[3], "dockpub: build failed");
    }
}
