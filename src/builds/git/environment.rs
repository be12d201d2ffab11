//! What `git` is given to run with: a cleared environment plus what it needs,
//! and the logins it may use, each for the exact origin it was configured or
//! sent for (never a submodule's, a redirect's or another port's).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::urls::{explicit_port, http_origin};
use super::{CheckedGit, GitError, GitHostLogin, GitPolicy, Secret};

const USERNAME_ENV: &str = "DOCKPUB_GIT_USERNAME";
const PASSWORD_ENV: &str = "DOCKPUB_GIT_PASSWORD";
const SSH_KEY_ENV: &str = "DOCKPUB_GIT_SSH_KEY";
const KNOWN_HOSTS_ENV: &str = "DOCKPUB_GIT_KNOWN_HOSTS";
/// A credential helper (git runs it through `sh`): answers `get` with the login
/// from the environment. It is configured as `credential.<scheme://host:port>.helper`,
/// so git asks it only for that exact origin; any other host (a submodule, a
/// redirect) finds no helper, no askpass and no terminal, and gets nothing.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$DOCKPUB_GIT_USERNAME\" \"$DOCKPUB_GIT_PASSWORD\"; }; f";
/// Runs ssh with the host's key (and known hosts). git runs `GIT_SSH` without
/// a shell; the paths travel in the environment, quoted, never as shell words.
const SSH_SCRIPT: &str = r#"#!/bin/sh
set -- -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -i "$DOCKPUB_GIT_SSH_KEY" "$@"
if [ -n "$DOCKPUB_GIT_KNOWN_HOSTS" ]; then
  set -- -o "UserKnownHostsFile=$DOCKPUB_GIT_KNOWN_HOSTS" "$@"
fi
exec ssh "$@"
"#;
/// PATH for git when dockpub has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// dockpub's own variables that git gets as they are, when set: how to reach
/// the network (proxies) and which certificate authorities to trust.
const PASSED_THROUGH: [&str; 10] = [
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Variables as git is given them.
pub(super) type Env = Vec<(&'static str, OsString)>;

/// git's environment for `request`, and the password it may send (for
/// blanking it in git's messages).
pub(super) fn environment<'a>(
    request: &'a CheckedGit,
    policy: &'a GitPolicy,
    work: &Path,
) -> Result<(Env, Option<&'a str>), GitError> {
    let mut env = base_env(work, policy);
    env.extend(ssh_env(request, policy, work)?);
    let password = add_login(request, policy, &mut env);
    Ok((env, password))
}

/// How git runs ssh: with the host's key (and known hosts) when it has one.
fn ssh_env(request: &CheckedGit, policy: &GitPolicy, work: &Path) -> Result<Env, GitError> {
    let login = host_login(policy, &request.host, &request.url);
    let Some(key) = login.and_then(|login| login.ssh_key.as_ref()) else {
        return Ok(vec![("GIT_SSH_COMMAND", "ssh -o BatchMode=yes".into())]);
    };
    let ssh = work.join("ssh");
    write_script(&ssh, SSH_SCRIPT)?;
    let known_hosts = login.and_then(|login| login.known_hosts.as_ref());
    Ok(vec![
        ("GIT_SSH", ssh.into()),
        ("GIT_SSH_VARIANT", "ssh".into()),
        (SSH_KEY_ENV, key.into()),
        (
            KNOWN_HOSTS_ENV,
            known_hosts.map_or_else(OsString::new, |k| k.into()),
        ),
    ])
}

/// The login for the request's URL, scheme, host and port only: the
/// request's own first, the host's as the fallback (a password is sent, so
/// the host's serves only the origin it names). Returns its password.
fn add_login<'a>(request: &'a CheckedGit, policy: &'a GitPolicy, env: &mut Env) -> Option<&'a str> {
    let host_login = password_login(policy, &request.host, &request.url);
    let (username, password) = match &request.username {
        Some(username) => (Some(username), request.password.as_ref()),
        None => (
            host_login.and_then(|login| login.username.as_ref()),
            host_login.and_then(|login| login.password.as_ref()),
        ),
    };
    if let (Some(username), Some(origin)) = (username, http_origin(&request.url)) {
        env.push(("GIT_CONFIG_COUNT", "1".into()));
        env.push((
            "GIT_CONFIG_KEY_0",
            format!("credential.{origin}.helper").into(),
        ));
        env.push(("GIT_CONFIG_VALUE_0", CREDENTIAL_HELPER.into()));
        env.push((USERNAME_ENV, username.into()));
        env.push((PASSWORD_ENV, password.map_or("", Secret::expose).into()));
    }
    password.map(Secret::expose)
}

/// The `[git."HOST:PORT"]` login for the URL's host and the port it names,
/// else the `[git."HOST"]` one.
fn host_login<'p>(policy: &'p GitPolicy, host: &str, url: &str) -> Option<&'p GitHostLogin> {
    explicit_port(url)
        .and_then(|port| login_by_key(policy, &port_key(host, &port)))
        .or_else(|| login_by_key(policy, host))
}

/// The login whose password may go to `url`: `[git."HOST:PORT"]` for the port
/// the URL names, or `[git."HOST"]` when the URL names no port (or its scheme's
/// own), since a bare host means the host's usual service, not whatever else
/// listens on another port of it. (An ssh key proves itself without being sent,
/// so [`host_login`] serves it to every port.)
fn password_login<'p>(policy: &'p GitPolicy, host: &str, url: &str) -> Option<&'p GitHostLogin> {
    let default_port = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => "443",
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => "80",
        _ => return host_login(policy, host, url),
    };
    match explicit_port(url) {
        Some(port) if port != default_port => login_by_key(policy, &port_key(host, &port)),
        _ => host_login(policy, host, url),
    }
}

/// `[git."KEY"]`'s login.
fn login_by_key<'p>(policy: &'p GitPolicy, key: &str) -> Option<&'p GitHostLogin> {
    policy
        .hosts
        .iter()
        .find(|(host, _)| host == key)
        .map(|(_, login)| login)
}

/// The key `[git."HOST:PORT"]` is written with (`[v6]:PORT` for IPv6).
fn port_key(host: &str, port: &str) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

/// The environment git starts with: nothing of dockpub's own (its tokens and
/// secrets live there) except PATH and the proxy and CA variables; HOME is the
/// fetch folder, so no user's files are read.
fn base_env(work: &Path, policy: &GitPolicy) -> Env {
    let mut protocols = "https:http:ssh:git".to_string();
    if policy.allow_file {
        protocols.push_str(":file");
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut env: Env = vec![
        ("PATH", path),
        ("HOME", work.into()),
        ("LANG", "C".into()),
        ("LC_ALL", "C".into()),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_ALLOW_PROTOCOL", protocols.into()),
    ];
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            env.push((name, value));
        }
    }
    env
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_hosts_password_goes_to_its_schemes_own_port_only() {
        let login = |name: &str| GitHostLogin {
            username: Some(name.into()),
            ..GitHostLogin::default()
        };
        let policy = GitPolicy {
            hosts: vec![
                ("git.example".into(), login("bare")),
                ("git.example:8443".into(), login("port")),
            ],
            ..GitPolicy::default()
        };
        let user = |url: &str| {
            password_login(&policy, "git.example", url).and_then(|l| l.username.clone())
        };
        assert_eq!(user("https://git.example/app.git").as_deref(), Some("bare"));
        assert_eq!(
            user("https://git.example:443/app.git").as_deref(),
            Some("bare")
        );
        assert_eq!(
            user("https://git.example:8443/app.git").as_deref(),
            Some("port")
        );
        assert_eq!(user("https://git.example:9999/app.git"), None);
        assert_eq!(user("http://git.example:443/app.git"), None);
        // An ssh key is not sent, so the bare host's serves every port.
        let ssh = host_login(&policy, "git.example", "ssh://git@git.example:2222/app.git");
        assert_eq!(ssh.and_then(|l| l.username.as_deref()), Some("bare"));
    }

    #[test]
    fn git_starts_with_nothing_of_dockpubs_environment() {
        let work = Path::new("/tmp/fetch");
        let env = base_env(work, &GitPolicy::default());
        let names: Vec<&str> = env.iter().map(|(name, _)| *name).collect();
        for needed in [
            "PATH",
            "HOME",
            "LC_ALL",
            "GIT_TERMINAL_PROMPT",
            "GIT_ALLOW_PROTOCOL",
        ] {
            assert!(names.contains(&needed), "{needed} in {names:?}");
        }
        let allowed = |name: &str| {
            name.starts_with("GIT_")
                || PASSED_THROUGH.contains(&name)
                || ["PATH", "HOME", "LANG", "LC_ALL"].contains(&name)
        };
        assert!(names.iter().all(|name| allowed(name)), "{names:?}");
        assert!(env.contains(&("HOME", work.into())));
        assert!(env.contains(&("GIT_ALLOW_PROTOCOL", "https:http:ssh:git".into())));
    }

    #[test]
    fn a_login_with_a_port_is_for_that_port_only() {
        let login = |name: &str| GitHostLogin {
            username: Some(name.into()),
            ..GitHostLogin::default()
        };
        let policy = GitPolicy {
            hosts: vec![
                ("git.example.com".into(), login("any-port")),
                ("git.example.com:8443".into(), login("8443")),
                ("[::1]:8080".into(), login("v6")),
            ],
            ..GitPolicy::default()
        };
        let user = |host: &str, url: &str| {
            host_login(&policy, host, url).and_then(|login| login.username.clone())
        };
        let example = "git.example.com";
        assert_eq!(
            user(example, "https://git.example.com:8443/a.git").unwrap(),
            "8443"
        );
        assert_eq!(
            user(example, "https://git.example.com/a.git").unwrap(),
            "any-port"
        );
        assert_eq!(
            user(example, "ssh://git@git.example.com:22/a").unwrap(),
            "any-port"
        );
        assert_eq!(
            user(example, "git@git.example.com:a.git").unwrap(),
            "any-port"
        );
        assert_eq!(user("::1", "http://[::1]:8080/a.git").unwrap(), "v6");
        assert_eq!(user("::1", "http://[::1]:8081/a.git"), None);
        assert_eq!(
            user("other.example.com", "https://other.example.com/a"),
            None
        );
    }
}
