//! Everything SQLite: the r2d2 pool, migrations, and the build and log tables.
//! Every call runs on tokio's blocking pool, never on the async runtime, except the
//! short reads of one build or one page of builds (see [`Store::read`]).

mod deliveries;
mod files;
mod migrations;
mod rows;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension};

use crate::builds::model::{Build, LogLine, NewBuild, TagPlan, Timestamp};
use crate::builds::status::Status;
pub use files::BuildFiles;
use rows::{build_from_row, BUILD_COLUMNS};

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
}

/// Fields a status change may set besides the status itself.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub image_id: Option<String>,
    pub digest: Option<String>,
    pub digests: Option<BTreeMap<String, String>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    pub status: Option<Status>,
    /// Only builds with an id below this one (paging cursor).
    pub before: Option<i64>,
    pub limit: usize,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    files: BuildFiles,
}

impl Store {
    /// Opens (creating if needed) `data_dir/dockpub.sqlite3` and `data_dir/builds/`,
    /// and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let manager =
            SqliteConnectionManager::file(data_dir.join("dockpub.sqlite3")).with_init(|conn| {
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA busy_timeout = 5000;",
                )
            });
        // No test query on every checkout: a connection to a local file does not go
        // stale the way a network connection does, and r2d2_sqlite's test parses and
        // runs `SELECT 1` each time (a measurable share of a `GET` on the API).
        let pool = Pool::builder()
            .max_size(8)
            .test_on_check_out(false)
            .build(manager)?;
        migrations::apply(&mut *pool.get()?)?;
        let files = BuildFiles::open(data_dir.join("builds"), data_dir.join("uploads"))?;
        Ok(Store { pool, files })
    }

    pub fn files(&self) -> &BuildFiles {
        &self.files
    }

    /// Runs `work` with a pooled connection on the blocking pool.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &BuildFiles) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || work(&mut *pool.get()?, &files)).await?
    }

    /// Inserts a queued build and stores its Dockerfile; both or neither. Refuses
    /// when `queue_limit` builds already wait. `before_commit` runs with the new id
    /// while the row is not yet visible to others.
    pub async fn insert_build<F>(
        &self,
        new: NewBuild,
        queue_limit: usize,
        before_commit: F,
    ) -> Result<Build, StoreError>
    where
        F: FnOnce(i64) + Send + 'static,
    {
        self.blocking(move |conn, files| {
            // Immediate: the count and the insert happen under one write lock.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let queued: i64 = tx.query_row("SELECT COUNT(*) FROM builds WHERE status = 'queued'", [], |row| row.get(0))?;
            if queued as usize >= queue_limit {
                return Err(StoreError::QueueFull { limit: queue_limit });
            }
            let listed = match &new.tags {
                TagPlan::Listed(tags) => tags.clone(),
                TagPlan::TimestampAndId => Vec::new(),
            };
            tx.execute(
                "INSERT INTO builds (status, repository, tags, push, registry_username, created_at, retry_of,
                                     options, context_dockerfile, callback_url)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
            let stored =
                files
                    .write_dockerfile(id, &new.dockerfile)
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
        self.blocking(move |conn, _| select_build(conn, id)).await
    }

    /// Newest first.
    pub async fn list_builds(&self, filter: ListFilter) -> Result<Vec<Build>, StoreError> {
        self.blocking(move |conn, _| {
            let sql = format!(
                "SELECT {BUILD_COLUMNS} FROM builds
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let status = filter.status.map(Status::as_str);
            let rows = statement.query_map(
                params![status, filter.before, filter.limit as i64],
                build_from_row,
            )?;
            rows.map(|row| row?).collect()
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
        self.blocking(move |conn, _| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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

    /// Moves a build to `to` if its current status allows it (see [`Status::predecessors`])
    /// and, when `from` is given, is `from`; returns the updated build, or None when
    /// the move was not allowed.
    /// Records which builder a build ran on (`options.buildkit`), when it is
    /// not the one the request chose.
    pub async fn set_buildkit(&self, id: i64, buildkit: bool) -> Result<(), StoreError> {
        self.blocking(move |conn, _| {
            conn.execute(
                "UPDATE builds SET options = json_set(options, '$.buildkit', json(?2)) WHERE id = ?1",
                rusqlite::params![id, if buildkit { "true" } else { "false" }],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn transition(
        &self,
        id: i64,
        from: Option<Status>,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        self.blocking(move |conn, _| transition(conn, id, from, to, &changes))
            .await
    }

    /// Restart recovery: every build left building or pushing goes back to the queue,
    /// its earlier attempt's results cleared (its log is kept).
    pub async fn requeue_interrupted(&self) -> Result<Vec<i64>, StoreError> {
        self.blocking(move |conn, _| {
            let ids: Vec<i64> = conn
                .prepare(
                    "SELECT id FROM builds WHERE status IN ('building', 'pushing') ORDER BY id",
                )?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for &id in &ids {
                transition(conn, id, None, Status::Queued, &Changes::default())?;
            }
            Ok(ids)
        })
        .await
    }

    /// Final builds to prune: finished before `finished_before` (if given) and not
    /// among the newest `keep_last` final builds (if given). Oldest first.
    pub async fn prunable_builds(
        &self,
        finished_before: Option<Timestamp>,
        keep_last: Option<usize>,
    ) -> Result<Vec<i64>, StoreError> {
        self.blocking(move |conn, _| {
            let finals = final_statuses();
            let sql = format!(
                "SELECT id FROM builds
                 WHERE status IN ({finals}) AND (?1 IS NULL OR finished_at < ?1)
                   AND id NOT IN (SELECT id FROM builds WHERE status IN ({finals}) ORDER BY id DESC LIMIT ?2)
                 ORDER BY id"
            );
            let before = finished_before.map(Timestamp::to_rfc3339);
            let keep = keep_last.unwrap_or(0) as i64;
            let mut statement = conn.prepare(&sql)?;
            let ids = statement.query_map(params![before, keep], |row| row.get(0))?;
            Ok(ids.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// How many builds are in each status, by status name.
    pub async fn status_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        self.blocking(|conn, _| {
            let mut statement =
                conn.prepare_cached("SELECT status, COUNT(*) FROM builds GROUP BY status")?;
            let counts = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(counts.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Whether SQLite answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|conn, _| {
            Ok(conn
                .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(drop)?)
        })
        .await
    }

    /// Stores log lines whose sequence numbers the caller assigned, in one transaction.
    pub async fn append_logs(&self, id: i64, lines: Arc<Vec<LogLine>>) -> Result<(), StoreError> {
        self.blocking(move |conn, _| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO build_logs (build_id, seq, line) VALUES (?1, ?2, ?3)",
                )?;
                for line in lines.iter() {
                    insert.execute(params![id, line.seq, line.line])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The sequence number of the build's last stored line, 0 when there is none.
    pub async fn last_log_seq(&self, id: i64) -> Result<i64, StoreError> {
        self.blocking(move |conn, _| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM build_logs WHERE build_id = ?1",
                [id],
                |row| row.get(0),
            )?)
        })
        .await
    }

    /// The stored lines after sequence number `after`, in order.
    pub async fn read_logs_after(&self, id: i64, after: i64) -> Result<Vec<LogLine>, StoreError> {
        self.blocking(move |conn, _| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, line FROM build_logs WHERE build_id = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            let lines = statement.query_map([id, after], |row| {
                Ok(LogLine {
                    seq: row.get(0)?,
                    line: row.get(1)?,
                })
            })?;
            Ok(lines.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// A staged copy of build `id`'s context archive (see [`BuildFiles::stage_copy_of_context`]).
    pub async fn stage_copy_of_context(&self, id: i64) -> Result<tempfile::TempPath, StoreError> {
        self.blocking(move |_, files| Ok(files.stage_copy_of_context(id)?))
            .await
    }

    pub async fn read_dockerfile(&self, id: i64) -> Result<String, StoreError> {
        self.blocking(move |_, files| Ok(files.read_dockerfile(id)?))
            .await
    }

    /// Deletes the row, its logs and its stored files, if the build is final.
    /// Returns false when no such final build exists.
    pub async fn delete_final_build(&self, id: i64) -> Result<bool, StoreError> {
        self.blocking(move |conn, files| {
            let tx = conn.transaction()?;
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
            files.remove(id)?;
            Ok(true)
        })
        .await
    }
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
    use crate::builds::model::BuildOptions;

    fn new_build(n: usize) -> NewBuild {
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
    async fn prunes_only_final_builds_outside_the_newest_kept() {
        let (_dir, store, ids) = store_with(4).await;
        for &id in &ids[..3] {
            store
                .claim_next_queued("local".into(), Vec::new())
                .await
                .unwrap();
            store
                .transition(id, None, Status::Failed, Changes::default())
                .await
                .unwrap()
                .unwrap();
        }
        // ids[3] is still queued: never pruned, and not counted among the kept.
        assert_eq!(
            store.prunable_builds(None, Some(1)).await.unwrap(),
            vec![ids[0], ids[1]]
        );
        let long_ago = Timestamp(chrono::Utc::now() - chrono::Duration::days(1));
        assert_eq!(
            store.prunable_builds(Some(long_ago), None).await.unwrap(),
            Vec::<i64>::new()
        );
        let soon = Timestamp(chrono::Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(
            store.prunable_builds(Some(soon), Some(2)).await.unwrap(),
            vec![ids[0]]
        );
    }
}
