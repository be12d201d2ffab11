//! Runs one claimed build on its builder: build, tag, push, confirm, and record
//! every step. Whatever happens, the build ends in a final state.

use std::sync::Arc;

use super::logs::LogWriter;
use super::model::{Build, Credentials};
use super::status::Status;
use super::Engine;
use crate::docker::{BuildSpec, Builder, DockerError, Slot};
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
}

/// What a successful run produced.
struct Outcome {
    image_id: String,
    digest: Option<String>,
}

pub async fn run(engine: Arc<Engine>, build: Build, slot: Slot) {
    let id = build.id;
    let log = LogWriter::start(engine.store.clone(), id);
    let result = execute(&engine, &build, slot.builder(), &log).await;
    if let Err(err) = &result {
        log.line(format!("dockpub: build failed: {err}"));
    }
    // The whole log is stored before the build is seen to end.
    log.finish().await;
    let (status, changes) = match result {
        Ok(outcome) => (
            Status::Succeeded,
            Changes {
                image_id: Some(outcome.image_id),
                digest: outcome.digest,
                error: None,
            },
        ),
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
    engine.vault.remove(id);
    drop(slot);
}

async fn execute(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    log: &LogWriter,
) -> Result<Outcome, RunError> {
    let credentials = engine.vault.get(build.id);
    if build.push && build.registry_username.is_some() && credentials.is_none() {
        return Err(RunError::CredentialsLost);
    }
    let image_id = build_image(engine, build, builder, log).await?;
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
    let digest = push_tags(build, builder, credentials.as_ref(), log).await?;
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
    log: &LogWriter,
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
    let image_id = builder.build(spec, |line| log.line(line)).await?;
    for tag in build.tags.iter().skip(1) {
        builder.tag(&image_id, &build.repository, tag).await?;
    }
    log.line(format!("dockpub: built {image_id}"));
    Ok(image_id)
}

/// Pushes every tag; returns the digest of the first, which all tags share.
async fn push_tags(
    build: &Build,
    builder: &Builder,
    credentials: Option<&Credentials>,
    log: &LogWriter,
) -> Result<String, RunError> {
    let mut first_digest = None;
    for tag in &build.tags {
        let digest = builder
            .push(&build.repository, tag, credentials, |line| log.line(line))
            .await?;
        log.line(format!(
            "dockpub: registry confirmed {}:{tag} at {digest}",
            build.repository
        ));
        first_digest.get_or_insert(digest);
    }
    first_digest.ok_or_else(|| RunError::Docker(DockerError::NoImageId))
}
