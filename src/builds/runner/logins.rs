//! Which registry logins a build pushes and pulls with.

use super::error::RunError;
use crate::builds::dockerfile::base_images;
use crate::builds::engine::Engine;
use crate::domain::{auth_server, registry_of, Build, Credentials};

/// The request's login when it sent one; else what the config or Docker's config
/// has for the repository's registry.
pub(super) async fn push_login(
    engine: &Engine,
    build: &Build,
) -> Result<Option<Credentials>, RunError> {
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
pub(super) async fn pull_logins(
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
