//! What a build is: the record the store keeps and the API shows.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::context::PreparedContext;
use super::git::GitSource;
use super::progress::Progress;
use super::status::Status;

#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    pub id: i64,
    pub status: Status,
    pub repository: String,
    pub tags: Vec<String>,
    pub push: bool,
    /// Kept so a recovered build can tell that it needed credentials; the password never is.
    pub registry_username: Option<String>,
    pub image_id: Option<String>,
    /// The first tag's digest, kept for clients of the single-tag API.
    pub digest: Option<String>,
    /// The manifest digest the registry confirmed, per tag.
    pub digests: BTreeMap<String, String>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub built_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// The build this one repeats, for a retry.
    pub retry_of: Option<i64>,
    /// Live progress of a running build; held in memory, never stored.
    pub progress: Option<Progress>,
    /// Why a queued build has not started; read off the builders, never stored.
    pub waiting_for: Option<String>,
    pub options: BuildOptions,
    /// Where the daemon finds the Dockerfile inside the stored context archive;
    /// None when the build has no context, only its Dockerfile.
    pub context_dockerfile: Option<String>,
    /// Told when the build ends (a webhook of its own); checked against
    /// `allowed_callback_hosts` when the build was submitted.
    pub callback_url: Option<String>,
    /// The builder it runs or last ran on; None while queued.
    pub builder: Option<String>,
    /// How many times it was handed to a builder.
    pub attempts: u32,
    /// Per tag a later build took over: that build's id. See README, "Same tag".
    pub tag_moved_by: BTreeMap<String, i64>,
    /// The name of the API token that submitted it; None when tokens were off.
    pub submitted_by: Option<String>,
    /// The repository and commit its context was fetched from; None for uploads.
    pub source: Option<GitSource>,
}

/// How a build is made, as the request chose it (validated), shown in the build object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context, when it was taken from there.
    pub dockerfile: Option<String>,
    /// Size of the uploaded context archive; None when there was none.
    pub context_bytes: Option<u64>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// Network mode of RUN steps; None means the daemon's default.
    pub network: Option<String>,
    /// Built with BuildKit (true) or the daemon's legacy builder. Builds stored
    /// before BuildKit came have none: they were legacy.
    pub buildkit: bool,
    /// The ids of the secrets the request sent; their values are never stored.
    pub secrets: Vec<String>,
    /// Images whose layers the build may reuse (besides its own tags, with
    /// `registry_cache`).
    pub cache_from: Vec<String>,
}

impl Build {
    /// `repository:tag` for every tag, in the order they were asked for.
    pub fn image_references(&self) -> impl Iterator<Item = String> + '_ {
        self.tags
            .iter()
            .map(move |tag| format!("{}:{tag}", self.repository))
    }
}

/// How a new build's tags are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum TagPlan {
    Listed(Vec<String>),
    /// The seed service's `YYYYMMDDHHMMSS`, made unique per build by its id.
    TimestampAndId,
}

#[derive(Debug)]
pub struct NewBuild {
    pub repository: String,
    pub tags: TagPlan,
    pub push: bool,
    pub registry_username: Option<String>,
    pub dockerfile: String,
    pub context: Option<PreparedContext>,
    pub options: BuildOptions,
    pub created_at: Timestamp,
    pub retry_of: Option<i64>,
    pub callback_url: Option<String>,
    pub submitted_by: Option<String>,
    pub source: Option<GitSource>,
}

/// One stored log line; `seq` counts from 1 per build and never repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: i64,
    pub line: String,
}

/// Registry credentials for one build's push. Held in memory only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// A string that never shows itself in Debug or Display output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Config files hold passwords too; they are read into a Secret at once.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A UTC instant, shown as RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now())
    }

    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.with_timezone(&Utc)))
    }

    /// The seed service's tag format.
    pub fn compact(self) -> String {
        self.0.format("%Y%m%d%H%M%S").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let credentials = Credentials {
            username: "alice".into(),
            password: Secret::new("hunter2".into()),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn timestamps_round_trip() {
        let now = Timestamp::now();
        let text = now.to_rfc3339();
        assert!(text.ends_with('Z'));
        let parsed = Timestamp::parse(&text).unwrap();
        assert_eq!(parsed.to_rfc3339(), text);
        assert_eq!(now.compact().len(), 14);
    }
}
