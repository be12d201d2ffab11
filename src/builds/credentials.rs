//! Which registry login a push or a pull uses: the request's own first (the runner
//! holds those), then dockpub's config `[registries."HOST"]`, then Docker's own
//! config (`auths`, `credHelpers`, `credsStore`). Resolved when a build runs, not
//! when it is submitted, so a build recovered after a restart still finds them.

use std::collections::BTreeMap;

use super::docker_config::{DockerConfig, DockerConfigError};
use super::model::Credentials;
use super::reference::registry_host;

/// The key dockpub's config and this module use for Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The username credential helpers give with an identity token instead of a password.
pub const IDENTITY_TOKEN_USER: &str = "<token>";
/// The address the docker CLI gives Docker Hub's credentials under.
pub const DOCKER_HUB_AUTH_SERVER: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
}

/// The registry a repository lives on, as a key: `docker.io` for Docker Hub names
/// (`alice/app`, `app`), otherwise the host as written (`127.0.0.1:5000`).
pub fn registry_of(repository: &str) -> String {
    registry_host(repository)
        .map(normalize_registry)
        .unwrap_or_else(|| DOCKER_HUB.to_string())
}

/// A registry key from how configs write one: with or without a scheme or path,
/// and Docker Hub under any of its names.
pub fn normalize_registry(written: &str) -> String {
    let host = written
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// The server address the daemon and credential helpers expect for a registry key.
pub fn auth_server(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_SERVER
    } else {
        registry
    }
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

    /// The login for `registry` (a key from [`registry_of`]), if any source has one.
    pub async fn resolve(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        if let Some(credentials) = self.configured.get(registry) {
            return Ok(Some(credentials.clone()));
        }
        Ok(self.docker_config.lookup(registry).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_as_the_docker_cli_names_them() {
        assert_eq!(registry_of("alice/app"), DOCKER_HUB);
        assert_eq!(registry_of("app"), DOCKER_HUB);
        assert_eq!(registry_of("docker.io/alice/app"), DOCKER_HUB);
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            DOCKER_HUB
        );
        assert_eq!(
            normalize_registry("http://Registry.example.com/v2/"),
            "registry.example.com"
        );
        assert_eq!(auth_server(DOCKER_HUB), DOCKER_HUB_AUTH_SERVER);
        assert_eq!(auth_server("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
