//! `[secrets.ID]`: build secrets offered to every BuildKit build. File only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{read_secret, ConfigError, Section};
use crate::domain::BuildSecret;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SecretSection {
    /// Each from `env = "VAR"` or `file = "/path"`, by id.
    #[serde(rename = "secrets")]
    pub sources: BTreeMap<String, SecretSourceConfig>,
}

/// Where a `[secrets.ID]` value is read from at start: one of the two.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSourceConfig {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl Section for SecretSection {
    fn validate(&self) -> Result<(), ConfigError> {
        self.build_secrets().map(|_| ())
    }
}

impl SecretSection {
    /// The values, read now, so a missing variable or file stops the start
    /// rather than a build later.
    pub(crate) fn build_secrets(&self) -> Result<Vec<BuildSecret>, ConfigError> {
        self.sources
            .iter()
            .map(|(id, source)| {
                let key = format!("secrets.{id}");
                BuildSecret::new(id, source.read(&key)?)
                    .map_err(|why| ConfigError::Invalid(format!("{key}: {why}")))
            })
            .collect()
    }
}

impl SecretSourceConfig {
    /// The value, from the variable or the file.
    pub(super) fn read(&self, key: &str) -> Result<Vec<u8>, ConfigError> {
        match (&self.env, &self.file) {
            (Some(name), None) => Ok(read_secret(name, key)?.expose().as_bytes().to_vec()),
            (None, Some(path)) => std::fs::read(path).map_err(|err| {
                ConfigError::Invalid(format!("{key}: cannot read {}: {err}", path.display()))
            }),
            _ => Err(ConfigError::Invalid(format!(
                "{key}: give either env = \"VAR\" or file = \"/path\""
            ))),
        }
    }
}
