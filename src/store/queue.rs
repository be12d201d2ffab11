//! The queue as SQLite keeps it: claiming the next build for a builder, putting
//! interrupted builds back, and the counts and lists that retention, the queue
//! deadline and the metrics read.

use rusqlite::{params, OptionalExtension};

use super::builds::{final_statuses, select_build, transition};
use super::rows;
use super::{immediate, Changes, Store, StoreError};
use crate::domain::{Build, Status, Timestamp};

impl Store {
    /// Moves the oldest queued build that `builder` can run (one that asks for no
    /// platform, or for at least one of `platforms`) to `building` on it, counting the
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
                    // A build of several platforms (`a,b`) goes to a builder that
                    // offers one of them; the run finds builders for the others.
                    "SELECT id FROM builds WHERE status = 'queued'
                       AND (json_extract(options, '$.platform') IS NULL
                            OR EXISTS (SELECT 1 FROM json_each(?1) WHERE instr(
                                ',' || json_extract(options, '$.platform') || ',',
                                ',' || value || ',') > 0))
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
    /// until that many builds succeeded), unless it owns a tag a kept build of
    /// another image names too: the build that finished last owns a tag even
    /// when its id is lower, and pruning it would take away the tag's local
    /// name. Oldest first.
    pub async fn prunable_builds(
        &self,
        finished_before: Option<Timestamp>,
        keep_last: Option<usize>,
    ) -> Result<Vec<i64>, StoreError> {
        self.read(move |conn| {
            let finals = final_statuses();
            let sql = format!(
                "WITH cutoff AS (SELECT id FROM builds WHERE status = 'succeeded'
                                 ORDER BY id DESC LIMIT 1 OFFSET ?2 - 1)
                 SELECT id FROM builds b
                 WHERE status IN ({finals}) AND (?1 IS NULL OR finished_at < ?1)
                   AND (?2 IS NULL OR ?2 = 0 OR (
                        id < (SELECT id FROM cutoff)
                        AND NOT EXISTS (
                            SELECT 1 FROM json_each(b.tags) owned, builds kept, json_each(kept.tags) named
                            WHERE b.status = 'succeeded'
                              AND NOT EXISTS (SELECT 1 FROM json_each(b.tag_moved_by) moved
                                              WHERE moved.key = owned.value)
                              AND kept.repository = b.repository
                              AND kept.id >= (SELECT id FROM cutoff)
                              AND kept.image_id IS NOT b.image_id
                              AND named.value = owned.value)))
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
}
