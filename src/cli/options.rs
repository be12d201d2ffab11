//! The `submit` flags that become build options and the registry login, each
//! turned into the form fields the API takes.

use std::io::Read;

use clap::Args;
use reqwest::multipart::Form;

use super::CliError;

/// Build options, as `docker build` names them. A flag left out sends nothing, so
/// the server's default applies.
#[derive(Debug, Default, Args)]
pub(crate) struct BuildOptionArgs {
    /// Build argument KEY=VALUE, or KEY to take the value of the variable KEY here, as docker does (repeatable)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub(crate) build_args: Vec<String>,
    /// Label KEY=VALUE on the image (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// Stage to build in a multi-stage Dockerfile
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Platform to build for, os/arch[/variant], e.g. linux/amd64; several
    /// comma-separated (linux/amd64,linux/arm64) push one image index
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// Build every step anew
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Pull a newer base image even when one is present
    #[arg(long)]
    pub(crate) pull: bool,
    /// Network mode of RUN steps (the server's build_network or allowed_build_networks)
    #[arg(long)]
    pub(crate) network: Option<String>,
    /// The Dockerfile's path inside a directory sent as context [default: Dockerfile]
    #[arg(long, value_name = "PATH")]
    pub(crate) dockerfile: Option<String>,
    /// URL told when the build ends (its host must be in the server's allowed_callback_hosts)
    #[arg(long, value_name = "URL")]
    pub(crate) callback_url: Option<String>,
}

impl BuildOptionArgs {
    pub(crate) fn add_to(&self, mut form: Form) -> Form {
        for build_arg in self.build_args.iter().filter_map(|arg| build_arg(arg)) {
            form = form.text("build_arg", build_arg);
        }
        for label in &self.labels {
            form = form.text("label", label.clone());
        }
        let single = [
            ("target", &self.target),
            ("platform", &self.platform),
            ("network", &self.network),
            ("dockerfile", &self.dockerfile),
            ("callback_url", &self.callback_url),
        ];
        form = with_texts(form, &single);
        let flags = [("no_cache", self.no_cache), ("pull", self.pull)];
        for (field, set) in flags {
            if set {
                form = form.text(field, "true");
            }
        }
        form
    }
}

/// `--build-arg` as docker takes it: `KEY=VALUE` as it is; a bare `KEY` takes
/// the value of the variable `KEY`, and is left out when that is not set.
fn build_arg(arg: &str) -> Option<String> {
    if arg.contains('=') {
        return Some(arg.to_string());
    }
    let value = std::env::var(arg).ok()?;
    Some(format!("{arg}={value}"))
}

/// A repository the server fetches the context from, instead of a local path.
#[derive(Debug, Default, Args)]
pub(crate) struct GitArgs {
    /// Build from this git repository (https://, ssh://, git@host:path, git://) instead of PATH
    #[arg(long, value_name = "URL", conflicts_with = "path")]
    pub(crate) git: Option<String>,
    /// Branch, tag or full commit SHA to build [default: the repository's HEAD]
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub(crate) git_ref: Option<String>,
    /// The context folder inside the repository [default: its root]
    #[arg(long, value_name = "DIR", requires = "git")]
    pub(crate) subdir: Option<String>,
    /// Fetch the repository's submodules too
    #[arg(long, requires = "git")]
    pub(crate) git_submodules: bool,
    /// Username for the repository (with --git-password-stdin)
    #[arg(long, requires_all = ["git", "git_password_stdin"])]
    pub(crate) git_username: Option<String>,
    /// Read the repository's password or token from standard input (with --git-username)
    #[arg(long, requires = "git_username", conflicts_with = "password_stdin")]
    pub(crate) git_password_stdin: bool,
}

impl GitArgs {
    /// The form with the `git` fields (none when no repository was named); a
    /// git password is read from standard input now.
    pub(crate) fn add_to(&self, form: Form) -> Result<Form, CliError> {
        let fields = [
            ("git", &self.git),
            ("git_ref", &self.git_ref),
            ("git_subdir", &self.subdir),
            ("git_username", &self.git_username),
        ];
        let mut form = with_texts(form, &fields);
        if self.git_submodules {
            form = form.text("git_submodules", "true");
        }
        if self.git_password_stdin {
            form = form.text("git_password", password_from_stdin("--git-password-stdin")?);
        }
        Ok(form)
    }
}

/// The form with a text field for each value that is set.
fn with_texts(mut form: Form, fields: &[(&'static str, &Option<String>)]) -> Form {
    for (field, value) in fields {
        if let Some(value) = value {
            form = form.text(*field, value.clone());
        }
    }
    form
}

/// A registry login for the push, as `docker login` takes it: the password only
/// from standard input, never from the command line (where `ps` shows it).
#[derive(Debug, Default, Clone, Args)]
pub struct LoginArgs {
    /// Registry username for the push (with --password-stdin)
    #[arg(short, long, requires = "password_stdin")]
    pub(crate) username: Option<String>,
    /// Read the registry password from standard input (with --username)
    #[arg(long, requires = "username")]
    pub(crate) password_stdin: bool,
}

impl LoginArgs {
    /// The form with `username` and `password`, the password read from stdin now.
    pub(crate) fn add_to(&self, form: Form) -> Result<Form, CliError> {
        let Some(username) = &self.username else {
            return Ok(form);
        };
        let password = password_from_stdin("--password-stdin")?;
        Ok(form
            .text("username", username.clone())
            .text("password", password))
    }
}

/// The longest password read from standard input: the server's limit for a
/// text field, so a file piped in by mistake is refused here, not held whole.
const MAX_PASSWORD_BYTES: usize = 8 * 1024;

/// A password read from standard input, for `flag`.
fn password_from_stdin(flag: &str) -> Result<String, CliError> {
    let mut password = String::new();
    std::io::stdin()
        .take(MAX_PASSWORD_BYTES as u64 + 2)
        .read_to_string(&mut password)?;
    // As docker login does: the newline an `echo` or a file ends with is not part of it.
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CliError::Usage(format!(
            "{flag}: standard input held more than {MAX_PASSWORD_BYTES} bytes, more than a password"
        )));
    }
    if password.is_empty() {
        return Err(CliError::Usage(format!(
            "{flag}: standard input held no password"
        )));
    }
    Ok(password)
}

/// `dockpub retry`: the push's login and the build's secrets, which the server
/// never keeps, so they come again.
#[derive(Debug, Default, Clone, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// Build secret, docker's syntax: id=ID,src=FILE or id=ID,env=VAR (repeatable)
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
}

/// `dockpub list`: the query of `GET /api/v1/builds`.
#[derive(Debug, Default, Clone, Args)]
pub struct ListArgs {
    /// Only builds in this state: queued, building, pushing, succeeded, failed or cancelled
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// How many builds, 1 to 500 [default: 50]
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// Only builds with a lower id (the next page)
    #[arg(long, value_name = "ID")]
    pub(crate) before: Option<i64>,
    /// Only builds submitted with the API token of this name
    #[arg(long, value_name = "TOKEN_NAME")]
    pub(crate) submitted_by: Option<String>,
}

impl ListArgs {
    /// The query pairs of the flags that were given.
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let pairs = [
            ("status", self.status.clone()),
            ("limit", self.limit.map(|n| n.to_string())),
            ("before", self.before.map(|n| n.to_string())),
            ("submitted_by", self.submitted_by.clone()),
        ];
        pairs
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect()
    }
}

/// `dockpub logs`: which part of the log.
#[derive(Debug, Default, Clone, Args)]
pub struct LogRangeArgs {
    /// Only the last N lines (with --follow, then every new one)
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<u64>,
    /// Only the lines after line N (lines count from 1)
    #[arg(long, value_name = "N")]
    pub(crate) since: Option<u64>,
}

impl LogRangeArgs {
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let pairs = [("tail", self.tail), ("since", self.since)];
        pairs
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?.to_string())))
            .collect()
    }
}
