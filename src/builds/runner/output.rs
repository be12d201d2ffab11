//! What a run feeds as it goes (the build's log, progress, step container and
//! image) and what a successful run produced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::error::RunError;
use crate::builds::build_names;
use crate::builds::engine::Engine;
use crate::builds::logs::LogWriter;
use crate::builds::progress::ProgressTracker;
use crate::builds::silence::Silences;
use crate::docker::{BuildEvent, Builder};
use crate::domain::{Credentials, PlatformImage, ProvenanceRecord, PushPhase, PushUpdate};
use crate::named_locks::HeldLocks;
use crate::provenance::{observed_base, BaseImage};
use crate::sync::Locked;

/// What a successful run produced.
pub(super) struct Outcome {
    /// The image built, now under the requested tags.
    pub(super) image_id: String,
    /// Per pushed tag; empty for a build-only run.
    pub(super) digests: BTreeMap<String, String>,
    /// The build's publish locks, held until its success is recorded: the last
    /// build to record a tag is the last to have published it.
    pub(super) publish_locks: HeldLocks,
    /// Each platform's image and manifest, for a build of several platforms.
    pub(super) platforms: Vec<PlatformImage>,
    /// The provenance attestation pushed with the image, if any.
    pub(super) provenance: Option<ProvenanceRecord>,
}

/// The build's log and progress, fed as its output arrives.
pub(super) struct Output {
    /// The build's log, stored in batches.
    pub(super) log: LogWriter,
    /// Steps built and layers pushed, for followers.
    pub(super) progress: ProgressTracker,
    /// The container of the step running now, to remove on cancel.
    pub(super) step_container: Mutex<Option<String>>,
    /// The name of the build's own the image is built under, before the requested
    /// tags are applied under their locks: a concurrent build of the same tag
    /// never moves it, and a delete of another build never takes the image away.
    pub(super) build_reference: String,
    /// The image, once built.
    pub(super) image_id: OnceLock<String>,
    /// For a build of several platforms: each platform's own name for its image
    /// and the builder it is on, to take back after a cancel.
    pub(super) platform_references: Mutex<Vec<(Arc<Builder>, String)>>,
    /// How far each tag's push has come (see [`PushPhase`]).
    pub(super) pushes: Mutex<BTreeMap<String, PushPhase>>,
    /// The build's publish locks once taken: they outlive a cancelled run's
    /// work until what its push may have done and its end are recorded.
    pub(super) publish_locks: Mutex<Option<HeldLocks>>,
    /// The base images BuildKit reported resolving (`FROM …@sha256:…`), for
    /// the provenance.
    pub(super) bases: Mutex<Vec<BaseImage>>,
    /// Told of every event and push message: when the build was last heard from.
    silences: Arc<Silences>,
    id: i64,
    builder: String,
}

impl Output {
    /// Starts the build's log after the lines an earlier attempt stored, with
    /// every secret value known now masked in it.
    pub(super) async fn start(
        engine: &Arc<Engine>,
        id: i64,
        builder: &str,
    ) -> Result<Output, RunError> {
        let earlier = engine.store.log_totals(id).await?;
        let log = LogWriter::start(
            engine.store.clone(),
            engine.events.clone(),
            id,
            earlier,
            engine.settings.log_limits,
        );
        mask_known_secrets(engine, id, &log);
        engine.silences.heard(id, builder);
        Ok(Output {
            log,
            progress: ProgressTracker::start(engine.events.clone(), id),
            step_container: Mutex::new(None),
            // Unique across dockpub processes sharing a daemon, whose build ids overlap.
            build_reference: format!(
                "{}{}",
                build_names::of_build(engine.store.instance(), id),
                uuid::Uuid::new_v4().simple()
            ),
            image_id: OnceLock::new(),
            platform_references: Mutex::new(Vec::new()),
            pushes: Mutex::default(),
            publish_locks: Mutex::default(),
            bases: Mutex::default(),
            silences: engine.silences.clone(),
            id,
            builder: builder.to_string(),
        })
    }

    /// Notes one event of the build step: its log line, its progress, and the
    /// step container a cancel must remove.
    pub(super) fn build_event(&self, event: BuildEvent) {
        self.heard();
        self.note_base(&event);
        match &event {
            BuildEvent::StepContainer(container) => {
                *self.step_container.locked() = Some(container.clone());
            }
            BuildEvent::Progress { done, total } => self.progress.build_steps(*done, *total),
            _ => {}
        }
        match event.log_line() {
            // A step's error is kept past the log's limits: one per step at most.
            Some(line) if matches!(event, BuildEvent::StepFailed { .. }) => self.log.line(line),
            Some(line) => self.log.output(line),
            None => {}
        }
    }

    /// One event of one platform's build step (of a build of several): its log
    /// line says which platform, and its steps count for that platform.
    pub(super) fn platform_event(&self, platform: &str, event: BuildEvent) {
        self.heard();
        if let BuildEvent::Progress { done, total } = &event {
            self.progress.platform_steps(platform, *done, *total);
        }
        self.note_base(&event);
        match event.log_line() {
            // A step's error is kept past the log's limits: one per step at most.
            Some(line) if matches!(event, BuildEvent::StepFailed { .. }) => {
                self.platform_line(platform, line)
            }
            Some(line) => self.log.output(format!("[{platform}] {line}")),
            None => {}
        }
    }

    /// A log line of one platform, prefixed `[os/arch] `.
    pub(super) fn platform_line(&self, platform: &str, line: String) {
        self.log.line(format!("[{platform}] {line}"));
    }

    /// Notes one message of a platform's push by digest (of a build of several):
    /// heard from, progress, and its log line prefixed with the platform.
    pub(super) fn platform_push_update(&self, platform: &str, update: &PushUpdate) {
        self.heard();
        self.progress.platform_push_update(platform, update);
        self.log.output(format!("[{platform}] {}", update.line()));
    }

    /// A line of the build's own, or of one platform of several.
    pub(super) fn line_of(&self, platform: Option<&str>, line: String) {
        match platform {
            Some(platform) => self.platform_line(platform, line),
            None => self.log.line(line),
        }
    }

    /// Masks the passwords of the logins the build pushes and pulls with, which
    /// may come from Docker's own config, known only once resolved.
    pub(super) fn mask_logins<'a>(&self, logins: impl IntoIterator<Item = &'a Credentials>) {
        for login in logins {
            self.log.mask(login.password.expose().as_bytes());
        }
    }

    /// Notes one message of `tag`'s push: its log line, its progress, how far it came.
    pub(super) fn push_update(&self, tag: &str, update: &PushUpdate) {
        self.heard();
        self.progress.push_update(update);
        self.pushes
            .locked()
            .entry(tag.to_string())
            .or_default()
            .note(update);
        self.log.output(update.line());
    }

    /// A base image BuildKit says it resolved, kept once.
    fn note_base(&self, event: &BuildEvent) {
        let BuildEvent::StepStarted { name, .. } = event else {
            return;
        };
        if let Some(base) = observed_base(name) {
            let mut bases = self.bases.locked();
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
    }

    fn heard(&self) {
        self.silences.heard(self.id, &self.builder);
    }

    /// Resolves once nothing has been heard from the build for `limit`.
    pub(super) async fn silent_for(&self, limit: std::time::Duration) {
        self.silences.until_silent_for(self.id, limit).await;
    }

    /// The tags whose push may have reached the registry.
    pub(super) fn tags_maybe_pushed(&self) -> Vec<String> {
        self.pushes
            .locked()
            .iter()
            .filter(|(_, phase)| phase.may_have_landed())
            .map(|(tag, _)| tag.clone())
            .collect()
    }

    /// Removes the build's own name from its image; the requested tags keep it.
    pub(super) async fn remove_build_reference(&self, builder: &Builder) {
        let reference = &self.build_reference;
        if let Err(err) = builder.untag(reference).await {
            self.log.line(format!(
                "dockpub: could not remove the build's own tag {reference}: {err}"
            ));
        }
    }
}

/// The build's own secrets and login, the server's `[secrets]`, and every
/// password in the config (`[registries]`, `[git."HOST"]`): a step that prints
/// one leaves `***` in the log.
fn mask_known_secrets(engine: &Engine, id: i64, log: &LogWriter) {
    let own_secrets = engine.secrets.get(id).unwrap_or_default();
    for secret in own_secrets.iter().chain(&engine.settings.secrets) {
        log.mask(secret.value());
    }
    if let Some(login) = engine.vault.get(id) {
        log.mask(login.password.expose().as_bytes());
    }
    for password in &engine.settings.config_passwords {
        log.mask(password.expose().as_bytes());
    }
}
