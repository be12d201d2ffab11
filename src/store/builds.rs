//! Build rows: insert, read, list, move along the status model, delete.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::rows::{self, build_from_row, json_bytes, BUILD_COLUMNS};
use super::{immediate, Changes, ListFilter, Listed, Store, StoreError};
use crate::domain::{Build, NewBuild, Status, TagPlan, Timestamp};

impl Store {
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

    /// Build `id`, or None when there is no such build.
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
        self.list_builds_then(filter, |listed| listed.builds).await
    }

    /// Like [`Store::get_build_then`], for a page of builds, newest first. Rows
    /// are read one at a time: with `max_bytes`, no more is held than the page.
    pub async fn list_builds_then<T, F>(&self, filter: ListFilter, then: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Listed) -> T + Send + 'static,
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
            let mut rows = statement.query(params![
                status,
                filter.before,
                filter.limit as i64,
                filter.submitted_by
            ])?;
            let mut listed = Listed::default();
            let mut bytes = 0;
            while let Some(row) = rows.next()? {
                bytes += json_bytes(row)?;
                if filter.max_bytes.is_some_and(|max| bytes > max) && !listed.builds.is_empty() {
                    listed.cut_short = true;
                    break;
                }
                listed.builds.push(build_from_row(row)??);
            }
            Ok(then(listed))
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

    /// A copy of build `id`'s stored context archive in the staging folder, for
    /// a retry to keep as its own.
    pub async fn stage_copy_of_context(&self, id: i64) -> Result<tempfile::TempPath, StoreError> {
        self.files_blocking(move |files| files.stage_copy_of_context(id))
            .await
    }

    /// The Dockerfile build `id` was submitted with, as stored beside its row.
    pub async fn read_dockerfile(&self, id: i64) -> Result<String, StoreError> {
        self.files_blocking(move |files| files.read_dockerfile(id))
            .await
    }

    /// Keeps the build's provenance document (statement or envelope) beside it.
    pub async fn write_provenance(&self, id: i64, document: Vec<u8>) -> Result<(), StoreError> {
        self.files_blocking(move |files| files.write_provenance(id, &document))
            .await
    }

    /// The build's provenance document; None when it has none.
    pub async fn read_provenance(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.files_blocking(move |files| files.read_provenance(id))
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
pub(super) fn final_statuses() -> String {
    let finals: Vec<String> = Status::ALL
        .iter()
        .filter(|status| status.is_final())
        .map(|status| format!("'{status}'"))
        .collect();
    finals.join(", ")
}

pub(super) fn select_build(conn: &Connection, id: i64) -> Result<Option<Build>, StoreError> {
    let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], build_from_row)
        .optional()?
        .transpose()
}

pub(super) fn transition(
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
    let placeholders: Vec<String> = (10..10 + allowed.len()).map(|n| format!("?{n}")).collect();
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
            platforms = CASE WHEN ?1 = 'queued' THEN '[]' ELSE COALESCE(?8, platforms) END,
            provenance = CASE WHEN ?1 = 'queued' THEN NULL ELSE COALESCE(?9, provenance) END,
            builder = CASE WHEN ?1 = 'queued' THEN NULL ELSE builder END,
            tags_pushed = CASE WHEN ?1 = 'succeeded' THEN '[]' ELSE tags_pushed END
         WHERE id = ?6 AND status IN ({placeholders})"
    );
    let digests = changes.digests.as_ref().map(rows::to_json);
    let platforms = changes.platforms.as_ref().map(rows::to_json);
    let provenance = changes.provenance.as_ref().map(rows::to_json);
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &status,
        &changes.image_id,
        &changes.digest,
        &changes.error,
        &now,
        &id,
        &digests,
        &platforms,
        &provenance,
    ];
    values.extend(allowed.iter().map(|s| s as &dyn rusqlite::ToSql));
    let updated = conn.execute(&sql, values.as_slice())?;
    if updated == 0 {
        return Ok(None);
    }
    select_build(conn, id)
}
