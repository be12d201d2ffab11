//! `[ssh.ID]`: private keys a build's `RUN --mount=type=ssh` steps may use
//! through dockpub's own SSH agent, when the request asks for the id. File only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Section};
use crate::domain::{is_plain_name, PLAIN_NAME_RULE};
use crate::ssh_agent::AgentKey;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SshSection {
    /// Each key's file, by id (`default`: a mount without `id=`).
    #[serde(rename = "ssh")]
    pub keys: BTreeMap<String, SshKeyConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyConfig {
    /// An unencrypted Ed25519 OpenSSH private key.
    pub file: PathBuf,
}

impl Section for SshSection {
    fn validate(&self) -> Result<(), ConfigError> {
        self.agent_keys().map(|_| ())
    }
}

impl SshSection {
    /// The keys, read now, so a missing or unusable file stops the start
    /// rather than a build later.
    pub(crate) fn agent_keys(&self) -> Result<Vec<AgentKey>, ConfigError> {
        self.keys
            .iter()
            .map(|(id, config)| {
                let key = format!("ssh.{id}");
                if !is_plain_name(id) {
                    return Err(ConfigError::Invalid(format!(
                        "{key}: the id must be {PLAIN_NAME_RULE}"
                    )));
                }
                AgentKey::load(id, &config.file)
                    .map_err(|err| ConfigError::Invalid(format!("{key}: {err}")))
            })
            .collect()
    }

    /// Whether `[ssh.ID]` exists.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }
}
