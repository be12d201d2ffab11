//! Docker's own client config, `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, read the way the docker CLI reads it: a registry's
//! `credHelpers` entry, else `credsStore`, runs `docker-credential-NAME get` with the
//! server address on stdin; else (or when the helper has nothing) the `auths`
//! entry's base64 `user:password`. Read anew at each lookup, so a `docker login`
//! after dockpub started is seen.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::domain::{auth_server, normalize_registry, Credentials, Secret, IDENTITY_TOKEN_USER};

/// A helper that has not answered by then is stopped.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("cannot read Docker's config {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "Docker's config {path}: the auths entry for {registry} is not base64 'user:password'"
    )]
    BadAuth { path: PathBuf, registry: String },
    #[error("credential helper docker-credential-{helper} failed: {message}")]
    Helper { helper: String, message: String },
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Where Docker's config lives; chosen once, read at each lookup.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: Option<PathBuf>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")));
        DockerConfig {
            path: dir.map(|dir| dir.join("config.json")),
        }
    }

    pub async fn lookup(&self, registry: &str) -> Result<Option<Credentials>, DockerConfigError> {
        let Some(config) = self.read().await? else {
            return Ok(None);
        };
        let helper = config
            .cred_helpers
            .iter()
            .find(|(key, _)| normalize_registry(key) == registry)
            .map(|(_, helper)| helper)
            .or(config.creds_store.as_ref());
        if let Some(helper) = helper {
            if let Some(found) = run_helper(helper, auth_server(registry)).await? {
                return Ok(Some(found));
            }
        }
        let entry = config
            .auths
            .iter()
            .find(|(key, _)| normalize_registry(key) == registry);
        match entry {
            Some((_, entry)) => self.decode(registry, entry),
            None => Ok(None),
        }
    }

    async fn read(&self) -> Result<Option<ConfigFile>, DockerConfigError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let read_error = |message: String| DockerConfigError::Read {
            path: path.clone(),
            message,
        };
        let text = match tokio::fs::read(path).await {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(read_error(err.to_string())),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|err| read_error(err.to_string()))
    }

    fn decode(
        &self,
        registry: &str,
        entry: &AuthEntry,
    ) -> Result<Option<Credentials>, DockerConfigError> {
        if !entry.identitytoken.is_empty() {
            return Ok(Some(token_credentials(entry.identitytoken.clone())));
        }
        if entry.auth.is_empty() {
            return Ok(None);
        }
        let bad = || DockerConfigError::BadAuth {
            path: self.path.clone().unwrap_or_default(),
            registry: registry.to_string(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        Ok(Some(Credentials {
            username: username.to_string(),
            password: Secret::new(password.to_string()),
        }))
    }
}

/// The docker CLI's way of holding an identity token: the username `<token>`.
fn token_credentials(token: String) -> Credentials {
    Credentials {
        username: IDENTITY_TOKEN_USER.to_string(),
        password: Secret::new(token),
    }
}

/// Runs `docker-credential-NAME get`; None when the helper has no login for `server`.
async fn run_helper(helper: &str, server: &str) -> Result<Option<Credentials>, DockerConfigError> {
    let failed = |message: String| DockerConfigError::Helper {
        helper: helper.to_string(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| failed(err.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|err| failed(err.to_string()))?;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer in {} s", HELPER_TIMEOUT.as_secs())))?
        .map_err(|err| failed(err.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The helpers' protocol for "no login stored for this server".
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(
            format!("{} {}", stdout.trim(), stderr.trim())
                .trim()
                .to_string(),
        ));
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout)
        .map_err(|_| failed("its answer is not the helper protocol's JSON".into()))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: Secret::new(answer.secret),
    }))
}
