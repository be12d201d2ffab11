//! How much a request may send, and how many are read at once.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{at_least_1, ConfigError, Section};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UploadSection {
    /// Largest request body, not counting a build context.
    pub max_upload_bytes: usize,
    pub max_dockerfile_bytes: usize,
    /// Largest build context archive accepted, counted decompressed; it is
    /// streamed to disk, not counted against `max_upload_bytes`.
    pub max_context_bytes: u64,
    /// Most entries (files, folders, links) a build context may hold.
    pub max_context_entries: u64,
    /// A request body that sends nothing for this long is cut off (408).
    pub upload_idle_timeout_secs: u64,
    /// Forms read at once; more get 503 with Retry-After.
    pub max_concurrent_uploads: usize,
    /// Largest push event body a trigger takes (the route is open: kept small).
    pub max_trigger_event_bytes: usize,
    /// Push event bodies read at once (their own slots, so the open route
    /// cannot take the uploads' slots); more get 503 with Retry-After.
    pub max_concurrent_trigger_events: usize,
}

impl Default for UploadSection {
    fn default() -> Self {
        UploadSection {
            max_upload_bytes: 16 * 1024 * 1024,
            max_dockerfile_bytes: 1024 * 1024,
            max_context_bytes: 1024 * 1024 * 1024,
            max_context_entries: 200_000,
            upload_idle_timeout_secs: 60,
            max_concurrent_uploads: 64,
            max_trigger_event_bytes: 1024 * 1024,
            max_concurrent_trigger_events: 16,
        }
    }
}

/// The flags (and variables) of [`UploadSection`].
#[derive(Debug, Default, Args, Serialize)]
pub struct UploadFlags {
    /// Largest request body accepted [default: 16 MiB]
    #[arg(long, env = "DOCKPUB_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Largest Dockerfile accepted [default: 1 MiB]
    #[arg(long, env = "DOCKPUB_MAX_DOCKERFILE_BYTES")]
    pub max_dockerfile_bytes: Option<usize>,
    /// Largest build context accepted, counted decompressed [default: 1 GiB]
    #[arg(long, env = "DOCKPUB_MAX_CONTEXT_BYTES")]
    pub max_context_bytes: Option<u64>,
    /// Most entries a build context may hold [default: 200000]
    #[arg(long, env = "DOCKPUB_MAX_CONTEXT_ENTRIES")]
    pub max_context_entries: Option<u64>,
    /// Seconds a request body may send nothing before it is cut off [default: 60]
    #[arg(long, env = "DOCKPUB_UPLOAD_IDLE_TIMEOUT_SECS")]
    pub upload_idle_timeout_secs: Option<u64>,
    /// Uploads read at once; more get 503 [default: 64]
    #[arg(long, env = "DOCKPUB_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: Option<usize>,
    /// Largest push event a trigger takes [default: 1 MiB]
    #[arg(long, env = "DOCKPUB_MAX_TRIGGER_EVENT_BYTES")]
    pub max_trigger_event_bytes: Option<usize>,
    /// Push events read at once; more get 503 [default: 16]
    #[arg(long, env = "DOCKPUB_MAX_CONCURRENT_TRIGGER_EVENTS")]
    pub max_concurrent_trigger_events: Option<usize>,
}

impl Section for UploadSection {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_1(&[
            ("max_upload_bytes", self.max_upload_bytes as u64),
            ("max_dockerfile_bytes", self.max_dockerfile_bytes as u64),
            ("max_context_bytes", self.max_context_bytes),
            ("max_context_entries", self.max_context_entries),
            ("upload_idle_timeout_secs", self.upload_idle_timeout_secs),
            ("max_concurrent_uploads", self.max_concurrent_uploads as u64),
            (
                "max_trigger_event_bytes",
                self.max_trigger_event_bytes as u64,
            ),
            (
                "max_concurrent_trigger_events",
                self.max_concurrent_trigger_events as u64,
            ),
        ])
    }
}
