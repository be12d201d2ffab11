//! The types every layer shares: what a build is and how its status may move,
//! the options, logins and secrets it carries, image references, progress, and
//! webhook deliveries.
//!
//! The bottom of the layering: nothing here does I/O beyond reading the clock or
//! making an id, and nothing here imports another module of dockpub
//! (src/layering.rs checks that).

mod build;
mod names;
mod progress;
mod reference;
mod secrets;
mod status;
mod time;
mod webhook;

pub use build::{
    Build, BuildOptions, GitSource, LogLine, NewBuild, PlatformImage, PreparedContext,
    ProvenanceRecord, TagPlan, TriggeredBy,
};
pub use names::{is_plain_name, PLAIN_NAME_RULE};
pub use progress::{
    PlatformPhase, PlatformProgress, Progress, ProgressCounts, PushPhase, PushUpdate,
};
pub use reference::{
    auth_server, auth_server_of, normalize_registry, registry_host, registry_of,
    validate_repository, validate_tag, ReferenceError, DOCKER_HUB, DOCKER_HUB_AUTH_SERVER,
};
pub use secrets::{BuildSecret, Credentials, Secret, IDENTITY_TOKEN_USER, MAX_SECRET_BYTES};
pub use status::{Status, UnknownStatus};
pub use time::Timestamp;
pub use webhook::{AttemptRecord, Delivery, DeliveryState, NewDelivery, WebhookEvent};
