//! Builds from a git repository: the request's git fields checked (the one place
//! that decides which URLs are allowed), and the one ref fetched with the system
//! `git` into a temporary folder, then packed as a context archive.
//!
//! `git` runs with explicit arguments, never through a shell, with no terminal
//! prompt, no system or user config, only the allowed protocols, and a deadline
//! after which its whole process group is killed. A password reaches it through
//! the environment of an askpass helper, never its arguments.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::context::{clean_path, ContextUpload};
use crate::domain::{GitSource, Secret, TriggeredBy};

/// The labels a git build's image gets.
pub const SOURCE_LABEL: &str = "org.opencontainers.image.source";
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// How often a running `git` is checked against its deadline.
const POLL: Duration = Duration::from_millis(20);
/// Submodules within submodules, at most.
const MAX_SUBMODULE_DEPTH: usize = 8;
/// The longest part of git's own message kept in an error.
const MAX_REASON_CHARS: usize = 1000;
const USERNAME_ENV: &str = "DOCKPUB_GIT_USERNAME";
const PASSWORD_ENV: &str = "DOCKPUB_GIT_PASSWORD";
const SSH_KEY_ENV: &str = "DOCKPUB_GIT_SSH_KEY";
const KNOWN_HOSTS_ENV: &str = "DOCKPUB_GIT_KNOWN_HOSTS";
/// Answers git's username and password prompts from the environment.
const ASKPASS_SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$DOCKPUB_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$DOCKPUB_GIT_PASSWORD\" ;;\nesac\n";
/// Runs ssh with the host's key (and known hosts). git runs `GIT_SSH` without
/// a shell; the paths travel in the environment, quoted, never as shell words.
const SSH_SCRIPT: &str = r#"#!/bin/sh
set -- -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -i "$DOCKPUB_GIT_SSH_KEY" "$@"
if [ -n "$DOCKPUB_GIT_KNOWN_HOSTS" ]; then
  set -- -o "UserKnownHostsFile=$DOCKPUB_GIT_KNOWN_HOSTS" "$@"
fi
exec ssh "$@"
"#;

/// The git fields of a build request, as sent.
#[derive(Debug, Default)]
pub struct GitRequest {
    pub url: String,
    pub git_ref: Option<String>,
    pub subdir: Option<String>,
    pub submodules: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Recorded as the source's ref while `git_ref` names the commit by SHA: the
    /// ref a trigger saw pushed.
    pub pushed_ref: Option<String>,
    pub trigger: Option<TriggeredBy>,
}

/// `[git."HOST"]`: how dockpub logs in to a git host when a request brings no login.
#[derive(Debug, Clone, Default)]
pub struct GitHostLogin {
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A private key file for ssh URLs.
    pub ssh_key: Option<PathBuf>,
    /// The ssh known hosts file; unset: ssh's own.
    pub known_hosts: Option<PathBuf>,
}

/// What the server allows git builds to fetch, and for how long.
#[derive(Debug, Clone)]
pub struct GitPolicy {
    /// `file://` URLs name the server's own disk: off unless configured.
    pub allow_file: bool,
    /// Hosts `http://` may name besides loopback ones.
    pub insecure_hosts: Vec<String>,
    pub timeout: Duration,
    /// Logins by host name (`[git."HOST"]`), lower-case.
    pub hosts: Vec<(String, GitHostLogin)>,
    /// Fetches (and ref lookups) running at once; more wait for a slot.
    pub fetch_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for GitPolicy {
    fn default() -> Self {
        GitPolicy {
            allow_file: false,
            insecure_hosts: Vec::new(),
            timeout: Duration::from_secs(300),
            hosts: Vec::new(),
            fetch_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(4)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("field '{field}': {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("git could not fetch '{git_ref}' from {url}: {reason}")]
    Fetch {
        url: String,
        git_ref: String,
        reason: String,
    },
    #[error("git did not finish fetching {url} within {secs} s (git_timeout_secs)")]
    Timeout { url: String, secs: u64 },
    /// Our side failed (cannot run git, cannot write the staging folder).
    #[error("cannot fetch from git: {0}")]
    Io(std::io::Error),
}

fn invalid(field: &'static str, message: impl Into<String>) -> GitError {
    GitError::Invalid {
        field,
        message: message.into(),
    }
}

/// A request whose fields passed [`check`].
#[derive(Debug)]
pub struct CheckedGit {
    url: String,
    host: String,
    git_ref: Option<String>,
    subdir: String,
    submodules: bool,
    username: Option<String>,
    password: Option<Secret>,
    pushed_ref: Option<String>,
    trigger: Option<TriggeredBy>,
}

/// The one place that decides whether a git request may be fetched.
pub fn check(request: GitRequest, policy: &GitPolicy) -> Result<CheckedGit, GitError> {
    let host = check_url(&request.url, policy)?;
    if let Some(git_ref) = &request.git_ref {
        check_ref(git_ref)?;
    }
    let subdir = match request.subdir.as_deref().unwrap_or("") {
        "" => String::new(),
        subdir => clean_path(Path::new(subdir))
            .map_err(|reason| invalid("git_subdir", format!("'{subdir}': {reason}")))?,
    };
    if request.password.is_some() && request.username.is_none() {
        return Err(invalid("git_username", "needed with git_password"));
    }
    Ok(CheckedGit {
        url: request.url,
        host,
        git_ref: request.git_ref.filter(|r| !r.is_empty()),
        subdir,
        submodules: request.submodules,
        username: request.username,
        password: request.password,
        pushed_ref: request.pushed_ref,
        trigger: request.trigger,
    })
}

/// The URL's host (lower-case; empty for file://) once the URL is allowed.
fn check_url(url: &str, policy: &GitPolicy) -> Result<String, GitError> {
    let bad = |message: String| Err(invalid("git", message));
    if url.is_empty()
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad(format!("'{url}' is not a repository URL"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return match scp_like(url) {
            true => Ok(scp_host(url)),
            false => bad(format!(
                "'{url}' is not a repository URL (https://, ssh://, git@host:path, git://)"
            )),
        };
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    if userinfo.is_some_and(|u| u.contains(':')) {
        return bad(
            "the URL holds a password: send it as 'git_password' (with 'git_username'), \
             which is kept in memory only"
                .into(),
        );
    }
    let host = host_of(host_port);
    if host.starts_with('-') || userinfo.is_some_and(|u| u.starts_with('-')) {
        return bad(format!("'{url}' is not a repository URL"));
    }
    let allowed = Ok(host.to_ascii_lowercase());
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "ssh" | "git" if !host.is_empty() => allowed,
        "http"
            if is_loopback(host)
                || policy
                    .insecure_hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(host)) =>
        {
            allowed
        }
        "http" => bad(format!(
            "http:// is only allowed to loopback hosts and those in allow_insecure_git_hosts; \
             '{host}' is neither: use https://"
        )),
        "file" if policy.allow_file => allowed,
        "file" => {
            bad("file:// URLs are refused unless the server sets allow_file_git = true".into())
        }
        _ => bad(format!(
            "'{scheme}://' is not supported (https://, ssh://, git@host:path, git://)"
        )),
    }
}

/// `user@host:path`, as ssh clones are written.
fn scp_like(url: &str) -> bool {
    let Some((user_host, path)) = url.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    let word = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    word(user, "._-") && word(host, ".-") && !path.is_empty()
}

fn scp_host(url: &str) -> String {
    let user_host = url.split(':').next().unwrap_or("");
    let host = user_host.split('@').nth(1).unwrap_or("");
    host.to_ascii_lowercase()
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(host_port: &str) -> &str {
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A branch, tag, `refs/…` name or full SHA: what `git check-ref-format` takes,
/// and never something git could read as an option.
fn check_ref(git_ref: &str) -> Result<(), GitError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._/-+".contains(c);
    let fine = !git_ref.is_empty()
        && !git_ref.starts_with(['-', '/', '.'])
        && !git_ref.ends_with(['/', '.'])
        && !git_ref.ends_with(".lock")
        && !git_ref.contains("..")
        && !git_ref.contains("//")
        && !git_ref.contains("/.")
        && git_ref.chars().all(allowed);
    match fine {
        true => Ok(()),
        false => Err(invalid(
            "git_ref",
            format!("'{git_ref}' is not a branch, tag or full commit SHA"),
        )),
    }
}

fn is_full_sha(git_ref: &str) -> bool {
    matches!(git_ref.len(), 40 | 64) && git_ref.chars().all(|c| c.is_ascii_hexdigit())
}

/// What [`fetch`] made: the context archive and where it came from.
#[derive(Debug)]
pub struct Fetched {
    pub archive: ContextUpload,
    pub source: GitSource,
}

/// Fetches the request's ref into a folder under `staging` (removed at the
/// end) and packs its `git_subdir` as a tar archive there. Blocking.
pub fn fetch(request: CheckedGit, policy: &GitPolicy, staging: &Path) -> Result<Fetched, GitError> {
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(staging)
        .map_err(GitError::Io)?;
    let git = Git::new(&request, policy, work.path())?;
    let wanted = request.git_ref.as_deref().unwrap_or("HEAD");
    let commit = git.fetch_commit(wanted)?;
    let tree = match request.subdir.as_str() {
        "" => commit.clone(),
        subdir => {
            let spec = format!("{commit}:{subdir}");
            if git.output(&["cat-file", "-t", &spec]).ok().as_deref() != Some("tree") {
                return Err(invalid(
                    "git_subdir",
                    format!("'{subdir}' is not a folder at commit {commit}"),
                ));
            }
            spec
        }
    };
    let archive = tempfile::NamedTempFile::new_in(staging)
        .map_err(GitError::Io)?
        .into_temp_path();
    if request.submodules {
        git.check_out_with_submodules(&commit)?;
        pack_folder(&git.repo.join(&request.subdir), &archive)?;
    } else {
        let target = archive.to_string_lossy().into_owned();
        git.output(&["archive", "--format=tar", "-o", &target, &tree])?;
    }
    let bytes = std::fs::metadata(&archive).map_err(GitError::Io)?.len();
    Ok(Fetched {
        archive: ContextUpload {
            file: archive,
            bytes,
        },
        source: GitSource {
            git: request.url,
            git_ref: request.pushed_ref.unwrap_or_else(|| wanted.to_string()),
            commit,
            trigger: request.trigger,
        },
    })
}

/// A branch or tag of the remote, by its short or full name, with the commit it
/// names (a tag peeled to its commit). Blocking.
pub fn remote_ref(
    request: CheckedGit,
    policy: &GitPolicy,
    staging: &Path,
    name: &str,
) -> Result<(String, String), GitError> {
    check_ref(name)?;
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(staging)
        .map_err(GitError::Io)?;
    let git = Git::new(&request, policy, work.path())?;
    let candidates: Vec<String> = match name.starts_with("refs/") {
        true => vec![name.to_string()],
        false => vec![format!("refs/heads/{name}"), format!("refs/tags/{name}")],
    };
    let mut args = vec!["ls-remote".to_string(), "origin".to_string()];
    for candidate in &candidates {
        args.push(candidate.clone());
        args.push(format!("{candidate}^{{}}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listed = git.output(&args).map_err(|err| match err {
        GitError::Fetch { url, reason, .. } => GitError::Fetch {
            url,
            git_ref: name.to_string(),
            reason,
        },
        other => other,
    })?;
    let commit_of = |wanted: &str| {
        let peeled = format!("{wanted}^{{}}");
        let line = |r: &str| {
            listed.lines().find_map(|line| {
                let (sha, listed_ref) = line.split_once('\t')?;
                (listed_ref == r).then(|| sha.to_string())
            })
        };
        line(&peeled).or_else(|| line(wanted))
    };
    candidates
        .iter()
        .find_map(|candidate| commit_of(candidate).map(|sha| (candidate.clone(), sha)))
        .ok_or_else(|| GitError::Fetch {
            url: request.url.clone(),
            git_ref: name.to_string(),
            reason: "no such branch or tag in the repository".into(),
        })
}

/// `git` against one bare repository, under one deadline.
struct Git<'a> {
    url: &'a str,
    policy: &'a GitPolicy,
    repo: PathBuf,
    work: &'a Path,
    env: Vec<(&'static str, OsString)>,
    password: Option<&'a str>,
    deadline: Instant,
    timeout: Duration,
}

impl<'a> Git<'a> {
    fn new(
        request: &'a CheckedGit,
        policy: &'a GitPolicy,
        work: &'a Path,
    ) -> Result<Self, GitError> {
        let mut protocols = "https:http:ssh:git".to_string();
        if policy.allow_file {
            protocols.push_str(":file");
        }
        let mut env: Vec<(&'static str, OsString)> = vec![
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
            ("GIT_ALLOW_PROTOCOL", protocols.into()),
            ("LC_ALL", "C".into()),
        ];
        let host_login = policy
            .hosts
            .iter()
            .find(|(host, _)| *host == request.host)
            .map(|(_, login)| login);
        match host_login.and_then(|login| login.ssh_key.as_ref()) {
            Some(key) => {
                let ssh = work.join("ssh");
                write_script(&ssh, SSH_SCRIPT)?;
                env.push(("GIT_SSH", ssh.into()));
                env.push(("GIT_SSH_VARIANT", "ssh".into()));
                env.push((SSH_KEY_ENV, key.into()));
                let known_hosts = host_login.and_then(|login| login.known_hosts.as_ref());
                env.push((
                    KNOWN_HOSTS_ENV,
                    known_hosts.map_or_else(OsString::new, |k| k.into()),
                ));
            }
            None => env.push(("GIT_SSH_COMMAND", "ssh -o BatchMode=yes".into())),
        }
        // The request's own login comes first; the host's is the fallback.
        let (username, password) = match &request.username {
            Some(username) => (Some(username), request.password.as_ref()),
            None => (
                host_login.and_then(|login| login.username.as_ref()),
                host_login.and_then(|login| login.password.as_ref()),
            ),
        };
        if let Some(username) = username {
            let askpass = work.join("askpass");
            write_script(&askpass, ASKPASS_SCRIPT)?;
            env.push(("GIT_ASKPASS", askpass.into()));
            env.push((USERNAME_ENV, username.into()));
            env.push((PASSWORD_ENV, password.map_or("", Secret::expose).into()));
        }
        let git = Git {
            url: &request.url,
            policy,
            repo: work.join("repo"),
            work,
            env,
            password: password.map(Secret::expose),
            deadline: Instant::now() + policy.timeout,
            timeout: policy.timeout,
        };
        let repo = git.repo.to_string_lossy().into_owned();
        git.run(&["init", "--quiet", &repo], false)?;
        // Submodules with relative URLs resolve them against `origin`.
        git.run(&["remote", "add", "--", "origin", git.url], true)?;
        Ok(git)
    }

    /// Fetches `wanted` (shallow; a SHA the server will not hand out alone is
    /// fetched with the whole history) and returns its commit's full SHA.
    fn fetch_commit(&self, wanted: &str) -> Result<String, GitError> {
        let shallow = self.fetch(&["--depth=1", "--", self.url, wanted]);
        let resolved = match shallow {
            Ok(()) if is_full_sha(wanted) => wanted.to_string(),
            Ok(()) => "FETCH_HEAD".to_string(),
            Err(GitError::Fetch { .. }) if is_full_sha(wanted) => {
                self.fetch(&[
                    "--update-head-ok",
                    "--",
                    self.url,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ])?;
                wanted.to_string()
            }
            Err(err) => return Err(err),
        };
        self.output(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{resolved}^{{commit}}"),
        ])
        .map_err(|_| GitError::Fetch {
            url: self.url.to_string(),
            git_ref: wanted.to_string(),
            reason: "no such commit in the repository".into(),
        })
    }

    /// Checks `commit` out with its submodules (shallow, under the same
    /// protocol rules and deadline), one level at a time, so that every
    /// submodule URL passes the same rules as `git` before it is fetched.
    fn check_out_with_submodules(&self, commit: &str) -> Result<(), GitError> {
        self.run(&["checkout", "--quiet", "--detach", commit], true)?;
        self.update_submodules(&self.repo, 0)
            .map_err(|err| match err {
                GitError::Fetch { reason, .. } => GitError::Fetch {
                    url: self.url.to_string(),
                    git_ref: format!("{commit} (submodules)"),
                    reason,
                },
                other => other,
            })
    }

    fn update_submodules(&self, dir: &Path, depth: usize) -> Result<(), GitError> {
        if !dir.join(".gitmodules").is_file() {
            return Ok(());
        }
        if depth >= MAX_SUBMODULE_DEPTH {
            return Err(invalid(
                "git_submodules",
                format!("submodules nest deeper than {MAX_SUBMODULE_DEPTH} levels"),
            ));
        }
        for url in self.gitmodules(dir, "url")? {
            // Relative URLs resolve against the already checked parent's URL.
            if !url.starts_with("./") && !url.starts_with("../") {
                check_url(&url, self.policy).map_err(|err| match err {
                    GitError::Invalid { message, .. } => {
                        invalid("git_submodules", format!("a submodule's URL: {message}"))
                    }
                    other => other,
                })?;
            }
        }
        let update = ["submodule", "update", "--quiet", "--init", "--depth=1"];
        self.run_at(Some(dir), &update)?;
        for path in self.gitmodules(dir, "path")? {
            let path = clean_path(Path::new(&path)).map_err(|why| {
                invalid("git_submodules", format!("submodule path '{path}': {why}"))
            })?;
            self.update_submodules(&dir.join(path), depth + 1)?;
        }
        Ok(())
    }

    /// Every submodule's `key` (`url`, `path`) in `dir`'s `.gitmodules`.
    fn gitmodules(&self, dir: &Path, key: &str) -> Result<Vec<String>, GitError> {
        let pattern = format!(r"^submodule\..*\.{key}$");
        let args = ["config", "--file", ".gitmodules", "--get-regexp", &pattern];
        // git config exits 1 when nothing matches.
        let listed = self.run_at(Some(dir), &args).unwrap_or_default();
        Ok(listed
            .lines()
            .filter_map(|line| line.split_once(' ').map(|(_, value)| value.to_string()))
            .collect())
    }

    fn fetch(&self, args: &[&str]) -> Result<(), GitError> {
        let mut all = vec!["fetch", "--quiet", "--no-tags"];
        all.extend_from_slice(args);
        let wanted = args.last().copied().unwrap_or("HEAD");
        self.run(&all, true).map(drop).map_err(|err| match err {
            GitError::Fetch { reason, .. } => GitError::Fetch {
                url: self.url.to_string(),
                git_ref: wanted.to_string(),
                reason,
            },
            other => other,
        })
    }

    /// A command's trimmed stdout, in the repository.
    fn output(&self, args: &[&str]) -> Result<String, GitError> {
        self.run(args, true)
    }

    /// Runs git to its end or the deadline; stdout and stderr go to files, so a
    /// chatty git never blocks on a full pipe.
    fn run(&self, args: &[&str], in_repo: bool) -> Result<String, GitError> {
        self.run_at(in_repo.then_some(self.repo.as_path()), args)
    }

    /// `run` with `git -C dir`.
    fn run_at(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
        let stdout_path = self.work.join("stdout");
        let stderr_path = self.work.join("stderr");
        let mut command = Command::new("git");
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).map_err(GitError::Io)?)
            .stderr(File::create(&stderr_path).map_err(GitError::Io)?)
            .process_group(0);
        let mut child = command.spawn().map_err(GitError::Io)?;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(GitError::Io)? {
                break status;
            }
            if Instant::now() >= self.deadline {
                kill_group(child.id());
                let _ = child.wait();
                return Err(GitError::Timeout {
                    url: self.url.to_string(),
                    secs: self.timeout.as_secs(),
                });
            }
            std::thread::sleep(POLL);
        };
        if !status.success() {
            let stderr = std::fs::read(&stderr_path).unwrap_or_default();
            return Err(GitError::Fetch {
                url: self.url.to_string(),
                git_ref: String::new(),
                reason: self.reason(&String::from_utf8_lossy(&stderr)),
            });
        }
        let stdout = std::fs::read(&stdout_path).map_err(GitError::Io)?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_string())
    }

    /// git's own message, shortened, with the password blanked should it ever
    /// appear in it.
    fn reason(&self, stderr: &str) -> String {
        let mut reason = stderr
            .lines()
            .map(|line| {
                line.trim_start_matches("fatal: ")
                    .trim_start_matches("error: ")
                    .trim()
            })
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if let Some(password) = self.password.filter(|p| !p.is_empty()) {
            reason = reason.replace(password, "***");
        }
        if reason.is_empty() {
            reason = "git failed without saying why".into();
        }
        reason.chars().take(MAX_REASON_CHARS).collect()
    }
}

/// Packs a checked-out folder as a tar archive, without git's own files
/// (`.git` folders, and the `.git` files submodules have); links stay links.
fn pack_folder(folder: &Path, archive: &Path) -> Result<(), GitError> {
    let file = File::create(archive).map_err(GitError::Io)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = std::fs::read_dir(folder.join(&relative)).map_err(GitError::Io)?;
        for entry in entries {
            let entry = entry.map_err(GitError::Io)?;
            if entry.file_name() == ".git" {
                continue;
            }
            let name = relative.join(entry.file_name());
            builder
                .append_path_with_name(entry.path(), &name)
                .map_err(GitError::Io)?;
            if entry.file_type().map_err(GitError::Io)?.is_dir() {
                pending.push(name);
            }
        }
    }
    builder
        .into_inner()
        .and_then(|mut writer| writer.flush())
        .map_err(GitError::Io)
}

fn write_script(path: &Path, script: &str) -> Result<(), GitError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(path)
        .map_err(GitError::Io)?;
    file.write_all(script.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(GitError::Io)
}

/// Kills git and the helpers it started (remote-https, ssh), which share its group.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group the
        // child leads (`process_group(0)`); it touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> GitRequest {
        GitRequest {
            url: url.into(),
            ..GitRequest::default()
        }
    }

    fn field_of(url: &str, policy: &GitPolicy) -> Option<&'static str> {
        match check(request(url), policy) {
            Ok(_) => None,
            Err(GitError::Invalid { field, .. }) => Some(field),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn urls_follow_the_policy() {
        let strict = GitPolicy::default();
        for good in [
            "https://git.example.com/team/app.git",
            "ssh://git@git.example.com:2222/team/app.git",
            "git@github.com:team/app.git",
            "git://127.0.0.1:9418/app",
            "http://127.0.0.1:8080/app.git",
            "http://localhost/app.git",
            "http://[::1]:80/app.git",
        ] {
            assert_eq!(field_of(good, &strict), None, "{good}");
        }
        for bad in [
            "http://git.example.com/app.git",
            "file:///srv/git/app",
            "https://alice:secret@git.example.com/app.git",
            "/srv/git/app",
            "-uhttps://x",
            "ssh://-oProxyCommand=touch/x",
            "ssh://-x@host/x",
            "ftp://x/y",
            "https://x/ y",
            "",
        ] {
            assert_eq!(field_of(bad, &strict), Some("git"), "{bad}");
        }
        let open = GitPolicy {
            allow_file: true,
            insecure_hosts: vec!["git.internal".into()],
            ..GitPolicy::default()
        };
        assert_eq!(field_of("file:///srv/git/app", &open), None);
        assert_eq!(field_of("http://git.internal/app.git", &open), None);
    }

    #[test]
    fn a_password_in_the_url_points_to_the_fields() {
        let err = check(
            request("https://alice:hunter2@git.example.com/app.git"),
            &GitPolicy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("git_password"), "{err}");
    }

    #[test]
    fn refs_cannot_be_options_or_escape() {
        for good in [
            "main",
            "v1.2.0",
            "feature/x",
            "refs/heads/main",
            &"a".repeat(40),
        ] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in [
            "-x",
            "--upload-pack=x",
            "a..b",
            "a b",
            "x.lock",
            "/x",
            "a//b",
            "",
        ] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
        assert!(is_full_sha(&"0f".repeat(20)));
        assert!(!is_full_sha("0f0f"));
    }

    #[test]
    fn subdirs_stay_inside() {
        let with_subdir = |subdir: &str| GitRequest {
            subdir: Some(subdir.into()),
            ..request("https://x.example/app.git")
        };
        let policy = GitPolicy::default();
        assert_eq!(check(with_subdir("./app/"), &policy).unwrap().subdir, "app");
        assert!(check(with_subdir("../x"), &policy).is_err());
        assert!(check(with_subdir("/etc"), &policy).is_err());
    }
}
