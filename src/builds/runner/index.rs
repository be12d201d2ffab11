//! An image index put under every tag of a build, read back from each, and
//! whose tags it took over noted: how a build of several platforms ends, and
//! any pushed build with provenance (its attestation is in the index).

use std::collections::BTreeMap;

use super::error::RunError;
use super::output::Output;
use super::tag_owners::{every_tag_confirmed, note_taken_over, taken_over_by};
use crate::builds::engine::Engine;
use crate::docker::{Builder, DockerError};
use crate::domain::{Build, Credentials, PushPhase};
use crate::registry::ImageIndex;
use crate::sync::Locked;

/// Under the build's publish locks: `index` put under every tag and read back;
/// returns the digest the registry confirmed for each.
pub(super) async fn put_index_under_tags(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    image_id: &str,
    index: &ImageIndex,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<BTreeMap<String, String>, RunError> {
    let registry = &engine.settings.registry;
    let images = index
        .manifests
        .iter()
        .filter(|entry| entry.annotations.is_none())
        .count();
    let attestations = index.manifests.len() - images;
    let mut digests = BTreeMap::new();
    // What a failed or cancelled run records as maybe pushed names this image.
    let _ = output.image_id.set(image_id.to_string());
    for tag in &build.tags {
        let reference = format!("{}:{tag}", build.repository);
        // Once sent, the index may be served under the tag, whatever follows.
        output
            .pushes
            .locked()
            .insert(tag.clone(), PushPhase::index_sent());
        let digest = registry
            .put_index(&build.repository, tag, index, push_login)
            .await?;
        confirm_index(engine, build, tag, &digest, push_login).await?;
        output.log.line(format!(
            "dockpub: registry confirmed {reference} at {digest} (an index of {images} platform(s), \
             {attestations} attestation(s))"
        ));
        digests.insert(tag.clone(), digest);
        note_taken_over(engine, build, builder, image_id, tag, output).await?;
    }
    every_tag_confirmed(build, digests)
}

/// The registry serves the index just put under `tag`, not another manifest.
async fn confirm_index(
    engine: &Engine,
    build: &Build,
    tag: &str,
    digest: &str,
    push_login: Option<&Credentials>,
) -> Result<(), RunError> {
    let reference = format!("{}:{tag}", build.repository);
    let served = engine
        .settings
        .registry
        .manifest(&build.repository, tag, push_login)
        .await?;
    if served.digest == digest {
        return Ok(());
    }
    let other = DockerError::RegistryServesOther {
        reference,
        serves: served.digest,
        pushed_digest: digest.to_string(),
    };
    Err(taken_over_by(engine, &build.repository, other).await)
}
