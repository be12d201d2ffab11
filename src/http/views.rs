//! The JSON shapes builds take on the wire.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    Build, BuildOptions, GitSource, PlatformImage, Progress, ProvenanceRecord, Status, Timestamp,
    TriggeredBy,
};

/// A build, as every v1 route shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Build)]
pub struct BuildView<'a> {
    id: i64,
    status: Status,
    repository: &'a str,
    tags: &'a [String],
    push: bool,
    /// The image built; for several platforms, the first platform's (see `platforms`).
    image_id: Option<&'a str>,
    /// The first tag's digest (older clients read this one); for several
    /// platforms, the image index's digest.
    digest: Option<&'a str>,
    digests: &'a BTreeMap<String, String>,
    /// For a build of several platforms: each platform's image and the digest
    /// of its manifest, as the index under every tag names them; empty otherwise.
    platforms: &'a [PlatformImage],
    options: &'a BuildOptions,
    error: Option<&'a str>,
    created_at: String,
    started_at: Option<String>,
    built_at: Option<String>,
    finished_at: Option<String>,
    retry_of: Option<i64>,
    /// The builder it runs or last ran on; null while queued.
    builder: Option<&'a str>,
    attempts: u32,
    /// Per tag, the build that later took it over (pushed another image under it,
    /// or moved the local tag on the same builder); empty while this build owns all its tags.
    tag_moved_by: &'a BTreeMap<String, i64>,
    /// On a build that did not succeed: the tags its push wrote to the registry,
    /// or may have (it got as far as the tag's manifest before it failed, was
    /// cancelled or stalled). The registry may serve this build's image under
    /// them; the builds that had them before say so in `tag_moved_by`. Empty
    /// for a build that succeeded (see `digests`) or never got that far.
    tags_pushed: &'a [String],
    /// The provenance attestation pushed with the image (its statement's
    /// digest, and whether it is signed); null when none was pushed. The
    /// document: `/api/v1/builds/{id}/provenance`.
    provenance: Option<&'a ProvenanceRecord>,
    /// The name of the API token that submitted it; null when tokens are off.
    submitted_by: Option<&'a str>,
    /// The repository, ref and commit the context was fetched from; null for uploads.
    source: Option<SourceView<'a>>,
    /// The trigger that started it, and the push event's delivery id; null
    /// for a build submitted directly.
    trigger: Option<&'a TriggeredBy>,
    progress: Option<&'a Progress>,
    /// Why a queued build has not started yet, e.g. "no builder up"; null when
    /// it is not queued or is about to start.
    waiting_for: Option<&'a str>,
    /// While a running build (its build step or its push) has sent no output
    /// and no progress for over a minute: when it was last heard from. Null
    /// otherwise. See `build_idle_timeout_secs` and `push_idle_timeout_secs`.
    silent_since: Option<String>,
    links: Links,
}

/// Where a git build's context came from.
#[derive(Serialize, ToSchema)]
#[schema(as = GitSource)]
struct SourceView<'a> {
    /// The repository URL.
    git: &'a str,
    /// The ref asked for (`HEAD` when none was named), or the ref a trigger saw pushed.
    #[serde(rename = "ref")]
    git_ref: &'a str,
    /// The full SHA of the commit that was built.
    commit: &'a str,
}

impl<'a> From<&'a GitSource> for SourceView<'a> {
    fn from(source: &'a GitSource) -> Self {
        SourceView {
            git: &source.git,
            git_ref: &source.git_ref,
            commit: &source.commit,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct Links {
    #[serde(rename = "self")]
    self_: String,
    logs: String,
    events: String,
}

pub fn build_url(id: i64) -> String {
    format!("/api/v1/builds/{id}")
}

/// The build object as JSON, for payloads made outside a handler (webhooks).
pub fn build_json(build: &Build) -> serde_json::Value {
    serde_json::to_value(BuildView::from(build)).expect("a build view always serializes")
}

impl<'a> From<&'a Build> for BuildView<'a> {
    fn from(build: &'a Build) -> Self {
        BuildView {
            id: build.id,
            status: build.status,
            repository: &build.repository,
            tags: &build.tags,
            push: build.push,
            image_id: build.image_id.as_deref(),
            digest: build.digest.as_deref(),
            digests: &build.digests,
            platforms: &build.platforms,
            options: &build.options,
            error: build.error.as_deref(),
            created_at: build.created_at.to_rfc3339(),
            started_at: build.started_at.map(Timestamp::to_rfc3339),
            built_at: build.built_at.map(Timestamp::to_rfc3339),
            finished_at: build.finished_at.map(Timestamp::to_rfc3339),
            retry_of: build.retry_of,
            builder: build.builder.as_deref(),
            attempts: build.attempts,
            tag_moved_by: &build.tag_moved_by,
            tags_pushed: &build.tags_pushed,
            provenance: build.provenance.as_ref(),
            submitted_by: build.submitted_by.as_deref(),
            source: build.source.as_ref().map(SourceView::from),
            trigger: build.source.as_ref().and_then(|s| s.trigger.as_ref()),
            progress: build.progress.as_ref(),
            waiting_for: build.waiting_for.as_deref(),
            silent_since: build.silent_since.map(Timestamp::to_rfc3339),
            links: Links {
                self_: build_url(build.id),
                logs: format!("{}/logs", build_url(build.id)),
                events: format!("{}/events", build_url(build.id)),
            },
        }
    }
}

/// The list's shape, for the OpenAPI document; the list's JSON is written by
/// `http::cache::Answer::page`, field for field the same.
#[derive(Serialize, ToSchema)]
pub struct BuildList<'a> {
    pub builds: Vec<BuildView<'a>>,
    pub next: Option<String>,
}

/// A build as the Django service showed it.
#[derive(Serialize)]
pub struct SeedBuildView<'a> {
    id: i64,
    docker_username: Option<&'a str>,
    docker_repo: &'a str,
    file: String,
    image_id: Option<&'a str>,
    status: String,
    created_at: String,
}

impl<'a> From<&'a Build> for SeedBuildView<'a> {
    fn from(build: &'a Build) -> Self {
        SeedBuildView {
            id: build.id,
            docker_username: build.registry_username.as_deref(),
            docker_repo: &build.repository,
            file: format!("builds/{}/Dockerfile", build.id),
            image_id: build.image_id.as_deref(),
            status: seed_status(build),
            created_at: build.created_at.to_rfc3339(),
        }
    }
}

fn seed_status(build: &Build) -> String {
    match build.status {
        Status::Queued | Status::Building => "Build is starting".into(),
        Status::Pushing => "Image successfully built. To be published.".into(),
        Status::Succeeded => "Docker Image is successfully pushed to Docker Hub.".into(),
        Status::Failed => format!(
            "Error: {}",
            build.error.as_deref().unwrap_or("unknown error")
        ),
        Status::Cancelled => "Cancelled".into(),
    }
}
