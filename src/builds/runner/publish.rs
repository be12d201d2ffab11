//! Publishing a built image: its tags applied, pushed and confirmed under the
//! build's publish locks, and the builds whose tags it took over told.

use std::collections::BTreeMap;

use super::error::RunError;
use super::output::{Outcome, Output};
use crate::builds::engine::Engine;
use crate::builds::local_tags;
use crate::docker::{Builder, DockerError};
use crate::domain::{Build, Credentials, Status};
use crate::store::{Changes, PublishedTag};

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
    apply_tags(engine, build, builder, &image_id).await?;
    let digests = if build.push {
        push_tags(engine, build, builder, &image_id, push_login, output).await?
    } else {
        for tag in &build.tags {
            note_taken_over(engine, build, builder, &image_id, tag, output).await?;
        }
        BTreeMap::new()
    };
    Ok(Outcome {
        image_id,
        digests,
        publish_locks,
        platforms: Vec::new(),
    })
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
            .push(image_id, &build.repository, tag, credentials, |update| {
                output.progress.push_update(&update);
                output.log.line(update.line());
            })
            .await;
        let digest = match pushed {
            Ok(digest) => digest,
            Err(err) => return Err(taken_over_by(engine, &build.repository, err).await),
        };
        let reference = format!("{}:{tag}", build.repository);
        output.log.line(format!(
            "dockpub: registry confirmed {reference} at {digest}"
        ));
        digests.insert(tag.clone(), digest);
        note_taken_over(engine, build, builder, image_id, tag, output).await?;
    }
    if digests.is_empty() {
        return Err(RunError::Docker(DockerError::Unconfirmed {
            reference: build.repository.clone(),
            reason: "the build has no tags to push".into(),
        }));
    }
    Ok(digests)
}

/// When the registry serves another manifest for the tag, names the build that
/// pushed it if dockpub knows it.
pub(super) async fn taken_over_by(engine: &Engine, repository: &str, err: DockerError) -> RunError {
    let DockerError::RegistryServesOther { serves, .. } = &err else {
        return err.into();
    };
    let by = engine
        .store
        .build_with_digest(repository.to_string(), serves.clone())
        .await
        .unwrap_or_else(|lookup| {
            log::warn!("cannot look up which build pushed {serves}: {lookup}");
            None
        });
    RunError::TagTakenOver { taken: err, by }
}

/// Records on the builds that published another image under `tag` before this
/// one that their tag has moved, and says so in this build's log.
pub(super) async fn note_taken_over(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    image_id: &str,
    tag: &str,
    output: &Output,
) -> Result<(), RunError> {
    let published = PublishedTag {
        by: build.id,
        repository: build.repository.clone(),
        tag: tag.to_string(),
        image_id: image_id.to_string(),
        builder: builder.name().to_string(),
        pushed: build.push,
    };
    let moved_from = engine.store.record_tag_moved(published).await?;
    if !moved_from.is_empty() {
        let ids: Vec<String> = moved_from.iter().map(i64::to_string).collect();
        output.log.line(format!(
            "dockpub: {}:{tag} now names this build's image; it moved from build {}",
            build.repository,
            ids.join(", ")
        ));
    }
    Ok(())
}
