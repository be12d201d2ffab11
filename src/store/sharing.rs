//! Builds that share an image or a tag: who else names an image before it is
//! untagged, and whose tag a later build took over.

use std::collections::BTreeMap;

use rusqlite::params;

use super::rows::{self, build_from_row, BUILD_COLUMNS};
use super::{Store, StoreError};
use crate::domain::Build;

/// See [`Store::record_tag_moved`].
fn mark_moved(
    tx: &rusqlite::Transaction<'_>,
    published: &PublishedTag,
) -> Result<Vec<i64>, StoreError> {
    type Candidate = (i64, String, bool, Option<String>, String, String, String);
    let candidates: Vec<Candidate> = tx
        .prepare(
            "SELECT id, tags, push, builder, tag_moved_by, status, tags_pushed FROM builds
             WHERE (status = 'succeeded' OR tags_pushed != '[]') AND id != ?1 AND repository = ?2
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
                    row.get(5)?,
                    row.get(6)?,
                ))
            },
        )?
        .collect::<Result<_, _>>()?;
    let mut marked = Vec::new();
    for (id, tags, pushed, builder, moved, status, tags_pushed) in candidates {
        let corrupt = |what: &str| StoreError::Corrupt(format!("build {id}: {what}"));
        // A build that did not succeed holds only the tags its push may have written.
        let held = if status == "succeeded" {
            tags
        } else {
            tags_pushed
        };
        let tags: Vec<String> = serde_json::from_str(&held).map_err(|_| corrupt("bad tags"))?;
        let mut moved: BTreeMap<String, i64> =
            serde_json::from_str(&moved).map_err(|_| corrupt("bad tag_moved_by"))?;
        let same_place = if pushed {
            published.pushed
        } else {
            builder.as_deref() == Some(published.builder.as_str())
        };
        if !same_place || !tags.contains(&published.tag) || moved.contains_key(&published.tag) {
            continue;
        }
        moved.insert(published.tag.clone(), published.by);
        tx.execute(
            "UPDATE builds SET tag_moved_by = ?2 WHERE id = ?1",
            params![id, rows::to_json(&moved)],
        )?;
        marked.push(id);
    }
    Ok(marked)
}

/// A tag a build has just published (pushed and confirmed, or tagged locally).
#[derive(Debug, Clone)]
pub struct PublishedTag {
    /// The build that published it.
    pub by: i64,
    /// The image's repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The image the tag now names.
    pub image_id: String,
    /// The builder the image was built on (and where a local tag lives).
    pub builder: String,
    /// Pushed to the registry, rather than only tagged on the builder.
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
        self.read(move |conn| {
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

    /// Marks the tag as taken over by `published.by` on every build that
    /// published another image under it where this one now lands: the registry
    /// when both pushed, the builder's local tag when the earlier one did not push.
    /// Those builds are the succeeded ones, and the others whose push may have
    /// reached the registry (`tags_pushed`). A tag already marked keeps the build
    /// that took it first. Returns the builds marked now.
    pub async fn record_tag_moved(&self, published: PublishedTag) -> Result<Vec<i64>, StoreError> {
        self.write(move |conn, _| {
            let tx = super::immediate(conn)?;
            let marked = mark_moved(&tx, &published)?;
            tx.commit()?;
            Ok(marked)
        })
        .await
    }

    /// A push of a build that did not succeed but may have reached the
    /// registry: the tag goes in its `tags_pushed`, and the builds that had the
    /// tag before are marked as taken over, as by a confirmed push. Returns the
    /// builds marked now.
    pub async fn record_tag_maybe_pushed(
        &self,
        published: PublishedTag,
    ) -> Result<Vec<i64>, StoreError> {
        self.write(move |conn, _| {
            let tx = super::immediate(conn)?;
            let listed: String = tx.query_row(
                "SELECT tags_pushed FROM builds WHERE id = ?1",
                [published.by],
                |row| row.get(0),
            )?;
            let mut listed: Vec<String> = serde_json::from_str(&listed).map_err(|_| {
                StoreError::Corrupt(format!("build {}: bad tags_pushed", published.by))
            })?;
            if !listed.contains(&published.tag) {
                listed.push(published.tag.clone());
                tx.execute(
                    "UPDATE builds SET tags_pushed = ?2 WHERE id = ?1",
                    params![published.by, rows::tags_to_json(&listed)],
                )?;
            }
            let marked = mark_moved(&tx, &published)?;
            tx.commit()?;
            Ok(marked)
        })
        .await
    }

    /// Sets the image of a build that is still `building`; false when it is not.
    pub async fn record_image(&self, id: i64, image_id: String) -> Result<bool, StoreError> {
        self.write(move |conn, _| {
            let tx = super::immediate(conn)?;
            let updated = tx.execute(
                "UPDATE builds SET image_id = ?2 WHERE id = ?1 AND status = 'building'",
                params![id, image_id],
            )?;
            tx.commit()?;
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
        self.read(move |conn| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;
    use crate::domain::TagPlan;
    use crate::store::Changes;

    /// A succeeded build of `store/app` on `builder` with image `image_id`.
    async fn succeeded(
        store: &Store,
        tags: &[&str],
        push: bool,
        builder: &str,
        image_id: &str,
    ) -> i64 {
        let mut new = crate::store::tests::new_build(0);
        new.tags = TagPlan::Listed(tags.iter().map(|t| t.to_string()).collect());
        new.push = push;
        let id = store
            .insert_build(new, usize::MAX, |_| {})
            .await
            .unwrap()
            .id;
        let claimed = store
            .claim_next_queued(builder.into(), Vec::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, id);
        let changes = Changes {
            image_id: Some(image_id.into()),
            ..Changes::default()
        };
        store
            .transition(id, None, Status::Succeeded, changes)
            .await
            .unwrap()
            .unwrap();
        id
    }

    fn published(by: i64, tag: &str, image_id: &str, builder: &str, pushed: bool) -> PublishedTag {
        PublishedTag {
            by,
            repository: "store/app".into(),
            tag: tag.into(),
            image_id: image_id.into(),
            builder: builder.into(),
            pushed,
        }
    }

    async fn moved(store: &Store, id: i64) -> BTreeMap<String, i64> {
        store.get_build(id).await.unwrap().unwrap().tag_moved_by
    }

    #[tokio::test]
    async fn a_tag_moves_from_builds_of_another_image_where_it_was_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pushed = succeeded(&store, &["v1", "v2"], true, "a", "sha256:1").await;
        let local_here = succeeded(&store, &["v1"], false, "a", "sha256:2").await;
        let local_elsewhere = succeeded(&store, &["v1"], false, "b", "sha256:3").await;
        let same_image = succeeded(&store, &["v1"], true, "b", "sha256:4").await;

        let marked = store
            .record_tag_moved(published(100, "v1", "sha256:4", "a", true))
            .await
            .unwrap();
        assert_eq!(marked, vec![pushed, local_here]);
        assert_eq!(
            moved(&store, pushed).await,
            BTreeMap::from([("v1".into(), 100)])
        );
        assert!(moved(&store, local_elsewhere).await.is_empty());
        assert!(moved(&store, same_image).await.is_empty());

        // On builder b, both the pushed tag and b's local tag move. The first
        // build to take a tag over stays recorded; a build-only one does not
        // move a pushed tag.
        let marked = store
            .record_tag_moved(published(101, "v1", "sha256:5", "b", true))
            .await
            .unwrap();
        assert_eq!(marked, vec![local_elsewhere, same_image]);
        assert_eq!(moved(&store, pushed).await["v1"], 100);
        let marked = store
            .record_tag_moved(published(102, "v2", "sha256:6", "a", false))
            .await
            .unwrap();
        assert!(marked.is_empty());
    }
}
