//! Who may do what: API tokens with names, scopes and repository patterns. The
//! HTTP layer finds the caller's token and its scope for the route; what a
//! build is for (its repository) and whose it is are decided here.

use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{is_plain_name, Build, Secret};

/// Token names: shown as `submitted_by` and used in list queries.
pub fn is_token_name(name: &str) -> bool {
    is_plain_name(name)
}

/// What a token may do; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Scope {
    /// GETs: builds, logs, events, builders.
    Read,
    /// Also submit, and cancel or retry its own builds, to its repositories.
    Build,
    /// Everything: other tokens' builds, delete, webhook deliveries.
    Admin,
}

/// A repository glob such as `127.0.0.1:5000/team-a/*`; `*` matches any run
/// of characters, `/` included.
#[derive(Debug, Clone)]
pub struct RepositoryPattern {
    text: String,
    matcher: Regex,
}

impl RepositoryPattern {
    pub fn new(text: &str) -> Self {
        let body = text
            .split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*");
        RepositoryPattern {
            text: text.to_string(),
            matcher: Regex::new(&format!("^{body}$")).expect("an escaped glob is a valid regex"),
        }
    }

    pub fn matches(&self, repository: &str) -> bool {
        self.matcher.is_match(repository)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("token '{token}' may not build {repository}: its repositories are {patterns}")]
    ForbiddenRepository {
        token: String,
        repository: String,
        patterns: String,
    },
    #[error("token '{token}' may only act on its own builds; build {id} is not one (needs the admin scope)")]
    NotOwnBuild { token: String, id: i64 },
}

/// What the caller of one request may do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The token's name, recorded as `submitted_by`; None when tokens are off.
    pub name: Option<String>,
    pub scope: Scope,
    /// Empty: every repository.
    pub repositories: Vec<RepositoryPattern>,
}

impl Grant {
    /// No tokens are configured: the API is open, as it always was.
    pub fn open() -> Grant {
        Grant {
            name: None,
            scope: Scope::Admin,
            repositories: Vec::new(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scope >= scope
    }

    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("(none)")
    }

    /// Whether the caller may build (and so push to) `repository`.
    pub fn check_repository(&self, repository: &str) -> Result<(), AccessError> {
        if self.repositories.is_empty() || self.repositories.iter().any(|p| p.matches(repository)) {
            return Ok(());
        }
        let patterns: Vec<&str> = self.repositories.iter().map(|p| p.text.as_str()).collect();
        Err(AccessError::ForbiddenRepository {
            token: self.label().to_string(),
            repository: repository.to_string(),
            patterns: patterns.join(", "),
        })
    }

    /// Cancel and retry: one's own builds, or any with the admin scope.
    pub fn check_owner(&self, build: &Build) -> Result<(), AccessError> {
        if self.has(Scope::Admin) || (self.name.is_some() && build.submitted_by == self.name) {
            return self.check_repository(&build.repository);
        }
        Err(AccessError::NotOwnBuild {
            token: self.label().to_string(),
            id: build.id,
        })
    }
}

/// How a configured token is known: the token itself, or only its SHA-256, so
/// that the config file holds no secret.
#[derive(Debug, Clone)]
pub enum TokenSecret {
    Plain(Secret),
    Sha256([u8; 32]),
}

/// One configured API token and what it grants.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub secret: TokenSecret,
    pub grant: Arc<Grant>,
}

/// The grant of the token that `given` is, comparing with every token in
/// constant time (for tokens of the same length).
pub fn find_token<'a>(tokens: &'a [ApiToken], given: &str) -> Option<&'a Arc<Grant>> {
    let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let mut found = None;
    for token in tokens {
        let equal = match &token.secret {
            TokenSecret::Plain(secret) => secret.expose().as_bytes().ct_eq(given.as_bytes()),
            TokenSecret::Sha256(expected) => expected.ct_eq(&digest),
        };
        if bool::from(equal) && found.is_none() {
            found = Some(&token.grant);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, scope: Scope, patterns: &[&str]) -> Grant {
        Grant {
            name: Some(name.into()),
            scope,
            repositories: patterns.iter().map(|p| RepositoryPattern::new(p)).collect(),
        }
    }

    #[test]
    fn patterns_are_globs_over_the_whole_name() {
        let team = RepositoryPattern::new("127.0.0.1:5000/team-a/*");
        assert!(team.matches("127.0.0.1:5000/team-a/app"));
        assert!(team.matches("127.0.0.1:5000/team-a/sub/app"));
        assert!(!team.matches("127.0.0.1:5000/team-b/app"));
        assert!(!team.matches("x127.0.0.1:5000/team-a/app"));
        assert!(
            !RepositoryPattern::new("a.b/c").matches("axb/c"),
            "dots are literal"
        );
    }

    #[test]
    fn scopes_include_the_lesser_ones() {
        let builder = grant("ci", Scope::Build, &[]);
        assert!(builder.has(Scope::Read) && builder.has(Scope::Build));
        assert!(!builder.has(Scope::Admin));
    }

    #[test]
    fn repositories_and_owners_are_checked() {
        let team = grant("team-a", Scope::Build, &["reg/team-a/*"]);
        assert!(team.check_repository("reg/team-a/app").is_ok());
        let refused = team.check_repository("reg/team-b/app").unwrap_err();
        assert!(refused.to_string().contains("reg/team-a/*"), "{refused}");
    }

    #[test]
    fn plain_and_hashed_tokens_are_found() {
        let digest: [u8; 32] = Sha256::digest(b"hashed-token").into();
        let tokens = vec![
            ApiToken {
                secret: TokenSecret::Plain(Secret::new("plain-token".into())),
                grant: Arc::new(grant("plain", Scope::Read, &[])),
            },
            ApiToken {
                secret: TokenSecret::Sha256(digest),
                grant: Arc::new(grant("hashed", Scope::Admin, &[])),
            },
        ];
        assert_eq!(
            find_token(&tokens, "plain-token").unwrap().name.as_deref(),
            Some("plain")
        );
        assert_eq!(
            find_token(&tokens, "hashed-token").unwrap().name.as_deref(),
            Some("hashed")
        );
        assert!(find_token(&tokens, "plain-toke").is_none());
        assert!(find_token(&tokens, "").is_none());
    }

    #[test]
    fn scopes_show_as_the_config_writes_them() {
        for (scope, name) in [
            (Scope::Read, "read"),
            (Scope::Build, "build"),
            (Scope::Admin, "admin"),
        ] {
            assert_eq!(scope.to_string(), name);
            let parsed: Scope = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed, scope);
        }
    }
}
