//! Triggers: builds started by a git server's push event (signed with the
//! trigger's secret), or by hand, from a repository the config names. The
//! request never chooses the repository URL: the trigger does.

mod push_event;
mod templates;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::access::{Grant, Scope};
use super::git::{self, GitRequest};
use super::options::OptionsRequest;
use super::{BuildError, BuildService, SubmitRequest};
use crate::domain::{Build, BuildSecret, Secret, TagPlan, Timestamp, TriggeredBy};
use crate::named_locks::NamedLocks;
use crate::store::{StoreError, TriggerDelivery};

pub use push_event::{EventHeaders, HeaderLookup, Pushed};
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
    pub buildkit: Option<bool>,
    pub push: bool,
    pub secrets: Vec<BuildSecret>,
    /// Signs the push events (GitHub, Gitea) or is sent as GitLab's token.
    pub webhook_secret: Secret,
    /// The same commit pushed again to the same tags within this long returns
    /// the build it already made.
    pub dedupe_window: Duration,
}

impl Trigger {
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
        tags.dedup();
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
    /// Not a push to a ref the trigger listens to (or a deletion, or a ping).
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

/// The configured triggers, in front of the build service. Cheap to clone.
#[derive(Clone)]
pub struct TriggerService {
    builds: BuildService,
    triggers: Arc<Vec<Trigger>>,
    /// One event per trigger at a time, so a redelivery racing the first
    /// delivery finds its build instead of making a second one.
    receiving: Arc<NamedLocks>,
}

impl TriggerService {
    pub fn new(builds: BuildService, triggers: Vec<Trigger>) -> TriggerService {
        TriggerService {
            builds,
            triggers: Arc::new(triggers),
            receiving: Arc::default(),
        }
    }

    fn find(&self, name: &str) -> Result<&Trigger, TriggerError> {
        self.triggers
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TriggerError::NotFound(name.to_string()))
    }

    /// A push event: signature first (nothing is read or stored before it
    /// passes), then the ref, then the build or the one it already made.
    pub async fn receive(
        &self,
        name: &str,
        header: HeaderLookup<'_>,
        body: &[u8],
    ) -> Result<Received, TriggerError> {
        let trigger = self.find(name)?;
        let headers = EventHeaders::read(header)?;
        headers.verify(trigger.webhook_secret.expose().as_bytes(), body)?;
        if !headers.is_push() {
            return Ok(Received::Ignored(format!(
                "'{}' is not a push event",
                headers.event
            )));
        }
        let pushed = Pushed::parse(body)?;
        let Some(commit) = pushed.commit.clone() else {
            return Ok(Received::Ignored(format!("{} was deleted", pushed.git_ref)));
        };
        if !trigger.listens_to(&pushed.git_ref) {
            return Ok(Received::Ignored(format!(
                "{} matches none of the trigger's refs",
                pushed.git_ref
            )));
        }
        let facts = RefFacts::new(&pushed.git_ref, &commit);
        let (repository, tags) = trigger.target(&facts)?;
        let target = format!("{repository}:{}", tags.join(","));
        let _one_at_a_time = self.receiving.lock(&trigger.name).await;
        let store = self.builds.store();
        let since = Timestamp(Utc::now() - trigger.dedupe_window);
        let delivery = headers.delivery.clone();
        let mut record = TriggerDelivery {
            trigger: trigger.name.clone(),
            delivery_id: delivery.clone(),
            git_ref: pushed.git_ref.clone(),
            commit: commit.clone(),
            target: target.clone(),
            outcome: "duplicate".into(),
            build_id: None,
            received_at: Timestamp::now(),
        };
        let earlier = store
            .earlier_trigger_build(&trigger.name, delivery.as_deref(), &commit, &target, since)
            .await?;
        if let Some(id) = earlier {
            // Deleted since: this delivery builds anew.
            match self.builds.get(id).await {
                Ok(build) => {
                    record.build_id = Some(id);
                    store.record_trigger_delivery(record).await?;
                    return Ok(Received::AlreadyBuilt(build));
                }
                Err(BuildError::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let by = TriggeredBy {
            name: trigger.name.clone(),
            delivery,
        };
        let grant = trigger_grant(trigger);
        let build = self
            .submit(
                trigger,
                &pushed.git_ref,
                &commit,
                (repository, tags),
                by,
                &grant,
            )
            .await?;
        record.outcome = "built".into();
        record.build_id = Some(build.id);
        store.record_trigger_delivery(record).await?;
        Ok(Received::Built(build))
    }

    /// Builds `git_ref` (a branch, tag, `refs/…` name or full SHA) now, as the caller.
    pub async fn run(
        &self,
        name: &str,
        git_ref: &str,
        caller: &Grant,
    ) -> Result<Build, TriggerError> {
        let trigger = self.find(name)?;
        let git_ref = git_ref.trim();
        if git_ref.is_empty() {
            return Err(TriggerError::InvalidRef(
                "give the branch, tag or commit SHA to build".into(),
            ));
        }
        let (full_ref, commit) = match is_full_sha(git_ref) {
            true => (git_ref.to_ascii_lowercase(), git_ref.to_ascii_lowercase()),
            false => self.builds.remote_ref(&trigger.git, git_ref).await?,
        };
        let facts = RefFacts::new(&full_ref, &commit);
        let target = trigger.target(&facts)?;
        let by = TriggeredBy {
            name: trigger.name.clone(),
            delivery: None,
        };
        self.submit(trigger, &full_ref, &commit, target, by, caller)
            .await
    }

    async fn submit(
        &self,
        trigger: &Trigger,
        git_ref: &str,
        commit: &str,
        (repository, tags): (String, Vec<String>),
        by: TriggeredBy,
        caller: &Grant,
    ) -> Result<Build, TriggerError> {
        let request = SubmitRequest {
            dockerfile: None,
            context: None,
            repository,
            tags: TagPlan::Listed(tags),
            push: trigger.push,
            credentials: None,
            options: OptionsRequest {
                dockerfile: trigger.dockerfile.clone(),
                build_args: trigger.build_args.clone(),
                buildkit: trigger.buildkit,
                ..OptionsRequest::default()
            },
            secrets: trigger
                .secrets
                .iter()
                .map(|s| (Some(s.id.clone()), s.value().to_vec()))
                .collect(),
            callback_url: None,
            git: Some(GitRequest {
                url: trigger.git.clone(),
                git_ref: Some(commit.to_string()),
                subdir: trigger.git_subdir.clone(),
                submodules: trigger.git_submodules,
                pushed_ref: Some(git_ref.to_string()),
                trigger: Some(by),
                ..GitRequest::default()
            }),
        };
        let build = self.builds.submit(request, caller).await?;
        log::info!(
            "trigger {}: build {} of {git_ref} at {commit}",
            trigger.name,
            build.id
        );
        Ok(build)
    }

    /// Every trigger with its last delivery and last build.
    pub async fn list(&self) -> Result<Vec<TriggerSummary>, TriggerError> {
        let store = self.builds.store();
        let deliveries = store.last_trigger_deliveries().await?;
        let builds = store.last_trigger_builds().await?;
        Ok(self
            .triggers
            .iter()
            .map(|t| TriggerSummary {
                name: t.name.clone(),
                git: t.git.clone(),
                refs: t.refs.iter().map(|r| r.as_str().to_string()).collect(),
                repository: t.repository.as_str().to_string(),
                tags: t.tags.iter().map(|t| t.as_str().to_string()).collect(),
                last_delivery: deliveries.iter().find(|d| d.trigger == t.name).cloned(),
                last_build: builds
                    .iter()
                    .find(|(name, _)| *name == t.name)
                    .map(|(_, id)| *id),
            })
            .collect())
    }
}

/// Who a push event's build is submitted as: the trigger itself, shown as
/// `submitted_by: "trigger:NAME"` (a token name cannot hold a colon).
fn trigger_grant(trigger: &Trigger) -> Grant {
    Grant {
        name: Some(format!("trigger:{}", trigger.name)),
        scope: Scope::Build,
        repositories: Vec::new(),
    }
}

fn is_full_sha(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.chars().all(|c| c.is_ascii_hexdigit())
}

impl BuildService {
    /// A branch or tag of `url` and its commit, asked of the remote off the runtime.
    async fn remote_ref(&self, url: &str, name: &str) -> Result<(String, String), BuildError> {
        let request = GitRequest {
            url: url.to_string(),
            ..GitRequest::default()
        };
        let checked = git::check(request, &self.limits.git)?;
        let _slot = self.limits.git.fetch_slots.acquire().await;
        let policy = self.limits.git.clone();
        let staging = self.engine.store.files().staging_dir().to_path_buf();
        let name = name.to_string();
        let found =
            tokio::task::spawn_blocking(move || git::remote_ref(checked, &policy, &staging, &name))
                .await
                .map_err(|err| git::GitError::Io(std::io::Error::other(err)))?;
        Ok(found?)
    }
}
