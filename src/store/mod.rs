//! Everything SQLite: the r2d2 pool, migrations, and the build and log tables.
//! Every call runs on tokio's blocking pool, never on the async runtime, except the
//! short reads of one build or one page of builds (see [`Store::read`]).

mod files;
mod migrations;
mod rows;

use std::path::Path;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension};

use crate::builds::model::{Build, NewBuild, TagPlan, Timestamp};
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
    #[error("store task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Fields a status change may set besides the status itself.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub image_id: Option<String>,
    pub digest: Option<String>,
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
        let files = BuildFiles::open(data_dir.join("builds"))?;
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

    /// Runs a short read (one build, one page of builds) at once on the calling
    /// thread when a pooled connection is idle, and on the blocking pool otherwise.
    /// Handing a read of a few rows to the blocking pool and back costs more than
    /// the read (two thread wake-ups; 2-3x the CPU of `GET /api/v1/builds/{id}`,
    /// see BENCHMARKS.md). Such a read never waits: in WAL mode a reader does not
    /// wait for writers, and `try_get` does not wait for a connection.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match self.pool.try_get() {
            Some(conn) => work(&conn),
            None => self.blocking(move |conn, _| work(conn)).await,
        }
    }

    /// Inserts a queued build and stores its Dockerfile; both or neither.
    /// `before_commit` runs with the new id while the row is not yet visible to others.
    pub async fn insert_build<F>(
        &self,
        new: NewBuild,
        before_commit: F,
    ) -> Result<Build, StoreError>
    where
        F: FnOnce(i64) + Send + 'static,
    {
        self.blocking(move |conn, files| {
            let tx = conn.transaction()?;
            let listed = match &new.tags {
                TagPlan::Listed(tags) => tags.clone(),
                TagPlan::TimestampAndId => Vec::new(),
            };
            tx.execute(
                "INSERT INTO builds (status, repository, tags, push, registry_username, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    Status::Queued.as_str(),
                    new.repository,
                    rows::tags_to_json(&listed),
                    new.push,
                    new.registry_username,
                    new.created_at.to_rfc3339(),
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
            files.write_dockerfile(id, &new.dockerfile)?;
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
        self.read(move |conn| select_build(conn, id)).await
    }

    /// Newest first.
    pub async fn list_builds(&self, filter: ListFilter) -> Result<Vec<Build>, StoreError> {
        self.read(move |conn| {
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

    /// Moves the oldest queued build to `building`, or returns None when none waits.
    pub async fn claim_next_queued(&self) -> Result<Option<Build>, StoreError> {
        self.blocking(move |conn, _| {
            let id: Option<i64> = conn
                .query_row(
                    "SELECT id FROM builds WHERE status = 'queued' ORDER BY id LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            match id {
                Some(id) => transition(conn, id, Status::Building, &Changes::default()),
                None => Ok(None),
            }
        })
        .await
    }

    /// Moves a build to `to` if its current status allows it (see [`Status::predecessors`]);
    /// returns the updated build, or None when the move was not allowed.
    pub async fn transition(
        &self,
        id: i64,
        to: Status,
        changes: Changes,
    ) -> Result<Option<Build>, StoreError> {
        self.blocking(move |conn, _| transition(conn, id, to, &changes))
            .await
    }

    /// Restart recovery: every build left building or pushing goes back to the queue.
    pub async fn requeue_interrupted(&self) -> Result<Vec<i64>, StoreError> {
        self.blocking(move |conn, _| {
            let ids: Vec<i64> = conn
                .prepare(
                    "SELECT id FROM builds WHERE status IN ('building', 'pushing') ORDER BY id",
                )?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for &id in &ids {
                transition(conn, id, Status::Queued, &Changes::default())?;
            }
            Ok(ids)
        })
        .await
    }

    /// Appends log lines after the build's last stored line, in one transaction.
    pub async fn append_logs(&self, id: i64, lines: Vec<String>) -> Result<(), StoreError> {
        self.blocking(move |conn, _| {
            let tx = conn.transaction()?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM build_logs WHERE build_id = ?1",
                [id],
                |row| row.get(0),
            )?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO build_logs (build_id, seq, line) VALUES (?1, ?2, ?3)",
                )?;
                for (offset, line) in lines.iter().enumerate() {
                    insert.execute(params![id, last + 1 + offset as i64, line])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The whole log, one line per element, in order.
    pub async fn read_logs(&self, id: i64) -> Result<Vec<String>, StoreError> {
        self.blocking(move |conn, _| {
            let mut statement = conn
                .prepare_cached("SELECT line FROM build_logs WHERE build_id = ?1 ORDER BY seq")?;
            let lines = statement.query_map([id], |row| row.get(0))?;
            Ok(lines.collect::<Result<_, _>>()?)
        })
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
                "DELETE FROM builds WHERE id = ?1 AND status IN ('succeeded', 'failed')",
                [id],
            )?;
            if deleted == 0 {
                return Ok(false);
            }
            tx.commit()?;
            files.remove(id)?;
            Ok(true)
        })
        .await
    }
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
    to: Status,
    changes: &Changes,
) -> Result<Option<Build>, StoreError> {
    let now = Timestamp::now().to_rfc3339();
    let status = to.as_str();
    let allowed: Vec<&str> = to.predecessors().iter().map(|s| s.as_str()).collect();
    let placeholders: Vec<String> = (7..7 + allowed.len()).map(|n| format!("?{n}")).collect();
    let placeholders = placeholders.join(", ");
    let sql = format!(
        "UPDATE builds SET
            status = ?1,
            image_id = COALESCE(?2, image_id),
            digest = COALESCE(?3, digest),
            error = COALESCE(?4, error),
            started_at = CASE WHEN ?1 = 'building' THEN ?5 ELSE started_at END,
            built_at = CASE WHEN ?1 = 'pushing' OR (?1 = 'succeeded' AND built_at IS NULL) THEN ?5 ELSE built_at END,
            finished_at = CASE WHEN ?1 IN ('succeeded', 'failed') THEN ?5 ELSE NULL END
         WHERE id = ?6 AND status IN ({placeholders})"
    );
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &status,
        &changes.image_id,
        &changes.digest,
        &changes.error,
        &now,
        &id,
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
    use std::time::Duration;

    use super::*;

    fn new_build(n: usize) -> NewBuild {
        NewBuild {
            repository: "bench/app".into(),
            tags: TagPlan::Listed(vec![format!("t{n}")]),
            push: false,
            registry_username: None,
            dockerfile: "FROM scratch\n".into(),
            created_at: Timestamp::now(),
        }
    }

    #[tokio::test]
    async fn reads_run_inline_and_wait_on_the_blocking_pool_when_no_connection_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(store.insert_build(new_build(n), |_| {}).await.unwrap().id);
        }
        let build = store.get_build(ids[1]).await.unwrap().unwrap();
        assert_eq!(build.tags, vec!["t1".to_string()]);
        let filter = ListFilter {
            status: None,
            before: None,
            limit: 2,
        };
        let listed: Vec<i64> = store
            .list_builds(filter)
            .await
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(listed, vec![ids[2], ids[1]]);

        // Every connection taken: the read must not fail, it waits for one.
        let held: Vec<_> = (0..8).map(|_| store.pool.get().unwrap()).collect();
        assert!(store.pool.try_get().is_none());
        let waiting = tokio::spawn({
            let store = store.clone();
            let id = ids[0];
            async move { store.get_build(id).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a read went ahead without a connection"
        );
        drop(held);
        let found = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting read never finished")
            .unwrap()
            .unwrap();
        assert_eq!(found.map(|b| b.id), Some(ids[0]));
    }
}
