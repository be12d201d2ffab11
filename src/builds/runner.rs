//! Runs one claimed build on its builder: build, tag, push, confirm, and record
//! every step. Whatever happens (a failure, a cancel), the build ends in a final state.

use std::sync::{Arc, Mutex};

use super::engine::Engine;
use super::logs::LogWriter;
use super::model::{Build, Credentials};
use super::progress::ProgressTracker;
use super::status::Status;
use crate::docker::{step_container, BuildSpec, Builder, DockerError, Slot};
use crate::store::{Changes, StoreError};

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("registry credentials are kept in memory only and were lost when dockpub restarted; submit the build again with its credentials")]
    CredentialsLost,
    #[error("the build was moved out of {0} while it ran")]
    Interrupted(Status),
    #[error("cancelled")]
    Cancelled,
    #[error("dockpub is shutting down; the build will run again at the next start")]
    ShuttingDown,
}

impl RunError {
    /// Errors after which the build goes back to the queue rather than failing.
    fn requeues(&self) -> bool {
        match self {
            RunError::ShuttingDown => true,
            RunError::Docker(err) => err.is_unreachable(),
            _ => false,
        }
    }
}

/// What a successful run produced.
struct Outcome {
    image_id: String,
    digest: Option<String>,
}

/// The build's log and progress, fed as its output arrives.
struct Output {
    log: LogWriter,
    progress: ProgressTracker,
    /// The container of the step running now, to remove on cancel.
    step_container: Mutex<Option<String>>,
}

impl Output {
    fn build_line(&self, line: String) {
        if let Some(container) = step_container(&line) {
            *self
                .step_container
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(container.to_string());
        }
        self.progress.build_line(&line);
        self.log.line(line);
    }
}

pub async fn run(engine: Arc<Engine>, build: Build, slot: Slot) {
    let id = build.id;
    let cancel = engine.cancels.token(id);
    let output = match start_output(&engine, id).await {
        Ok(output) => output,
        Err(err) => return finish(&engine, id, Err(err)).await,
    };
    let result = tokio::select! {
        result = execute(&engine, &build, slot.builder(), &output) => result,
        () = cancel.cancelled() => Err(RunError::Cancelled),
        () = engine.interrupting.cancelled() => Err(RunError::ShuttingDown),
    };
    // Dropping the unfinished `execute` closed its daemon connection, which stops
    // the daemon's build; what it already tagged for this build is taken back.
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
    finish(&engine, id, result).await;
    drop(slot);
}

async fn start_output(engine: &Arc<Engine>, id: i64) -> Result<Output, RunError> {
    let last_seq = engine.store.last_log_seq(id).await?;
    Ok(Output {
        log: LogWriter::start(engine.store.clone(), engine.events.clone(), id, last_seq),
        progress: ProgressTracker::start(engine.events.clone(), id),
        step_container: Mutex::new(None),
    })
}

async fn finish(engine: &Engine, id: i64, result: Result<Outcome, RunError>) {
    let (status, changes) = match result {
        Ok(outcome) => (
            Status::Succeeded,
            Changes {
                image_id: Some(outcome.image_id),
                digest: outcome.digest,
                error: None,
            },
        ),
        Err(RunError::Cancelled) => (Status::Cancelled, Changes::default()),
        Err(err) if err.requeues() => (Status::Queued, Changes::default()),
        Err(err) => (
            Status::Failed,
            Changes {
                error: Some(err.to_string()),
                ..Changes::default()
            },
        ),
    };
    if let Err(err) = engine.transition(id, status, changes).await {
        log::error!("build {id}: cannot record that it ended {status}: {err}");
    }
    engine.events.clear_progress(id);
    engine.cancels.remove(id);
    if status == Status::Queued {
        // It runs again: in this process with its credentials, or after a restart without.
        engine.queue.wake();
    } else {
        engine.vault.remove(id);
    }
}

async fn execute(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    output: &Output,
) -> Result<Outcome, RunError> {
    let credentials = engine.vault.get(build.id);
    if build.push && build.registry_username.is_some() && credentials.is_none() {
        return Err(RunError::CredentialsLost);
    }
    let image_id = build_image(engine, build, builder, output).await?;
    if !build.push {
        return Ok(Outcome {
            image_id,
            digest: None,
        });
    }
    let changes = Changes {
        image_id: Some(image_id.clone()),
        ..Changes::default()
    };
    if engine
        .transition(build.id, Status::Pushing, changes)
        .await?
        .is_none()
    {
        return Err(RunError::Interrupted(Status::Building));
    }
    let digest = push_tags(build, builder, credentials.as_ref(), output).await?;
    Ok(Outcome {
        image_id,
        digest: Some(digest),
    })
}

/// Builds with the first tag, then adds the others. Returns the image id.
async fn build_image(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    output: &Output,
) -> Result<String, RunError> {
    let dockerfile = engine.store.read_dockerfile(build.id).await?;
    let mut references = build.image_references();
    let first = references
        .next()
        .unwrap_or_else(|| build.repository.clone());
    let spec = BuildSpec {
        dockerfile: &dockerfile,
        reference: &first,
    };
    let image_id = builder.build(spec, |line| output.build_line(line)).await?;
    for tag in build.tags.iter().skip(1) {
        builder.tag(&image_id, &build.repository, tag).await?;
    }
    output.log.line(format!("dockpub: built {image_id}"));
    Ok(image_id)
}

/// Pushes every tag; returns the digest of the first, which all tags share.
async fn push_tags(
    build: &Build,
    builder: &Builder,
    credentials: Option<&Credentials>,
    output: &Output,
) -> Result<String, RunError> {
    let mut first_digest = None;
    for tag in &build.tags {
        let digest = builder
            .push(&build.repository, tag, credentials, |update| {
                output.progress.push_update(&update);
                output.log.line(update.line());
            })
            .await?;
        let reference = format!("{}:{tag}", build.repository);
        output.log.line(format!(
            "dockpub: registry confirmed {reference} at {digest}"
        ));
        first_digest.get_or_insert(digest);
    }
    first_digest.ok_or_else(|| {
        RunError::Docker(DockerError::Unconfirmed {
            reference: build.repository.clone(),
            reason: "the build has no tags to push".into(),
        })
    })
}

/// A cancelled build leaves no step container and no tag of its own behind.
async fn clean_up_cancelled(engine: &Engine, id: i64, builder: &Builder, output: &Output) {
    let container = output
        .step_container
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(container) = container {
        if let Err(err) = builder.remove_step_container(&container).await {
            output.log.line(format!(
                "dockpub: could not remove step container {container}: {err}"
            ));
        }
    }
    remove_own_tags(engine, id, builder, &output.log).await;
}

async fn remove_own_tags(engine: &Engine, id: i64, builder: &Builder, log: &LogWriter) {
    let build = match engine.store.get_build(id).await {
        Ok(Some(build)) => build,
        Ok(None) => return,
        Err(err) => {
            return log::error!("build {id}: cannot read it to clean up after cancel: {err}")
        }
    };
    let Some(image_id) = &build.image_id else {
        return;
    };
    for reference in build.image_references() {
        match builder.remove_tag_of(&reference, image_id).await {
            Ok(true) => log.line(format!("dockpub: removed local tag {reference}")),
            Ok(false) => {}
            Err(err) => log.line(format!(
                "dockpub: could not remove local tag {reference}: {err}"
            )),
        }
    }
}
