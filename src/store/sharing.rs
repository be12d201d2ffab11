//! Builds that share an image or a tag: who else names an image before it is
//! untagged, and whose tag a later build took over.

use std::collections::BTreeMap;

use rusqlite::params;

use super::rows::{self, build_from_row, BUILD_COLUMNS};
use super::{Store, StoreError};
use crate::builds::model::Build;

/// A tag a build has just published (pushed and confirmed, or tagged locally).
#[derive(Debug, Clone)]
pub struct PublishedTag {
    pub by: i64,
    pub repository: String,
    pub tag: String,
    pub image_id: String,
    pub builder: String,
    pub pushed: bool,
}

impl Store {
    /// Every build but `except` whose image is `image_id` on `builder` (or on an
    /// unrecorded builder, from before builders were recorded).
    pub async fn builds_with_image(
        &self,
        image_id: String,
        builder: Option<String>,
        except: i64,
    ) -> Result<Vec<Build>, StoreError> {
        self.blocking(move |conn, _| {
            let sql = format!(
                "SELECT {BUILD_COLUMNS} FROM builds
                 WHERE image_id = ?1 AND id != ?2
                   AND (?3 IS NULL OR builder IS NULL OR builder = ?3)
                 ORDER BY id"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![image_id, except, builder], build_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// Marks the tag as taken over by `published.by` on every succeeded build that
    /// published another image under it where this one now lands: the registry
    /// when both pushed, the builder's local tag when the earlier one did not push.
    /// A tag already marked keeps the build that took it first. Returns the builds
    /// marked now.
    pub async fn record_tag_moved(&self, published: PublishedTag) -> Result<Vec<i64>, StoreError> {
        self.blocking(move |conn, _| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let candidates: Vec<(i64, String, bool, Option<String>, String)> = tx
                .prepare(
                    "SELECT id, tags, push, builder, tag_moved_by FROM builds
                     WHERE status = 'succeeded' AND id != ?1 AND repository = ?2
                       AND image_id IS NOT NULL AND image_id != ?3
                     ORDER BY id",
                )?
                .query_map(
                    params![published.by, published.repository, published.image_id],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?;
            let mut marked = Vec::new();
            for (id, tags, pushed, builder, moved) in candidates {
                let corrupt = |what: &str| StoreError::Corrupt(format!("build {id}: {what}"));
                let tags: Vec<String> =
                    serde_json::from_str(&tags).map_err(|_| corrupt("bad tags"))?;
                let mut moved: BTreeMap<String, i64> =
                    serde_json::from_str(&moved).map_err(|_| corrupt("bad tag_moved_by"))?;
                let same_place = if pushed {
                    published.pushed
                } else {
                    builder.as_deref() == Some(published.builder.as_str())
                };
                if !same_place
                    || !tags.contains(&published.tag)
                    || moved.contains_key(&published.tag)
                {
                    continue;
                }
                moved.insert(published.tag.clone(), published.by);
                tx.execute(
                    "UPDATE builds SET tag_moved_by = ?2 WHERE id = ?1",
                    params![id, rows::to_json(&moved)],
                )?;
                marked.push(id);
            }
            tx.commit()?;
            Ok(marked)
        })
        .await
    }

    /// Sets the image of a build that is still `building`; false when it is not.
    pub async fn record_image(&self, id: i64, image_id: String) -> Result<bool, StoreError> {
        self.blocking(move |conn, _| {
            let updated = conn.execute(
                "UPDATE builds SET image_id = ?2 WHERE id = ?1 AND status = 'building'",
                params![id, image_id],
            )?;
            Ok(updated == 1)
        })
        .await
    }

    /// The newest build of `repository` that the registry confirmed `digest` for.
    pub async fn build_with_digest(
        &self,
        repository: String,
        digest: String,
    ) -> Result<Option<i64>, StoreError> {
        self.blocking(move |conn, _| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM builds
                 WHERE repository = ?1 AND EXISTS (SELECT 1 FROM json_each(digests) WHERE value = ?2)
                 ORDER BY id DESC LIMIT 1",
            )?;
            let mut ids = statement.query_map(params![repository, digest], |row| row.get(0))?;
            Ok(ids.next().transpose()?)
        })
        .await
    }
}
