//! Which git URLs and refs a build may name.

use std::net::IpAddr;

use super::{invalid, GitError, GitPolicy};

/// The URL's host (lower-case; empty for file://) once the URL is allowed.
pub(super) fn check_url(url: &str, policy: &GitPolicy) -> Result<String, GitError> {
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
    let scheme = scheme.to_ascii_lowercase();
    if userinfo.is_some_and(|u| u.contains(':')) {
        return bad(
            "the URL holds a password: send it as 'git_password' (with 'git_username'), \
             which is kept in memory only"
                .into(),
        );
    }
    // A user name is often a token (`https://ghp_…@host`) and would be stored
    // and shown with the URL; ssh's user (`ssh://git@host`) is not a secret.
    if userinfo.is_some() && scheme != "ssh" {
        return bad(
            "the URL holds a user name, which may be a token and would be stored with the \
             build: send it as 'git_username' (with 'git_password'), kept in memory only"
                .into(),
        );
    }
    let host = host_of(host_port);
    if host.starts_with('-') || userinfo.is_some_and(|u| u.starts_with('-')) {
        return bad(format!("'{url}' is not a repository URL"));
    }
    let allowed = Ok(host.to_ascii_lowercase());
    match scheme.as_str() {
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

/// `scheme://host[:port]` of an `http(s)://` URL, as git matches its
/// `credential.<url>.*` settings (scheme, host and port exactly); None for other
/// schemes, which take no password.
pub(super) fn http_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    Some(format!("{scheme}://{authority}"))
}

/// The port a `scheme://` URL names, as written; None without one (and for
/// `user@host:path`).
pub(super) fn explicit_port(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once("]:")?.1,
        None => host_port.split_once(':')?.1,
    };
    (!port.is_empty()).then(|| port.to_string())
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
pub(super) fn check_ref(git_ref: &str) -> Result<(), GitError> {
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

/// A commit named by its full SHA-1 or SHA-256, as git's own refs never are.
pub(crate) fn is_full_sha(git_ref: &str) -> bool {
    matches!(git_ref.len(), 40 | 64) && git_ref.chars().all(|c| c.is_ascii_hexdigit())
}
