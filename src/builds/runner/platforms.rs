//! A build of several platforms: each platform built on a builder that offers
//! it and pushed by digest, side by side when slots allow; then one OCI image
//! index naming every platform's manifest is put under each tag.
//!
//! The build's own slot runs a platform its builder offers; every other
//! platform takes a free slot on a builder offering it, or waits for the own
//! slot (when its builder offers that platform too) or for a free one (at most
//! `build_timeout_secs`). If any platform fails, the others are stopped (their
//! daemon connections dropped) and no tag is touched.
//!
//! A platform's image is pushed under the tag `dockpub-platform-OS-ARCH[-VARIANT]`
//! of the build's repository (the Engine API pushes only by name), under a
//! publish lock of that tag: the registry keeps that one tag per platform,
//! naming the platform's newest image. Its digest is read from the push and
//! checked with the registry: the manifest's config is the image built.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::sync::{Mutex, MutexGuard};

use super::attest::{attest, PushedImage};
use super::build_step::{build_step, StepTarget};
use super::by_digest::{push_by_digest, Built};
use super::error::RunError;
use super::index::put_index_under_tags;
use super::output::{Outcome, Output};
use super::publish::record_image;
use crate::builds::engine::Engine;
use crate::docker::{Builder, Slot};
use crate::domain::{Build, Credentials, PlatformImage, PlatformPhase};
use crate::registry::{ImageIndex, IndexEntry};
use crate::sync::Locked;

/// How often a platform waiting for a slot looks again.
const SLOT_POLL: Duration = Duration::from_millis(250);

/// Where one platform runs: the build's own slot, or one of its own.
enum Lane<'a> {
    /// Holding the build's own slot while the platform runs on it.
    Claimed {
        _held: MutexGuard<'a, ()>,
        builder: &'a Arc<Builder>,
    },
    Own(Slot),
}

impl Lane<'_> {
    fn builder(&self) -> &Arc<Builder> {
        match self {
            Lane::Claimed { builder, .. } => builder,
            Lane::Own(slot) => slot.builder(),
        }
    }
}

/// Builds every platform, then publishes the index under the build's tags.
pub(super) async fn build_and_publish(
    engine: &Engine,
    build: &Build,
    slot: &Slot,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Outcome, RunError> {
    let platforms = build.options.platforms();
    output.log.line(format!(
        "dockpub: building {} platforms side by side where slots allow: {}",
        platforms.len(),
        platforms.join(", ")
    ));
    output.progress.platforms(&platforms);
    let own_slot = Mutex::new(());
    let each = platforms
        .iter()
        .map(|platform| one_platform(engine, build, slot, &own_slot, platform, push_login, output));
    let built = try_join_all(each).await;
    // The platforms still running when one failed were dropped mid-way.
    remove_platform_references(output).await;
    publish_index(engine, build, slot.builder(), built?, push_login, output).await
}

/// Takes back each platform's own name for its image (its push tag keeps it).
pub(super) async fn remove_platform_references(output: &Output) {
    let references = std::mem::take(&mut *output.platform_references.locked());
    for (builder, reference) in references {
        if let Err(err) = builder.untag(&reference).await {
            output.log.line(format!(
                "dockpub: could not remove the build's own tag {reference} on {}: {err}",
                builder.name()
            ));
        }
    }
}

/// Builds `platform` on a lane of its own and pushes it by digest.
async fn one_platform(
    engine: &Engine,
    build: &Build,
    slot: &Slot,
    own_slot: &Mutex<()>,
    platform: &str,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Built, RunError> {
    let failed = |err: RunError| {
        output
            .progress
            .platform_phase(platform, PlatformPhase::Failed);
        RunError::Platform {
            platform: platform.to_string(),
            source: Box::new(err),
        }
    };
    let lane = lane_for(engine, slot, own_slot, platform)
        .await
        .map_err(failed)?;
    let builder = lane.builder().clone();
    output.progress.platform_placed(platform, builder.name());
    output.platform_line(platform, format!("dockpub: on builder {}", builder.name()));
    let lost = match &lane {
        Lane::Own(own) => own.lost(),
        // The build's own slot is watched by the run.
        Lane::Claimed { .. } => tokio_util::sync::CancellationToken::new(),
    };
    let work = build_and_push(engine, build, &builder, platform, push_login, output);
    let result = tokio::select! {
        result = work => result,
        () = lost.cancelled() => Err(RunError::BuilderLost {
            builder: builder.name().to_string(),
            reason: "the health check failed".into(),
        }),
    };
    drop(lane);
    let built = result.map_err(failed)?;
    output
        .progress
        .platform_phase(platform, PlatformPhase::Done);
    Ok(built)
}

/// The build's own slot when its builder offers `platform` and no other
/// platform uses it, else a free slot on a builder offering it: whichever
/// comes first, looked for until `build_timeout_secs` has passed.
async fn lane_for<'a>(
    engine: &Engine,
    slot: &'a Slot,
    own_slot: &'a Mutex<()>,
    platform: &str,
) -> Result<Lane<'a>, RunError> {
    let offers = slot.platforms().iter().any(|p| p == platform);
    let limit = engine.settings.build_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if offers {
            if let Ok(held) = own_slot.try_lock() {
                return Ok(Lane::Claimed {
                    _held: held,
                    builder: slot.builder(),
                });
            }
        }
        if let Some(free) = engine.pool.free_slot_for(platform) {
            return Ok(Lane::Own(free));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RunError::NoSlotFor {
                secs: limit.as_secs(),
            });
        }
        tokio::time::sleep(SLOT_POLL).await;
    }
}

async fn build_and_push(
    engine: &Engine,
    build: &Build,
    builder: &Arc<Builder>,
    platform: &str,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Built, RunError> {
    if !builder.runs_buildkit(true) {
        return Err(RunError::NeedsBuildkit {
            builder: builder.name().to_string(),
            feature: "one platform of several",
        });
    }
    let slug = platform.replace('/', "-");
    let reference = format!("{}-{slug}", output.build_reference);
    output
        .platform_references
        .locked()
        .push((builder.clone(), reference.clone()));
    let target = StepTarget {
        reference: &reference,
        platform: Some(platform),
    };
    let built = build_step(engine, build, builder.as_ref(), push_login, output, &target).await;
    let image_id = built?;
    push_by_digest(
        engine, build, builder, platform, &image_id, push_login, output,
    )
    .await
}

/// Under the build's publish locks: the index (with the provenance
/// attestation, when on) put under every tag and read back from each, and
/// whose tags it took over noted.
async fn publish_index(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    built: Vec<Built>,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Outcome, RunError> {
    let (platforms, mut entries): (Vec<PlatformImage>, Vec<IndexEntry>) =
        built.into_iter().map(|b| (b.image, b.entry)).unzip();
    let first_image = platforms[0].image_id.clone();
    record_image(engine, build, &first_image).await?;
    let provenance = if engine.settings.provenance.enabled {
        let images: Vec<PushedImage> = platforms
            .iter()
            .map(|p| PushedImage {
                platform: &p.platform,
                digest: &p.digest,
            })
            .collect();
        let attested = attest(engine, build, builder, &images, push_login, output).await?;
        entries.extend(attested.entries);
        Some(attested.record)
    } else {
        None
    };
    let publish_locks = engine
        .publish_locks
        .lock_all(build.image_references())
        .await;
    // Where a cancelled run's end is recorded under them, as for one platform.
    *output.publish_locks.locked() = Some(publish_locks);
    let index = ImageIndex::new(entries);
    let digests = put_index_under_tags(
        engine,
        build,
        builder,
        &first_image,
        &index,
        push_login,
        output,
    )
    .await?;
    let publish_locks = output
        .publish_locks
        .locked()
        .take()
        .expect("the publish locks were taken above");
    Ok(Outcome {
        image_id: first_image,
        digests,
        publish_locks,
        platforms,
        provenance,
    })
}
