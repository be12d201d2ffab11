//! Builds from a git repository: the request's git fields checked (the one place
//! that decides which URLs are allowed), and the one ref fetched with the system
//! `git` into a temporary folder, then packed as a context archive.
//!
//! `git` runs with explicit arguments, never through a shell, with a cleared
//! environment, no terminal prompt, no system or user config, only the allowed
//! protocols, a deadline and an idle bound after which its whole process group is
//! killed, and a bound on what it may write. A password reaches it through the
//! environment of a credential helper that git runs only for the request's own
//! scheme, host and port, never its arguments.

mod command;
mod counted;
mod environment;
mod fetch;
mod urls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::context::{clean_path, ContextError, ContextUpload};
use crate::domain::{GitSource, Secret, TriggeredBy};
pub use fetch::{fetch, list_remote_refs, remote_ref};
pub(crate) use urls::is_full_sha;
use urls::{check_ref, check_url};

/// The labels a git build's image gets.
pub const SOURCE_LABEL: &str = "org.opencontainers.image.source";
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

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
    /// How long a fetch may go without writing anything (git's progress, objects,
    /// files) before it is stopped.
    pub idle_timeout: Duration,
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
            idle_timeout: Duration::from_secs(60),
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
    #[error("git made no progress fetching {url} for {secs} s (git_idle_timeout_secs)")]
    Idle { url: String, secs: u64 },
    #[error(
        "fetching {url} wrote more than {limit} bytes (twice max_context_bytes: git's objects \
         and the checked-out files)"
    )]
    TooLarge { url: String, limit: u64 },
    /// The repository's tree is past a context limit (`max_context_bytes`,
    /// `max_context_entries`), found while it was written.
    #[error(transparent)]
    Context(ContextError),
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
    // They reach git as lines of its credential protocol.
    let one_line = |value: &str| !value.contains(['\n', '\r', '\0']);
    if !request.username.as_deref().is_none_or(one_line) {
        return Err(invalid("git_username", "holds a line break or NUL"));
    }
    if !request
        .password
        .as_ref()
        .is_none_or(|p| one_line(p.expose()))
    {
        return Err(invalid("git_password", "holds a line break or NUL"));
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

/// What [`fetch`] made: the context archive and where it came from.
#[derive(Debug)]
pub struct Fetched {
    pub archive: ContextUpload,
    pub source: GitSource,
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
            "https://ghp_token@github.com/team/app.git",
            "http://someone@127.0.0.1:8080/app.git",
            "git://someone@127.0.0.1/app",
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
    fn a_user_name_in_the_url_points_to_the_fields_but_ssh_users_are_fine() {
        let err = check(
            request("https://ghp_abc@github.com/app.git"),
            &GitPolicy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("git_username"), "{err}");
        assert!(!err.contains("ghp_abc"), "{err}");
        for ssh in [
            "ssh://git@github.com/team/app.git",
            "git@github.com:team/app.git",
        ] {
            assert_eq!(field_of(ssh, &GitPolicy::default()), None, "{ssh}");
        }
    }

    #[test]
    fn logins_are_single_lines() {
        let with_login = |username: &str, password: &str| GitRequest {
            username: Some(username.into()),
            password: Some(Secret::new(password.to_string())),
            ..request("https://git.example.com/app.git")
        };
        let policy = GitPolicy::default();
        assert!(check(with_login("alice", "pw"), &policy).is_ok());
        for (username, password, field) in [
            ("alice\nhost=evil", "pw", "git_username"),
            ("alice", "pw\nhost=evil", "git_password"),
            ("alice", "pw\0", "git_password"),
        ] {
            match check(with_login(username, password), &policy) {
                Err(GitError::Invalid { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn logins_are_scoped_to_the_exact_origin() {
        assert_eq!(
            urls::http_origin("http://127.0.0.1:8080/git/app.git").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            urls::http_origin("HTTPS://git.example.com/app.git?x").as_deref(),
            Some("https://git.example.com")
        );
        assert_eq!(urls::http_origin("ssh://git@h/x"), None);
        assert_eq!(urls::http_origin("git@h:x"), None);
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
