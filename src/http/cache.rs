//! The serialized answers of `GET /api/v1/builds/{id}` and of list pages, kept
//! in memory and valid while the store's generation has not moved (it moves
//! after every committed write to a build, before the writer's caller hears
//! back), so no answer is older than a write that returned before the read
//! began. The store stays the truth: this starts empty and is dropped whole
//! when the generation moves or it outgrows its budget. A hit touches no SQLite.
//!
//! A running build's progress and a queued build's `waiting_for` live in memory
//! and change without a write, so such builds are kept as rows and rendered
//! with them as they are per answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use super::views::BuildView;
use crate::builds::{BuildError, BuildService};
use crate::domain::Build;
use crate::store::ListFilter;
use crate::sync::Locked;

/// Bytes of JSON kept at most; past it the cache starts over.
const BUDGET_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Build(i64),
    Page(ListFilter),
}

/// An answer: JSON pieces, and running builds to render between them.
pub struct Answer {
    pieces: Vec<Piece>,
}

enum Piece {
    Json(Bytes),
    Running(Box<Build>),
}

#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// The generation every kept answer was read at (or after).
    generation: u64,
    bytes: usize,
    answers: HashMap<Key, Arc<Answer>>,
}

impl ReadCache {
    /// The body for `key`: kept, or loaded by `load` (which must read the store
    /// only after being called) and kept.
    pub async fn answer<F, Fut>(
        &self,
        builds: &BuildService,
        key: Key,
        load: F,
    ) -> Result<Bytes, BuildError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Answer, BuildError>>,
    {
        // Read before the store is: the answer may then be newer than its
        // generation, never older.
        let generation = builds.generation();
        let answer = match self.lookup(generation, &key) {
            Some(answer) => answer,
            None => {
                let answer = Arc::new(load().await?);
                self.keep(generation, key, answer.clone());
                answer
            }
        };
        Ok(answer.body(builds))
    }

    fn lookup(&self, generation: u64, key: &Key) -> Option<Arc<Answer>> {
        let mut entries = self.lock();
        drop_elsewhere(entries.move_to(generation));
        if entries.generation != generation {
            return None;
        }
        entries.answers.get(key).cloned()
    }

    fn keep(&self, generation: u64, key: Key, answer: Arc<Answer>) {
        let mut entries = self.lock();
        drop_elsewhere(entries.move_to(generation));
        if entries.generation != generation {
            return;
        }
        let size = answer.size();
        if entries.bytes + size > BUDGET_BYTES {
            drop_elsewhere(entries.take());
        }
        if let Some(old) = entries.answers.insert(key, answer) {
            entries.bytes -= old.size();
        }
        entries.bytes += size;
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every critical section leaves the map whole: a panic cannot half-do it.
        self.entries.locked()
    }
}

impl Entries {
    /// Forgets everything kept at an older generation than `generation`.
    fn move_to(&mut self, generation: u64) -> HashMap<Key, Arc<Answer>> {
        if generation <= self.generation {
            return HashMap::new();
        }
        self.generation = generation;
        self.take()
    }

    fn take(&mut self) -> HashMap<Key, Arc<Answer>> {
        self.bytes = 0;
        std::mem::take(&mut self.answers)
    }
}

/// Freeing up to the whole budget, thousands of answers, would hold an async
/// thread for a millisecond: the blocking pool does it.
fn drop_elsewhere(answers: HashMap<Key, Arc<Answer>>) {
    if answers.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(answers))),
        Err(_) => drop(answers),
    }
}

impl Answer {
    /// One build, as `GET /api/v1/builds/{id}` shows it.
    pub fn build(build: Build) -> Answer {
        let mut answer = AnswerWriter::default();
        answer.build(build);
        answer.finish()
    }

    /// `{"builds": [...], "next": ...}`, as `serde_json` writes a `BuildList`.
    pub fn page(builds: Vec<Build>, next: Option<String>) -> Answer {
        let mut answer = AnswerWriter::default();
        answer.json.extend_from_slice(b"{\"builds\":[");
        for (n, build) in builds.into_iter().enumerate() {
            if n > 0 {
                answer.json.extend_from_slice(b",");
            }
            answer.build(build);
        }
        answer.json.extend_from_slice(b"],\"next\":");
        let next = serde_json::to_vec(&next).expect("a string serializes");
        answer.json.extend_from_slice(&next);
        answer.json.extend_from_slice(b"}");
        answer.finish()
    }

    fn size(&self) -> usize {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Json(json) => json.len(),
                // A rough share for the row: it is rendered per answer anyway.
                Piece::Running(_) => 1024,
            })
            .sum()
    }

    /// The body, with each running build's progress and each queued build's
    /// `waiting_for` as they are now.
    fn body(&self, builds: &BuildService) -> Bytes {
        if let [Piece::Json(json)] = self.pieces.as_slice() {
            return json.clone();
        }
        let mut body = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Json(json) => body.extend_from_slice(json),
                Piece::Running(build) => {
                    let live = builds.with_progress(build.as_ref().clone());
                    let view = BuildView::from(&live);
                    serde_json::to_writer(&mut body, &view).expect("views always serialize");
                }
            }
        }
        body.into()
    }
}

#[derive(Default)]
struct AnswerWriter {
    pieces: Vec<Piece>,
    json: BytesMut,
}

impl AnswerWriter {
    fn build(&mut self, build: Build) {
        if BuildService::shows_live_state(&build) {
            self.cut();
            self.pieces.push(Piece::Running(Box::new(build)));
        } else {
            let json =
                serde_json::to_vec(&BuildView::from(&build)).expect("views always serialize");
            self.json.extend_from_slice(&json);
        }
    }

    /// Ends the JSON piece written so far.
    fn cut(&mut self) {
        if !self.json.is_empty() {
            let json = self.json.split().freeze();
            self.pieces.push(Piece::Json(json));
        }
    }

    fn finish(mut self) -> Answer {
        self.cut();
        Answer {
            pieces: self.pieces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(json: &'static str) -> Arc<Answer> {
        Arc::new(Answer {
            pieces: vec![Piece::Json(Bytes::from_static(json.as_bytes()))],
        })
    }

    fn json_of(answer: Option<Arc<Answer>>) -> Option<Bytes> {
        answer.map(|answer| match answer.pieces.as_slice() {
            [Piece::Json(json)] => json.clone(),
            _ => panic!("one JSON piece expected"),
        })
    }

    #[test]
    fn an_answer_is_served_only_at_the_generation_it_was_read_at() {
        let cache = ReadCache::default();
        cache.keep(3, Key::Build(1), kept("three"));
        assert_eq!(json_of(cache.lookup(3, &Key::Build(1))).unwrap(), "three");
        assert!(cache.lookup(3, &Key::Build(2)).is_none());
        // A write committed: everything kept before it is gone.
        assert!(cache.lookup(4, &Key::Build(1)).is_none());
        // A reader that began before the write cannot put its older answer back.
        cache.keep(3, Key::Build(1), kept("three again"));
        assert!(cache.lookup(4, &Key::Build(1)).is_none());
        cache.keep(4, Key::Build(1), kept("four"));
        assert_eq!(json_of(cache.lookup(4, &Key::Build(1))).unwrap(), "four");
    }

    #[test]
    fn the_cache_starts_over_past_its_budget() {
        let cache = ReadCache::default();
        let big: &'static str = "x".repeat(BUDGET_BYTES / 2 + 1).leak();
        cache.keep(1, Key::Build(1), kept(big));
        cache.keep(1, Key::Build(2), kept(big));
        assert!(cache.lookup(1, &Key::Build(1)).is_none());
        assert!(cache.lookup(1, &Key::Build(2)).is_some());
        assert!(cache.lock().bytes <= BUDGET_BYTES);
    }
}
