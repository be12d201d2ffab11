//! Everything SQLite: migrations, the build and log tables, and the two ways in.
//! Writes go through the one writer connection on its own thread
//! ([`writer::Writer`]); reads use a pool of read-only connections on tokio's
//! blocking pool. Nothing here runs SQLite on the async threads.

mod deliveries;
mod files;
mod lock;
mod logs;
mod migrations;
mod rows;
mod sharing;
mod triggers;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::builds::model::{Build, NewBuild, TagPlan, Timestamp};
use crate::builds::status::Status;
pub use files::BuildFiles;
pub use lock::{DataDirLock, LockError};
pub use logs::{LogPage, LogRange, RenderLine};
use rows::{build_from_row, BUILD_COLUMNS};
pub use sharing::PublishedTag;
pub use triggers::TriggerDelivery;
use writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored files: {0}")]
    Io(#[from] std::io::Error),
    #[error("database schema version {found} is newer than this dockpub knows ({known})")]
    SchemaTooNew { found: usize, known: usize },
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("the queue is full ({limit} builds wait)")]
    QueueFull { limit: usize },
    #[error("store task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the store's writer stopped before the write finished")]
    WriterGone,
}

impl StoreError {
    /// SQLite or the data directory ran out of space: nothing is wrong but room.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Io(err) => err.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// Fields a status change may set besides the status itself.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub image_id: Option<String>,
    pub digest: Option<String>,
    pub digests: Option<BTreeMap<String, String>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    pub status: Option<Status>,
    /// Only builds with an id below this one (paging cursor).
    pub before: Option<i64>,
    /// Only builds submitted with the token of this name.
    pub submitted_by: Option<String>,
    pub limit: usize,
}

/// How long a connection waits for a lock held by another process (the writer
/// never waits for this process: it is alone) before giving up.
const BUSY_LIMIT: Duration = Duration::from_secs(5);
const BUSY_NAP: Duration = Duration::from_millis(1);

/// Page cache per read connection, in KiB (SQLite's negative `cache_size`).
const READER_CACHE_KIB: i64 = -256;

/// Every time a connection of this process slept in SQLite's busy handler.
static BUSY_WAITS: AtomicU64 = AtomicU64::new(0);

/// Less free space than this on the data directory's disk counts as full.
const NEARLY_FULL_BYTES: u64 = 256 * 1024;
/// After a write failed for space, the disk counts as full until this is free.
const ROOMY_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Store {
    readers: Pool<SqliteConnectionManager>,
    writer: Arc<Writer>,
    /// Moves after every committed write that may change a build row, before the
    /// write's caller hears back: an answer read at generation N shows every write
    /// whose caller had returned when N was read.
    generation: Arc<AtomicU64>,
    /// Set when the last write failed for want of space; cleared by the next
    /// write that succeeds (see [`Store::disk_full`]).
    disk_full: Arc<AtomicBool>,
    files: BuildFiles,
}

/// Whether a write can change what a build's JSON shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    InBuilds,
    /// Log lines and webhook deliveries: not part of a build's JSON.
    Elsewhere,
}

impl Store {
    /// Opens (creating if needed) `data_dir/dockpub.sqlite3` and `data_dir/builds/`,
    /// and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("dockpub.sqlite3");
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrations::apply(&mut writer)?;
        let manager = SqliteConnectionManager::file(&path).with_init(|conn| {
            configure(conn)?;
            // A write slipped onto a read connection fails loudly instead of
            // racing the writer.
            conn.pragma_update(None, "query_only", true)?;
            // Each connection keeps its own page cache (2 MiB by default): with
            // eight of them streaming big logs that alone would be 16 MiB. The
            // kernel caches the file anyway.
            conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
        });
        // No test query on every checkout: a connection to a local file does not go
        // stale the way a network connection does, and r2d2_sqlite's test parses and
        // runs `SELECT 1` each time (a measurable share of a `GET` on the API).
        let readers = Pool::builder()
            .max_size(8)
            .test_on_check_out(false)
            .build(manager)?;
        let files = BuildFiles::open(data_dir.join("builds"), data_dir.join("uploads"))?;
        Ok(Store {
            readers,
            writer: Arc::new(Writer::start(writer)?),
            generation: Arc::default(),
            disk_full: Arc::default(),
            files,
        })
    }

    pub fn files(&self) -> &BuildFiles {
        &self.files
    }

    /// See the field's comment: compare two readings to know whether anything a
    /// build's JSON shows may have changed in between.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether the disk is full: the last write found no room and there is
    /// still little, or there is almost none at all. Writes fail until space is back.
    pub fn disk_full(&self) -> bool {
        let free = self.files.free_bytes().unwrap_or(u64::MAX);
        free < NEARLY_FULL_BYTES || (self.disk_full.load(Ordering::Relaxed) && free < ROOMY_BYTES)
    }

    /// How many times connections of this process slept waiting for a lock.
    /// Only another process writing the same database makes this move.
    pub fn busy_waits() -> u64 {
        BUSY_WAITS.load(Ordering::Relaxed)
    }

    /// Runs `work` with a read-only pooled connection on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || work(&*pool.get()?)).await?
    }

    /// Runs `work` on the writer connection; `work` opens its own transaction
    /// with [`immediate`]. The generation moves once it has returned.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &BuildFiles) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_seen(Seen::InBuilds, work).await
    }

    async fn write_seen<T, F>(&self, seen: Seen, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &BuildFiles) -> Result<T, StoreError> + Send + 'static,
    {
        let files = self.files.clone();
        let generation = self.generation.clone();
        let result = self
            .writer
            .run(move |conn| {
                let result = work(conn, &files);
                if seen == Seen::InBuilds {
                    generation.fetch_add(1, Ordering::SeqCst);
                }
                result
            })
            .await?;
        let full = matches!(&result, Err(err) if err.is_disk_full());
        self.disk_full.store(full, Ordering::Relaxed);
        result
    }

    /// File work on the blocking pool, away from the writer.
    async fn files_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&BuildFiles) -> std::io::Result<T> + Send + 'static,
    {
        let files = self.files.clone();
        Ok(tokio::task::spawn_blocking(move || work(&files)).await??)
    }

    /// Inserts a queued build and stores its Dockerfile; both or neither. Refuses
    /// when `queue_limit` builds already wait. `before_commit` runs with the new id
    /// while the row is not yet visible to others.
    pub async fn insert_build<F>(
        &self,
        mut new: NewBuild,
        queue_limit: usize,
        before_commit: F,
    ) -> Result<Build, StoreError>
    where
        F: FnOnce(i64) + Send + 'static,
    {
        let text = std::mem::take(&mut new.dockerfile);
        let dockerfile = self
            .files_blocking(move |files| files.stage_dockerfile(&text))
            .await?;
        self.write(move |conn, files| {
            // Immediate: the count and the insert happen under one write lock.
            let tx = immediate(conn)?;
            let queued: i64 = tx.query_row(
                "SELECT COUNT(*) FROM builds WHERE status = 'queued'",
                [],
                |row| row.get(0),
            )?;
            if queued as usize >= queue_limit {
                return Err(StoreError::QueueFull { limit: queue_limit });
            }
            let id = insert_row(&tx, &new)?;
            let stored = files
                .keep_dockerfile(id, dockerfile)
                .and_then(|()| match new.context {
                    Some(context) => files.keep_context(id, context.archive),
                    None => Ok(()),
                });
            if let Err(err) = stored {
                files.remove(id)?;
                return Err(err.into());
            }
            before_commit(id);
            if let Err(err) = tx.commit() {
                files.remove(id)?;
                return Err(err.into());
            }
            select_build(conn, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("build {id} vanished")))
        })
        .await
    }

    pub async fn get_build(&self, id: i64) -> Result<Option<Build>, StoreError> {
        self.get_build_then(id, |build| build).await
    }

    /// Reads build `id` and hands it to `then`, both on the blocking pool (so a
    /// caller can render it there too).
    pub async fn get_build_then<T, F>(&self, id: i64, then: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Option<Build>) -> T + Send + 'static,
    {
        self.read(move |conn| select_build(conn, id).map(then))
            .await
    }

    /// Newest first.
    pub async fn list_builds(&self, filter: ListFilter) -> Result<Vec<Build>, StoreError> {
        self.list_builds_then(filter, |builds| builds).await
    }

    /// Like [`Store::get_build_then`], for a page of builds, newest first.
    pub async fn list_builds_then<T, F>(&self, filter: ListFilter, then: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Vec<Build>) -> T + Send + 'static,
    {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {BUILD_COLUMNS} FROM builds
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR id < ?2)
                   AND (?4 IS NULL OR submitted_by = ?4)
                 ORDER BY id DESC LIMIT ?3"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let status = filter.status.map(Status::as_str);
            let rows = statement.query_map(
                params![
                    status,
                    filter.before,
                    filter.limit as i64,
                    filter.submitted_by
                ],
                build_from_row,
            )?;
            let builds = rows.map(|row| row?).collect::<Result<_, _>>()?;
            Ok(then(builds))
        })
        .await
    }

    /// Moves the oldest queued build that `builder` can run (one that asks for no
    /// platform, or for one of `platforms`) to `building` on it, counting the
    /// attempt; None when no such build waits.
    pub async fn claim_next_queued(
        &self,
        builder: String,
        platforms: Vec<String>,
    ) -> Result<Option<Build>, StoreError> {
        self.write(move |conn, _| {
            let tx = immediate(conn)?;
            let platforms = rows::to_json(&platforms);
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM builds WHERE status = 'queued'
                       AND (json_extract(options, '$.platform') IS NULL
                            OR json_extract(options, '$.platform') IN (SELECT value FROM json_each(?1)))
                     ORDER BY id LIMIT 1",
                    [platforms],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok(None);
            };
            if transition(&tx, id, None, Status::Building, &Changes::default())?.is_none() {
                return Ok(None);
            }
            tx.execute(
                "UPDATE builds SET builder = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, builder],
            )?;
            let claimed = select_build(&tx, id)?;
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Records which builder a build ran on (`options.buildkit`), when it is
    /// not the one the request chose.
    pub async fn set_buildkit(&self, id: i64, buildkit: bool) -> Result<(), StoreError> {
        self.write(move |conn, _| {
            let tx = immediate(conn)?;
            tx.execute(
                "UPDATE builds SET options = json_set(options, '$.buildkit', json(?2)) WHERE id = ?1",
                rusqlite::params![id, if buildkit { "true" } else { "false" }],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Moves a build to `to` if its current status allows it (see [`Status::predecessors`])
    /// and, when `from` is given, is `from`; returns the updated build, or None when
    /// the move was not allowed.
    pub async fn transition(
        &self,
        id: i64,
        from: Option<Status>,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        self.write(move |conn, _| {
            let tx = immediate(conn)?;
            let moved = transition(&tx, id, from, to, &changes)?;
            tx.commit()?;
            Ok(moved)
        })
        .await
    }

    /// Restart recovery: every build left building or pushing goes back to the queue,
    /// its earlier attempt's results cleared (its log is kept).
    pub async fn requeue_interrupted(&self) -> Result<Vec<i64>, StoreError> {
        self.write(move |conn, _| {
            let tx = immediate(conn)?;
            let ids: Vec<i64> = tx
                .prepare(
                    "SELECT id FROM builds WHERE status IN ('building', 'pushing') ORDER BY id",
                )?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for &id in &ids {
                transition(&tx, id, None, Status::Queued, &Changes::default())?;
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Final builds to prune: finished before `finished_before` (if given) and, if
    /// `keep_last` is given, older than the `keep_last`-th newest succeeded build
    /// (failed and cancelled builds do not count; nothing is pruned for this rule
    /// until that many builds succeeded). Oldest first.
    pub async fn prunable_builds(
        &self,
        finished_before: Option<Timestamp>,
        keep_last: Option<usize>,
    ) -> Result<Vec<i64>, StoreError> {
        self.read(move |conn| {
            let finals = final_statuses();
            let sql = format!(
                "SELECT id FROM builds
                 WHERE status IN ({finals}) AND (?1 IS NULL OR finished_at < ?1)
                   AND (?2 IS NULL OR ?2 = 0 OR id < (SELECT id FROM builds WHERE status = 'succeeded'
                                                      ORDER BY id DESC LIMIT 1 OFFSET ?2 - 1))
                 ORDER BY id"
            );
            let before = finished_before.map(Timestamp::to_rfc3339);
            let keep = keep_last.map(|keep| keep as i64);
            let mut statement = conn.prepare(&sql)?;
            let ids = statement.query_map(params![before, keep], |row| row.get(0))?;
            Ok(ids.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// How many builds wait in the queue.
    pub async fn queued_count(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT COUNT(*) FROM builds WHERE status = 'queued'")?;
            Ok(statement.query_row([], |row| row.get(0))?)
        })
        .await
    }

    /// Queued builds that were never handed to a builder and were created
    /// before `cutoff`, oldest first.
    pub async fn queued_unstarted_before(&self, cutoff: Timestamp) -> Result<Vec<i64>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM builds WHERE status = 'queued' AND attempts = 0 AND created_at < ?1
                 ORDER BY id",
            )?;
            let ids = statement.query_map([cutoff.to_rfc3339()], |row| row.get(0))?;
            Ok(ids.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// How many builds are in each status, by status name.
    pub async fn status_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT status, COUNT(*) FROM builds GROUP BY status")?;
            let counts = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(counts.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Whether SQLite answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(drop)?)
        })
        .await
    }

    /// A staged copy of build `id`'s context archive (see [`BuildFiles::stage_copy_of_context`]).
    pub async fn stage_copy_of_context(&self, id: i64) -> Result<tempfile::TempPath, StoreError> {
        self.files_blocking(move |files| files.stage_copy_of_context(id))
            .await
    }

    pub async fn read_dockerfile(&self, id: i64) -> Result<String, StoreError> {
        self.files_blocking(move |files| files.read_dockerfile(id))
            .await
    }

    /// Deletes the row, its logs and its stored files, if the build is final.
    /// Returns false when no such final build exists.
    pub async fn delete_final_build(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self
            .write(move |conn, _| {
                let tx = immediate(conn)?;
                let deleted = tx.execute(
                    &format!(
                        "DELETE FROM builds WHERE id = ?1 AND status IN ({})",
                        final_statuses()
                    ),
                    [id],
                )?;
                if deleted == 0 {
                    return Ok(false);
                }
                // Pending deliveries still go out (a `cancelled` one right before a
                // forced delete); they are removed when they end.
                tx.execute(
                    "DELETE FROM deliveries WHERE build_id = ?1 AND state != 'pending'",
                    [id],
                )?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if deleted {
            // A big context takes a while to unlink: not on the writer.
            self.files_blocking(move |files| files.remove(id)).await?;
        }
        Ok(deleted)
    }
}

/// Opens a write transaction that takes the write lock at once, so it never has
/// to upgrade a read lock midway (which can fail with SQLITE_BUSY instead of
/// waiting).
fn immediate(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// The pragmas every connection runs with.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )?;
    conn.busy_handler(Some(wait_when_busy))
}

/// SQLite's busy handler: counts each nap (see [`Store::busy_waits`]) and gives
/// up after [`BUSY_LIMIT`].
fn wait_when_busy(naps: i32) -> bool {
    BUSY_WAITS.fetch_add(1, Ordering::Relaxed);
    if u128::from(naps.unsigned_abs()) * BUSY_NAP.as_millis() >= BUSY_LIMIT.as_millis() {
        return false;
    }
    std::thread::sleep(BUSY_NAP);
    true
}

/// The new row, with its generated tag when the plan asks for one; its id.
fn insert_row(tx: &Transaction<'_>, new: &NewBuild) -> Result<i64, StoreError> {
    let listed = match &new.tags {
        TagPlan::Listed(tags) => tags.clone(),
        TagPlan::TimestampAndId => Vec::new(),
    };
    tx.execute(
        "INSERT INTO builds (status, repository, tags, push, registry_username, created_at, retry_of,
                             options, context_dockerfile, callback_url, submitted_by, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            Status::Queued.as_str(),
            new.repository,
            rows::tags_to_json(&listed),
            new.push,
            new.registry_username,
            new.created_at.to_rfc3339(),
            new.retry_of,
            rows::to_json(&new.options),
            new.context.as_ref().map(|c| c.dockerfile_path.as_str()),
            new.callback_url,
            new.submitted_by,
            new.source.as_ref().map(rows::to_json),
        ],
    )?;
    let id = tx.last_insert_rowid();
    if new.tags == TagPlan::TimestampAndId {
        let tag = format!("{}-{id}", new.created_at.compact());
        tx.execute(
            "UPDATE builds SET tags = ?2 WHERE id = ?1",
            params![id, rows::tags_to_json(&[tag])],
        )?;
    }
    Ok(id)
}

/// `'succeeded', 'failed', …` for SQL, from the status model.
fn final_statuses() -> String {
    let finals: Vec<String> = Status::ALL
        .iter()
        .filter(|status| status.is_final())
        .map(|status| format!("'{status}'"))
        .collect();
    finals.join(", ")
}

fn select_build(conn: &Connection, id: i64) -> Result<Option<Build>, StoreError> {
    let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], build_from_row)
        .optional()?
        .transpose()
}

fn transition(
    conn: &Connection,
    id: i64,
    from: Option<Status>,
    to: Status,
    changes: &Changes,
) -> Result<Option<Build>, StoreError> {
    let now = Timestamp::now().to_rfc3339();
    let status = to.as_str();
    let allowed: Vec<&str> = to
        .predecessors()
        .iter()
        .filter(|&&status| from.is_none_or(|from| from == status))
        .map(|s| s.as_str())
        .collect();
    if allowed.is_empty() {
        return Ok(None);
    }
    let placeholders: Vec<String> = (8..8 + allowed.len()).map(|n| format!("?{n}")).collect();
    let placeholders = placeholders.join(", ");
    let finals = final_statuses();
    let sql = format!(
        "UPDATE builds SET
            status = ?1,
            image_id = CASE WHEN ?1 = 'queued' THEN NULL ELSE COALESCE(?2, image_id) END,
            digest = CASE WHEN ?1 = 'queued' THEN NULL ELSE COALESCE(?3, digest) END,
            error = CASE WHEN ?1 = 'queued' THEN NULL ELSE COALESCE(?4, error) END,
            started_at = CASE WHEN ?1 = 'building' THEN ?5 WHEN ?1 = 'queued' THEN NULL ELSE started_at END,
            built_at = CASE
                WHEN ?1 = 'pushing' OR (?1 = 'succeeded' AND built_at IS NULL) THEN ?5
                WHEN ?1 = 'queued' THEN NULL
                ELSE built_at END,
            finished_at = CASE WHEN ?1 IN ({finals}) THEN ?5 ELSE NULL END,
            digests = CASE WHEN ?1 = 'queued' THEN '{{}}' ELSE COALESCE(?7, digests) END,
            builder = CASE WHEN ?1 = 'queued' THEN NULL ELSE builder END
         WHERE id = ?6 AND status IN ({placeholders})"
    );
    let digests = changes.digests.as_ref().map(rows::to_json);
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &status,
        &changes.image_id,
        &changes.digest,
        &changes.error,
        &now,
        &id,
        &digests,
    ];
    values.extend(allowed.iter().map(|s| s as &dyn rusqlite::ToSql));
    let updated = conn.execute(&sql, values.as_slice())?;
    if updated == 0 {
        return Ok(None);
    }
    select_build(conn, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::model::{BuildOptions, LogLine};

    pub(super) fn new_build(n: usize) -> NewBuild {
        NewBuild {
            repository: "store/app".into(),
            tags: TagPlan::Listed(vec![format!("t{n}")]),
            push: false,
            registry_username: None,
            dockerfile: "FROM scratch\n".into(),
            context: None,
            options: BuildOptions::default(),
            created_at: Timestamp::now(),
            retry_of: None,
            callback_url: None,
            submitted_by: None,
            source: None,
        }
    }

    async fn store_with(count: usize) -> (tempfile::TempDir, Store, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for n in 0..count {
            ids.push(
                store
                    .insert_build(new_build(n), usize::MAX, |_| {})
                    .await
                    .unwrap()
                    .id,
            );
        }
        (dir, store, ids)
    }

    #[tokio::test]
    async fn lists_newest_first_and_reads_one() {
        let (_dir, store, ids) = store_with(3).await;
        let build = store.get_build(ids[1]).await.unwrap().unwrap();
        assert_eq!(build.tags, vec!["t1".to_string()]);
        assert_eq!(build.status, Status::Queued);
        let filter = ListFilter {
            status: None,
            before: Some(ids[2]),
            submitted_by: None,
            limit: 5,
        };
        let listed: Vec<i64> = store
            .list_builds(filter)
            .await
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(listed, vec![ids[1], ids[0]]);
    }

    #[tokio::test]
    async fn refuses_a_build_past_the_queue_limit_and_keeps_nothing() {
        let (dir, store, _) = store_with(2).await;
        let refused = store
            .insert_build(new_build(9), 2, |_| panic!("no id for a refused build"))
            .await;
        assert!(matches!(refused, Err(StoreError::QueueFull { limit: 2 })));
        let all = ListFilter {
            status: None,
            before: None,
            submitted_by: None,
            limit: 10,
        };
        assert_eq!(store.list_builds(all).await.unwrap().len(), 2);
        assert_eq!(
            std::fs::read_dir(dir.path().join("builds"))
                .unwrap()
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn moves_only_along_the_status_model() {
        let (_dir, store, ids) = store_with(1).await;
        let id = ids[0];
        assert!(store
            .transition(id, None, Status::Pushing, Changes::default())
            .await
            .unwrap()
            .is_none());
        assert!(store
            .claim_next_queued("local".into(), Vec::new())
            .await
            .unwrap()
            .is_some());
        let cancelled = store
            .transition(id, None, Status::Cancelled, Changes::default())
            .await
            .unwrap()
            .unwrap();
        assert!(cancelled.finished_at.is_some());
        assert!(store
            .transition(id, None, Status::Succeeded, Changes::default())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_builder_claims_only_builds_for_its_platforms_and_counts_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut arm = new_build(0);
        arm.options.platform = Some("linux/arm64".into());
        let arm = store.insert_build(arm, 10, |_| {}).await.unwrap();
        let any = store.insert_build(new_build(1), 10, |_| {}).await.unwrap();
        let amd64 = vec!["linux/amd64".to_string()];
        let claimed = store
            .claim_next_queued("x86".into(), amd64.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (claimed.id, claimed.builder.as_deref(), claimed.attempts),
            (any.id, Some("x86"), 1)
        );
        assert!(store
            .claim_next_queued("x86".into(), amd64)
            .await
            .unwrap()
            .is_none());
        let claimed = store
            .claim_next_queued("pi".into(), vec!["linux/arm64".into()])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, arm.id);
        let requeued = store
            .transition(arm.id, None, Status::Queued, Changes::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((requeued.builder, requeued.attempts), (None, 1));
    }

    #[tokio::test]
    async fn keeps_the_newest_succeeded_builds_and_everything_after_them() {
        let (_dir, store, ids) = store_with(6).await;
        let ends = [
            Status::Succeeded,
            Status::Failed,
            Status::Succeeded,
            Status::Cancelled,
            Status::Succeeded,
        ];
        for (&id, end) in ids.iter().zip(ends) {
            store
                .claim_next_queued("local".into(), Vec::new())
                .await
                .unwrap();
            store
                .transition(id, None, end, Changes::default())
                .await
                .unwrap()
                .unwrap();
        }
        // ids[5] is still queued: never pruned, and not counted among the kept.
        let prunable = |keep| {
            let store = store.clone();
            async move { store.prunable_builds(None, keep).await.unwrap() }
        };
        assert_eq!(prunable(Some(1)).await, ids[..4].to_vec());
        assert_eq!(prunable(Some(2)).await, ids[..2].to_vec());
        assert_eq!(prunable(Some(3)).await, Vec::<i64>::new());
        assert_eq!(prunable(Some(4)).await, Vec::<i64>::new());
        assert_eq!(prunable(Some(0)).await, ids[..5].to_vec());
        let long_ago = Timestamp(chrono::Utc::now() - chrono::Duration::days(1));
        assert_eq!(
            store.prunable_builds(Some(long_ago), None).await.unwrap(),
            Vec::<i64>::new()
        );
        let soon = Timestamp(chrono::Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(
            store.prunable_builds(Some(soon), Some(2)).await.unwrap(),
            ids[..2].to_vec()
        );
    }

    fn numbered_lines(id: i64, from: i64, count: i64) -> Arc<Vec<LogLine>> {
        let lines = (from..from + count).map(|seq| LogLine {
            seq,
            line: format!("build {id} line {seq}"),
        });
        Arc::new(lines.collect())
    }

    /// `seq<TAB>line` per line.
    fn numbered(text: &mut String, seq: i64, line: &str) {
        text.push_str(&format!("{seq}\t{line}\n"));
    }

    /// Every stored line of build `id`, read page by page.
    async fn read_all_pages(store: &Store, id: i64, after: i64) -> (Vec<LogLine>, usize) {
        let (mut all, mut pages, mut after) = (Vec::new(), 0, after);
        while let Some(page) = store.read_log_page(id, after, numbered).await.unwrap() {
            pages += 1;
            after = page.last_seq;
            all.extend(page.text.lines().map(|numbered| {
                let (seq, line) = numbered.split_once('\t').unwrap();
                LogLine {
                    seq: seq.parse().unwrap(),
                    line: line.into(),
                }
            }));
            if !page.full {
                break;
            }
        }
        (all, pages)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_never_sleep_and_each_log_lands_in_order() {
        let (_dir, store, ids) = store_with(4).await;
        let busy_before = Store::busy_waits();
        let mut writers = tokio::task::JoinSet::new();
        for &id in &ids {
            let store = store.clone();
            writers.spawn(async move {
                for batch in 0..40 {
                    let lines = numbered_lines(id, batch * 50 + 1, 50);
                    store.append_logs(id, lines).await.unwrap();
                }
            });
        }
        for submitter in 0..8 {
            let store = store.clone();
            writers.spawn(async move {
                for n in 0..10 {
                    let build = new_build(submitter * 10 + n);
                    let inserted = store.insert_build(build, usize::MAX, |_| {}).await.unwrap();
                    store
                        .transition(inserted.id, None, Status::Cancelled, Changes::default())
                        .await
                        .unwrap()
                        .unwrap();
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        assert_eq!(
            Store::busy_waits(),
            busy_before,
            "a writer slept in the busy handler"
        );
        for &id in &ids {
            let (lines, _) = read_all_pages(&store, id, 0).await;
            assert_eq!(lines, numbered_lines(id, 1, 2000).as_ref().clone());
        }
        let cancelled = ListFilter {
            status: Some(Status::Cancelled),
            limit: 500,
            ..ListFilter::default()
        };
        assert_eq!(store.list_builds(cancelled).await.unwrap().len(), 80);
    }

    #[tokio::test]
    async fn the_generation_moves_after_a_build_write_commits_and_not_for_log_lines() {
        let (_dir, store, ids) = store_with(1).await;
        let id = ids[0];
        let before = store.generation();
        store
            .append_logs(id, numbered_lines(id, 1, 3))
            .await
            .unwrap();
        assert_eq!(store.generation(), before);
        store
            .transition(id, None, Status::Cancelled, Changes::default())
            .await
            .unwrap();
        let after = store.generation();
        assert!(after > before);
        // The answer read at the new generation shows the write.
        let build = store.get_build(id).await.unwrap().unwrap();
        assert_eq!(build.status, Status::Cancelled);
        // A refused move commits nothing visible, and may still move it: never back.
        store
            .transition(id, None, Status::Succeeded, Changes::default())
            .await
            .unwrap();
        assert!(store.generation() >= after);
    }

    #[tokio::test]
    async fn a_log_is_read_in_pages_from_a_line_or_from_its_tail() {
        let (_dir, store, ids) = store_with(1).await;
        let id = ids[0];
        for batch in 0..3 {
            store
                .append_logs(id, numbered_lines(id, batch * 1000 + 1, 1000))
                .await
                .unwrap();
        }
        let (lines, pages) = read_all_pages(&store, id, 0).await;
        assert_eq!(lines, numbered_lines(id, 1, 3000).as_ref().clone());
        assert!(pages >= 3, "{pages} pages");
        let start = |since, tail| store.log_start(id, LogRange { since, tail });
        assert_eq!(start(None, None).await.unwrap(), 0);
        assert_eq!(start(Some(7), None).await.unwrap(), 7);
        assert_eq!(start(None, Some(10)).await.unwrap(), 2990);
        assert_eq!(start(None, Some(0)).await.unwrap(), 3000);
        assert_eq!(start(None, Some(5000)).await.unwrap(), 0);
        assert_eq!(start(Some(2995), Some(10)).await.unwrap(), 2995);
        let (tail, _) = read_all_pages(&store, id, 2990).await;
        assert_eq!(tail, numbered_lines(id, 2991, 10).as_ref().clone());
    }

    #[tokio::test]
    async fn a_page_of_long_lines_stops_at_its_byte_limit() {
        let (_dir, store, ids) = store_with(1).await;
        let id = ids[0];
        let long = |seq| LogLine {
            seq,
            line: "x".repeat(10_000),
        };
        store
            .append_logs(id, Arc::new((1..=20).map(long).collect()))
            .await
            .unwrap();
        let page = store.read_log_page(id, 0, numbered).await.unwrap().unwrap();
        assert!(page.full);
        assert_eq!((page.text.lines().count(), page.last_seq), (7, 7));
        let (all, pages) = read_all_pages(&store, id, 0).await;
        assert_eq!((all.len(), pages), (20, 3));
    }
}
