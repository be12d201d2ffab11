//! The `trigger_deliveries` table: push events triggers accepted, for the
//! trigger list and for matching a redelivery to the build it already made.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Row};

use super::{immediate, Seen, Store, StoreError};
use crate::domain::Timestamp;

/// Rows kept per trigger; older ones go as new ones come.
const KEPT_PER_TRIGGER: i64 = 200;

/// One accepted push event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerDelivery {
    /// The `[[triggers]]` entry's name.
    pub trigger: String,
    /// The forge's id of the delivery, when it sent one; a repeated id is a
    /// redelivery.
    pub delivery_id: Option<String>,
    /// The pushed ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// The commit the ref was pushed to.
    pub commit: String,
    /// `repository:tag,tag`: what the commit was built to.
    pub target: String,
    /// What came of it: `built` or `duplicate`.
    pub outcome: String,
    /// The build it queued, if any.
    pub build_id: Option<i64>,
    /// When the event arrived.
    pub received_at: Timestamp,
}

impl Store {
    /// Records a delivery and forgets the trigger's oldest beyond the kept number.
    pub async fn record_trigger_delivery(
        &self,
        delivery: TriggerDelivery,
    ) -> Result<(), StoreError> {
        self.write_seen(Seen::Elsewhere, move |conn, _| {
            let tx = immediate(conn)?;
            tx.execute(
                "INSERT INTO trigger_deliveries (trigger_name, delivery_id, git_ref, commit_sha,
                                                 target, outcome, build_id, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    delivery.trigger,
                    delivery.delivery_id,
                    delivery.git_ref,
                    delivery.commit,
                    delivery.target,
                    delivery.outcome,
                    delivery.build_id,
                    delivery.received_at.to_rfc3339(),
                ],
            )?;
            tx.execute(
                "DELETE FROM trigger_deliveries WHERE trigger_name = ?1 AND id NOT IN
                   (SELECT id FROM trigger_deliveries WHERE trigger_name = ?1
                    ORDER BY id DESC LIMIT ?2)",
                params![delivery.trigger, KEPT_PER_TRIGGER],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The build an earlier delivery made or was matched to, when it still
    /// exists: the same delivery id, or the same commit built to the same
    /// target by a delivery since `since` (one that built: a duplicate does not
    /// stretch the window).
    pub async fn earlier_trigger_build(
        &self,
        trigger: &str,
        delivery_id: Option<&str>,
        commit: &str,
        target: &str,
        since: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        let (trigger, commit, target) =
            (trigger.to_string(), commit.to_string(), target.to_string());
        let delivery_id = delivery_id.map(str::to_string);
        self.read(move |conn| {
            let found = conn
                .query_row(
                    "SELECT d.build_id FROM trigger_deliveries d JOIN builds b ON b.id = d.build_id
                     WHERE d.trigger_name = ?1
                       AND ((?2 IS NOT NULL AND d.delivery_id = ?2)
                            OR (d.outcome = 'built' AND d.commit_sha = ?3 AND d.target = ?4
                                AND d.received_at >= ?5))
                     ORDER BY d.id DESC LIMIT 1",
                    params![trigger, delivery_id, commit, target, since.to_rfc3339()],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(found)
        })
        .await
    }

    /// The pushed tags of build `by`, a build of `trigger`, that a later build
    /// of the same trigger has already pushed, each with the newest such build.
    /// They are recorded on `by` as moved (`tag_moved_by`), and `by` leaves
    /// them alone: a tag never goes back to an earlier event's commit because
    /// that build finished last. Call it under the tags' publish locks.
    pub async fn leave_tags_to_later_trigger_builds(
        &self,
        by: i64,
        repository: String,
        trigger: String,
        tags: Vec<String>,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        self.write(move |conn, _| {
            let tx = immediate(conn)?;
            let mut left = BTreeMap::new();
            {
                let mut later = tx.prepare_cached(
                    "SELECT MAX(id) FROM builds
                     WHERE id > ?1 AND repository = ?2 AND status = 'succeeded' AND push
                       AND json_extract(source, '$.trigger.name') = ?3
                       AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?4)",
                )?;
                for tag in tags {
                    let found: Option<i64> =
                        later.query_row(params![by, repository, trigger, tag], |row| row.get(0))?;
                    left.extend(found.map(|id| (tag, id)));
                }
            }
            if !left.is_empty() {
                let moved: String = tx.query_row(
                    "SELECT tag_moved_by FROM builds WHERE id = ?1",
                    [by],
                    |row| row.get(0),
                )?;
                let mut moved: BTreeMap<String, i64> = serde_json::from_str(&moved)
                    .map_err(|_| StoreError::Corrupt(format!("build {by}: bad tag_moved_by")))?;
                for (tag, id) in &left {
                    moved.entry(tag.clone()).or_insert(*id);
                }
                tx.execute(
                    "UPDATE builds SET tag_moved_by = ?2 WHERE id = ?1",
                    params![by, super::rows::to_json(&moved)],
                )?;
            }
            tx.commit()?;
            Ok(left)
        })
        .await
    }

    /// Each trigger's newest delivery, by trigger name.
    pub async fn last_trigger_deliveries(&self) -> Result<Vec<TriggerDelivery>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT trigger_name, delivery_id, git_ref, commit_sha, target, outcome, build_id,
                        received_at
                 FROM trigger_deliveries
                 WHERE id IN (SELECT MAX(id) FROM trigger_deliveries GROUP BY trigger_name)",
            )?;
            let rows = statement.query_map([], delivery_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// Each of `triggers`' newest build that still exists, delivered or run by hand.
    pub async fn last_trigger_builds(
        &self,
        triggers: Vec<String>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(move |conn| {
            // The expression is the index's (migration 009), so each is a lookup.
            let mut statement = conn.prepare_cached(
                "SELECT MAX(id) FROM builds WHERE json_extract(source, '$.trigger.name') = ?1",
            )?;
            let mut found = Vec::new();
            for name in triggers {
                let id: Option<i64> = statement.query_row([&name], |row| row.get(0))?;
                found.extend(id.map(|id| (name, id)));
            }
            Ok(found)
        })
        .await
    }
}

fn delivery_from_row(row: &Row) -> rusqlite::Result<Result<TriggerDelivery, StoreError>> {
    let received_at: String = row.get(7)?;
    let Some(received_at) = Timestamp::parse(&received_at) else {
        return Ok(Err(StoreError::Corrupt("bad trigger delivery time".into())));
    };
    Ok(Ok(TriggerDelivery {
        trigger: row.get(0)?,
        delivery_id: row.get(1)?,
        git_ref: row.get(2)?,
        commit: row.get(3)?,
        target: row.get(4)?,
        outcome: row.get(5)?,
        build_id: row.get(6)?,
        received_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn delivery(id: &str, outcome: &str, build_id: i64, minutes_ago: i64) -> TriggerDelivery {
        TriggerDelivery {
            trigger: "app".into(),
            delivery_id: Some(id.into()),
            git_ref: "refs/heads/main".into(),
            commit: "a".repeat(40),
            target: "r/app:main".into(),
            outcome: outcome.into(),
            build_id: Some(build_id),
            received_at: Timestamp(Utc::now() - Duration::minutes(minutes_ago)),
        }
    }

    #[tokio::test]
    async fn only_the_delivery_that_built_opens_the_window_duplicates_do_not_stretch_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let build = store
            .insert_build(crate::store::tests::new_build(0), usize::MAX, |_| {})
            .await
            .unwrap()
            .id;
        // Built 20 minutes ago; duplicates of it came 15 and 1 minutes ago.
        for (id, outcome, ago) in [
            ("d1", "built", 20),
            ("d2", "duplicate", 15),
            ("d3", "duplicate", 1),
        ] {
            store
                .record_trigger_delivery(delivery(id, outcome, build, ago))
                .await
                .unwrap();
        }
        let commit = "a".repeat(40);
        let earlier = |delivery_id: Option<&'static str>, window_minutes: i64| {
            let store = store.clone();
            let commit = commit.clone();
            async move {
                let since = Timestamp(Utc::now() - Duration::minutes(window_minutes));
                store
                    .earlier_trigger_build("app", delivery_id, &commit, "r/app:main", since)
                    .await
                    .unwrap()
            }
        };
        // A 10-minute window: the build is older than it, whatever duplicates came since.
        assert_eq!(earlier(Some("d4"), 10).await, None);
        assert_eq!(earlier(None, 10).await, None);
        // A 30-minute window holds it; a known delivery id finds it at any age.
        assert_eq!(earlier(None, 30).await, Some(build));
        assert_eq!(earlier(Some("d3"), 10).await, Some(build));
    }
}
