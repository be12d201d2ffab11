//! Builds from git: how long a fetch may take and which URLs are allowed. File only.

use serde::Deserialize;

use super::{at_least_1, ConfigError, Section};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitSection {
    /// Seconds a build's git fetch may take before it is stopped and refused.
    pub git_timeout_secs: u64,
    /// Hosts `http://` git URLs may name besides loopback ones (exact names).
    pub allow_insecure_git_hosts: Vec<String>,
    /// Allow `file://` git URLs, which read the server's own disk.
    pub allow_file_git: bool,
}

impl Default for GitSection {
    fn default() -> Self {
        GitSection {
            git_timeout_secs: 300,
            allow_insecure_git_hosts: Vec::new(),
            allow_file_git: false,
        }
    }
}

impl Section for GitSection {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_1(&[("git_timeout_secs", self.git_timeout_secs)])
    }
}
