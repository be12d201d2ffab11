//! Triggers: builds started by a git server's push event (signed with the
//! trigger's secret), or by hand, from a repository the config names. The
//! request never chooses the repository URL: the trigger does.

mod push_event;
mod service;
mod templates;

use std::time::Duration;

use super::BuildError;
use crate::domain::{Build, BuildSecret, Secret};
use crate::store::{StoreError, TriggerDelivery};

pub use push_event::{EventHeaders, Pushed};
pub use service::TriggerService;
pub use templates::{RefFacts, RefPattern, Template};

/// One `[[triggers]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    /// The repository fetched; never taken from an event.
    pub git: String,
    pub refs: Vec<RefPattern>,
    pub repository: Template,
    pub tags: Vec<Template>,
    pub dockerfile: Option<String>,
    pub git_subdir: Option<String>,
    pub git_submodules: bool,
    pub build_args: Vec<String>,
    /// One platform or several, comma-separated, checked at start.
    pub platform: Option<String>,
    pub buildkit: Option<bool>,
    pub push: bool,
    pub secrets: Vec<BuildSecret>,
    /// `[ssh.ID]` ids its builds may use (checked against the config at start).
    pub ssh: Vec<String>,
    /// Signs the push events (GitHub, Gitea) or is sent as GitLab's token.
    pub webhook_secret: Secret,
    /// The same commit pushed again to the same tags within this long returns
    /// the build it already made.
    pub dedupe_window: Duration,
}

impl Trigger {
    /// The error for a ref a run by a non-admin token may not build.
    fn ref_not_allowed(&self, git_ref: &str) -> TriggerError {
        let patterns: Vec<&str> = self.refs.iter().map(RefPattern::as_str).collect();
        TriggerError::RefNotAllowed {
            name: self.name.clone(),
            git_ref: git_ref.to_string(),
            patterns: patterns.join(", "),
        }
    }

    fn listens_to(&self, git_ref: &str) -> bool {
        self.refs.iter().any(|pattern| pattern.matches(git_ref))
    }

    /// The repository and tags this ref builds to; the tags whose variables the
    /// ref lacks are left out.
    fn target(&self, facts: &RefFacts) -> Result<(String, Vec<String>), TriggerError> {
        let repository = self
            .repository
            .render(facts)
            .ok_or_else(|| TriggerError::NoTags {
                name: self.name.clone(),
                why: format!(
                    "the repository template '{}' needs what this ref lacks",
                    self.repository.as_str()
                ),
            })?;
        let mut tags: Vec<String> = self
            .tags
            .iter()
            .filter_map(|t| t.render_tag(facts))
            .collect();
        // Templates can render the same tag (`{branch}` and `main` on main): each once, in order.
        let mut seen = std::collections::HashSet::new();
        tags.retain(|tag| seen.insert(tag.clone()));
        if tags.is_empty() {
            let templates: Vec<&str> = self.tags.iter().map(Template::as_str).collect();
            return Err(TriggerError::NoTags {
                name: self.name.clone(),
                why: format!("none of its tag templates {templates:?} applies to this ref"),
            });
        }
        Ok((repository, tags))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no trigger is named '{0}'")]
    NotFound(String),
    #[error("the event carries no signature: send X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea, Forgejo) or X-Gitlab-Token (GitLab)")]
    Unsigned,
    #[error("the event's signature does not match the trigger's secret")]
    BadSignature,
    #[error("the event's body is not a push event: {0}")]
    InvalidPayload(String),
    #[error("field 'ref': {0}")]
    InvalidRef(String),
    #[error("trigger '{name}' cannot build this ref: {why}")]
    NoTags { name: String, why: String },
    #[error("trigger '{name}' builds only refs its patterns match ({patterns}), and a commit only as the tip of one; '{git_ref}' is neither (a token with the admin scope may build any ref)")]
    RefNotAllowed {
        name: String,
        git_ref: String,
        patterns: String,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl From<StoreError> for TriggerError {
    fn from(err: StoreError) -> Self {
        TriggerError::Build(err.into())
    }
}

/// What became of a push event.
#[derive(Debug)]
pub enum Received {
    /// Not a push to a ref the trigger listens to (or a deletion, or a ping),
    /// or a stale one (`stale: …`): the ref is elsewhere now, or gone.
    Ignored(String),
    Built(Build),
    /// A redelivery, or the same commit to the same tags again: the build it made.
    AlreadyBuilt(Build),
}

/// A trigger as `GET /api/v1/triggers` shows it: never its secrets.
#[derive(Debug, Clone)]
pub struct TriggerSummary {
    pub name: String,
    pub git: String,
    pub refs: Vec<String>,
    pub repository: String,
    pub tags: Vec<String>,
    pub last_delivery: Option<TriggerDelivery>,
    pub last_build: Option<i64>,
}
