//! The log of in-process servers. The `log` crate has one logger per process, so
//! lines are not told apart by server: a server's `log()` is every line the test
//! process logged since it started, which can only make a "the log never says X"
//! check stricter.

use std::sync::{Mutex, MutexGuard, Once};

use super::in_process::THREAD_NAME;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lines() -> MutexGuard<'static, Vec<String>> {
    LINES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Capture;

impl log::Log for Capture {
    /// As `RUST_LOG=debug` for a dockpub process.
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("[{} {}] {}", record.level(), record.target(), record.args());
            lines().push(line);
        }
    }

    fn flush(&self) {}
}

/// Captures log lines, and panics on server threads (a process's stderr would
/// show them), from the first in-process server on.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if log::set_boxed_logger(Box::new(Capture)).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with(THREAD_NAME) || name.starts_with("actix") {
                lines().push(format!("thread '{name}' panicked: {info}"));
            }
            report(info);
        }));
    });
}

/// How many lines have been captured.
pub fn len() -> usize {
    lines().len()
}

/// The lines captured from `start` on.
pub fn since(start: usize) -> String {
    lines()[start..]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect()
}
