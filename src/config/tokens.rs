//! Who may use the API: `[auth] tokens` (admin) and named `[[tokens]]` with scopes.

use std::sync::Arc;

use clap::Args;
use serde::{Deserialize, Serialize, Serializer};

use super::{ConfigError, Section};
use crate::builds::access::{
    is_token_name, ApiToken, Grant, RepositoryPattern, Scope, TokenSecret,
};
use crate::domain::Secret;

/// The names `[auth] tokens` get, one after another; `[[tokens]]` cannot take them.
const LEGACY_TOKEN_PREFIX: &str = "auth-token-";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TokenSection {
    pub auth: AuthTable,
    /// `[[tokens]]`: named API tokens with scopes and repository patterns.
    #[serde(rename = "tokens")]
    pub named: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthTable {
    /// Bearer tokens accepted on /api routes; empty means the API is open.
    pub tokens: Vec<Secret>,
}

/// One `[[tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Recorded on its builds as `submitted_by`; never the token itself.
    pub name: String,
    /// The environment variable holding the token.
    pub token_env: Option<String>,
    /// Or the hex SHA-256 of the token, so the file holds no secret.
    pub token_sha256: Option<String>,
    pub scopes: Vec<Scope>,
    /// Globs (`*` matches anything) of the repositories it may build; empty: all.
    #[serde(default)]
    pub repositories: Vec<String>,
}

/// The flag (and variable) of [`TokenSection`]: it sets `[auth] tokens`.
#[derive(Debug, Default, Args, Serialize)]
pub struct TokenFlags {
    /// Comma-separated API bearer tokens [default: none, the API is open]
    #[arg(
        long,
        env = "DOCKPUB_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(rename = "auth", serialize_with = "as_auth_table")]
    pub api_tokens: Option<Vec<String>>,
}

/// `--api-tokens a,b` as `[auth] tokens = ["a", "b"]`.
fn as_auth_table<S: Serializer>(tokens: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let Some(tokens) = tokens else {
        return s.serialize_none();
    };
    // `DOCKPUB_API_TOKENS=` (empty) says "no tokens", as empty values do elsewhere.
    let unset = tokens.is_empty() || tokens == &[""];
    let mut table = s.serialize_map(Some(1))?;
    table.serialize_entry("tokens", if unset { &[][..] } else { tokens })?;
    table.end()
}

impl Section for TokenSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self
            .auth
            .tokens
            .iter()
            .any(|token| token.expose().trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "auth.tokens: a token must not be empty (leave the list empty for none)".into(),
            ));
        }
        self.api_tokens().map(|_| ())
    }
}

impl TokenSection {
    /// Every API token: `[[tokens]]`, then the `[auth] tokens`, which are admin
    /// tokens named `auth-token-1`, `auth-token-2`, …. Variables are read now, so a
    /// missing one stops the start.
    pub(crate) fn api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        let mut tokens = Vec::new();
        for entry in &self.named {
            if !names.insert(entry.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "tokens: the name '{}' is used twice",
                    entry.name
                )));
            }
            tokens.push(entry.token()?);
        }
        for (n, secret) in self.auth.tokens.iter().enumerate() {
            tokens.push(ApiToken {
                secret: TokenSecret::Plain(secret.clone()),
                grant: Arc::new(Grant {
                    name: Some(format!("{LEGACY_TOKEN_PREFIX}{}", n + 1)),
                    scope: Scope::Admin,
                    repositories: Vec::new(),
                }),
            });
        }
        Ok(tokens)
    }
}

impl TokenEntry {
    fn token(&self) -> Result<ApiToken, ConfigError> {
        let invalid =
            |what: String| ConfigError::Invalid(format!("tokens '{}': {what}", self.name));
        if !is_token_name(&self.name) {
            return Err(invalid("name must be 1 to 64 of A-Z a-z 0-9 . _ -".into()));
        }
        if self.name.starts_with(LEGACY_TOKEN_PREFIX) {
            return Err(invalid(format!(
                "names starting with '{LEGACY_TOKEN_PREFIX}' are the [auth] tokens'"
            )));
        }
        let secret = match (&self.token_env, &self.token_sha256) {
            (Some(variable), None) => match std::env::var(variable) {
                Ok(value) if !value.trim().is_empty() => TokenSecret::Plain(Secret::new(value)),
                _ => {
                    return Err(invalid(format!(
                        "the variable {variable} named by token_env is not set"
                    )))
                }
            },
            (None, Some(digest)) => {
                let bytes = hex::decode(digest)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                TokenSecret::Sha256(bytes.ok_or_else(|| {
                    invalid("token_sha256 must be 64 hex digits (sha256sum of the token)".into())
                })?)
            }
            _ => return Err(invalid("set one of token_env and token_sha256".into())),
        };
        let scope =
            self.scopes.iter().max().copied().ok_or_else(|| {
                invalid("scopes must name at least one of read, build, admin".into())
            })?;
        if self.repositories.iter().any(|p| p.trim().is_empty()) {
            return Err(invalid("an empty repository pattern".into()));
        }
        Ok(ApiToken {
            secret,
            grant: Arc::new(Grant {
                name: Some(self.name.clone()),
                scope,
                repositories: self
                    .repositories
                    .iter()
                    .map(|p| RepositoryPattern::new(p))
                    .collect(),
            }),
        })
    }
}
