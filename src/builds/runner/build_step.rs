//! The build step: the image built on the builder under the build's own name,
//! with its logins, secrets and cache sources.

use super::error::RunError;
use super::logins::pull_logins;
use super::output::Output;
use crate::builds::engine::Engine;
use crate::builds::options::needs_buildkit;
use crate::builds::secrets::{self, mounts_secrets};
use crate::docker::{BuildEvent, BuildSource, BuildSpec, Builder, ImageBuilder};
use crate::domain::{Build, BuildOptions, BuildSecret, Credentials};
use std::borrow::Cow;

/// Where one build step's image goes: a name of the build's own and, for one
/// platform of a build of several, that platform.
pub(super) struct StepTarget<'a> {
    pub(super) reference: &'a str,
    pub(super) platform: Option<&'a str>,
}

/// Builds under the build's own name (see [`Output::build_reference`]). Returns
/// the image id.
pub(super) async fn build_image(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<String, RunError> {
    let target = StepTarget {
        reference: &output.build_reference,
        platform: None,
    };
    let image_id = build_step(engine, build, builder, push_login, output, &target).await?;
    let _ = output.image_id.set(image_id.clone());
    Ok(image_id)
}

/// Builds the image of `target` on `builder`, through the [`ImageBuilder`]
/// seam. Returns the image id.
pub(super) async fn build_step(
    engine: &Engine,
    build: &Build,
    builder: &impl ImageBuilder,
    push_login: Option<&Credentials>,
    output: &Output,
    target: &StepTarget<'_>,
) -> Result<String, RunError> {
    let dockerfile = engine.store.read_dockerfile(build.id).await?;
    let context_path = engine.store.files().context_path(build.id);
    let source = match &build.context_dockerfile {
        Some(path) => BuildSource::Archive {
            path: &context_path,
            dockerfile: path,
        },
        None => BuildSource::Dockerfile(&dockerfile),
    };
    let buildkit = builder.runs_buildkit(build.options.buildkit);
    record_builder_kind(engine, build, buildkit).await;
    if let (false, Some(feature)) = (buildkit, needs_buildkit(&dockerfile)) {
        return Err(RunError::NeedsBuildkit {
            builder: builder.name().to_string(),
            feature,
        });
    }
    let pull_logins = pull_logins(engine, build, &dockerfile, push_login).await?;
    let secrets = build_secrets(engine, build, &dockerfile)?;
    let cache_from = cache_sources(engine, build, buildkit);
    let options = match target.platform {
        Some(platform) => Cow::Owned(BuildOptions {
            platform: Some(platform.to_string()),
            ..build.options.clone()
        }),
        None => Cow::Borrowed(&build.options),
    };
    let spec = BuildSpec {
        source,
        reference: target.reference,
        options: &options,
        pull_logins: &pull_logins,
        secrets: &secrets,
        cache_from: &cache_from,
        inline_cache: buildkit && engine.settings.registry_cache,
        timeout: engine.settings.build_timeout,
    };
    let fell_back = std::sync::atomic::AtomicBool::new(false);
    let mut on_event = |event: BuildEvent| {
        if matches!(event, BuildEvent::FellBackToLegacy { .. }) {
            fell_back.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        match target.platform {
            Some(platform) => output.platform_event(platform, event),
            None => output.build_event(event),
        }
    };
    let built = builder.build_image(spec, &mut on_event).await;
    if fell_back.into_inner() {
        record_builder_kind(engine, build, false).await;
        if target.platform.is_some() {
            // The legacy builder may build the host's platform instead.
            return Err(RunError::NeedsBuildkit {
                builder: builder.name().to_string(),
                feature: "one platform of several",
            });
        }
    }
    let image_id = built?;
    let built = format!("dockpub: built {image_id}");
    match target.platform {
        Some(platform) => output.platform_line(platform, built),
        None => output.log.line(built),
    }
    Ok(image_id)
}

/// The request's `cache_from` images and, with `registry_cache` under BuildKit,
/// the build's own tags: what another builder pushed for them is reused.
fn cache_sources(engine: &Engine, build: &Build, buildkit: bool) -> Vec<String> {
    let mut sources = build.options.cache_from.clone();
    if buildkit && engine.settings.registry_cache && build.push {
        for own in build.image_references() {
            if !sources.contains(&own) {
                sources.push(own);
            }
        }
    }
    sources
}

/// The request's secrets and the server's, for a Dockerfile that mounts any.
fn build_secrets(
    engine: &Engine,
    build: &Build,
    dockerfile: &str,
) -> Result<Vec<BuildSecret>, RunError> {
    let requested = engine.secrets.get(build.id).unwrap_or_default();
    if requested.len() < build.options.secrets.len() {
        return Err(RunError::SecretsLost);
    }
    if !mounts_secrets(dockerfile) {
        return Ok(Vec::new());
    }
    Ok(secrets::for_build(&engine.settings.secrets, &requested))
}

/// The build object says which builder ran: the request's choice, unless its
/// builder has no BuildKit or the daemon refused it.
async fn record_builder_kind(engine: &Engine, build: &Build, buildkit: bool) {
    if build.options.buildkit == buildkit {
        return;
    }
    if let Err(err) = engine.store.set_buildkit(build.id, buildkit).await {
        log::error!("build {}: cannot record which builder ran: {err}", build.id);
    }
}
