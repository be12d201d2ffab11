//! The build step: the image built on the builder under the build's own name,
//! with its logins, secrets and cache sources.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::error::RunError;
use super::logins::pull_logins;
use super::output::Output;
use crate::builds::engine::Engine;
use crate::builds::hints::dockerfile_hint;
use crate::builds::options::needs_buildkit;
use crate::builds::secrets::{self, mounts_secrets};
use crate::builds::ssh::{keys_for, mounts_ssh};
use crate::docker::{BuildEvent, BuildSource, BuildSpec, Builder, DockerError, ImageBuilder};
use crate::domain::{Build, BuildOptions, BuildSecret, Credentials};
use crate::sync::Locked;
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

/// Builds the image of `target` on `builder`, asking for it through the
/// [`ImageBuilder`] seam. Returns the image id.
pub(super) async fn build_step(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    push_login: Option<&Credentials>,
    output: &Output,
    target: &StepTarget<'_>,
) -> Result<String, RunError> {
    let dockerfile = engine.store.read_dockerfile(build.id).await?;
    let context_path = engine.store.files().context_path(build.id);
    let source = || match &build.context_dockerfile {
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
    output.mask_logins(pull_logins.iter().map(|(_, login)| login));
    let secrets = build_secrets(engine, build, &dockerfile)?;
    let ssh = match mounts_ssh(&dockerfile) {
        true => {
            keys_for(&build.options.ssh, &engine.settings.ssh_keys).map_err(RunError::SshKeyGone)?
        }
        false => Vec::new(),
    };
    let mut cache_from = cache_sources(engine, build, buildkit);
    let options = match target.platform {
        Some(platform) => Cow::Owned(BuildOptions {
            platform: Some(platform.to_string()),
            ..build.options.clone()
        }),
        None => Cow::Borrowed(&build.options),
    };
    let image_id = loop {
        let spec = BuildSpec {
            source: source(),
            reference: target.reference,
            options: &options,
            pull_logins: &pull_logins,
            secrets: &secrets,
            ssh: &ssh,
            cache_from: &cache_from,
            inline_cache: buildkit && engine.settings.registry_cache,
            timeout: engine.settings.build_timeout,
        };
        let built = build_once(engine, build, builder, spec, output, target, &dockerfile).await?;
        match built {
            Built::Image(image_id) => break image_id,
            Built::CacheImportStalled(stalled) => {
                output.line_of(
                    target.platform,
                    format!(
                        "dockpub: importing the cache from {stalled} made no progress for {} s \
                     (cache_import_timeout_secs); building again without it",
                        engine.settings.cache_import_timeout.as_secs()
                    ),
                );
                cache_from.retain(|source| *source != stalled);
            }
        }
    };
    output.line_of(target.platform, format!("dockpub: built {image_id}"));
    Ok(image_id)
}

/// How one try of the build step ended, when it did not fail.
enum Built {
    Image(String),
    /// BuildKit's import of this cache source stalled; the build was stopped.
    CacheImportStalled(String),
}

/// One try of the build step, stopped when it goes silent for
/// `build_idle_timeout_secs` or a cache import stalls.
async fn build_once(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    spec: BuildSpec<'_>,
    output: &Output,
    target: &StepTarget<'_>,
    dockerfile: &str,
) -> Result<Built, RunError> {
    let buildkit = builder.runs_buildkit(build.options.buildkit);
    let fell_back = std::sync::atomic::AtomicBool::new(false);
    let imports = CacheImports::default();
    let mut on_event = |event: BuildEvent| {
        if matches!(event, BuildEvent::FellBackToLegacy { .. }) {
            fell_back.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        imports.note(&event);
        match target.platform {
            Some(platform) => output.platform_event(platform, event),
            None => output.build_event(event),
        }
    };
    let building = ImageBuilder::build_image(builder, spec, &mut on_event);
    let idle = engine.settings.build_idle_timeout;
    let built = tokio::select! {
        built = building => built,
        () = output.silent_for(idle) => return Err(stopped_idle(builder, output, idle).await),
        stalled = imports.stalled(engine.settings.cache_import_timeout) => {
            return Ok(Built::CacheImportStalled(stalled));
        }
    };
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
    let image_id = built.map_err(|err| with_dockerfile_hint(err, dockerfile, buildkit))?;
    Ok(Built::Image(image_id))
}

/// A failed build's error, with the fix its Dockerfile explains when it does.
fn with_dockerfile_hint(err: DockerError, dockerfile: &str, buildkit: bool) -> RunError {
    let DockerError::BuildFailed(message) = &err else {
        return err.into();
    };
    match dockerfile_hint(message, dockerfile, buildkit) {
        Some(hint) => RunError::Hinted { error: err, hint },
        None => err.into(),
    }
}

/// BuildKit's cache imports under way, by step: a registry that stopped
/// answering holds the build at "importing cache manifest from …".
#[derive(Default)]
struct CacheImports(std::sync::Mutex<HashMap<u32, (String, Instant)>>);

const CACHE_IMPORT_STEP: &str = "importing cache manifest from ";

impl CacheImports {
    fn note(&self, event: &BuildEvent) {
        match event {
            BuildEvent::StepStarted { step, name, .. } => {
                if let Some(source) = name.strip_prefix(CACHE_IMPORT_STEP) {
                    let source = source.trim().to_string();
                    self.0.locked().insert(*step, (source, Instant::now()));
                }
            }
            BuildEvent::StepFinished { step, .. }
            | BuildEvent::StepFailed { step, .. }
            | BuildEvent::StepCached { step } => {
                self.0.locked().remove(step);
            }
            _ => {}
        }
    }

    /// Resolves with the source of an import under way for `limit`.
    async fn stalled(&self, limit: Duration) -> String {
        loop {
            let stalled = self
                .0
                .locked()
                .values()
                .find(|(_, since)| since.elapsed() >= limit)
                .map(|(source, _)| source.clone());
            if let Some(source) = stalled {
                return source;
            }
            tokio::time::sleep(limit.min(Duration::from_secs(1))).await;
        }
    }
}

/// A build silent for `build_idle_timeout_secs`: dropping its unfinished build
/// closed the daemon connection, which stops the daemon's build (as a cancel
/// does); a legacy build's step container is removed here.
async fn stopped_idle(builder: &Builder, output: &Output, idle: Duration) -> RunError {
    let secs = idle.as_secs();
    output.log.line(format!(
        "dockpub: no output and no progress for {secs} s; build stopped"
    ));
    let container = output.step_container.locked().take();
    if let Some(container) = container {
        if let Err(err) = builder.remove_step_container(&container).await {
            output.log.line(format!(
                "dockpub: could not remove step container {container}: {err}"
            ));
        }
    }
    RunError::Idle { secs }
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
