//! Pruning of finished builds.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{at_least_1, ConfigError, Section};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RetentionSection {
    /// Final builds older than this many days are pruned (unset: kept).
    pub retention_days: Option<u64>,
    /// The newest this-many succeeded builds, and every build after them, are
    /// never pruned (unset: no such floor).
    pub retention_keep_last: Option<usize>,
    /// How often the pruner runs.
    pub retention_interval_secs: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            retention_days: None,
            retention_keep_last: None,
            retention_interval_secs: 600,
        }
    }
}

/// The flags (and variables) of [`RetentionSection`].
#[derive(Debug, Default, Args, Serialize)]
pub struct RetentionFlags {
    /// Prune final builds older than this many days [default: keep]
    #[arg(long, env = "DOCKPUB_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Keep the newest this-many succeeded builds and every build after them [default: no floor]
    #[arg(long, env = "DOCKPUB_RETENTION_KEEP_LAST")]
    pub retention_keep_last: Option<usize>,
    /// Seconds between pruning runs [default: 600]
    #[arg(long, env = "DOCKPUB_RETENTION_INTERVAL_SECS")]
    pub retention_interval_secs: Option<u64>,
}

impl Section for RetentionSection {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_1(&[("retention_interval_secs", self.retention_interval_secs)])
    }
}
