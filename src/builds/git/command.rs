//! Running `git` for one fetch: its environment (protocols, logins, ssh key),
//! its deadline, and its submodules fetched level by level.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::urls::{check_url, is_full_sha};
use super::{clean_path, invalid, CheckedGit, GitError, GitPolicy, Secret};

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

/// `git` against one bare repository, under one deadline.
pub(super) struct Git<'a> {
    url: &'a str,
    policy: &'a GitPolicy,
    pub(super) repo: PathBuf,
    work: &'a Path,
    env: Vec<(&'static str, OsString)>,
    password: Option<&'a str>,
    deadline: Instant,
    timeout: Duration,
}

impl<'a> Git<'a> {
    pub(super) fn new(
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
    pub(super) fn fetch_commit(&self, wanted: &str) -> Result<String, GitError> {
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
    pub(super) fn check_out_with_submodules(&self, commit: &str) -> Result<(), GitError> {
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
    pub(super) fn output(&self, args: &[&str]) -> Result<String, GitError> {
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
