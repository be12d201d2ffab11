//! What a build is: the record the store keeps and the API shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Progress, Status, Timestamp};

/// A submitted build as stored, with what is known live while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// Its number: counts up from 1, never reused.
    pub id: i64,
    /// Where it is in its life; [`Status::predecessors`] says how it may move.
    pub status: Status,
    /// The image's repository without a tag; a registry host, if any, is its
    /// first component.
    pub repository: String,
    /// The tags it is built to, in the order they were asked for.
    pub tags: Vec<String>,
    /// Pushed once built; without a push, its tags live on the builder only.
    pub push: bool,
    /// Kept so a recovered build can tell that it needed credentials; the password never is.
    pub registry_username: Option<String>,
    /// The built image's id, once the build step has made it.
    pub image_id: Option<String>,
    /// The first tag's digest, kept for clients of the single-tag API.
    pub digest: Option<String>,
    /// The manifest digest the registry confirmed, per tag.
    pub digests: BTreeMap<String, String>,
    /// Why it failed or was cancelled, as the user should read it.
    pub error: Option<String>,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When its current run began building; None while queued.
    pub started_at: Option<Timestamp>,
    /// When its build step ended (and its push, if any, began).
    pub built_at: Option<Timestamp>,
    /// When it ended; None until its status is final.
    pub finished_at: Option<Timestamp>,
    /// The build this one repeats, for a retry.
    pub retry_of: Option<i64>,
    /// Live progress of a running build; held in memory, never stored.
    pub progress: Option<Progress>,
    /// Why a queued build has not started; read off the builders, never stored.
    pub waiting_for: Option<String>,
    /// When a running build that has been silent for over a minute was last
    /// heard from; held in memory, never stored.
    pub silent_since: Option<Timestamp>,
    /// How it is built, as the request chose.
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
    /// For a build of several platforms: each platform's image and the digest
    /// of its manifest, named by the index that `digests` holds. Empty otherwise.
    pub platforms: Vec<PlatformImage>,
    /// The name of the API token that submitted it; None when tokens were off.
    pub submitted_by: Option<String>,
    /// The repository and commit its context was fetched from; None for uploads.
    pub source: Option<GitSource>,
    /// On a build that did not succeed: the tags its push wrote to the registry,
    /// or may have (it got as far as the manifest). See README, "What succeeded means".
    pub tags_pushed: Vec<String>,
    /// The provenance attestation pushed with the image; None when none was.
    pub provenance: Option<ProvenanceRecord>,
}

/// A pushed build's provenance attestation (see README, "Provenance").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProvenanceRecord {
    /// The sha256 digest of the statement, as the attestation's layer holds it.
    pub digest: String,
    /// Whether a DSSE envelope signs it with the server's key.
    pub signed: bool,
}

/// How a build is made, as the request chose it (validated), shown in the build object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context, when it was taken from there.
    pub dockerfile: Option<String>,
    /// Size of the uploaded context archive; None when there was none.
    pub context_bytes: Option<u64>,
    /// Build arguments (`ARG`s), by name.
    pub build_args: BTreeMap<String, String>,
    /// Labels set on the image, by key.
    pub labels: BTreeMap<String, String>,
    /// The stage of a multi-stage Dockerfile to build; None builds the last one.
    pub target: Option<String>,
    /// The platforms to build for, `os/arch[/variant]`, comma-separated
    /// (`linux/amd64,linux/arm64`); None means the builder's own. Several make
    /// one image per platform, pushed as one image index.
    pub platform: Option<String>,
    /// Every step built anew, without the layer cache.
    pub no_cache: bool,
    /// Base images pulled again even when the builder has them.
    pub pull: bool,
    /// Network mode of RUN steps; None means the daemon's default.
    pub network: Option<String>,
    /// Built with BuildKit (true) or the daemon's legacy builder. Builds stored
    /// before BuildKit came have none: they were legacy.
    pub buildkit: bool,
    /// The ids of the secrets the request sent; their values are never stored.
    pub secrets: Vec<String>,
    /// The ids of the server's `[ssh.ID]` keys its SSH mounts may use; the keys
    /// are never stored.
    pub ssh: Vec<String>,
    /// Images whose layers the build may reuse (besides its own tags, with
    /// `registry_cache`).
    pub cache_from: Vec<String>,
}

/// One platform's image of a multi-platform build, as its index names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformImage {
    /// `os/arch[/variant]`, as the request wrote it.
    pub platform: String,
    /// The image built for it (its config digest in the registry).
    pub image_id: String,
    /// The digest of its manifest in the registry.
    pub digest: String,
}

impl BuildOptions {
    /// The requested platforms, in the request's order; empty for the builder's own.
    pub fn platforms(&self) -> Vec<&str> {
        self.platform
            .as_deref()
            .map(|list| list.split(',').collect())
            .unwrap_or_default()
    }

    /// Whether the build makes one image per platform and pushes an index.
    pub fn is_multi_platform(&self) -> bool {
        self.platforms().len() > 1
    }
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
    /// These tags, in this order.
    Listed(Vec<String>),
    /// The seed service's `YYYYMMDDHHMMSS`, made unique per build by its id.
    TimestampAndId,
}

/// A checked submission (or retry), about to be stored as a queued build.
#[derive(Debug)]
pub struct NewBuild {
    /// See [`Build::repository`].
    pub repository: String,
    /// How its tags are chosen: the store names them when a plan needs the id.
    pub tags: TagPlan,
    /// See [`Build::push`].
    pub push: bool,
    /// See [`Build::registry_username`]; the password stays in memory.
    pub registry_username: Option<String>,
    /// The Dockerfile's text, stored in a file beside the row.
    pub dockerfile: String,
    /// The checked context archive, when one was uploaded or fetched.
    pub context: Option<PreparedContext>,
    /// See [`Build::options`].
    pub options: BuildOptions,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// See [`Build::retry_of`].
    pub retry_of: Option<i64>,
    /// See [`Build::callback_url`].
    pub callback_url: Option<String>,
    /// See [`Build::submitted_by`].
    pub submitted_by: Option<String>,
    /// See [`Build::source`].
    pub source: Option<GitSource>,
}

/// Where a build's context came from, shown and stored as the build's `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GitSource {
    /// The repository URL as the request sent it.
    pub git: String,
    /// The ref the request asked for; `HEAD` when it named none.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The full SHA of the commit that was built.
    pub commit: String,
    /// The trigger that started the build; None for a build requested directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggeredBy>,
}

/// A trigger's part in a build: which trigger, and the push event's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggeredBy {
    /// The `[[triggers]]` entry's name.
    pub name: String,
    /// The git server's id of the push event; None for a run by hand.
    pub delivery: Option<String>,
}

/// A checked build context, staged in a temporary file until the store keeps it
/// beside the build. Dropping it (a refused build) removes the staged file.
#[derive(Debug)]
pub struct PreparedContext {
    /// The staged archive, as the daemon will be sent it.
    pub archive: tempfile::TempPath,
    /// Where the daemon finds the Dockerfile inside `archive`.
    pub dockerfile_path: String,
}

/// One stored log line; `seq` counts from 1 per build and never repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The line's number in its build's log.
    pub seq: i64,
    /// The text, without its line break.
    pub line: String,
}
