//! Reading builds: one or a page, with the live state (progress, why it waits)
//! only the running service knows, and a build's log.

use super::{waiting, BuildError, BuildService};
use crate::domain::{Build, Status};
use crate::store::{ListFilter, Listed, LogRange, RenderLine, PAGE_BYTES};

impl BuildService {
    pub async fn get(&self, id: i64) -> Result<Build, BuildError> {
        let build = self.engine.store.get_build(id).await?;
        build
            .map(|b| self.with_progress(b))
            .ok_or(BuildError::NotFound(id))
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Build>, BuildError> {
        let builds = self.engine.store.list_builds(filter).await?;
        Ok(builds.into_iter().map(|b| self.with_progress(b)).collect())
    }

    /// The store's generation (see [`crate::store::Store::generation`]): read it before a read
    /// whose answer is kept, to know when that answer is out of date.
    pub fn generation(&self) -> u64 {
        self.engine.store.generation()
    }

    /// Build `id` as stored, handed to `render` on the blocking pool. Its
    /// progress is not set: that lives in memory (see [`BuildService::progress`]).
    pub async fn get_then<T, F>(&self, id: i64, render: F) -> Result<T, BuildError>
    where
        T: Send + 'static,
        F: FnOnce(Build) -> T + Send + 'static,
    {
        self.engine
            .store
            .get_build_then(id, move |build| build.map(render))
            .await?
            .ok_or(BuildError::NotFound(id))
    }

    /// Like [`BuildService::get_then`], for a page of builds.
    pub async fn list_then<T, F>(&self, filter: ListFilter, render: F) -> Result<T, BuildError>
    where
        T: Send + 'static,
        F: FnOnce(Listed) -> T + Send + 'static,
    {
        Ok(self.engine.store.list_builds_then(filter, render).await?)
    }

    /// A running build's progress now.
    fn progress(&self, build: &Build) -> Option<crate::domain::Progress> {
        if !build.status.is_running() {
            return None;
        }
        self.engine.events.progress(build.id)
    }

    fn silent_since(&self, build: &Build) -> Option<crate::domain::Timestamp> {
        if !build.status.is_running() {
            return None;
        }
        self.engine.silences.silent_since(build.id)
    }

    /// Why a queued build waits, now (see [`waiting::waiting_for`]).
    fn waiting_for(&self, build: &Build) -> Option<String> {
        if build.status != Status::Queued {
            return None;
        }
        let statuses = self.engine.pool.statuses();
        let platforms = build.options.platforms();
        if platforms.is_empty() {
            return waiting::waiting_for(&statuses, None);
        }
        // A build of several platforms starts once a builder for any of them is free.
        let waits: Vec<String> = platforms
            .iter()
            .map(|platform| waiting::waiting_for(&statuses, Some(platform)))
            .collect::<Option<_>>()?;
        Some(waits.join("; "))
    }

    /// Whether a build's JSON changes without a write to the store: a running
    /// build's progress and a queued build's `waiting_for` live in memory.
    pub fn shows_live_state(build: &Build) -> bool {
        build.status == Status::Queued || build.status.is_running()
    }

    /// The parts of a build that live in memory: a running build's progress, why
    /// a queued one waits, and an end the store has not taken yet.
    pub fn with_progress(&self, build: Build) -> Build {
        if let Some(ended) = self.engine.unrecorded_end(build.id) {
            return ended;
        }
        Build {
            progress: self.progress(&build),
            waiting_for: self.waiting_for(&build),
            silent_since: self.silent_since(&build),
            ..build
        }
    }

    /// The line number after which `range` of build `id`'s log starts.
    pub async fn log_start(&self, id: i64, range: LogRange) -> Result<i64, BuildError> {
        self.get(id).await?;
        Ok(self.engine.store.log_start(id, range).await?)
    }

    /// The stored lines after line `after`, read and rendered a page at a time as
    /// the stream is polled, so a reader holds one page whatever the log's size.
    pub fn log_pages(
        &self,
        id: i64,
        after: i64,
        render: RenderLine,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, BuildError>> + 'static {
        let store = self.engine.store.clone();
        futures_util::stream::unfold(Some(after), move |after| {
            let store = store.clone();
            async move {
                match store.read_log_page(id, after?, render, PAGE_BYTES).await {
                    Ok(Some(page)) => Some((
                        Ok(bytes::Bytes::from(page.text)),
                        page.full.then_some(page.last_seq),
                    )),
                    Ok(None) => None,
                    Err(err) => Some((Err(err.into()), None)),
                }
            }
        })
    }
}
