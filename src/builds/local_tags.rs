//! Taking a build's local tags back (delete, retention, cancel) without taking
//! what another build still names: a tag goes only while no other remaining build
//! on that builder names it with the same image, and an image's last tag stays
//! while another build's record names that image.

use std::fmt;

use super::engine::Engine;
use super::BuildError;
use crate::docker::Builder;
use crate::domain::Build;
use crate::named_locks::HeldLocks;

/// What happened to one of the build's local tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    Removed {
        reference: String,
    },
    /// Another build names this tag with the same image.
    KeptTag {
        reference: String,
        by: i64,
    },
    /// The image's last tag, and another build's image.
    KeptImage {
        reference: String,
        by: i64,
    },
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Release::Removed { reference } => write!(f, "removed local tag {reference}"),
            Release::KeptTag { reference, by } => {
                write!(f, "kept local tag {reference}: build {by} names it too")
            }
            Release::KeptImage { reference, by } => write!(
                f,
                "kept local tag {reference}: it is the last tag of build {by}'s image"
            ),
        }
    }
}

/// The per-tag locks [`release`] must be called under: the ones a build holds
/// while it applies its tags.
pub async fn lock(engine: &Engine, build: &Build) -> HeldLocks {
    engine.tag_locks.lock_all(build.image_references()).await
}

/// Removes `build`'s tags on `builder` that still name `image_id` and that no other
/// build needs. Called under [`lock`]: a build records its image before it
/// applies its tags under the same locks, so every build whose tag this could be
/// is on the record here.
pub async fn release(
    engine: &Engine,
    builder: &Builder,
    build: &Build,
    image_id: &str,
) -> Result<Vec<Release>, BuildError> {
    let mut references: Vec<String> = build.image_references().collect();
    references.sort();
    references.dedup();
    let others = engine
        .store
        .builds_with_image(image_id.to_string(), build.builder.clone(), build.id)
        .await?;
    let mut released = Vec::new();
    for reference in references {
        let Some(image) = builder.local_image(&reference).await? else {
            continue;
        };
        if image.id != image_id {
            // A later build moved the tag: not ours to take.
            continue;
        }
        let naming_tag = others
            .iter()
            .find(|other| other.image_references().any(|r| r == reference));
        if let Some(other) = naming_tag {
            released.push(Release::KeptTag {
                reference,
                by: other.id,
            });
            continue;
        }
        if let Some(other) = others.first().filter(|_| image.tags.len() <= 1) {
            released.push(Release::KeptImage {
                reference,
                by: other.id,
            });
            continue;
        }
        if builder.untag(&reference).await? {
            released.push(Release::Removed { reference });
        }
    }
    Ok(released)
}
