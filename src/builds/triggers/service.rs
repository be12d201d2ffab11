//! The trigger service: push events and runs by hand turned into builds, and
//! the list of triggers with their last activity.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Semaphore;

use super::{EventHeaders, Pushed, Received, RefFacts, Trigger, TriggerError, TriggerSummary};
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
    /// Push events' git work (the ref lookup, the fetch), apart from every
    /// other fetch: a git server that hangs other builds never holds an
    /// event's answer up (`max_concurrent_trigger_fetches`).
    event_fetch_slots: Arc<Semaphore>,
}

impl TriggerService {
    pub fn new(
        builds: BuildService,
        triggers: Vec<Trigger>,
        event_fetch_slots: Arc<Semaphore>,
    ) -> TriggerService {
        TriggerService {
            builds,
            triggers: Arc::new(triggers),
            receiving: Arc::default(),
            event_fetch_slots,
        }
    }

    fn find(&self, name: &str) -> Result<&Trigger, TriggerError> {
        self.triggers
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TriggerError::NotFound(name.to_string()))
    }

    /// Whether a trigger has this name; asked before an event's body is read.
    pub fn exists(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// A push event: signature first (nothing is read or stored before it
    /// passes), then the ref and where it is now, then the build or the one it
    /// already made.
    pub async fn receive(
        &self,
        name: &str,
        headers: EventHeaders,
        body: &[u8],
    ) -> Result<Received, TriggerError> {
        // An unknown name is told apart from a wrong signature by nothing.
        let trigger = self.find(name).map_err(|_| TriggerError::BadSignature)?;
        headers.verify(trigger.webhook_secret.expose().as_bytes(), body)?;
        let pushed = match pushed_ref(trigger, &headers, body)? {
            Ok(pushed) => pushed,
            Err(why) => return Ok(Received::Ignored(why)),
        };
        let _one_at_a_time = self.receiving.lock(&trigger.name).await;
        let Some(commit) = self.commit_now(trigger, &pushed).await? else {
            return Ok(Received::Ignored(stale_reason(&pushed)));
        };
        let wanted = Wanted::new(trigger, pushed.git_ref, commit)?;
        let mut record = wanted.record(trigger, headers.delivery.clone());
        if let Some(build) = self.earlier_build(trigger, &record, &wanted).await? {
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
                &self.event_fetch_slots,
            )
            .await?;
        record.outcome = "built".into();
        record.build_id = Some(build.id);
        self.builds.store().record_trigger_delivery(record).await?;
        Ok(Received::Built(build))
    }

    /// The commit to build for a pushed ref: the one the ref names on the git
    /// server now, when the event's SHA is it (or, for an annotated tag, the
    /// tag object); None when the ref has moved on or is gone, so a replayed
    /// old event, or one naming another branch's commit, builds nothing.
    async fn commit_now(
        &self,
        trigger: &Trigger,
        pushed: &Pushed,
    ) -> Result<Option<String>, TriggerError> {
        let Some(after) = &pushed.commit else {
            return Ok(None);
        };
        let names = vec![pushed.git_ref.clone()];
        let listed = self
            .builds
            .list_remote_refs(&trigger.git, names, &self.event_fetch_slots)
            .await?;
        let now = RemoteRefs(listed).get(&pushed.git_ref);
        Ok(now.filter(|now| now.names(after)).map(|now| now.commit))
    }

    /// The build an earlier delivery made for the same delivery id, or for the
    /// same commit and target within the trigger's window after the delivery
    /// that built it, if it still exists and still owns every tag this one
    /// would push. Once a later build took a tag over (the branch moved on and
    /// back), the commit is built again, so the tag follows the branch.
    async fn earlier_build(
        &self,
        trigger: &Trigger,
        record: &TriggerDelivery,
        wanted: &Wanted,
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
        let build = match self.builds.get(id).await {
            Ok(build) => build,
            // Deleted since: this delivery builds anew.
            Err(BuildError::NotFound(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let (_, tags) = &wanted.target;
        let lost_a_tag = tags.iter().any(|tag| build.tag_moved_by.contains_key(tag));
        Ok((!lost_a_tag).then_some(build))
    }

    /// Builds `git_ref` (a branch, tag, `refs/…` name or full SHA) now, as the
    /// caller: the repository scope is checked first, then (without the admin
    /// scope) that the trigger's patterns match the ref.
    pub async fn run(
        &self,
        name: &str,
        git_ref: &str,
        caller: &Grant,
    ) -> Result<Build, TriggerError> {
        let trigger = self.find(name)?;
        // Before any ref is looked up: a token that may not build here learns nothing of the refs.
        caller
            .check_repository(trigger.repository.as_str())
            .map_err(BuildError::from)?;
        let git_ref = git_ref.trim();
        if git_ref.is_empty() {
            return Err(TriggerError::InvalidRef(
                "give the branch, tag or commit SHA to build".into(),
            ));
        }
        let (full_ref, commit) = match caller.has(Scope::Admin) {
            true => self.any_ref(trigger, git_ref).await?,
            false => self.listened_ref(trigger, git_ref).await?,
        };
        let facts = RefFacts::new(&full_ref, &commit);
        let target = trigger.target(&facts)?;
        let by = TriggeredBy {
            name: trigger.name.clone(),
            delivery: None,
        };
        let slots = self.builds.limits.git.fetch_slots.clone();
        self.submit(trigger, &full_ref, &commit, target, by, caller, &slots)
            .await
    }

    /// An admin's run: any branch, tag or commit.
    async fn any_ref(
        &self,
        trigger: &Trigger,
        git_ref: &str,
    ) -> Result<(String, String), TriggerError> {
        if git::is_full_sha(git_ref) {
            let sha = git_ref.to_ascii_lowercase();
            return Ok((sha.clone(), sha));
        }
        let slots = &self.builds.limits.git.fetch_slots;
        Ok(self.builds.remote_ref(&trigger.git, git_ref, slots).await?)
    }

    /// A run without the admin scope: a ref the trigger's patterns match (its
    /// full name and commit), or a commit that is the tip of one.
    async fn listened_ref(
        &self,
        trigger: &Trigger,
        git_ref: &str,
    ) -> Result<(String, String), TriggerError> {
        let slots = &self.builds.limits.git.fetch_slots;
        if git::is_full_sha(git_ref) {
            let sha = git_ref.to_ascii_lowercase();
            let listed = self
                .builds
                .list_remote_refs(&trigger.git, Vec::new(), slots)
                .await?;
            return RemoteRefs(listed)
                .tip_of(&sha, |name| trigger.listens_to(name))
                .ok_or_else(|| trigger.ref_not_allowed(git_ref));
        }
        let candidates = match git_ref.starts_with("refs/") {
            true => vec![git_ref.to_string()],
            false => vec![
                format!("refs/heads/{git_ref}"),
                format!("refs/tags/{git_ref}"),
            ],
        };
        // Refused before the lookup when no reading of the name could match.
        if !candidates.iter().any(|name| trigger.listens_to(name)) {
            return Err(trigger.ref_not_allowed(git_ref));
        }
        let (full_ref, commit) = self.builds.remote_ref(&trigger.git, git_ref, slots).await?;
        match trigger.listens_to(&full_ref) {
            true => Ok((full_ref, commit)),
            false => Err(trigger.ref_not_allowed(git_ref)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &self,
        trigger: &Trigger,
        git_ref: &str,
        commit: &str,
        (repository, tags): (String, Vec<String>),
        by: TriggeredBy,
        caller: &Grant,
        fetch_slots: &Semaphore,
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
                ssh: trigger.ssh.clone(),
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
        let build = self
            .builds
            .submit_fetching_in(request, caller, fetch_slots)
            .await?;
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

/// What a push event names, or why it names nothing to build (not a push, a
/// deleted ref, a ref the trigger does not listen to).
fn pushed_ref(
    trigger: &Trigger,
    headers: &EventHeaders,
    body: &[u8],
) -> Result<Result<Pushed, String>, TriggerError> {
    if !headers.is_push() {
        return Ok(Err(format!("'{}' is not a push event", headers.event)));
    }
    let pushed = Pushed::parse(body)?;
    if pushed.commit.is_none() {
        return Ok(Err(format!("{} was deleted", pushed.git_ref)));
    }
    if !trigger.listens_to(&pushed.git_ref) {
        let why = format!("{} matches none of the trigger's refs", pushed.git_ref);
        return Ok(Err(why));
    }
    Ok(Ok(pushed))
}

/// Why an event whose ref is elsewhere now builds nothing; `X-Dockpub-Ignored`
/// starts with `stale`.
fn stale_reason(pushed: &Pushed) -> String {
    let sha = pushed.commit.as_deref().unwrap_or_default();
    format!(
        "stale: {} is not at {sha} on the git server now (it has moved on, or does not exist)",
        pushed.git_ref
    )
}

/// What a push event builds: the ref, the commit it names now and where the
/// image goes.
struct Wanted {
    git_ref: String,
    commit: String,
    /// The repository and tags.
    target: (String, Vec<String>),
}

impl Wanted {
    fn new(trigger: &Trigger, git_ref: String, commit: String) -> Result<Wanted, TriggerError> {
        let target = trigger.target(&RefFacts::new(&git_ref, &commit))?;
        Ok(Wanted {
            git_ref,
            commit,
            target,
        })
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

/// `git ls-remote`'s lines: each ref with its object id, annotated tags once
/// more as `REF^{}` with their commit.
struct RemoteRefs(Vec<(String, String)>);

/// Where one ref is: its own object id, and the commit it names.
struct RefNow {
    own: String,
    commit: String,
}

impl RefNow {
    /// Whether `sha` is where the ref is: its commit, or its tag object.
    fn names(&self, sha: &str) -> bool {
        sha.eq_ignore_ascii_case(&self.own) || sha.eq_ignore_ascii_case(&self.commit)
    }
}

impl RemoteRefs {
    fn get(&self, name: &str) -> Option<RefNow> {
        let sha_of = |wanted: &str| {
            self.0
                .iter()
                .find(|(listed, _)| listed == wanted)
                .map(|(_, sha)| sha.clone())
        };
        let own = sha_of(name)?;
        let commit = sha_of(&format!("{name}^{{}}")).unwrap_or_else(|| own.clone());
        Some(RefNow { own, commit })
    }

    /// The first ref `allowed` takes whose tip `sha` is, with its commit.
    fn tip_of(&self, sha: &str, allowed: impl Fn(&str) -> bool) -> Option<(String, String)> {
        self.0
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !name.ends_with("^{}") && allowed(name))
            .find_map(|name| {
                let now = self.get(name)?;
                now.names(sha).then(|| (name.clone(), now.commit))
            })
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
    /// A branch or tag of `url` and its commit, asked of the remote off the
    /// runtime, in one of `slots`.
    async fn remote_ref(
        &self,
        url: &str,
        name: &str,
        slots: &Semaphore,
    ) -> Result<(String, String), BuildError> {
        let checked = self.check_trigger_git(url)?;
        let _slot = slots.acquire().await;
        let policy = self.limits.git.clone();
        let staging = self.engine.store.files().staging_dir().to_path_buf();
        let name = name.to_string();
        let found =
            tokio::task::spawn_blocking(move || git::remote_ref(checked, &policy, &staging, &name))
                .await
                .map_err(|err| git::GitError::Io(std::io::Error::other(err)))?;
        Ok(found?)
    }

    /// What `git ls-remote` lists for `names` of `url` (all refs when empty),
    /// in one of `slots`.
    async fn list_remote_refs(
        &self,
        url: &str,
        names: Vec<String>,
        slots: &Semaphore,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let checked = self.check_trigger_git(url)?;
        let _slot = slots.acquire().await;
        let policy = self.limits.git.clone();
        let staging = self.engine.store.files().staging_dir().to_path_buf();
        let listed = tokio::task::spawn_blocking(move || {
            git::list_remote_refs(checked, &policy, &staging, &names)
        })
        .await
        .map_err(|err| git::GitError::Io(std::io::Error::other(err)))?;
        Ok(listed?)
    }

    fn check_trigger_git(&self, url: &str) -> Result<git::CheckedGit, BuildError> {
        let request = GitRequest {
            url: url.to_string(),
            ..GitRequest::default()
        };
        Ok(git::check(request, &self.limits.git)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_is_where_its_object_or_its_peeled_commit_is() {
        let (tag_object, tagged, tip, other) = (
            "1".repeat(40),
            "2".repeat(40),
            "3".repeat(40),
            "4".repeat(40),
        );
        let refs = RemoteRefs(vec![
            ("refs/heads/main".into(), tip.clone()),
            ("refs/heads/evil".into(), other.clone()),
            ("refs/tags/v1".into(), tag_object.clone()),
            ("refs/tags/v1^{}".into(), tagged.clone()),
        ]);
        let v1 = refs.get("refs/tags/v1").unwrap();
        assert!(v1.names(&tag_object) && v1.names(&tagged) && !v1.names(&tip));
        assert_eq!(v1.commit, tagged);
        assert!(refs.get("refs/tags/v2").is_none());
        let listened = |name: &str| name == "refs/heads/main" || name.starts_with("refs/tags/");
        assert_eq!(
            refs.tip_of(&tag_object, listened),
            Some(("refs/tags/v1".into(), tagged.clone()))
        );
        assert_eq!(
            refs.tip_of(&tip, listened),
            Some(("refs/heads/main".into(), tip))
        );
        assert_eq!(
            refs.tip_of(&other, listened),
            None,
            "evil is not listened to"
        );
    }
}
