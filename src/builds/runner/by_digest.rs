//! A platform's image pushed by digest: under the tag
//! `dockpub-platform-OS-ARCH[-VARIANT]` of the build's repository (the Engine
//! API pushes only by name), under a publish lock of that tag, then read back
//! from the registry by digest: its config must be the image built.

use super::error::RunError;
use super::output::Output;
use crate::builds::engine::Engine;
use crate::docker::{Builder, DockerError};
use crate::domain::{Build, Credentials, PlatformImage, PlatformPhase};
use crate::registry::{IndexEntry, IndexPlatform, Registry};

/// One platform, built and pushed by digest.
pub(super) struct Built {
    pub(super) image: PlatformImage,
    pub(super) entry: IndexEntry,
}

/// `dockpub-platform-OS-ARCH[-VARIANT]`: the tag a platform's image is pushed under.
pub(super) fn platform_tag(platform: &str) -> String {
    format!("dockpub-platform-{}", platform.replace('/', "-"))
}

/// Pushes the platform's image under its platform tag, then asks the registry
/// for the manifest by digest: its config must be the image built.
pub(super) async fn push_by_digest(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    platform: &str,
    image_id: &str,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Built, RunError> {
    let Some(index_platform) = IndexPlatform::parse(platform) else {
        return Err(RunError::Docker(DockerError::BuildFailed(format!(
            "'{platform}' is not os/arch[/variant]"
        ))));
    };
    let repository = &build.repository;
    let tag = platform_tag(platform);
    let reference = format!("{repository}:{tag}");
    output
        .progress
        .platform_phase(platform, PlatformPhase::Pushing);
    let digest = {
        let _publishing = engine.publish_locks.lock(&reference).await;
        {
            let _tagging = engine.tag_locks.lock(&reference).await;
            builder.tag(image_id, repository, &tag).await?;
        }
        builder
            .push(
                image_id,
                repository,
                &tag,
                push_login,
                engine.settings.push_idle_timeout,
                |update| output.platform_push_update(platform, &update),
            )
            .await?
    };
    let registry: &Registry = &engine.settings.registry;
    let manifest = registry.manifest(repository, &digest, push_login).await?;
    let config = registry
        .config_digest(repository, &digest, push_login)
        .await?;
    if config != image_id {
        return Err(RunError::Docker(DockerError::PushedAnotherImage {
            reference,
            image_id: image_id.to_string(),
            pushed_digest: digest,
        }));
    }
    output.platform_line(
        platform,
        format!("dockpub: registry serves {repository}@{digest}, the image built"),
    );
    Ok(Built {
        image: PlatformImage {
            platform: platform.to_string(),
            image_id: image_id.to_string(),
            digest: digest.clone(),
        },
        entry: IndexEntry {
            media_type: manifest.media_type,
            digest,
            size: manifest.bytes.len() as u64,
            platform: Some(index_platform),
            annotations: None,
        },
    })
}
