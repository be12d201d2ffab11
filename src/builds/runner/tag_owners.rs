//! Who owns a tag: the build the registry's manifest for it came from, when a
//! push finds it taken over, and the builds told that their tag has moved.

use std::collections::BTreeMap;

use super::error::RunError;
use super::output::Output;
use crate::builds::engine::Engine;
use crate::docker::{Builder, DockerError};
use crate::domain::Build;
use crate::store::PublishedTag;

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

/// The digest the registry confirmed for each tag; a build with no tag to
/// push confirmed nothing, which is no success.
pub(super) fn every_tag_confirmed(
    build: &Build,
    digests: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, RunError> {
    if digests.is_empty() {
        return Err(RunError::Docker(DockerError::Unconfirmed {
            reference: build.repository.clone(),
            reason: "the build has no tags to push".into(),
        }));
    }
    Ok(digests)
}
