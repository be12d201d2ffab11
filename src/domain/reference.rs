//! Image names and tags, checked against Docker's reference grammar
//! (github.com/distribution/reference) before anything reaches the daemon, and
//! the registry a name lives on, keyed and addressed as the docker CLI does.

use std::sync::LazyLock;

use regex::Regex;

const MAX_NAME_LEN: usize = 255;
/// The key dockpub's config and the registry functions use for Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The address the docker CLI gives Docker Hub's credentials under.
pub const DOCKER_HUB_AUTH_SERVER: &str = "https://index.docker.io/v1/";

/// `domain[:port]`, or a bracketed IPv6 address with an optional port.
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    Regex::new(&format!(
        r"^(?:{component}(?:\.{component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
    ))
    .expect("domain regex")
});

/// `path-component(/path-component)*`: lowercase, with `.`, `_`, `__` or dashes between.
static PATH: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    Regex::new(&format!(r"^{component}(?:/{component})*$")).expect("path regex")
});

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("tag regex"));

/// Why an image name or tag was refused; the message says what a valid one
/// looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// No repository was given.
    #[error("repository is empty")]
    EmptyRepository,
    /// Longer than Docker allows a name to be.
    #[error("repository is longer than {MAX_NAME_LEN} characters")]
    RepositoryTooLong,
    /// The repository carries a `:tag` or `@digest`; tags have a field of their own.
    #[error("repository '{0}' includes a tag or digest; send the tag in the 'tag' field")]
    RepositoryHasTag(String),
    /// Not a name Docker's reference grammar accepts.
    #[error("repository '{0}' is not a valid image name: use lowercase path components such as 'team/app', optionally after a registry host such as '127.0.0.1:5000/'")]
    InvalidRepository(String),
    /// A tag Docker would refuse.
    #[error("tag '{0}' is not valid: up to 128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    InvalidTag(String),
}

/// Checks a repository name (no tag): `[host[:port]/]path`, where the first component
/// is a host only when it looks like one (see [`registry_host`]); otherwise it is a
/// lowercase path component, so `Alice/app` is refused rather than taken as a host.
pub fn validate_repository(name: &str) -> Result<(), ReferenceError> {
    if name.is_empty() {
        return Err(ReferenceError::EmptyRepository);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ReferenceError::RepositoryTooLong);
    }
    let valid = match registry_host(name) {
        Some(host) => DOMAIN.is_match(host) && PATH.is_match(&name[host.len() + 1..]),
        None => PATH.is_match(name),
    };
    if valid {
        return Ok(());
    }
    if has_tag_or_digest(name) {
        return Err(ReferenceError::RepositoryHasTag(name.to_string()));
    }
    Err(ReferenceError::InvalidRepository(name.to_string()))
}

fn has_tag_or_digest(name: &str) -> bool {
    let last_component = name.rsplit('/').next().unwrap_or(name);
    name.contains('@') || last_component.contains(':')
}

/// Checks a tag: up to 128 letters, digits, `_`, `.` and `-`, not starting
/// with `.` or `-`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    if TAG.is_match(tag) {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag(tag.to_string()))
    }
}

/// The registry host a repository is pushed to, as the docker CLI decides it:
/// the first component is a host when it has a '.' or ':' or is `localhost`.
pub fn registry_host(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    is_host.then_some(first)
}

/// The registry a repository lives on, as a key: `docker.io` for Docker Hub names
/// (`alice/app`, `app`), otherwise the host as written (`127.0.0.1:5000`).
pub fn registry_of(repository: &str) -> String {
    registry_host(repository)
        .map(normalize_registry)
        .unwrap_or_else(|| DOCKER_HUB.to_string())
}

/// A registry key from how configs write one: with or without a scheme or path,
/// and Docker Hub under any of its names.
pub fn normalize_registry(written: &str) -> String {
    let host = written
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// The server address the daemon and credential helpers expect for a registry key.
pub fn auth_server(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_SERVER
    } else {
        registry
    }
}

/// The auth server address of the registry `repository` lives on: what a push's
/// X-Registry-Auth and a build's pull logins name it by.
pub fn auth_server_of(repository: &str) -> String {
    auth_server(&registry_of(repository)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_repositories() {
        for name in [
            "app",
            "alice/app",
            "127.0.0.1:5000/demo",
            "127.0.0.1:5000/team/app",
            "localhost/app",
            "registry.example.com/a/b/c",
            "registry-1.example.com:443/team/my_app",
            "team/my__app",
            "team/my-app.v2",
            "[::1]:5000/app",
        ] {
            assert_eq!(validate_repository(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_bad_repositories() {
        for name in [
            "Alice/app",
            "alice/App",
            "alice//app",
            "/app",
            "app/",
            "alice/app-",
            "alice/-app",
            "alice/app name",
            "alice/app!",
            "host:port/app",
            "alice/app___x",
        ] {
            assert!(validate_repository(name).is_err(), "{name}");
        }
        assert_eq!(
            validate_repository(""),
            Err(ReferenceError::EmptyRepository)
        );
        assert_eq!(
            validate_repository(&"a".repeat(256)),
            Err(ReferenceError::RepositoryTooLong)
        );
    }

    #[test]
    fn names_a_tag_in_the_repository() {
        assert!(matches!(
            validate_repository("alice/app:1.0"),
            Err(ReferenceError::RepositoryHasTag(_))
        ));
        assert!(matches!(
            validate_repository("127.0.0.1:5000/app:latest"),
            Err(ReferenceError::RepositoryHasTag(_))
        ));
        assert!(matches!(
            validate_repository("app:1.0"),
            Err(ReferenceError::RepositoryHasTag(_))
        ));
        assert!(matches!(
            validate_repository("alice/app@sha256:abc"),
            Err(ReferenceError::RepositoryHasTag(_))
        ));
    }

    #[test]
    fn tags() {
        for tag in ["latest", "v1.0.2", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert_eq!(validate_tag(tag), Ok(()), "{tag}");
        }
        for tag in ["", ".x", "-x", "a b", "a/b", "a:b", &"a".repeat(129), "é"] {
            assert!(validate_tag(tag).is_err(), "{tag}");
        }
    }

    #[test]
    fn finds_the_registry_host() {
        assert_eq!(registry_host("127.0.0.1:5000/demo"), Some("127.0.0.1:5000"));
        assert_eq!(registry_host("localhost/demo"), Some("localhost"));
        assert_eq!(
            registry_host("registry.example.com/a/b"),
            Some("registry.example.com")
        );
        assert_eq!(registry_host("alice/app"), None);
        assert_eq!(registry_host("app"), None);
    }

    #[test]
    fn registries_are_named_as_the_docker_cli_names_them() {
        assert_eq!(registry_of("alice/app"), DOCKER_HUB);
        assert_eq!(registry_of("app"), DOCKER_HUB);
        assert_eq!(registry_of("docker.io/alice/app"), DOCKER_HUB);
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            DOCKER_HUB
        );
        assert_eq!(
            normalize_registry("http://Registry.example.com/v2/"),
            "registry.example.com"
        );
        assert_eq!(auth_server(DOCKER_HUB), DOCKER_HUB_AUTH_SERVER);
        assert_eq!(auth_server("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
