//! Which registry login a push or a pull uses: the request's own first (the runner
//! holds those), then dockpub's config `[registries."HOST"]`, then Docker's own
//! config (`auths`, `credHelpers`, `credsStore`). Resolved when a build runs, not
//! when it is submitted, so a build recovered after a restart still finds them.

use std::collections::BTreeMap;

use super::docker_config::{DockerConfig, DockerConfigError};
use crate::domain::{normalize_registry, Credentials};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
}

/// The stored sources of credentials; the request's own come first and are the
/// runner's to hold.
pub struct CredentialResolver {
    configured: BTreeMap<String, Credentials>,
    docker_config: DockerConfig,
}

impl CredentialResolver {
    /// `configured`: dockpub's `[registries]`, keys as written in the config.
    pub fn new(configured: Vec<(String, Credentials)>, docker_config: DockerConfig) -> Self {
        CredentialResolver {
            configured: configured
                .into_iter()
                .map(|(host, credentials)| (normalize_registry(&host), credentials))
                .collect(),
            docker_config,
        }
    }

    /// The login for `registry` (a key from [`crate::domain::registry_of`]), if any source has one.
    pub async fn resolve(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        if let Some(credentials) = self.configured.get(registry) {
            return Ok(Some(credentials.clone()));
        }
        Ok(self.docker_config.lookup(registry).await?)
    }
}
