//! Publishing a built image: its tags applied, pushed and confirmed under the
//! build's publish locks, and the builds whose tags it took over told.

use std::collections::BTreeMap;

use super::attest::{attest, PushedImage};
use super::by_digest::{platform_tag, push_by_digest};
use super::error::RunError;
use super::index::put_index_under_tags;
use super::output::{Outcome, Output};
use super::tag_owners::{every_tag_confirmed, note_taken_over, taken_over_by};
use crate::builds::engine::Engine;
use crate::builds::local_tags;
use crate::docker::{Builder, DockerError};
use crate::domain::{Build, Credentials, ProvenanceRecord, Status};
use crate::registry::ImageIndex;
use crate::store::{Changes, PublishedTag};
use crate::sync::Locked;

/// Under the build's publish locks: applies its tags, pushes and confirms them,
/// and notes whose tags it took over. The locks stay held (in the outcome) until
/// the build's end is recorded.
pub(super) async fn publish(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    image_id: String,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Outcome, RunError> {
    record_image(engine, build, &image_id).await?;
    let publish_locks = engine
        .publish_locks
        .lock_all(build.image_references())
        .await;
    *output.publish_locks.locked() = Some(publish_locks);
    let kept_tags;
    let build = match leave_to_later_trigger_builds(engine, build, output).await? {
        Some(tags) => {
            kept_tags = Build {
                tags,
                ..build.clone()
            };
            &kept_tags
        }
        None => build,
    };
    apply_tags(engine, build, builder, &image_id).await?;
    let mut provenance = None;
    let digests = if build.push && build.tags.is_empty() {
        // Every tag went to later builds of its trigger: nothing to push.
        BTreeMap::new()
    } else if build.push && engine.settings.provenance.enabled {
        let (digests, record) =
            push_attested(engine, build, builder, &image_id, push_login, output).await?;
        provenance = Some(record);
        digests
    } else if build.push {
        push_tags(engine, build, builder, &image_id, push_login, output).await?
    } else {
        for tag in &build.tags {
            note_taken_over(engine, build, builder, &image_id, tag, output).await?;
        }
        BTreeMap::new()
    };
    let publish_locks = output
        .publish_locks
        .locked()
        .take()
        .expect("the publish locks were taken above");
    Ok(Outcome {
        image_id,
        digests,
        publish_locks,
        platforms: Vec::new(),
        provenance,
    })
}

/// With provenance, as buildx pushes one platform: the image pushed by digest
/// (under its platform tag), its attestation, then an index of the two put
/// under every tag. Returns the digest confirmed per tag.
async fn push_attested(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    image_id: &str,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<(BTreeMap<String, String>, ProvenanceRecord), RunError> {
    let platform = match build.options.platform.as_deref() {
        Some(platform) => platform.to_string(),
        None => builder.image_platform(image_id).await?,
    };
    // Its lock is taken for the push, under the build's own: never twice.
    let platform_tag = platform_tag(&platform);
    if build.tags.contains(&platform_tag) {
        return Err(RunError::Provenance(format!(
            "{}:{platform_tag} is where dockpub pushes the image before the index with its              attestation: use another tag, or turn provenance off",
            build.repository
        )));
    }
    let built = push_by_digest(
        engine, build, builder, &platform, image_id, push_login, output,
    )
    .await?;
    let image = PushedImage {
        platform: &platform,
        digest: &built.image.digest,
    };
    let attested = attest(engine, build, builder, &[image], push_login, output).await?;
    let mut entries = vec![built.entry];
    entries.extend(attested.entries);
    let index = ImageIndex::new(entries);
    let digests =
        put_index_under_tags(engine, build, builder, image_id, &index, push_login, output).await?;
    Ok((digests, attested.record))
}

/// A trigger's pushed build leaves the tags a later build of the same trigger
/// already pushed (a later event, so a newer commit of the ref): the tags it
/// keeps, or None when it keeps them all.
async fn leave_to_later_trigger_builds(
    engine: &Engine,
    build: &Build,
    output: &Output,
) -> Result<Option<Vec<String>>, RunError> {
    let trigger = build.source.as_ref().and_then(|s| s.trigger.as_ref());
    let Some(trigger) = trigger.filter(|_| build.push) else {
        return Ok(None);
    };
    let left = engine
        .store
        .leave_tags_to_later_trigger_builds(
            build.id,
            build.repository.clone(),
            trigger.name.clone(),
            build.tags.clone(),
        )
        .await?;
    if left.is_empty() {
        return Ok(None);
    }
    for (tag, later) in &left {
        output.log.line(format!(
            "dockpub: {}:{tag} is left to build {later}, a later build of trigger '{}' that pushed it first",
            build.repository, trigger.name
        ));
    }
    let kept = build.tags.iter().filter(|tag| !left.contains_key(*tag));
    Ok(Some(kept.cloned().collect()))
}

/// The image goes on the record before any tag names it: a delete of another
/// build that checks whether a tag is still needed then sees this build.
pub(super) async fn record_image(
    engine: &Engine,
    build: &Build,
    image_id: &str,
) -> Result<(), RunError> {
    let recorded = if build.push {
        let changes = Changes {
            image_id: Some(image_id.to_string()),
            ..Changes::default()
        };
        let pushing = engine
            .transition(build.id, Status::Pushing, changes)
            .await?;
        pushing.is_some()
    } else {
        engine
            .store
            .record_image(build.id, image_id.to_string())
            .await?
    };
    if !recorded {
        return Err(RunError::Interrupted(Status::Building));
    }
    Ok(())
}

async fn apply_tags(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    image_id: &str,
) -> Result<(), RunError> {
    let _tag_locks = local_tags::lock(engine, build).await;
    for tag in &build.tags {
        builder.tag(image_id, &build.repository, tag).await?;
    }
    Ok(())
}

/// Pushes every tag; returns the digest the registry confirmed for each.
async fn push_tags(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    image_id: &str,
    credentials: Option<&Credentials>,
    output: &Output,
) -> Result<BTreeMap<String, String>, RunError> {
    let mut digests = BTreeMap::new();
    for tag in &build.tags {
        let pushed = builder
            .push(
                image_id,
                &build.repository,
                tag,
                credentials,
                engine.settings.push_idle_timeout,
                |update| output.push_update(tag, &update),
            )
            .await;
        let digest = match pushed {
            Ok(digest) => digest,
            Err(err) => {
                if matches!(err, DockerError::RegistryServesOther { .. }) {
                    // The registry said what it serves: not this push's manifest.
                    output.pushes.locked().remove(tag);
                }
                return Err(taken_over_by(engine, &build.repository, err).await);
            }
        };
        let reference = format!("{}:{tag}", build.repository);
        output.log.line(format!(
            "dockpub: registry confirmed {reference} at {digest}"
        ));
        digests.insert(tag.clone(), digest);
        note_taken_over(engine, build, builder, image_id, tag, output).await?;
    }
    every_tag_confirmed(build, digests)
}

/// After a push that did not end confirmed (it failed, was cancelled, or its
/// builder was lost): every tag whose manifest may have reached the registry
/// is recorded on this build (`tags_pushed`) and on the builds that had the
/// tag before (`tag_moved_by`), so the record never claims a tag the registry
/// may no longer serve. Runs under the build's publish locks, still held.
pub(super) async fn record_maybe_pushed(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    output: &Output,
) {
    let Some(image_id) = output.image_id.get() else {
        return;
    };
    for tag in output.tags_maybe_pushed() {
        let published = PublishedTag {
            by: build.id,
            repository: build.repository.clone(),
            tag: tag.clone(),
            image_id: image_id.clone(),
            builder: builder.name().to_string(),
            pushed: true,
        };
        let reference = format!("{}:{tag}", build.repository);
        match engine.store.record_tag_maybe_pushed(published).await {
            Ok(moved_from) => {
                let ids: Vec<String> = moved_from.iter().map(i64::to_string).collect();
                let earlier = if ids.is_empty() {
                    String::new()
                } else {
                    format!("; build {} no longer says it owns the tag", ids.join(", "))
                };
                output.log.line(format!(
                    "dockpub: the push of {reference} may have reached the registry: it may serve this build's image{earlier}"
                ));
            }
            Err(err) => {
                log::error!(
                    "build {}: cannot record that {reference} may have been pushed: {err}",
                    build.id
                );
                output.log.line(format!(
                    "dockpub: the push of {reference} may have reached the registry, and this could not be recorded: {err}"
                ));
            }
        }
    }
}
