//! Running `git` for one fetch: in the environment `environment.rs` gives it,
//! under its deadline and idle bound, within what it may write, and with its
//! submodules fetched level by level.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::counted::Tally;
use super::environment::{environment, Env};
use super::urls::{check_url, is_full_sha};
use super::{clean_path, invalid, CheckedGit, GitError, GitPolicy};
use crate::builds::context::ContextLimits;

/// How often a running `git` is checked against its deadline.
const POLL: Duration = Duration::from_millis(20);
/// How often the fetch folder is measured while git runs: its growth is the
/// progress the idle bound watches, and its size is held to the disk budget.
const SAMPLE: Duration = Duration::from_millis(250);
/// Submodules within submodules, at most.
const MAX_SUBMODULE_DEPTH: usize = 8;
/// How much of the end of git's stderr is read for its message (its
/// progress lines come before).
const STDERR_TAIL_BYTES: u64 = 64 * 1024;
/// The longest part of git's own message kept in an error.
const MAX_REASON_CHARS: usize = 1000;
/// What git's messages say instead of the fetch folder's absolute path.
const FETCH_FOLDER_WORD: &str = "<fetch folder>";
const STAGING_FOLDER_WORD: &str = "<staging folder>";
/// `git` against one bare repository, under one deadline.
pub(super) struct Git<'a> {
    url: &'a str,
    policy: &'a GitPolicy,
    pub(super) repo: PathBuf,
    work: &'a Path,
    env: Env,
    password: Option<&'a str>,
    deadline: Instant,
    timeout: Duration,
    /// Bytes the fetch folder may hold while git writes to it.
    disk_budget: u64,
}

impl<'a> Git<'a> {
    pub(super) fn new(
        request: &'a CheckedGit,
        policy: &'a GitPolicy,
        work: &'a Path,
    ) -> Result<Self, GitError> {
        let (env, password) = environment(request, policy, work)?;
        let git = Git {
            url: &request.url,
            policy,
            repo: work.join("repo"),
            work,
            env,
            password,
            deadline: Instant::now() + policy.timeout,
            timeout: policy.timeout,
            disk_budget: u64::MAX,
        };
        let repo = git.repo.to_string_lossy().into_owned();
        git.run(&["init", "--quiet", &repo], false)?;
        // Submodules with relative URLs resolve them against `origin`.
        git.run(&["remote", "add", "--", "origin", git.url], true)?;
        Ok(git)
    }

    /// Holds the fetch folder (git's objects, checked-out files, its output) to
    /// `bytes` while git runs.
    pub(super) fn limit_disk(&mut self, bytes: u64) {
        self.disk_budget = bytes;
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
    /// submodule URL passes the same rules as `git` before it is fetched, and
    /// every tree is sized (adding up to `limits`) before it is written.
    pub(super) fn check_out_with_submodules(
        &self,
        commit: &str,
        limits: ContextLimits,
    ) -> Result<(), GitError> {
        let mut tally = Tally::new(limits);
        self.check_out(&self.repo, commit, &mut tally)?;
        self.update_submodules(&self.repo, 0, &mut tally)
            .map_err(|err| match err {
                GitError::Fetch { reason, .. } => GitError::Fetch {
                    url: self.url.to_string(),
                    git_ref: format!("{commit} (submodules)"),
                    reason,
                },
                other => other,
            })
    }

    /// Sizes `commit`'s tree from its listing, then checks it out in `dir`.
    fn check_out(&self, dir: &Path, commit: &str, tally: &mut Tally) -> Result<(), GitError> {
        let listing = ["ls-tree", "-r", "-t", "-l", "-z", commit];
        self.stream_at(dir, &listing, |listed| tally.add_listing(listed))?;
        self.run_at(Some(dir), &["checkout", "--quiet", "--detach", commit])
            .map(drop)
    }

    fn update_submodules(
        &self,
        dir: &Path,
        depth: usize,
        tally: &mut Tally,
    ) -> Result<(), GitError> {
        if !dir.join(".gitmodules").is_file() {
            return Ok(());
        }
        if depth >= MAX_SUBMODULE_DEPTH {
            return Err(invalid(
                "git_submodules",
                format!("submodules nest deeper than {MAX_SUBMODULE_DEPTH} levels"),
            ));
        }
        // `init` resolves relative URLs against the parent's as git does
        // (`../../host:port/x` can leave the parent's host) and writes them to
        // the parent's config; each is checked there, before anything is fetched.
        self.run_at(Some(dir), &["submodule", "init", "--quiet"])?;
        let urls = self.config_entries(dir, &["--get-regexp", r"^submodule\..*\.url$"]);
        for (key, url) in &urls {
            check_url(url, self.policy).map_err(|err| match err {
                GitError::Invalid { message, .. } => {
                    invalid("git_submodules", format!("a submodule's URL: {message}"))
                }
                other => other,
            })?;
            // Fetched, not checked out: git runs this (ours, from the
            // repository's own config, never `.gitmodules`) instead of a checkout.
            let name = key.strip_suffix(".url").unwrap_or(key);
            let update = format!("{name}.update");
            self.run_at(Some(dir), &["config", &update, "!true"])?;
        }
        let update = ["submodule", "update", "--progress", "--depth=1"];
        self.run_at(Some(dir), &update)?;
        self.check_disk()?;
        let listed = [
            "--file",
            ".gitmodules",
            "--get-regexp",
            r"^submodule\..*\.path$",
        ];
        for (_, path) in self.config_entries(dir, &listed) {
            let path = clean_path(Path::new(&path)).map_err(|why| {
                invalid("git_submodules", format!("submodule path '{path}': {why}"))
            })?;
            let submodule = dir.join(&path);
            // A `.gitmodules` entry with no submodule in the tree has nothing fetched.
            if !submodule.join(".git").exists() {
                continue;
            }
            let commit = self.run_at(Some(dir), &["rev-parse", &format!("HEAD:{path}")])?;
            self.check_out(&submodule, &commit, tally)?;
            self.update_submodules(&submodule, depth + 1, tally)?;
        }
        Ok(())
    }

    /// The `(key, value)` pairs `git config -z ARGS` lists in `dir`; none when
    /// nothing matches (git config then exits 1).
    fn config_entries(&self, dir: &Path, args: &[&str]) -> Vec<(String, String)> {
        let args = [&["config", "-z"], args].concat();
        let listed = self.run_at(Some(dir), &args).unwrap_or_default();
        listed
            .split('\0')
            .filter_map(|entry| entry.split_once('\n'))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn fetch(&self, args: &[&str]) -> Result<(), GitError> {
        // Progress on stderr is what the idle bound sees while the server works.
        let mut all = vec!["fetch", "--progress", "--no-tags"];
        all.extend_from_slice(args);
        let wanted = args.last().copied().unwrap_or("HEAD");
        self.run(&all, true).map_err(|err| match err {
            GitError::Fetch { reason, .. } => GitError::Fetch {
                url: self.url.to_string(),
                git_ref: wanted.to_string(),
                reason,
            },
            other => other,
        })?;
        self.check_disk()
    }

    /// The fetch folder within its budget once git is done writing to it (a
    /// fetch can end between two of the samples taken while it runs).
    fn check_disk(&self) -> Result<(), GitError> {
        match folder_size(self.work) > self.disk_budget {
            true => Err(self.over_budget()),
            false => Ok(()),
        }
    }

    fn over_budget(&self) -> GitError {
        GitError::TooLarge {
            url: self.url.to_string(),
            limit: self.disk_budget,
        }
    }

    /// A command's trimmed stdout, in the repository.
    pub(super) fn output(&self, args: &[&str]) -> Result<String, GitError> {
        self.run(args, true)
    }

    /// Runs git to its end, its deadline, its idle bound or its disk budget;
    /// stdout and stderr go to files, so a chatty git never blocks on a full pipe.
    fn run(&self, args: &[&str], in_repo: bool) -> Result<String, GitError> {
        self.run_at(in_repo.then_some(self.repo.as_path()), args)
    }

    /// `run` with `git -C dir`.
    fn run_at(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
        let stdout_path = self.work.join("stdout");
        let mut command = self.command(dir, args)?;
        command.stdout(File::create(&stdout_path).map_err(GitError::Io)?);
        let mut child = command.spawn().map_err(GitError::Io)?;
        let status = self.watch(&mut child)?;
        if !status.success() {
            return Err(self.failed());
        }
        let stdout = std::fs::read(&stdout_path).map_err(GitError::Io)?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_string())
    }

    /// Runs git in the repository with its stdout handed to `consume` as it is
    /// written (which may stop early: git's group is then killed), under the
    /// same deadline.
    pub(super) fn stream<T>(
        &self,
        args: &[&str],
        consume: impl FnOnce(ChildStdout) -> Result<T, GitError>,
    ) -> Result<T, GitError> {
        self.stream_at(&self.repo, args, consume)
    }

    /// `stream` with `git -C dir`.
    fn stream_at<T>(
        &self,
        dir: &Path,
        args: &[&str],
        consume: impl FnOnce(ChildStdout) -> Result<T, GitError>,
    ) -> Result<T, GitError> {
        let mut command = self.command(Some(dir), args)?;
        command.stdout(Stdio::piped());
        let mut child = command.spawn().map_err(GitError::Io)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let watchdog = Watchdog::arm(child.id(), self.deadline);
        let consumed = consume(stdout);
        let expired = watchdog.disarm();
        if consumed.is_err() {
            kill_group(child.id());
        }
        let status = child.wait().map_err(GitError::Io)?;
        if expired {
            return Err(self.timeout());
        }
        match consumed {
            Err(err @ (GitError::Context(_) | GitError::Io(_))) => Err(err),
            _ if !status.success() => Err(self.failed()),
            consumed => consumed,
        }
    }

    /// git in a cleared environment plus what it needs, its stderr to a file,
    /// leading a process group of its own.
    fn command(&self, dir: Option<&Path>, args: &[&str]) -> Result<Command, GitError> {
        let stderr = File::create(self.work.join("stderr")).map_err(GitError::Io)?;
        let mut command = Command::new("git");
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.work)
            .stdin(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        Ok(command)
    }

    /// Waits for git to end; kills its group at the deadline, when the fetch
    /// folder (git's output included) has not changed for the idle bound, or
    /// when it holds more than the disk budget.
    fn watch(&self, child: &mut Child) -> Result<ExitStatus, GitError> {
        let mut size = None;
        let mut changed = Instant::now();
        // A quick command (most are) ends before the folder is ever walked.
        let mut next_sample = Instant::now() + SAMPLE;
        loop {
            if let Some(status) = child.try_wait().map_err(GitError::Io)? {
                return Ok(status);
            }
            let now = Instant::now();
            let mut stop = (now >= self.deadline).then(|| self.timeout());
            if stop.is_none() && now >= next_sample {
                next_sample = now + SAMPLE;
                let measured = folder_size(self.work);
                if size != Some(measured) {
                    size = Some(measured);
                    changed = now;
                }
                if measured > self.disk_budget {
                    stop = Some(self.over_budget());
                } else if now.duration_since(changed) >= self.policy.idle_timeout {
                    stop = Some(GitError::Idle {
                        url: self.url.to_string(),
                        secs: self.policy.idle_timeout.as_secs(),
                    });
                }
            }
            if let Some(err) = stop {
                kill_group(child.id());
                let _ = child.wait();
                return Err(err);
            }
            std::thread::sleep(POLL);
        }
    }

    fn timeout(&self) -> GitError {
        GitError::Timeout {
            url: self.url.to_string(),
            secs: self.timeout.as_secs(),
        }
    }

    /// git failed: its own message, from its stderr.
    fn failed(&self) -> GitError {
        let stderr = read_tail(&self.work.join("stderr"), STDERR_TAIL_BYTES).unwrap_or_default();
        GitError::Fetch {
            url: self.url.to_string(),
            git_ref: String::new(),
            reason: self.reason(&String::from_utf8_lossy(&stderr)),
        }
    }

    /// git's own message, scrubbed: see [`scrub`].
    fn reason(&self, stderr: &str) -> String {
        scrub(stderr, self.password, &self.folders())
    }

    /// The fetch folder and the staging folder holding it, as written and as
    /// resolved (git may print either), longest first.
    fn folders(&self) -> Vec<(String, &'static str)> {
        let mut folders = Vec::new();
        for path in [Some(self.work.to_path_buf()), self.work.canonicalize().ok()]
            .into_iter()
            .flatten()
        {
            folders.push((path.display().to_string(), FETCH_FOLDER_WORD));
            if let Some(staging) = path.parent() {
                folders.push((staging.display().to_string(), STAGING_FOLDER_WORD));
            }
        }
        folders.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        folders.retain(|(path, _)| path.len() > 1);
        folders
    }
}

/// git's own message without its progress lines, shortened, with the password
/// blanked should it ever appear in it and the folders' paths (the data
/// directory's) replaced by words.
fn scrub(stderr: &str, password: Option<&str>, folders: &[(String, &'static str)]) -> String {
    let mut reason = stderr
        .split(['\n', '\r'])
        .map(|line| {
            line.trim_start_matches("fatal: ")
                .trim_start_matches("error: ")
                .trim()
        })
        .filter(|line| !line.is_empty() && !is_progress(line))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        reason = reason.replace(password, "***");
    }
    for (folder, word) in folders {
        reason = reason.replace(folder, word);
    }
    if reason.is_empty() {
        reason = "git failed without saying why".into();
    }
    reason.chars().take(MAX_REASON_CHARS).collect()
}

/// git's progress meter lines (its own and the server's `remote:` ones), which
/// say nothing about why it failed.
fn is_progress(line: &str) -> bool {
    const PROGRESS: [&str; 10] = [
        "Enumerating objects",
        "Counting objects",
        "Compressing objects",
        "Receiving objects",
        "Resolving deltas",
        "Unpacking objects",
        "Checking objects",
        "Updating files",
        "Total ",
        "Cloning into",
    ];
    let line = line.strip_prefix("remote:").unwrap_or(line).trim_start();
    PROGRESS.iter().any(|start| line.starts_with(start))
}

/// The last `bytes` of a file: where git's message is, after its progress.
fn read_tail(path: &Path, bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(bytes)))?;
    let mut tail = Vec::new();
    file.take(bytes).read_to_end(&mut tail)?;
    Ok(tail)
}

/// Bytes of the files under `folder` (links not followed); what vanishes while
/// it is walked is not counted.
fn folder_size(folder: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Kills a git whose stdout is being read (a read that cannot watch the clock)
/// once its deadline passes, unless disarmed first.
struct Watchdog {
    done: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn arm(pid: u32, deadline: Instant) -> Watchdog {
        let (done, disarmed) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let left = deadline.saturating_duration_since(Instant::now());
            match disarmed.recv_timeout(left) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    kill_group(pid);
                    true
                }
                _ => false,
            }
        });
        Watchdog { done, thread }
    }

    /// Whether it fired. The child is not reaped before this returns, so its
    /// pid cannot have been reused when the watchdog killed it.
    fn disarm(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap_or(false)
    }
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

    #[test]
    fn reasons_keep_gits_words_without_progress_passwords_or_our_folders() {
        let stderr = "Cloning into '/data/uploads/git-x1/repo/app/lib'...\n\
            remote: Enumerating objects: 3, done.\r\n\
            Receiving objects:  50% (1/2)\rReceiving objects: 100% (2/2), done.\n\
            fatal: Authentication failed for 'http://alice:pw42@host/x.git'\n\
            fatal: clone of 'http://host/x.git' into submodule path \
            '/data/uploads/git-x1/repo/app/lib' failed\n";
        let folders = vec![
            ("/data/uploads/git-x1".to_string(), FETCH_FOLDER_WORD),
            ("/data/uploads".to_string(), STAGING_FOLDER_WORD),
        ];
        let reason = scrub(stderr, Some("pw42"), &folders);
        assert_eq!(
            reason,
            "Authentication failed for 'http://alice:***@host/x.git'; \
             clone of 'http://host/x.git' into submodule path '<fetch folder>/repo/app/lib' failed"
        );
        assert_eq!(scrub("\n", None, &[]), "git failed without saying why");
    }

    #[test]
    fn folder_sizes_count_files_below() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("y"), [0u8; 23]).unwrap();
        assert_eq!(folder_size(dir.path()), 123);
    }
}
