//! Builds from git: how long a fetch may take, which URLs are allowed, the
//! logins for git hosts (`[git."HOST"]`) and the triggers that build on push
//! (`[[triggers]]`). File only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use serde::Deserialize;

use super::triggers::{git_logins, triggers, GitHostEntry, TriggerEntry};
use super::{at_least_1, ConfigError, Section};
use crate::builds::git::GitPolicy;
use crate::builds::triggers::Trigger;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitSection {
    /// Seconds a build's git fetch may take before it is stopped and refused.
    pub git_timeout_secs: u64,
    /// Seconds a git fetch may go without writing anything (its progress, the
    /// objects, the files) before it is stopped: a server that stalls.
    pub git_idle_timeout_secs: u64,
    /// Hosts `http://` git URLs may name besides loopback ones (exact names).
    pub allow_insecure_git_hosts: Vec<String>,
    /// Allow `file://` git URLs, which read the server's own disk.
    pub allow_file_git: bool,
    /// Git fetches running at once; further submissions from git wait for one to end.
    pub max_concurrent_git_fetches: usize,
    /// Git work for trigger push events at once (ref lookups and fetches), in
    /// slots of their own so other fetches never hold an event's answer up.
    pub max_concurrent_trigger_fetches: usize,
    /// `[git."HOST"]`: logins for git hosts, used when a request brings none.
    #[serde(rename = "git")]
    pub hosts: BTreeMap<String, GitHostEntry>,
    /// `[[triggers]]`: builds on push events from a git server.
    pub triggers: Vec<TriggerEntry>,
}

impl Default for GitSection {
    fn default() -> Self {
        GitSection {
            git_timeout_secs: 300,
            git_idle_timeout_secs: 60,
            allow_insecure_git_hosts: Vec::new(),
            allow_file_git: false,
            max_concurrent_git_fetches: 4,
            max_concurrent_trigger_fetches: 2,
            hosts: BTreeMap::new(),
            triggers: Vec::new(),
        }
    }
}

impl Section for GitSection {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_1(&[
            ("git_timeout_secs", self.git_timeout_secs),
            ("git_idle_timeout_secs", self.git_idle_timeout_secs),
            (
                "max_concurrent_git_fetches",
                self.max_concurrent_git_fetches as u64,
            ),
            (
                "max_concurrent_trigger_fetches",
                self.max_concurrent_trigger_fetches as u64,
            ),
        ])?;
        self.triggers().map(drop)
    }
}

impl GitSection {
    /// What git builds may fetch, with the `[git."HOST"]` logins.
    pub(crate) fn git_policy(&self) -> Result<GitPolicy, ConfigError> {
        Ok(GitPolicy {
            allow_file: self.allow_file_git,
            insecure_hosts: self.allow_insecure_git_hosts.clone(),
            timeout: Duration::from_secs(self.git_timeout_secs),
            idle_timeout: Duration::from_secs(self.git_idle_timeout_secs),
            hosts: git_logins(&self.hosts)?,
            fetch_slots: Arc::new(Semaphore::new(self.max_concurrent_git_fetches)),
        })
    }

    /// The `[[triggers]]`, checked against the git policy.
    pub(crate) fn triggers(&self) -> Result<Vec<Trigger>, ConfigError> {
        triggers(&self.triggers, &self.git_policy()?)
    }

    /// The slots push events' git work runs in.
    pub(crate) fn trigger_fetch_slots(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.max_concurrent_trigger_fetches))
    }
}
