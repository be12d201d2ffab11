//! dockpub: accepts Dockerfiles over HTTP, builds them with Docker, pushes them to a
//! registry, and records every step in SQLite.
//!
//! Dependencies point one way, down (src/layering.rs checks it in `cargo test`):
//!
//! - `http`: routing, thin handlers, the one place errors become JSON; `cli`: the
//!   command-line client. Both sit on top; `config` (settings) is read by `http`
//!   and by this file.
//! - `builds`: the service that composes the layers below: a request checked,
//!   the queue, the runner, the live state of running builds.
//! - `docker` (everything bollard), `registry` (the registries' own HTTP API,
//!   for image indexes), `ssh_agent` (the SSH agent a build's ssh mounts use;
//!   `docker` serves it over BuildKit's session), `store` (everything SQLite) and `webhooks` (deliveries;
//!   the one of them that may also use `store`).
//! - `domain`: the types all of them share (build, status and its moves,
//!   options, logins and secrets, image references, progress, webhook events).
//!   No I/O, and it imports nothing of dockpub.
//!
//! `sync`, `error_chain`, `named_locks`, `metrics` and `address_file` are small
//! utilities any layer above `domain` may use. This file wires the layers together.
//!
//! The library is public only as far as the binary, the integration tests and
//! the bench example use it: [`serve`] and [`launch`], [`config`] (to load the
//! settings), [`cli`] (the client commands), [`store`] and [`domain`]. Every
//! other module is `pub(crate)`, so an item nothing uses shows as dead code, and
//! every public item is documented (`missing_docs`, an error under clippy's
//! `-D warnings`).

#![warn(missing_docs)]
// An unwrap is a panic no one explained: outside tests, errors are propagated or
// an `expect` says why it cannot fail.
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod address_file;
pub(crate) mod builds;
pub mod cli;
pub mod config;
pub(crate) mod docker;
pub mod domain;
pub(crate) mod error_chain;
pub(crate) mod http;
#[cfg(test)]
mod layering;
pub(crate) mod metrics;
pub(crate) mod named_locks;
pub(crate) mod provenance;
pub(crate) mod registry;
pub(crate) mod ssh_agent;
pub mod store;
pub(crate) mod sync;
pub(crate) mod webhooks;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;

use address_file::AddressFile;
use builds::credentials::CredentialResolver;
use builds::options::NetworkPolicy;
use builds::{BuildService, Limits, Retention, RunSettings};
use config::{Config, ConfigError};
use docker::{BuilderConfig, BuilderPool};
use store::{Store, StoreError};
use webhooks::Webhooks;

/// Why dockpub could not start serving; [`StartError::exit_code`] tells a
/// configuration problem from any other.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `bind` cannot be listened on (taken, not local, not an address).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured `bind`.
        address: String,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The listener cannot say its address, or the server cannot use it.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// Recovering interrupted builds or starting the queue failed in the store.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The data directory's database or files cannot be opened or migrated.
    #[error("data_dir {path}: {source}")]
    DataDir {
        /// The configured `data_dir`.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        source: StoreError,
    },
    /// A setting that cannot be turned into what it configures (a token, a
    /// secret's source, a trigger).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another dockpub serves from the data directory, or it cannot be locked.
    #[error(transparent)]
    Locked(#[from] store::LockError),
    /// `--address-file` cannot be written.
    #[error("cannot write the address file {path}: {source}")]
    AddressFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why writing it failed.
        source: std::io::Error,
    },
}

impl StartError {
    /// 2 when the settings, the bind address or the data directory stand in the
    /// way, as for an invalid configuration; 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_)
            | StartError::Locked(_)
            | StartError::Bind { .. }
            | StartError::DataDir { .. }
            | StartError::AddressFile { .. } => 2,
            StartError::Listen(_) | StartError::Store(_) => 1,
        }
    }
}

/// Binds `config.server.bind` and serves until SIGTERM or SIGINT; then stops accepting,
/// lets running builds finish within the grace period, and stops. While it
/// serves, `address_file` (when given) holds the address it listens on.
pub async fn serve(config: Config, address_file: Option<&Path>) -> Result<(), StartError> {
    // Before anything is bound, opened or recovered.
    let _lock = store::DataDirLock::acquire(&config.server.data_dir)?;
    let listener = TcpListener::bind(&config.server.bind).map_err(|source| StartError::Bind {
        address: config.server.bind.clone(),
        source,
    })?;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let address = listener.local_addr()?;
    let (server, builds) = start(config, listener).await?;
    let _announced = address_file
        .map(|path| {
            AddressFile::write(path, address).map_err(|source| StartError::AddressFile {
                path: path.to_path_buf(),
                source,
            })
        })
        .transpose()?;
    let handle = server.handle();
    let serving = tokio::spawn(server);
    wait_for_stop_signal().await;
    log::info!("stopping: no new requests; running builds get {grace:?} to finish");
    let no_new_requests = tokio::spawn({
        let handle = handle.clone();
        async move { handle.stop(true).await }
    });
    builds.shutdown(grace).await;
    // Followers of builds left queued would wait forever: close what is still open.
    handle.stop(false).await;
    let _ = no_new_requests.await;
    let _ = serving.await;
    log::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(err) => {
            log::warn!("cannot listen for SIGTERM ({err}); only SIGINT stops dockpub gracefully");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The `[[builders]]` of the config, or without any, one builder `local` on
/// `docker_host` (or DOCKER_HOST, or the local socket) as before the pool.
fn builder_configs(config: &Config) -> Vec<BuilderConfig> {
    let common = BuilderConfig {
        name: "local".into(),
        host: config.builders.docker_host.clone(),
        max_concurrent_builds: config.builders.max_concurrent_builds,
        build_network: config.builds.build_network.clone(),
        // Config validation keeps both within i32; 0 means "not set".
        build_memory_bytes: i32::try_from(config.builds.build_memory_bytes)
            .ok()
            .filter(|&m| m > 0),
        build_cpu_shares: i32::try_from(config.builds.build_cpu_shares)
            .ok()
            .filter(|&s| s > 0),
        tls: None,
        platforms: Vec::new(),
        buildkit: config.builders.buildkit,
    };
    if config.builders.entries.is_empty() {
        return vec![common];
    }
    config
        .builders
        .entries
        .iter()
        .map(|entry| BuilderConfig {
            name: entry.name.clone(),
            host: Some(entry.host.clone()),
            max_concurrent_builds: entry
                .max_concurrent_builds
                .unwrap_or(config.builders.max_concurrent_builds),
            tls: entry.tls_files(),
            platforms: entry.platforms.clone(),
            buildkit: entry.buildkit.unwrap_or(config.builders.buildkit),
            ..common.clone()
        })
        .collect()
}

/// Every password the config holds, for build logs to mask.
fn config_passwords(config: &Config) -> Result<Vec<domain::Secret>, StartError> {
    let registries = config.registries.registry_credentials()?;
    let git = config.git.git_policy()?.hosts;
    Ok(registries
        .into_iter()
        .map(|(_, login)| login.password)
        .chain(git.into_iter().filter_map(|(_, login)| login.password))
        .collect())
}

/// Opens the store, recovers interrupted builds, starts the queue and returns the
/// running HTTP server on `listener` (which may be bound to port 0): dockpub
/// without the signal handling and the graceful stop of [`serve`], for a caller
/// (such as a test) that runs the server itself.
pub async fn launch(config: Config, listener: TcpListener) -> Result<Server, StartError> {
    let (server, _builds) = start(config, listener).await?;
    Ok(server)
}

/// [`launch`], and the build service behind the server, which [`serve`] drains
/// at a stop.
async fn start(
    config: Config,
    listener: TcpListener,
) -> Result<(Server, BuildService), StartError> {
    for key in config.legacy_only_settings() {
        log::warn!(
            "WARNING: {key} applies to legacy builds only: BuildKit builds run without it \
             (set buildkit = false to enforce it on every build)"
        );
    }
    let store = Store::open(&config.server.data_dir).map_err(|source| StartError::DataDir {
        path: config.server.data_dir.clone(),
        source,
    })?;
    let pool = Arc::new(BuilderPool::new(builder_configs(&config)));
    let limits = Limits {
        max_dockerfile_bytes: config.uploads.max_dockerfile_bytes,
        max_queued_builds: config.builds.max_queued_builds,
        max_queue_wait: config.builds.max_queue_wait_secs.map(Duration::from_secs),
        context: builds::context::ContextLimits {
            max_bytes: config.uploads.max_context_bytes,
            max_entries: config.uploads.max_context_entries,
        },
        networks: NetworkPolicy {
            default: config.builds.build_network.clone(),
            allowed: config.builds.build_networks(),
        },
        buildkit: config.builders.buildkit,
        max_tags: config.builds.max_tags_per_build,
        git: config.git.git_policy()?,
        followers: builds::FollowerLimits {
            per_build: config.server.max_followers_per_build,
            total: config.server.max_followers,
        },
    };
    let settings = RunSettings {
        build_timeout: Duration::from_secs(config.builds.build_timeout_secs),
        build_idle_timeout: Duration::from_secs(config.builds.build_idle_timeout_secs),
        push_idle_timeout: Duration::from_secs(config.builds.push_idle_timeout_secs),
        cache_import_timeout: Duration::from_secs(config.builds.cache_import_timeout_secs),
        credentials: CredentialResolver::new(
            config.registries.registry_credentials()?,
            builds::docker_config::DockerConfig::from_env(),
        ),
        secrets: config.secrets.build_secrets()?,
        ssh_keys: config.ssh.agent_keys()?,
        registry_cache: config.builds.registry_cache,
        log_limits: builds::LogLimits {
            max_lines: config.builds.max_log_lines,
            max_bytes: config.builds.max_log_bytes,
        },
        config_passwords: config_passwords(&config)?,
        registry: registry::Registry::new(Duration::from_secs(config.builds.registry_timeout_secs)),
        provenance: config.provenance.provenance_settings()?,
    };
    let retention = Retention {
        days: config.retention.retention_days,
        keep_last: config.retention.retention_keep_last,
        interval: Duration::from_secs(config.retention.retention_interval_secs),
    };
    // The payload's build object is the API's, rendered by the HTTP layer's view.
    let webhooks = Webhooks::start(
        store.clone(),
        config.webhooks.webhook_settings()?,
        http::build_json,
    );
    let service = BuildService::start(store, pool, limits, settings, retention, webhooks).await?;
    let address = listener.local_addr()?;
    let tokens = config.tokens.api_tokens()?;
    if !address.ip().is_loopback() && tokens.is_empty() {
        log::warn!(
            "WARNING: listening on {address}, beyond loopback, with no API tokens: anyone who reaches it can run \
             any Dockerfile on your Docker daemon. Set [[tokens]], [auth] tokens or DOCKPUB_API_TOKENS."
        );
    }
    let triggers = builds::triggers::TriggerService::new(
        service.clone(),
        config.git.triggers()?,
        config.git.trigger_fetch_slots(),
    );
    let server = http::server(service.clone(), triggers, &config, tokens, listener)?;
    log::info!("dockpub listening on http://{address}");
    Ok((server, service))
}
