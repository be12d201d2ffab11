//! Runs one claimed build on its builder: build, tag, push, confirm, and record
//! every step. Whatever happens, the build ends in a final state.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::credentials::{auth_server, registry_of, CredentialError};
use super::dockerfile::base_images;
use super::logs::LogWriter;
use super::model::{Build, Credentials};
use super::status::Status;
use super::Engine;
use crate::docker::{BuildSource, BuildSpec, Builder, DockerError, Slot};
use crate::store::{Changes, StoreError};

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
    #[error("the build was moved out of {0} while it ran")]
    Interrupted(Status),
}

/// What a successful run produced.
struct Outcome {
    image_id: String,
    /// Per pushed tag; empty for a build-only run.
    digests: BTreeMap<String, String>,
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
                digest: build
                    .tags
                    .first()
                    .and_then(|tag| outcome.digests.get(tag))
                    .cloned(),
                digests: Some(outcome.digests),
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
    let push_login = push_login(engine, build).await?;
    let image_id = build_image(engine, build, builder, push_login.as_ref(), log).await?;
    if !build.push {
        return Ok(Outcome {
            image_id,
            digests: BTreeMap::new(),
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
    let digests = push_tags(build, builder, push_login.as_ref(), log).await?;
    Ok(Outcome { image_id, digests })
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

/// Builds with the first tag, then adds the others. Returns the image id.
async fn build_image(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    push_login: Option<&Credentials>,
    log: &LogWriter,
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
    let pull_logins = pull_logins(engine, build, &dockerfile, push_login).await?;
    let mut references = build.image_references();
    let first = references
        .next()
        .unwrap_or_else(|| build.repository.clone());
    let spec = BuildSpec {
        source,
        reference: &first,
        options: &build.options,
        pull_logins: &pull_logins,
        timeout: engine.settings.build_timeout,
    };
    let image_id = builder.build(spec, |line| log.line(line)).await?;
    for tag in build.tags.iter().skip(1) {
        builder.tag(&image_id, &build.repository, tag).await?;
    }
    log.line(format!("dockpub: built {image_id}"));
    Ok(image_id)
}

/// Pushes every tag; returns the digest the registry confirmed for each.
async fn push_tags(
    build: &Build,
    builder: &Builder,
    credentials: Option<&Credentials>,
    log: &LogWriter,
) -> Result<BTreeMap<String, String>, RunError> {
    let mut digests = BTreeMap::new();
    for tag in &build.tags {
        let digest = builder
            .push(&build.repository, tag, credentials, |line| log.line(line))
            .await?;
        log.line(format!(
            "dockpub: registry confirmed {}:{tag} at {digest}",
            build.repository
        ));
        digests.insert(tag.clone(), digest);
    }
    if digests.is_empty() {
        return Err(RunError::Docker(DockerError::NoImageId));
    }
    Ok(digests)
}
