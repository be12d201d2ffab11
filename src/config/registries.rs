//! `[registries."HOST"]`: logins for pushes and private base images. File only.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, Section};
use crate::domain::{Credentials, Secret};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RegistrySection {
    /// Push and pull logins by registry host (`docker.io` for Docker Hub).
    #[serde(rename = "registries")]
    pub logins: BTreeMap<String, RegistryLogin>,
}

/// A username and either the password or the name of the environment variable
/// holding it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub username: String,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
}

impl Section for RegistrySection {
    fn validate(&self) -> Result<(), ConfigError> {
        self.registry_credentials().map(|_| ())
    }
}

impl RegistrySection {
    /// The logins, with passwords read from their variables now, so a missing
    /// variable stops the start rather than a push later.
    pub(crate) fn registry_credentials(&self) -> Result<Vec<(String, Credentials)>, ConfigError> {
        self.logins
            .iter()
            .map(|(host, login)| Ok((host.clone(), login.credentials(host)?)))
            .collect()
    }
}

impl RegistryLogin {
    fn credentials(&self, host: &str) -> Result<Credentials, ConfigError> {
        let invalid = |what: String| ConfigError::Invalid(format!("registries.\"{host}\": {what}"));
        if self.username.is_empty() {
            return Err(invalid("username must not be empty".into()));
        }
        let password = match (&self.password, &self.password_env) {
            (Some(password), None) => password.clone(),
            (None, Some(variable)) => match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Secret::new(value),
                _ => {
                    return Err(invalid(format!(
                        "the variable {variable} named by password_env is not set"
                    )))
                }
            },
            _ => {
                return Err(invalid(
                    "set exactly one of password and password_env".into(),
                ))
            }
        };
        Ok(Credentials {
            username: self.username.clone(),
            password,
        })
    }
}
