//! The entries of `[[triggers]]` and `[git."HOST"]`, checked into what the
//! build service uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{read_secret, ConfigError, SecretSourceConfig};
use crate::builds::git::{self, GitHostLogin, GitPolicy, GitRequest};
use crate::builds::triggers::{RefPattern, Template, Trigger};
use crate::domain::{is_plain_name, BuildSecret, PLAIN_NAME_RULE};

const DEFAULT_DEDUPE_WINDOW_SECS: u64 = 600;

/// One `[[triggers]]` entry as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerEntry {
    /// In the URL `/api/v1/triggers/{name}/events`.
    pub name: String,
    pub git: String,
    /// Full ref globs: `refs/heads/main`, `refs/tags/v*`.
    pub refs: Vec<String>,
    /// Templates with `{branch}`, `{tag}`, `{sha}`, `{short_sha}`.
    pub repository: String,
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    pub dockerfile: Option<String>,
    pub git_subdir: Option<String>,
    #[serde(default)]
    pub git_submodules: bool,
    /// `NAME=VALUE`, as the API's `build_arg` field.
    #[serde(default)]
    pub build_args: Vec<String>,
    /// `os/arch[/variant]`, or several comma-separated, as the API's `platform`.
    pub platform: Option<String>,
    pub buildkit: Option<bool>,
    #[serde(default = "yes")]
    pub push: bool,
    /// Build secrets for this trigger's builds only, read at start.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSourceConfig>,
    /// `[ssh.ID]` keys this trigger's builds may use, by id (the API's `ssh`).
    #[serde(default)]
    pub ssh: Vec<String>,
    /// The variable holding the webhook secret.
    pub secret_env: String,
    pub dedupe_window_secs: Option<u64>,
}

fn default_tags() -> Vec<String> {
    vec!["{branch}".into(), "{tag}".into()]
}

fn yes() -> bool {
    true
}

/// `[git."HOST"]` as written: a login, or an ssh key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHostEntry {
    pub username: Option<String>,
    /// The variable holding the password or token.
    pub password_env: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

impl GitHostEntry {
    pub(crate) fn login(&self, host: &str) -> Result<GitHostLogin, ConfigError> {
        let key = format!("git.\"{host}\"");
        let invalid = |why: &str| ConfigError::Invalid(format!("{key}: {why}"));
        if self.password_env.is_some() && self.username.is_none() {
            return Err(invalid("password_env needs a username"));
        }
        // A username alone would send an empty password: a login that can only fail.
        if self.username.is_some() && self.password_env.is_none() && self.ssh_key.is_none() {
            return Err(invalid(
                "username needs password_env (the variable holding the password or token)",
            ));
        }
        if self.username.is_none() && self.ssh_key.is_none() {
            return Err(invalid("give username (+ password_env), or ssh_key"));
        }
        for path in [&self.ssh_key, &self.known_hosts].into_iter().flatten() {
            if !path.is_file() {
                return Err(invalid(&format!(
                    "{} is not a readable file",
                    path.display()
                )));
            }
        }
        let password = match &self.password_env {
            Some(name) => Some(read_secret(name, &key)?),
            None => None,
        };
        Ok(GitHostLogin {
            username: self.username.clone(),
            password,
            ssh_key: self.ssh_key.clone(),
            known_hosts: self.known_hosts.clone(),
        })
    }
}

/// Every `[git."HOST"]` login, keyed by the lower-case host.
pub(crate) fn git_logins(
    hosts: &BTreeMap<String, GitHostEntry>,
) -> Result<Vec<(String, GitHostLogin)>, ConfigError> {
    hosts
        .iter()
        .map(|(host, entry)| Ok((host.to_ascii_lowercase(), entry.login(host)?)))
        .collect()
}

/// The entries checked: names unique and URL-safe, the repository allowed by
/// `policy`, patterns and templates well-formed, the secrets set.
pub(crate) fn triggers(
    entries: &[TriggerEntry],
    policy: &GitPolicy,
) -> Result<Vec<Trigger>, ConfigError> {
    let mut names = std::collections::BTreeSet::new();
    entries
        .iter()
        .map(|entry| {
            if !names.insert(entry.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "triggers: the name '{}' is used twice",
                    entry.name
                )));
            }
            entry.checked(policy)
        })
        .collect()
}

impl TriggerEntry {
    /// Its tag templates fit `max_tags_per_build` (each renders at most one tag).
    pub(crate) fn check_tag_count(&self, max_tags: usize) -> Result<(), ConfigError> {
        crate::builds::limits::check_count("tags", self.tags.len(), max_tags, "max_tags_per_build")
            .map_err(|err| ConfigError::Invalid(format!("triggers '{}': {err}", self.name)))
    }

    /// Its `ssh` ids: `[ssh.ID]`s of the config (`is_known`), within the limits.
    pub(crate) fn check_ssh_ids(&self, is_known: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        crate::builds::ssh::request_ssh(self.ssh.clone(), is_known)
            .map(drop)
            .map_err(|err| ConfigError::Invalid(format!("triggers '{}': {err}", self.name)))
    }

    fn checked(&self, policy: &GitPolicy) -> Result<Trigger, ConfigError> {
        let invalid =
            |why: String| ConfigError::Invalid(format!("triggers '{}': {why}", self.name));
        if !is_plain_name(&self.name) {
            return Err(invalid(format!("name must be {PLAIN_NAME_RULE}")));
        }
        let request = GitRequest {
            url: self.git.clone(),
            subdir: self.git_subdir.clone(),
            ..GitRequest::default()
        };
        git::check(request, policy).map_err(|err| invalid(err.to_string()))?;
        if self.refs.is_empty() {
            return Err(invalid(
                "refs is empty: list refs/heads/... or refs/tags/... globs".into(),
            ));
        }
        let refs = self
            .refs
            .iter()
            .map(|r| RefPattern::parse(r).map_err(|why| invalid(format!("refs: {why}"))))
            .collect::<Result<_, _>>()?;
        let platform = crate::builds::options::platform_list(self.platform.clone())
            .map_err(|err| invalid(err.to_string()))?;
        let template = |text: &str| Template::parse(text).map_err(&invalid);
        if self.tags.is_empty() {
            return Err(invalid("tags is empty".into()));
        }
        // The limits a request's fields have, checked now rather than at each push event.
        crate::builds::options::build_args(self.build_args.clone())
            .map_err(|err| invalid(format!("build_args: {err}")))?;
        crate::builds::limits::check_count(
            "secrets",
            self.secrets.len(),
            crate::builds::limits::MAX_SECRETS,
            "secrets",
        )
        .map_err(|err| invalid(err.to_string()))?;
        let secrets = self
            .secrets
            .iter()
            .map(|(id, source)| {
                let key = format!("triggers '{}' secrets.{id}", self.name);
                BuildSecret::new(id, source.read(&key)?)
                    .map_err(|why| ConfigError::Invalid(format!("{key}: {why}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Trigger {
            name: self.name.clone(),
            git: self.git.clone(),
            refs,
            repository: template(&self.repository)?,
            tags: self
                .tags
                .iter()
                .map(|t| template(t))
                .collect::<Result<_, _>>()?,
            dockerfile: self.dockerfile.clone(),
            git_subdir: self.git_subdir.clone(),
            git_submodules: self.git_submodules,
            build_args: self.build_args.clone(),
            platform,
            buildkit: self.buildkit,
            push: self.push,
            secrets,
            ssh: self.ssh.clone(),
            webhook_secret: read_secret(
                &self.secret_env,
                &format!("triggers '{}' secret_env", self.name),
            )?,
            dedupe_window: Duration::from_secs(
                self.dedupe_window_secs
                    .unwrap_or(DEFAULT_DEDUPE_WINDOW_SECS),
            ),
        })
    }
}
