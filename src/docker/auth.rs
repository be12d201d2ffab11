//! Registry logins as the daemon takes them (X-Registry-Auth for a push,
//! X-Registry-Config for a build's pulls).

use std::collections::HashMap;

use bollard::auth::DockerCredentials;

use crate::domain::{Credentials, IDENTITY_TOKEN_USER};

/// One login for the registry at `server` (its auth server address).
pub fn docker_credentials(server: &str, credentials: &Credentials) -> DockerCredentials {
    let secret = credentials.password.expose().to_string();
    if credentials.username == IDENTITY_TOKEN_USER {
        return DockerCredentials {
            identitytoken: Some(secret),
            serveraddress: Some(server.to_string()),
            ..Default::default()
        };
    }
    DockerCredentials {
        username: Some(credentials.username.clone()),
        password: Some(secret),
        serveraddress: Some(server.to_string()),
        ..Default::default()
    }
}

/// Every login a build may pull with, keyed by server address.
pub fn registry_config(logins: &[(String, Credentials)]) -> HashMap<String, DockerCredentials> {
    logins
        .iter()
        .map(|(server, credentials)| (server.clone(), docker_credentials(server, credentials)))
        .collect()
}
