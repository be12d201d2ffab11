//! Runs one claimed build on its builder: build, tag, push, confirm, and record
//! every step. Whatever happens (a failure, a cancel), the build ends in a final state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::credentials::CredentialError;
use super::dockerfile::base_images;
use super::engine::Engine;
use super::local_tags;
use super::logs::LogWriter;
use super::options::needs_buildkit;
use super::progress::ProgressTracker;
use super::secrets::{self, mounts_secrets};
use crate::docker::{BuildEvent, BuildSource, BuildSpec, Builder, DockerError, Slot};
use crate::domain::{auth_server, registry_of, Build, BuildSecret, Credentials, Status};
use crate::named_locks::HeldLocks;
use crate::store::{Changes, PublishedTag, StoreError};
use crate::sync::Locked;

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("registry credentials are kept in memory only and were lost when dockpub restarted; submit the build again with its credentials")]
    CredentialsLost,
    #[error("build secrets are kept in memory only and were lost when dockpub restarted; retry the build with its secrets")]
    SecretsLost,
    #[error("the build was moved out of {0} while it ran")]
    Interrupted(Status),
    #[error("builder '{builder}' builds with the legacy builder, which cannot build {feature}: it needs BuildKit")]
    NeedsBuildkit {
        builder: String,
        feature: &'static str,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("dockpub is shutting down; the build will run again at the next start")]
    ShuttingDown,
    #[error("builder '{builder}' stopped answering: {reason}")]
    BuilderLost { builder: String, reason: String },
    #[error("gave up after {attempts} attempts; the last one: {last}")]
    TooManyAttempts { attempts: u32, last: Box<RunError> },
    /// Another push of the tag landed after this one (from another dockpub, or
    /// from outside dockpub): the registry does not serve this build's image.
    #[error("{taken}{}", pushed_by(*.by))]
    TagTakenOver { taken: DockerError, by: Option<i64> },
}

fn pushed_by(build: Option<i64>) -> String {
    build.map_or_else(String::new, |id| format!(" (build {id} pushed it)"))
}

/// Runs of one build that may end with its builder lost before it fails.
const MAX_ATTEMPTS: u32 = 3;
/// After a daemon error, how long the builder gets to show it is still there.
const STILL_THERE_LIMIT: Duration = Duration::from_secs(3);

impl RunError {
    /// Errors after which the build goes back to the queue rather than failing.
    fn requeues(&self) -> bool {
        match self {
            RunError::ShuttingDown | RunError::BuilderLost { .. } => true,
            RunError::Docker(err) => err.is_unreachable(),
            _ => false,
        }
    }

    /// The builder was lost, not the build's own fault: it counts towards
    /// [`MAX_ATTEMPTS`]. A shutdown does not.
    fn lost_builder(&self) -> bool {
        self.requeues() && !matches!(self, RunError::ShuttingDown)
    }
}

/// What a successful run produced.
struct Outcome {
    image_id: String,
    /// Per pushed tag; empty for a build-only run.
    digests: BTreeMap<String, String>,
    /// The build's publish locks, held until its success is recorded: the last
    /// build to record a tag is the last to have published it.
    publish_locks: HeldLocks,
}

/// The build's log and progress, fed as its output arrives.
struct Output {
    log: LogWriter,
    progress: ProgressTracker,
    /// The container of the step running now, to remove on cancel.
    step_container: Mutex<Option<String>>,
    /// The name of the build's own the image is built under, before the requested
    /// tags are applied under their locks: a concurrent build of the same tag
    /// never moves it, and a delete of another build never takes the image away.
    build_reference: String,
    /// The image, once built.
    image_id: OnceLock<String>,
}

impl Output {
    fn build_event(&self, event: BuildEvent) {
        match &event {
            BuildEvent::StepContainer(container) => {
                *self.step_container.locked() = Some(container.clone());
            }
            BuildEvent::Progress { done, total } => self.progress.build_steps(*done, *total),
            _ => {}
        }
        if let Some(line) = event.log_line() {
            self.log.line(line);
        }
    }
}

pub async fn run(engine: Arc<Engine>, build: Build, slot: Slot) {
    let id = build.id;
    let cancel = engine.cancels.token(id);
    let output = match start_output(&engine, id).await {
        Ok(output) => output,
        Err(err) => return finish(&engine, &build, Err(err)).await,
    };
    if build.attempts > 1 {
        output.log.line(format!(
            "dockpub: attempt {} (the previous one was interrupted)",
            build.attempts
        ));
    }
    let lost = slot.lost();
    let result = tokio::select! {
        result = execute(&engine, &build, slot.builder(), &output) => result,
        () = cancel.cancelled() => Err(RunError::Cancelled),
        () = engine.interrupting.cancelled() => Err(RunError::ShuttingDown),
        () = lost.cancelled() => Err(lost_builder(slot.builder(), "the health check failed")),
    };
    let result = blame_a_vanished_builder(result, slot.builder()).await;
    if let Err(err) = &result {
        if err.lost_builder() {
            slot.report_lost(err.to_string());
        }
    }
    let result = limit_attempts(result, build.attempts);
    // Dropping the unfinished `execute` closed its daemon connection, which stops
    // the daemon's build; what it already tagged for this build is taken back.
    // A lost builder cannot be cleaned up: what it holds stays there.
    if matches!(result, Err(RunError::Cancelled | RunError::ShuttingDown)) {
        clean_up_cancelled(&engine, id, slot.builder(), &output).await;
    }
    match &result {
        Err(RunError::Cancelled) => output.log.line("dockpub: cancelled".into()),
        Err(err) if err.requeues() => output
            .log
            .line(format!("dockpub: back to the queue: {err}")),
        Err(err) => output.log.line(format!("dockpub: build failed: {err}")),
        Ok(_) => {}
    }
    output.progress.stop();
    // The whole log is stored before the build is seen to end.
    output.log.finish().await;
    if !matches!(&result, Err(err) if err.requeues()) {
        slot.record_done();
    }
    finish(&engine, &build, result).await;
    drop(slot);
}

fn lost_builder(builder: &Builder, reason: impl Into<String>) -> RunError {
    RunError::BuilderLost {
        builder: builder.name().to_string(),
        reason: reason.into(),
    }
}

/// A daemon that is being stopped may end a build with an ordinary-looking error
/// just before it goes away. When the builder cannot be reached right after the
/// error (refused, no socket), the builder was lost: the build goes back to the
/// queue, not to `failed`. A ping that is merely slow keeps the build's own error:
/// a busy daemon is no reason to run a failing build again.
async fn blame_a_vanished_builder(
    result: Result<Outcome, RunError>,
    builder: &Builder,
) -> Result<Outcome, RunError> {
    match result {
        Err(RunError::Docker(err)) if !err.is_unreachable() => {
            match builder.ping_within(STILL_THERE_LIMIT).await {
                Err(gone) if !matches!(gone, DockerError::NoAnswer { .. }) => {
                    Err(lost_builder(builder, format!("{err} ({gone})")))
                }
                _ => Err(RunError::Docker(err)),
            }
        }
        other => other,
    }
}

/// A build whose builder was lost on its last allowed attempt fails.
fn limit_attempts(result: Result<Outcome, RunError>, attempts: u32) -> Result<Outcome, RunError> {
    match result {
        Err(err) if err.lost_builder() && attempts >= MAX_ATTEMPTS => {
            Err(RunError::TooManyAttempts {
                attempts,
                last: Box::new(err),
            })
        }
        other => other,
    }
}

async fn start_output(engine: &Arc<Engine>, id: i64) -> Result<Output, RunError> {
    let last_seq = engine.store.last_log_seq(id).await?;
    Ok(Output {
        log: LogWriter::start(engine.store.clone(), engine.events.clone(), id, last_seq),
        progress: ProgressTracker::start(engine.events.clone(), id),
        step_container: Mutex::new(None),
        // Unique across dockpub processes sharing a daemon, whose build ids overlap.
        build_reference: format!("dockpub-build:{id}-{}", uuid::Uuid::new_v4().simple()),
        image_id: OnceLock::new(),
    })
}

async fn finish(engine: &Arc<Engine>, build: &Build, result: Result<Outcome, RunError>) {
    let id = build.id;
    let first_tag = build.tags.first().cloned();
    let mut publish_locks = None;
    let (status, changes) = match result {
        Ok(outcome) => {
            publish_locks = Some(outcome.publish_locks);
            (
                Status::Succeeded,
                Changes {
                    image_id: Some(outcome.image_id),
                    digest: first_tag.and_then(|tag| outcome.digests.get(&tag).cloned()),
                    digests: Some(outcome.digests),
                    error: None,
                },
            )
        }
        Err(RunError::Cancelled) => (Status::Cancelled, Changes::default()),
        Err(err) if err.requeues() => (Status::Queued, Changes::default()),
        Err(err) => (
            Status::Failed,
            Changes {
                error: Some(super::hints::with_hint(err.to_string())),
                ..Changes::default()
            },
        ),
    };
    if let Err(err) = engine.transition(id, status, changes.clone()).await {
        log::error!("build {id}: cannot record yet that it ended {status} ({err}); trying again until the store takes it");
        Engine::record_end_later(engine, build, status, changes, publish_locks.take());
    }
    drop(publish_locks);
    engine.events.clear_progress(id);
    engine.cancels.remove(id);
    if status == Status::Queued {
        // It runs again: in this process with its credentials, or after a restart without.
        engine.queue.wake();
    } else {
        engine.vault.remove(id);
        engine.secrets.remove(id);
    }
}

async fn execute(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    output: &Output,
) -> Result<Outcome, RunError> {
    let push_login = push_login(engine, build).await?;
    let image_id = build_image(engine, build, builder, push_login.as_ref(), output).await?;
    let published = publish(
        engine,
        build,
        builder,
        image_id,
        push_login.as_ref(),
        output,
    )
    .await;
    remove_build_reference(builder, output).await;
    published
}

/// Under the build's publish locks: applies its tags, pushes and confirms them,
/// and notes whose tags it took over. The locks stay held (in the outcome) until
/// the build's end is recorded.
async fn publish(
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
    })
}

/// The image goes on the record before any tag names it: a delete of another
/// build that checks whether a tag is still needed then sees this build.
async fn record_image(engine: &Engine, build: &Build, image_id: &str) -> Result<(), RunError> {
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

/// The request's login when it sent one; else what the config or Docker's config
/// has for the repository's registry.
async fn push_login(engine: &Engine, build: &Build) -> Result<Option<Credentials>, RunError> {
    if let Some(credentials) = engine.vault.get(build.id) {
        return Ok(Some(credentials));
    }
    if build.push && build.registry_username.is_some() {
        return Err(RunError::CredentialsLost);
    }
    let registry = registry_of(&build.repository);
    Ok(engine.settings.credentials.resolve(&registry).await?)
}

/// Logins for every registry the build may pull from: those of its `FROM` images,
/// and the one it pushes to (with the push's login).
async fn pull_logins(
    engine: &Engine,
    build: &Build,
    dockerfile: &str,
    push_login: Option<&Credentials>,
) -> Result<Vec<(String, Credentials)>, RunError> {
    let push_registry = registry_of(&build.repository);
    let mut registries: Vec<String> = base_images(dockerfile)
        .iter()
        .map(|image| registry_of(image))
        .filter(|registry| *registry != push_registry)
        .collect();
    registries.sort();
    registries.dedup();
    let mut logins: Vec<(String, Credentials)> = push_login
        .map(|login| (auth_server(&push_registry).to_string(), login.clone()))
        .into_iter()
        .collect();
    for registry in registries {
        if let Some(login) = engine.settings.credentials.resolve(&registry).await? {
            logins.push((auth_server(&registry).to_string(), login));
        }
    }
    Ok(logins)
}

/// Builds under the build's own name (see [`Output::build_reference`]). Returns
/// the image id.
async fn build_image(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    push_login: Option<&Credentials>,
    output: &Output,
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
    let spec = BuildSpec {
        source,
        reference: &output.build_reference,
        options: &build.options,
        pull_logins: &pull_logins,
        secrets: &secrets,
        cache_from: &cache_from,
        inline_cache: buildkit && engine.settings.registry_cache,
        timeout: engine.settings.build_timeout,
    };
    let fell_back = std::sync::atomic::AtomicBool::new(false);
    let built = builder
        .build(spec, |event| {
            if matches!(event, BuildEvent::FellBackToLegacy { .. }) {
                fell_back.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            output.build_event(event)
        })
        .await;
    if fell_back.into_inner() {
        record_builder_kind(engine, build, false).await;
    }
    let image_id = built?;
    let _ = output.image_id.set(image_id.clone());
    output.log.line(format!("dockpub: built {image_id}"));
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
async fn taken_over_by(engine: &Engine, repository: &str, err: DockerError) -> RunError {
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
async fn note_taken_over(
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

/// Removes the build's own name from its image; the requested tags keep it.
async fn remove_build_reference(builder: &Builder, output: &Output) {
    let reference = &output.build_reference;
    if let Err(err) = builder.untag(reference).await {
        output.log.line(format!(
            "dockpub: could not remove the build's own tag {reference}: {err}"
        ));
    }
}

/// A cancelled build leaves no step container, no name of its own and no tag
/// that only it needs behind.
async fn clean_up_cancelled(engine: &Engine, id: i64, builder: &Builder, output: &Output) {
    let container = output.step_container.locked().take();
    if let Some(container) = container {
        if let Err(err) = builder.remove_step_container(&container).await {
            output.log.line(format!(
                "dockpub: could not remove step container {container}: {err}"
            ));
        }
    }
    remove_build_reference(builder, output).await;
    remove_own_tags(engine, id, builder, output).await;
}

async fn remove_own_tags(engine: &Engine, id: i64, builder: &Builder, output: &Output) {
    let Some(image_id) = output.image_id.get() else {
        return;
    };
    let build = match engine.store.get_build(id).await {
        Ok(Some(build)) => build,
        Ok(None) => return,
        Err(err) => {
            return log::error!("build {id}: cannot read it to clean up after cancel: {err}")
        }
    };
    let _tag_locks = local_tags::lock(engine, &build).await;
    match local_tags::release(engine, builder, &build, image_id).await {
        Ok(released) => {
            for release in released {
                output.log.line(format!("dockpub: {release}"));
            }
        }
        Err(err) => output
            .log
            .line(format!("dockpub: could not remove local tags: {err}")),
    }
}
