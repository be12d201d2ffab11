//! The trigger service: push events and runs by hand turned into builds, and
//! the list of triggers with their last activity.

use std::sync::Arc;

use chrono::Utc;

use super::{
    EventHeaders, HeaderLookup, Pushed, Received, RefFacts, Trigger, TriggerError, TriggerSummary,
};
use crate::builds::access::{Grant, Scope};
use crate::builds::git::{self, GitRequest};
use crate::builds::options::OptionsRequest;
use crate::builds::{BuildError, BuildService, SubmitRequest};
use crate::domain::{Build, TagPlan, Timestamp, TriggeredBy};
use crate::named_locks::NamedLocks;
use crate::store::TriggerDelivery;

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
        let wanted = match Wanted::from_event(trigger, &headers, body)? {
            Ok(wanted) => wanted,
            Err(why) => return Ok(Received::Ignored(why)),
        };
        let _one_at_a_time = self.receiving.lock(&trigger.name).await;
        let mut record = wanted.record(trigger, headers.delivery.clone());
        if let Some(build) = self.earlier_build(trigger, &record).await? {
            record.build_id = Some(build.id);
            self.builds.store().record_trigger_delivery(record).await?;
            return Ok(Received::AlreadyBuilt(build));
        }
        let by = TriggeredBy {
            name: trigger.name.clone(),
            delivery: headers.delivery,
        };
        let build = self
            .submit(
                trigger,
                &wanted.git_ref,
                &wanted.commit,
                wanted.target,
                by,
                &trigger_grant(trigger),
            )
            .await?;
        record.outcome = "built".into();
        record.build_id = Some(build.id);
        self.builds.store().record_trigger_delivery(record).await?;
        Ok(Received::Built(build))
    }

    /// The build an earlier delivery made for the same delivery id, or for the
    /// same commit and target within the trigger's window, if it still exists.
    async fn earlier_build(
        &self,
        trigger: &Trigger,
        record: &TriggerDelivery,
    ) -> Result<Option<Build>, TriggerError> {
        let since = Timestamp(Utc::now() - trigger.dedupe_window);
        let earlier = self
            .builds
            .store()
            .earlier_trigger_build(
                &trigger.name,
                record.delivery_id.as_deref(),
                &record.commit,
                &record.target,
                since,
            )
            .await?;
        let Some(id) = earlier else {
            return Ok(None);
        };
        match self.builds.get(id).await {
            Ok(build) => Ok(Some(build)),
            // Deleted since: this delivery builds anew.
            Err(BuildError::NotFound(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
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
        let (full_ref, commit) = match git::is_full_sha(git_ref) {
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
                platform: trigger.platform.clone(),
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
        let names = self.triggers.iter().map(|t| t.name.clone()).collect();
        let builds = store.last_trigger_builds(names).await?;
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

/// What a push event asks to build: the ref, its commit and where the image goes.
struct Wanted {
    git_ref: String,
    commit: String,
    /// The repository and tags.
    target: (String, Vec<String>),
}

impl Wanted {
    /// What the event asks for, or why it asks for nothing (not a push, a
    /// deleted ref, a ref the trigger does not listen to).
    fn from_event(
        trigger: &Trigger,
        headers: &EventHeaders,
        body: &[u8],
    ) -> Result<Result<Wanted, String>, TriggerError> {
        if !headers.is_push() {
            return Ok(Err(format!("'{}' is not a push event", headers.event)));
        }
        let pushed = Pushed::parse(body)?;
        let Some(commit) = pushed.commit else {
            return Ok(Err(format!("{} was deleted", pushed.git_ref)));
        };
        if !trigger.listens_to(&pushed.git_ref) {
            let why = format!("{} matches none of the trigger's refs", pushed.git_ref);
            return Ok(Err(why));
        }
        let target = trigger.target(&RefFacts::new(&pushed.git_ref, &commit))?;
        Ok(Ok(Wanted {
            git_ref: pushed.git_ref,
            commit,
            target,
        }))
    }

    /// The delivery as it will be stored; a duplicate until it builds.
    fn record(&self, trigger: &Trigger, delivery_id: Option<String>) -> TriggerDelivery {
        let (repository, tags) = &self.target;
        TriggerDelivery {
            trigger: trigger.name.clone(),
            delivery_id,
            git_ref: self.git_ref.clone(),
            commit: self.commit.clone(),
            target: format!("{repository}:{}", tags.join(",")),
            outcome: "duplicate".into(),
            build_id: None,
            received_at: Timestamp::now(),
        }
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
