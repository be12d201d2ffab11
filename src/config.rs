//! Settings: defaults < config.toml < `DOCKPUB_*` env < command-line flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use std::sync::Arc;

use crate::builds::access::{
    is_token_name, ApiToken, Grant, RepositoryPattern, Scope, TokenSecret,
};
use crate::builds::model::{Credentials, Secret};
use crate::builds::secrets::BuildSecret;
use crate::webhooks::callback::AllowedHosts;
use crate::webhooks::model::WebhookEvent;
use crate::webhooks::{WebhookSettings, WebhookTarget};

mod triggers;
pub use triggers::{GitHostEntry, TriggerEntry};

const DEFAULT_CONFIG_FILE: &str = "config.toml";
/// The names `[auth] tokens` get, one after another; `[[tokens]]` cannot take them.
const LEGACY_TOKEN_PREFIX: &str = "auth-token-";

/// bollard sends the build's memory limit and CPU shares as i32, so larger values
/// cannot reach the daemon; Docker refuses a memory limit under 6 MiB.
const MIN_BUILD_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
const MAX_BUILD_MEMORY_BYTES: u64 = i32::MAX as u64;
/// Docker's own range for CPU shares.
const BUILD_CPU_SHARES: std::ops::RangeInclusive<u64> = 2..=262_144;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub bind: String,
    pub data_dir: PathBuf,
    /// `unix:///path` or `tcp://host:port`; unset means DOCKER_HOST or the local socket.
    pub docker_host: Option<String>,
    pub max_concurrent_builds: usize,
    /// Network mode for RUN steps; unset or empty means the daemon's default.
    pub build_network: Option<String>,
    pub max_upload_bytes: usize,
    pub max_dockerfile_bytes: usize,
    /// Largest build context archive accepted; it is streamed to disk, not counted
    /// against `max_upload_bytes`.
    pub max_context_bytes: u64,
    /// Most entries (files, folders, links) a build context may hold.
    pub max_context_entries: u64,
    /// A request body that sends nothing for this long is cut off (408).
    pub upload_idle_timeout_secs: u64,
    /// Forms read at once; more get 503 with Retry-After.
    pub max_concurrent_uploads: usize,
    /// Host names (with or without `:port`) the server answers to besides its bind
    /// address, localhost and loopback addresses; `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Network modes a build may ask for besides `build_network`.
    pub allowed_build_networks: Vec<String>,
    /// Memory limit of each build step's container; 0 means no limit.
    pub build_memory_bytes: u64,
    /// CPU shares of each build step's container; 0 means Docker's default.
    pub build_cpu_shares: u64,
    /// A build (the daemon's part, before the push) running longer fails.
    pub build_timeout_secs: u64,
    /// Push and pull logins by registry host (`docker.io` for Docker Hub).
    pub registries: BTreeMap<String, RegistryLogin>,
    /// Queued builds accepted before submissions get 429.
    pub max_queued_builds: usize,
    /// A queued build that has not started after this many seconds fails,
    /// saying what it waited for (unset: it waits).
    pub max_queue_wait_secs: Option<u64>,
    /// On SIGTERM/SIGINT, how long running builds may take to finish before they
    /// are stopped and left queued for the next start; 0 stops them at once.
    pub shutdown_grace_secs: u64,
    /// Final builds older than this many days are pruned (unset: kept).
    pub retention_days: Option<u64>,
    /// The newest this-many final builds are never pruned (unset: no such floor).
    pub retention_keep_last: Option<usize>,
    /// How often the pruner runs.
    pub retention_interval_secs: u64,
    pub auth: AuthConfig,
    /// `[[tokens]]`: named API tokens with scopes and repository patterns.
    pub tokens: Vec<TokenEntry>,
    /// `[[webhooks]]`: URLs told of build events.
    pub webhooks: Vec<WebhookConfig>,
    /// Hosts a build's `callback_url` may name: exact, or `*.suffix`. Empty: no callbacks.
    pub allowed_callback_hosts: Vec<String>,
    /// The environment variable holding the secret that signs per-build callbacks.
    pub callback_secret_env: Option<String>,
    /// Seconds before each retry of a failed webhook delivery; then it fails.
    pub webhook_retry_backoff_secs: Vec<u64>,
    /// `[[builders]]`: the Docker hosts to build on. Empty: one builder, `local`,
    /// from `docker_host` with the global `max_concurrent_builds`.
    pub builders: Vec<BuilderEntry>,
    /// Build with BuildKit unless a request or a builder says otherwise; false
    /// builds with the daemon's legacy builder.
    pub buildkit: bool,
    /// `[secrets.ID]`: build secrets offered to every BuildKit build, each from
    /// `env = "VAR"` or `file = "/path"`.
    pub secrets: BTreeMap<String, SecretSourceConfig>,
    /// BuildKit builds push inline cache metadata and reuse their own tags in
    /// the registry (and the request's `cache_from`) as cache sources.
    pub registry_cache: bool,
    /// Seconds a build's git fetch may take before it is stopped and refused.
    pub git_timeout_secs: u64,
    /// Hosts `http://` git URLs may name besides loopback ones (exact names).
    pub allow_insecure_git_hosts: Vec<String>,
    /// Allow `file://` git URLs, which read the server's own disk.
    pub allow_file_git: bool,
    /// `[git."HOST"]`: logins for git hosts, used when a request brings none.
    pub git: BTreeMap<String, GitHostEntry>,
    /// `[[triggers]]`: builds on push events from a git server.
    pub triggers: Vec<TriggerEntry>,
}

/// Where a `[secrets.ID]` value is read from at start: one of the two.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSourceConfig {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// `[[webhooks]]`: where to send which build events, signed with the secret in
/// the variable `secret_env`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "final_events")]
    pub events: Vec<WebhookEvent>,
    pub secret_env: String,
}

/// A webhook that names no events is told when builds end.
fn final_events() -> Vec<WebhookEvent> {
    WebhookEvent::ALL
        .into_iter()
        .filter(|e| e.is_final())
        .collect()
}

/// One `[[builders]]` entry: a Docker Engine and how many builds it takes at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderEntry {
    pub name: String,
    /// `unix:///path/docker.sock` or `tcp://HOST:PORT`.
    pub host: String,
    /// PEM files for a `tcp://` daemon started with `--tlsverify`: all three or none.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// This builder's slots; unset means the global `max_concurrent_builds`.
    pub max_concurrent_builds: Option<usize>,
    /// Platforms builds may ask for here (`linux/amd64`); empty means the daemon's own.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// false: this daemon builds everything with the legacy builder. Unset: the
    /// global `buildkit`.
    pub buildkit: Option<bool>,
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

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens accepted on /api routes; empty means the API is open.
    pub tokens: Vec<Secret>,
}

/// `[registries."HOST"]`: a username and either the password or the name of the
/// environment variable holding it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub username: String,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            docker_host: None,
            max_concurrent_builds: 2,
            build_network: None,
            max_upload_bytes: 16 * 1024 * 1024,
            max_dockerfile_bytes: 1024 * 1024,
            max_queued_builds: 1000,
            max_queue_wait_secs: None,
            shutdown_grace_secs: 30,
            retention_days: None,
            retention_keep_last: None,
            retention_interval_secs: 600,
            auth: AuthConfig::default(),
            tokens: Vec::new(),
            max_context_bytes: 1024 * 1024 * 1024,
            max_context_entries: 200_000,
            upload_idle_timeout_secs: 60,
            max_concurrent_uploads: 64,
            allowed_hosts: Vec::new(),
            allowed_build_networks: Vec::new(),
            build_memory_bytes: 0,
            build_cpu_shares: 0,
            build_timeout_secs: 3600,
            registries: BTreeMap::new(),
            webhooks: Vec::new(),
            allowed_callback_hosts: Vec::new(),
            callback_secret_env: None,
            webhook_retry_backoff_secs: vec![1, 2, 4, 8, 16],
            builders: Vec::new(),
            buildkit: true,
            secrets: BTreeMap::new(),
            registry_cache: true,
            git_timeout_secs: 300,
            allow_insecure_git_hosts: Vec::new(),
            allow_file_git: false,
            git: BTreeMap::new(),
            triggers: Vec::new(),
        }
    }
}

/// `dockpub serve` flags; each also reads its `DOCKPUB_*` variable.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Config file [default: ./config.toml when it exists]
    #[arg(long, env = "DOCKPUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "DOCKPUB_BIND")]
    pub bind: Option<String>,
    /// Folder for the SQLite database and stored uploads [default: ./data]
    #[arg(long, env = "DOCKPUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Docker daemon to build on [default: DOCKER_HOST or the local socket]
    #[arg(long, env = "DOCKPUB_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Builds that may run at once [default: 2]
    #[arg(long, env = "DOCKPUB_MAX_CONCURRENT_BUILDS")]
    pub max_concurrent_builds: Option<usize>,
    /// Network mode for RUN steps, e.g. none [default: the daemon's]
    #[arg(long, env = "DOCKPUB_BUILD_NETWORK")]
    pub build_network: Option<String>,
    /// Largest request body accepted [default: 16 MiB]
    #[arg(long, env = "DOCKPUB_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Largest Dockerfile accepted [default: 1 MiB]
    #[arg(long, env = "DOCKPUB_MAX_DOCKERFILE_BYTES")]
    pub max_dockerfile_bytes: Option<usize>,
    /// Queued builds accepted before submissions get 429 [default: 1000]
    #[arg(long, env = "DOCKPUB_MAX_QUEUED_BUILDS")]
    pub max_queued_builds: Option<usize>,
    /// Fail a build that waited this many seconds in the queue [default: wait]
    #[arg(long, env = "DOCKPUB_MAX_QUEUE_WAIT_SECS")]
    pub max_queue_wait_secs: Option<u64>,
    /// Seconds running builds get to finish on SIGTERM/SIGINT; 0 stops them at once [default: 30]
    #[arg(long, env = "DOCKPUB_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Prune final builds older than this many days [default: keep]
    #[arg(long, env = "DOCKPUB_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Keep the newest this-many succeeded builds and every build after them [default: no floor]
    #[arg(long, env = "DOCKPUB_RETENTION_KEEP_LAST")]
    pub retention_keep_last: Option<usize>,
    /// Seconds between pruning runs [default: 600]
    #[arg(long, env = "DOCKPUB_RETENTION_INTERVAL_SECS")]
    pub retention_interval_secs: Option<u64>,
    /// Comma-separated API bearer tokens [default: none, the API is open]
    #[arg(
        long,
        env = "DOCKPUB_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Option<Vec<String>>,
    /// Largest build context accepted, counted decompressed [default: 1 GiB]
    #[arg(long, env = "DOCKPUB_MAX_CONTEXT_BYTES")]
    pub max_context_bytes: Option<u64>,
    /// Most entries a build context may hold [default: 200000]
    #[arg(long, env = "DOCKPUB_MAX_CONTEXT_ENTRIES")]
    pub max_context_entries: Option<u64>,
    /// Seconds a request body may send nothing before it is cut off [default: 60]
    #[arg(long, env = "DOCKPUB_UPLOAD_IDLE_TIMEOUT_SECS")]
    pub upload_idle_timeout_secs: Option<u64>,
    /// Uploads read at once; more get 503 [default: 64]
    #[arg(long, env = "DOCKPUB_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: Option<usize>,
    /// Host names the server answers to besides its bind address and localhost, comma-separated
    #[arg(long, env = "DOCKPUB_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Network modes builds may ask for besides --build-network, comma-separated
    #[arg(long, env = "DOCKPUB_ALLOWED_BUILD_NETWORKS", value_delimiter = ',')]
    pub allowed_build_networks: Option<Vec<String>>,
    /// Memory limit of each build step, in bytes; 0 for none [default: 0]
    #[arg(long, env = "DOCKPUB_BUILD_MEMORY_BYTES")]
    pub build_memory_bytes: Option<u64>,
    /// CPU shares of each build step; 0 for Docker's default [default: 0]
    #[arg(long, env = "DOCKPUB_BUILD_CPU_SHARES")]
    pub build_cpu_shares: Option<u64>,
    /// Seconds a build may run before it is stopped [default: 3600]
    #[arg(long, env = "DOCKPUB_BUILD_TIMEOUT_SECS")]
    pub build_timeout_secs: Option<u64>,
    /// Hosts a build's callback_url may name (exact or *.suffix), comma-separated [default: none]
    #[arg(long, env = "DOCKPUB_ALLOWED_CALLBACK_HOSTS", value_delimiter = ',')]
    pub allowed_callback_hosts: Option<Vec<String>>,
    /// Environment variable holding the secret that signs per-build callbacks
    #[arg(long, env = "DOCKPUB_CALLBACK_SECRET_ENV")]
    pub callback_secret_env: Option<String>,
    /// Seconds before each webhook retry, comma-separated [default: 1,2,4,8,16]
    #[arg(
        long,
        env = "DOCKPUB_WEBHOOK_RETRY_BACKOFF_SECS",
        value_delimiter = ','
    )]
    pub webhook_retry_backoff_secs: Option<Vec<u64>>,
    /// Build with BuildKit by default (true) or the legacy builder (false) [default: true]
    #[arg(long, env = "DOCKPUB_BUILDKIT")]
    pub buildkit: Option<bool>,
    /// BuildKit builds push inline cache and reuse their own tags as cache [default: true]
    #[arg(long, env = "DOCKPUB_REGISTRY_CACHE")]
    pub registry_cache: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// The file (named, or ./config.toml when present), then env and flags over it.
    pub fn load(args: ServeArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Config::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Config::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    fn apply(&mut self, args: ServeArgs) {
        let ServeArgs {
            config: _,
            bind,
            data_dir,
            docker_host,
            max_concurrent_builds,
            build_network,
            max_upload_bytes,
            max_dockerfile_bytes,
            max_queued_builds,
            max_queue_wait_secs,
            shutdown_grace_secs,
            retention_days,
            retention_keep_last,
            retention_interval_secs,
            api_tokens,
            max_context_bytes,
            max_context_entries,
            upload_idle_timeout_secs,
            max_concurrent_uploads,
            allowed_hosts,
            allowed_build_networks,
            build_memory_bytes,
            build_cpu_shares,
            build_timeout_secs,
            allowed_callback_hosts,
            callback_secret_env,
            webhook_retry_backoff_secs,
            buildkit,
            registry_cache,
        } = args;
        set(&mut self.bind, bind);
        set(&mut self.data_dir, data_dir);
        set(&mut self.max_concurrent_builds, max_concurrent_builds);
        set(&mut self.max_upload_bytes, max_upload_bytes);
        set(&mut self.max_dockerfile_bytes, max_dockerfile_bytes);
        set(&mut self.max_queued_builds, max_queued_builds);
        set(&mut self.shutdown_grace_secs, shutdown_grace_secs);
        set(&mut self.retention_interval_secs, retention_interval_secs);
        if max_queue_wait_secs.is_some() {
            self.max_queue_wait_secs = max_queue_wait_secs;
        }
        if retention_days.is_some() {
            self.retention_days = retention_days;
        }
        if retention_keep_last.is_some() {
            self.retention_keep_last = retention_keep_last;
        }
        if let Some(tokens) = api_tokens {
            // `DOCKPUB_API_TOKENS=` (empty) says "no tokens", as empty values do elsewhere.
            let unset = tokens.is_empty() || tokens == [""];
            self.auth.tokens = match unset {
                true => Vec::new(),
                false => tokens.into_iter().map(Secret::new).collect(),
            };
        }
        set(&mut self.max_context_bytes, max_context_bytes);
        set(&mut self.max_context_entries, max_context_entries);
        set(&mut self.upload_idle_timeout_secs, upload_idle_timeout_secs);
        set(&mut self.max_concurrent_uploads, max_concurrent_uploads);
        set(&mut self.allowed_hosts, allowed_hosts);
        self.allowed_hosts.retain(|host| !host.trim().is_empty());
        set(&mut self.allowed_build_networks, allowed_build_networks);
        set(&mut self.build_memory_bytes, build_memory_bytes);
        set(&mut self.build_cpu_shares, build_cpu_shares);
        set(&mut self.build_timeout_secs, build_timeout_secs);
        set(&mut self.buildkit, buildkit);
        set(&mut self.registry_cache, registry_cache);
        if let Some(hosts) = allowed_callback_hosts {
            self.allowed_callback_hosts = hosts;
            self.allowed_callback_hosts
                .retain(|host| !host.trim().is_empty());
        }
        set(
            &mut self.webhook_retry_backoff_secs,
            webhook_retry_backoff_secs,
        );
        if callback_secret_env.is_some() {
            self.callback_secret_env = callback_secret_env;
        }
        self.callback_secret_env.take_if(|name| name.is_empty());
        if docker_host.is_some() {
            self.docker_host = docker_host;
        }
        if build_network.is_some() {
            self.build_network = build_network;
        }
        // An empty value is how a file or variable says "the default".
        self.docker_host.take_if(|host| host.is_empty());
        self.build_network.take_if(|network| network.is_empty());
        self.allowed_build_networks
            .retain(|network| !network.is_empty());
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_concurrent_builds", self.max_concurrent_builds as u64),
            ("max_upload_bytes", self.max_upload_bytes as u64),
            ("max_dockerfile_bytes", self.max_dockerfile_bytes as u64),
            ("max_context_bytes", self.max_context_bytes),
            ("max_context_entries", self.max_context_entries),
            ("upload_idle_timeout_secs", self.upload_idle_timeout_secs),
            ("max_concurrent_uploads", self.max_concurrent_uploads as u64),
            ("build_timeout_secs", self.build_timeout_secs),
            ("max_queued_builds", self.max_queued_builds as u64),
            ("retention_interval_secs", self.retention_interval_secs),
            ("git_timeout_secs", self.git_timeout_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
        }
        if self.max_queue_wait_secs == Some(0) {
            return Err(ConfigError::Invalid(
                "max_queue_wait_secs must be at least 1 (or unset: builds wait)".into(),
            ));
        }
        self.validate_bind()?;
        self.validate_docker_host()?;
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
        self.validate_build_limits()?;
        self.api_tokens()?;
        self.registry_credentials()?;
        self.webhook_settings()?;
        self.validate_builders()?;
        self.build_secrets()?;
        self.triggers()?;
        Ok(())
    }

    /// `docker_host`, or when it is unset (and no `[[builders]]`) the `DOCKER_HOST`
    /// it falls back to: the same rule as a builder's `host`.
    fn validate_docker_host(&self) -> Result<(), ConfigError> {
        let inherited = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| !host.is_empty() && self.builders.is_empty());
        let (key, host) = match (&self.docker_host, inherited) {
            (Some(host), _) => ("docker_host", host.clone()),
            (None, Some(host)) => ("DOCKER_HOST", host),
            (None, None) => return Ok(()),
        };
        check_docker_host(&host)
            .map(|_| ())
            .map_err(|why| ConfigError::Invalid(format!("{key} {why}")))
    }

    /// `HOST:PORT` that resolves; a name such as `localhost` is looked up now.
    fn validate_bind(&self) -> Result<(), ConfigError> {
        use std::net::ToSocketAddrs;
        match self.bind.to_socket_addrs().map(|mut found| found.next()) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ConfigError::Invalid(format!(
                "bind '{}': the name has no address",
                self.bind
            ))),
            Err(err) => Err(ConfigError::Invalid(format!(
                "bind '{}' is not HOST:PORT: {err}",
                self.bind
            ))),
        }
    }

    fn validate_builders(&self) -> Result<(), ConfigError> {
        if !self.builders.is_empty() && self.docker_host.is_some() {
            return Err(ConfigError::Invalid(
                "docker_host and [[builders]] do not go together: give the host as a builder"
                    .into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for entry in &self.builders {
            entry.validate()?;
            if !names.insert(entry.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "builders: the name '{}' is used twice",
                    entry.name
                )));
            }
        }
        Ok(())
    }

    fn validate_build_limits(&self) -> Result<(), ConfigError> {
        let memory = self.build_memory_bytes;
        if memory != 0 && !(MIN_BUILD_MEMORY_BYTES..=MAX_BUILD_MEMORY_BYTES).contains(&memory) {
            return Err(ConfigError::Invalid(format!(
                "build_memory_bytes must be 0 (no limit) or from {MIN_BUILD_MEMORY_BYTES} (Docker's minimum) \
                 to {MAX_BUILD_MEMORY_BYTES} (the largest the build API takes), got {memory}"
            )));
        }
        let shares = self.build_cpu_shares;
        if shares != 0 && !BUILD_CPU_SHARES.contains(&shares) {
            return Err(ConfigError::Invalid(format!(
                "build_cpu_shares must be 0 (Docker's default) or from {} to {}, got {shares}",
                BUILD_CPU_SHARES.start(),
                BUILD_CPU_SHARES.end()
            )));
        }
        Ok(())
    }

    /// Every API token: `[[tokens]]`, then the `[auth] tokens`, which are admin
    /// tokens named `auth-token-1`, `auth-token-2`, …. Variables are read now, so a
    /// missing one stops the start.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        let mut tokens = Vec::new();
        for entry in &self.tokens {
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

    /// The logins of `[registries]`, with passwords read from their variables now,
    /// so a missing variable stops the start rather than a push later.
    pub fn registry_credentials(&self) -> Result<Vec<(String, Credentials)>, ConfigError> {
        self.registries
            .iter()
            .map(|(host, login)| Ok((host.clone(), login.credentials(host)?)))
            .collect()
    }

    /// The webhook settings, with every signing secret read from its variable now,
    /// so a missing variable stops the start rather than a delivery later.
    pub fn webhook_settings(&self) -> Result<WebhookSettings, ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid(what));
        if self.webhook_retry_backoff_secs.contains(&0) {
            return invalid("webhook_retry_backoff_secs: every wait must be at least 1".into());
        }
        if let Some(bad) = self
            .allowed_callback_hosts
            .iter()
            .find(|host| !is_callback_host_pattern(host))
        {
            return invalid(format!(
                "allowed_callback_hosts: '{bad}' is not a host name, an address or *.suffix \
                 (no scheme, port or path)"
            ));
        }
        let mut secrets = std::collections::HashMap::new();
        for (index, webhook) in self.webhooks.iter().enumerate() {
            let key = format!("webhooks[{index}]");
            if let Err(why) = http_url(&webhook.url) {
                return invalid(format!("{key}.url: {why}"));
            }
            if webhook.events.is_empty() {
                return invalid(format!("{key}.events: name at least one event"));
            }
            let secret = read_secret(&webhook.secret_env, &format!("{key}.secret_env"))?;
            secrets.insert(webhook.secret_env.clone(), secret);
        }
        match (
            &self.callback_secret_env,
            self.allowed_callback_hosts.is_empty(),
        ) {
            (Some(name), _) => {
                secrets.insert(name.clone(), read_secret(name, "callback_secret_env")?);
            }
            (None, false) => {
                return invalid(
                    "allowed_callback_hosts is set, so callback_secret_env must name the variable \
                     holding the secret that signs callbacks"
                        .into(),
                )
            }
            (None, true) => {}
        }
        Ok(WebhookSettings {
            targets: self.webhooks.iter().map(WebhookConfig::target).collect(),
            allowed_callback_hosts: AllowedHosts::new(&self.allowed_callback_hosts),
            callback_secret_env: self.callback_secret_env.clone(),
            secrets,
            backoff: self
                .webhook_retry_backoff_secs
                .iter()
                .map(|&secs| std::time::Duration::from_secs(secs))
                .collect(),
        })
    }

    /// The values of `[secrets]`, read now, so a missing variable or file stops
    /// the start rather than a build later.
    pub fn build_secrets(&self) -> Result<Vec<BuildSecret>, ConfigError> {
        self.secrets
            .iter()
            .map(|(id, source)| {
                let key = format!("secrets.{id}");
                BuildSecret::new(id, source.read(&key)?)
                    .map_err(|why| ConfigError::Invalid(format!("{key}: {why}")))
            })
            .collect()
    }

    /// What git builds may fetch, with the `[git."HOST"]` logins.
    pub fn git_policy(&self) -> Result<crate::builds::git::GitPolicy, ConfigError> {
        Ok(crate::builds::git::GitPolicy {
            allow_file: self.allow_file_git,
            insecure_hosts: self.allow_insecure_git_hosts.clone(),
            timeout: std::time::Duration::from_secs(self.git_timeout_secs),
            hosts: triggers::git_logins(&self.git)?,
        })
    }

    /// The `[[triggers]]`, checked against the git policy.
    pub fn triggers(&self) -> Result<Vec<crate::builds::triggers::Trigger>, ConfigError> {
        triggers::triggers(&self.triggers, &self.git_policy()?)
    }

    /// Settings BuildKit does not honour, set while builds use BuildKit: they
    /// apply to legacy builds only (the README says so), and the start warns.
    pub fn legacy_only_settings(&self) -> Vec<&'static str> {
        let buildkit_somewhere =
            self.buildkit || self.builders.iter().any(|b| b.buildkit == Some(true));
        let set = [
            ("build_memory_bytes", self.build_memory_bytes != 0),
            ("build_cpu_shares", self.build_cpu_shares != 0),
        ];
        set.iter()
            .filter(|(_, is_set)| buildkit_somewhere && *is_set)
            .map(|(key, _)| *key)
            .collect()
    }

    /// Every network a build may ask for: the default one and the allowed ones.
    pub fn build_networks(&self) -> Vec<String> {
        let mut networks: Vec<String> = self.build_network.iter().cloned().collect();
        for network in &self.allowed_build_networks {
            if !networks.contains(network) {
                networks.push(network.clone());
            }
        }
        networks
    }
}

impl BuilderEntry {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |what: String| ConfigError::Invalid(format!("builders '{}': {what}", self.name));
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            return Err(ConfigError::Invalid(format!(
                "builders: name '{}' must be letters, digits, '.', '_' or '-'",
                self.name
            )));
        }
        let tcp = check_docker_host(&self.host).map_err(|why| invalid(format!("host {why}")))?;
        if self.max_concurrent_builds == Some(0) {
            return Err(invalid("max_concurrent_builds must be at least 1".into()));
        }
        if let Some(platform) = self
            .platforms
            .iter()
            .find(|p| !crate::builds::options::is_platform(p))
        {
            return Err(invalid(format!(
                "platform '{platform}' is not os/arch[/variant], e.g. linux/amd64"
            )));
        }
        let files = [&self.tls_ca, &self.tls_cert, &self.tls_key];
        if files.iter().all(|f| f.is_none()) {
            return Ok(());
        }
        if !tcp {
            return Err(invalid("TLS files need a tcp:// host".into()));
        }
        if files.iter().any(|f| f.is_none()) {
            return Err(invalid(
                "set all of tls_ca, tls_cert and tls_key, or none".into(),
            ));
        }
        for (key, file) in ["tls_ca", "tls_cert", "tls_key"].iter().zip(files) {
            let Some(path) = file else { continue };
            if let Err(err) = std::fs::metadata(path) {
                return Err(invalid(format!("{key} {}: {err}", path.display())));
            }
        }
        Ok(())
    }

    /// The three TLS files, when they are set.
    pub fn tls_files(&self) -> Option<crate::docker::TlsFiles> {
        Some(crate::docker::TlsFiles {
            ca: self.tls_ca.clone()?,
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
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

/// The daemon addresses dockpub can reach, for `docker_host` and `[[builders]] host`
/// alike: `unix:///path` or `tcp://HOST:PORT`. Says whether it is TCP.
fn check_docker_host(host: &str) -> Result<bool, String> {
    if host
        .strip_prefix("unix://")
        .is_some_and(|path| path.len() > 1 && path.starts_with('/'))
    {
        return Ok(false);
    }
    let tcp_address = host
        .strip_prefix("tcp://")
        .and_then(|address| address.rsplit_once(':'));
    if tcp_address.is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok()) {
        return Ok(true);
    }
    Err(format!("'{host}' must be unix:///path or tcp://HOST:PORT"))
}

/// A host as a URL names it (`hooks.example.com`, `10.0.0.7`, `[::1]`), or
/// `*.suffix`: no scheme, port or path, which would never match.
fn is_callback_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let parsed = reqwest::Url::parse(&format!("http://{name}/"));
    parsed.is_ok_and(|url| url.host_str() == Some(name.to_ascii_lowercase().as_str()))
}

impl RegistryLogin {
    fn credentials(&self, host: &str) -> Result<Credentials, ConfigError> {
        let invalid = |what: String| ConfigError::Invalid(format!("registries.\"{host}\": {what}"));
        if self.username.is_empty() {
            return Err(invalid("username must not be empty".into()));
        }
        let password = match (&self.password, &self.password_env) {
            (Some(password), None) => password.clone(),
            (None, Some(variable)) => match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Secret::new(value),
                _ => {
                    return Err(invalid(format!(
                        "the variable {variable} named by password_env is not set"
                    )))
                }
            },
            _ => {
                return Err(invalid(
                    "set exactly one of password and password_env".into(),
                ))
            }
        };
        Ok(Credentials {
            username: self.username.clone(),
            password,
        })
    }
}

impl WebhookConfig {
    fn target(&self) -> WebhookTarget {
        WebhookTarget {
            url: self.url.clone(),
            events: self.events.clone(),
            secret_env: self.secret_env.clone(),
        }
    }
}

fn http_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!("scheme '{other}': only http and https")),
    }
}

/// A signing secret from the variable `name`; `key` says which setting named it.
impl SecretSourceConfig {
    /// The value, from the variable or the file.
    fn read(&self, key: &str) -> Result<Vec<u8>, ConfigError> {
        match (&self.env, &self.file) {
            (Some(name), None) => Ok(read_secret(name, key)?.expose().as_bytes().to_vec()),
            (None, Some(path)) => std::fs::read(path).map_err(|err| {
                ConfigError::Invalid(format!("{key}: cannot read {}: {err}", path.display()))
            }),
            _ => Err(ConfigError::Invalid(format!(
                "{key}: give either env = \"VAR\" or file = \"/path\""
            ))),
        }
    }
}

fn read_secret(name: &str, key: &str) -> Result<Secret, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
        _ => Err(ConfigError::Invalid(format!(
            "{key}: the variable {name} is not set (or empty)"
        ))),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "bind = \"0.0.0.0:9000\"\nmax_concurrent_builds = 5\nbuild_network = \"none\"\n",
        )
        .unwrap();
        let config = Config::load(ServeArgs {
            config: Some(file),
            max_concurrent_builds: Some(3),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.bind, "0.0.0.0:9000");
        assert_eq!(config.max_concurrent_builds, 3);
        assert_eq!(config.build_network.as_deref(), Some("none"));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn empty_means_default_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "build_network = \"\"\n").unwrap();
        let config = Config::load(ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.build_network, None);

        std::fs::write(&file, "bindd = \"x\"\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("bindd"), "{err}");
    }

    #[test]
    fn tokens_need_one_secret_a_valid_name_and_a_scope() {
        let refused = |entry: &str, words: &str| {
            let config: Config = toml::from_str(&format!("[[tokens]]\n{entry}")).unwrap();
            let err = config.api_tokens().unwrap_err().to_string();
            assert!(err.contains(words), "{entry}: {err}");
        };
        let digest = "a".repeat(64);
        refused(
            "name = \"a\"\nscopes = [\"read\"]",
            "one of token_env and token_sha256",
        );
        refused(
            &format!(
                "name = \"a\"\ntoken_sha256 = \"{digest}\"\ntoken_env = \"X\"\nscopes = [\"read\"]"
            ),
            "one of",
        );
        refused(
            "name = \"a\"\ntoken_sha256 = \"abc\"\nscopes = [\"read\"]",
            "64 hex digits",
        );
        refused(
            &format!("name = \"a b\"\ntoken_sha256 = \"{digest}\"\nscopes = [\"read\"]"),
            "name",
        );
        refused(
            &format!("name = \"a\"\ntoken_sha256 = \"{digest}\"\nscopes = []"),
            "scopes",
        );
        refused(
            "name = \"a\"\ntoken_env = \"DOCKPUB_TEST_UNSET_TOKEN_VAR\"\nscopes = [\"read\"]",
            "not set",
        );
        let config: Config = toml::from_str(&format!(
            "[[tokens]]\nname = \"ci\"\ntoken_sha256 = \"{digest}\"\nscopes = [\"read\", \"build\"]\n\n[auth]\ntokens = [\"legacy\"]\n"
        ))
        .unwrap();
        let tokens = config.api_tokens().unwrap();
        assert_eq!(tokens[0].grant.scope, Scope::Build);
        assert_eq!(tokens[1].grant.name.as_deref(), Some("auth-token-1"));
        assert_eq!(tokens[1].grant.scope, Scope::Admin);
    }

    #[test]
    fn the_shipped_config_toml_is_the_defaults() {
        let shipped = include_str!("../config.toml");
        let parsed: Config = toml::from_str(shipped).expect("config.toml parses");
        assert_eq!(parsed, Config::default());
        let example = shipped
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .skip_while(|line| !line.starts_with("[registries."))
            .filter(|line| line.starts_with('[') || is_example_key(line))
            .collect::<Vec<_>>()
            .join("\n");
        let example: Config = toml::from_str(&example).expect("the registries example parses");
        assert_eq!(example.registries["docker.io"].username, "alice");
        assert_eq!(example.builders.len(), 2, "the [[builders]] example parses");
        assert_eq!(example.builders[1].max_concurrent_builds, Some(4));
    }

    /// `key = value` of a commented example, as opposed to the prose around it.
    fn is_example_key(line: &str) -> bool {
        line.split_once(" = ")
            .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    }

    #[test]
    fn build_limits_must_fit_the_build_api() {
        let limits = |memory, shares| Config {
            build_memory_bytes: memory,
            build_cpu_shares: shares,
            ..Config::default()
        };
        assert!(limits(0, 0).validate().is_ok());
        assert!(limits(64 << 20, 512).validate().is_ok());
        assert!(limits(i32::MAX as u64, 262_144).validate().is_ok());
        assert!(limits(i32::MAX as u64 + 1, 0).validate().is_err());
        assert!(limits(1024, 0).validate().is_err());
        assert!(limits(0, 1).validate().is_err());
    }

    #[test]
    fn a_login_needs_exactly_one_password_source() {
        let login = |password: Option<&str>, password_env: Option<&str>| Config {
            registries: [(
                "r.example".to_string(),
                RegistryLogin {
                    username: "u".into(),
                    password: password.map(|p| Secret::new(p.into())),
                    password_env: password_env.map(str::to_string),
                },
            )]
            .into(),
            ..Config::default()
        };
        assert!(login(Some("p"), None).validate().is_ok());
        assert!(login(None, None).validate().is_err());
        assert!(login(Some("p"), Some("PATH")).validate().is_err());
        let shown = format!("{:?}", login(Some("hunter2"), None));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn webhooks_need_known_events_http_urls_and_their_secrets() {
        let parse = |text: &str| toml::from_str::<Config>(text);
        let hook = |url: &str, rest: &str| format!("[[webhooks]]\nurl = \"{url}\"\n{rest}\n");
        assert!(parse(&hook(
            "http://x/",
            "events = [\"finished\"]\nsecret_env = \"PATH\""
        ))
        .is_err());
        let config = parse(&hook("http://x/", "secret_env = \"PATH\"")).unwrap();
        assert_eq!(
            config.webhooks[0].events.len(),
            3,
            "the final events by default"
        );
        let settings = config.webhook_settings().unwrap();
        assert!(!format!("{settings:?}").contains(&std::env::var("PATH").unwrap()));
        let unset = parse(&hook("http://x/", "secret_env = \"DOCKPUB_SURELY_UNSET\"")).unwrap();
        let err = unset.validate().unwrap_err().to_string();
        assert!(err.contains("DOCKPUB_SURELY_UNSET"), "{err}");
        let ftp = parse(&hook("ftp://x/", "secret_env = \"PATH\"")).unwrap();
        assert!(ftp.validate().is_err());
        let hosts_without_secret = Config {
            allowed_callback_hosts: vec!["hooks.example.com".into()],
            ..Config::default()
        };
        let err = hosts_without_secret.validate().unwrap_err().to_string();
        assert!(err.contains("callback_secret_env"), "{err}");
        let zero_wait = Config {
            webhook_retry_backoff_secs: vec![1, 0],
            ..Config::default()
        };
        assert!(zero_wait.validate().is_err());
    }

    #[test]
    fn builders_are_checked_at_start() {
        let with = |entry: &str| -> Result<Config, String> {
            let config: Config = toml::from_str(entry).map_err(|e| e.to_string())?;
            config.validate().map_err(|e| e.to_string())?;
            Ok(config)
        };
        let ok = with("[[builders]]\nname = \"a\"\nhost = \"unix:///x.sock\"\nplatforms = [\"linux/arm64/v8\"]\n")
            .unwrap();
        assert_eq!(ok.builders[0].max_concurrent_builds, None);
        let bad = [
            ("name = \"a b\"\nhost = \"unix:///x\"", "name"),
            ("name = \"a\"\nhost = \"http://x\"", "host"),
            ("name = \"a\"\nhost = \"unix:///x\"\ntls_ca = \"/x\"", "tcp://"),
            ("name = \"a\"\nhost = \"tcp://h:1\"\ntls_ca = \"/x\"", "tls_key"),
            ("name = \"a\"\nhost = \"tcp://h:1\"\ntls_ca = \"/no\"\ntls_cert = \"/no\"\ntls_key = \"/no\"", "/no"),
            ("name = \"a\"\nhost = \"unix:///x\"\nmax_concurrent_builds = 0", "at least 1"),
            ("name = \"a\"\nhost = \"unix:///x\"\nplatforms = [\"amd64\"]", "platform"),
            ("name = \"a\"\nhost = \"unix:///x\"\ntls = true", "unknown field"),
        ];
        for (entry, says) in bad {
            let err = with(&format!("[[builders]]\n{entry}\n")).unwrap_err();
            assert!(err.contains(says), "{entry}: {err}");
        }
        let twice = "[[builders]]\nname = \"a\"\nhost = \"unix:///x\"\n".repeat(2);
        assert!(with(&twice).unwrap_err().contains("twice"));
        let both =
            "docker_host = \"unix:///y\"\n[[builders]]\nname = \"a\"\nhost = \"unix:///x\"\n";
        assert!(with(both).unwrap_err().contains("docker_host"));
    }

    #[test]
    fn zero_slots_is_refused() {
        let err = Config::load(ServeArgs {
            config: Some(PathBuf::from("/nonexistent/none.toml")),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        let config = Config {
            max_concurrent_builds: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
