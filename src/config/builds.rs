//! What a build may use, how long it may take, and how many may wait.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{at_least_1, empty_is_none, without_blanks, ConfigError, Section};
use crate::builds::limits::{DEFAULT_MAX_TAGS, MAX_TAGS_SETTING};

/// bollard sends the build's memory limit and CPU shares as i32, so larger values
/// cannot reach the daemon; Docker refuses a memory limit under 6 MiB.
const MIN_BUILD_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
const MAX_BUILD_MEMORY_BYTES: u64 = i32::MAX as u64;
/// Docker's own range for CPU shares.
const BUILD_CPU_SHARES: std::ops::RangeInclusive<u64> = 2..=262_144;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BuildSection {
    /// Network mode for RUN steps; unset or empty means the daemon's default.
    #[serde(deserialize_with = "empty_is_none")]
    pub build_network: Option<String>,
    /// Network modes a build may ask for besides `build_network`.
    #[serde(deserialize_with = "without_blanks")]
    pub allowed_build_networks: Vec<String>,
    /// Memory limit of each legacy build step's container; 0 means no limit.
    pub build_memory_bytes: u64,
    /// CPU shares of each legacy build step's container; 0 means Docker's default.
    pub build_cpu_shares: u64,
    /// A build (the daemon's part, before the push) running longer fails.
    pub build_timeout_secs: u64,
    /// A build whose daemon sends no output and no progress for this long fails
    /// (and is stopped on the daemon).
    pub build_idle_timeout_secs: u64,
    /// A push with no progress from the daemon for this long is cut and tried
    /// once more; a second stall fails the build, naming the registry.
    pub push_idle_timeout_secs: u64,
    /// A BuildKit import of a cache source (`registry_cache`, `cache_from`)
    /// under way this long is given up: the build starts again without it.
    pub cache_import_timeout_secs: u64,
    /// Queued builds accepted before submissions get 429.
    pub max_queued_builds: usize,
    /// A queued build that has not started after this many seconds fails,
    /// saying what it waited for (unset: it waits).
    pub max_queue_wait_secs: Option<u64>,
    /// BuildKit builds push inline cache metadata and reuse their own tags in
    /// the registry (and the request's `cache_from`) as cache sources.
    pub registry_cache: bool,
    /// Tags one build may have (each is pushed); more are refused with 400.
    pub max_tags_per_build: usize,
    /// Lines of a build's log kept; past it the build's output is dropped
    /// (one line says so) and the build goes on.
    pub max_log_lines: u64,
    /// Bytes of a build's log kept, as `max_log_lines`.
    pub max_log_bytes: u64,
    /// One request to a registry's own API (reading or putting a
    /// multi-platform build's image index) taking longer fails.
    pub registry_timeout_secs: u64,
}

impl Default for BuildSection {
    fn default() -> Self {
        BuildSection {
            build_network: None,
            allowed_build_networks: Vec::new(),
            build_memory_bytes: 0,
            build_cpu_shares: 0,
            build_timeout_secs: 3600,
            build_idle_timeout_secs: 600,
            push_idle_timeout_secs: 600,
            cache_import_timeout_secs: 60,
            max_queued_builds: 1000,
            max_queue_wait_secs: None,
            registry_cache: true,
            max_tags_per_build: DEFAULT_MAX_TAGS,
            max_log_lines: 1_000_000,
            max_log_bytes: 64 * 1024 * 1024,
            registry_timeout_secs: 60,
        }
    }
}

/// The flags (and variables) of [`BuildSection`].
#[derive(Debug, Default, Args, Serialize)]
pub struct BuildFlags {
    /// Network mode for RUN steps, e.g. none [default: the daemon's]
    #[arg(long, env = "DOCKPUB_BUILD_NETWORK")]
    pub build_network: Option<String>,
    /// Network modes builds may ask for besides --build-network, comma-separated
    #[arg(long, env = "DOCKPUB_ALLOWED_BUILD_NETWORKS", value_delimiter = ',')]
    pub allowed_build_networks: Option<Vec<String>>,
    /// Memory limit of each build step, in bytes; 0 for none [default: 0]
    #[arg(long, env = "DOCKPUB_BUILD_MEMORY_BYTES")]
    pub build_memory_bytes: Option<u64>,
    /// CPU shares of each build step; 0 for Docker's default [default: 0]
    #[arg(long, env = "DOCKPUB_BUILD_CPU_SHARES")]
    pub build_cpu_shares: Option<u64>,
    /// Seconds a build may run before it is stopped [default: 3600]
    #[arg(long, env = "DOCKPUB_BUILD_TIMEOUT_SECS")]
    pub build_timeout_secs: Option<u64>,
    /// Seconds a build may go without output or progress before it fails [default: 600]
    #[arg(long, env = "DOCKPUB_BUILD_IDLE_TIMEOUT_SECS")]
    pub build_idle_timeout_secs: Option<u64>,
    /// Seconds a push may go without progress before it is cut (and tried once more) [default: 600]
    #[arg(long, env = "DOCKPUB_PUSH_IDLE_TIMEOUT_SECS")]
    pub push_idle_timeout_secs: Option<u64>,
    /// Seconds a BuildKit cache import may take before the build goes on without it [default: 60]
    #[arg(long, env = "DOCKPUB_CACHE_IMPORT_TIMEOUT_SECS")]
    pub cache_import_timeout_secs: Option<u64>,
    /// Queued builds accepted before submissions get 429 [default: 1000]
    #[arg(long, env = "DOCKPUB_MAX_QUEUED_BUILDS")]
    pub max_queued_builds: Option<usize>,
    /// Fail a build that waited this many seconds in the queue [default: wait]
    #[arg(long, env = "DOCKPUB_MAX_QUEUE_WAIT_SECS")]
    pub max_queue_wait_secs: Option<u64>,
    /// BuildKit builds push inline cache and reuse their own tags as cache [default: true]
    #[arg(long, env = "DOCKPUB_REGISTRY_CACHE")]
    pub registry_cache: Option<bool>,
    /// Tags one build may have [default: 32]
    #[arg(long, env = "DOCKPUB_MAX_TAGS_PER_BUILD")]
    pub max_tags_per_build: Option<usize>,
    /// Lines of a build's log kept; the rest of its output is dropped [default: 1000000]
    #[arg(long, env = "DOCKPUB_MAX_LOG_LINES")]
    pub max_log_lines: Option<u64>,
    /// Bytes of a build's log kept; the rest of its output is dropped [default: 64 MiB]
    #[arg(long, env = "DOCKPUB_MAX_LOG_BYTES")]
    pub max_log_bytes: Option<u64>,
    /// Seconds one request to a registry's API may take (image indexes) [default: 60]
    #[arg(long, env = "DOCKPUB_REGISTRY_TIMEOUT_SECS")]
    pub registry_timeout_secs: Option<u64>,
}

impl Section for BuildSection {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_1(&[
            ("build_timeout_secs", self.build_timeout_secs),
            ("build_idle_timeout_secs", self.build_idle_timeout_secs),
            ("push_idle_timeout_secs", self.push_idle_timeout_secs),
            ("cache_import_timeout_secs", self.cache_import_timeout_secs),
            ("registry_timeout_secs", self.registry_timeout_secs),
            ("max_queued_builds", self.max_queued_builds as u64),
            ("max_log_lines", self.max_log_lines),
            ("max_log_bytes", self.max_log_bytes),
        ])?;
        if !(1..=MAX_TAGS_SETTING).contains(&self.max_tags_per_build) {
            return Err(ConfigError::Invalid(format!(
                "max_tags_per_build must be from 1 to {MAX_TAGS_SETTING}, got {}",
                self.max_tags_per_build
            )));
        }
        if self.max_queue_wait_secs == Some(0) {
            return Err(ConfigError::Invalid(
                "max_queue_wait_secs must be at least 1 (or unset: builds wait)".into(),
            ));
        }
        let memory = self.build_memory_bytes;
        if memory != 0 && !(MIN_BUILD_MEMORY_BYTES..=MAX_BUILD_MEMORY_BYTES).contains(&memory) {
            return Err(ConfigError::Invalid(format!(
                "build_memory_bytes must be 0 (no limit) or from {MIN_BUILD_MEMORY_BYTES} (Docker's minimum) \
                 to {MAX_BUILD_MEMORY_BYTES} (the largest the build API takes), got {memory}"
            )));
        }
        let shares = self.build_cpu_shares;
        if shares != 0 && !BUILD_CPU_SHARES.contains(&shares) {
            return Err(ConfigError::Invalid(format!(
                "build_cpu_shares must be 0 (Docker's default) or from {} to {}, got {shares}",
                BUILD_CPU_SHARES.start(),
                BUILD_CPU_SHARES.end()
            )));
        }
        Ok(())
    }
}

impl BuildSection {
    /// Every network a build may ask for: the default one and the allowed ones.
    pub(crate) fn build_networks(&self) -> Vec<String> {
        let mut networks: Vec<String> = self.build_network.iter().cloned().collect();
        for network in &self.allowed_build_networks {
            if !networks.contains(network) {
                networks.push(network.clone());
            }
        }
        networks
    }
}
