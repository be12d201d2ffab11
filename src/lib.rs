//! dockpub: accepts Dockerfiles over HTTP, builds them with Docker, pushes them to a
//! registry, and records every step in SQLite.
//!
//! The request path: `http` (handlers, routing, errors as JSON) → `builds` (the domain,
//! validation, the queue) → `docker` (bollard) and `store` (SQLite).

pub mod builds;
pub mod config;
pub mod docker;
pub mod http;
pub mod store;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;

use builds::credentials::CredentialResolver;
use builds::options::NetworkPolicy;
use builds::{BuildService, Limits, RunSettings};
use config::{Config, ConfigError};
use docker::{BuilderConfig, BuilderPool};
use store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Binds `config.bind` and serves until the process is asked to stop.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let listener = TcpListener::bind(&config.bind)?;
    launch(config, listener).await?.await?;
    Ok(())
}

/// Opens the store, recovers interrupted builds, starts the queue and returns the
/// running HTTP server on `listener` (which may be bound to port 0).
pub async fn launch(config: Config, listener: TcpListener) -> Result<Server, StartError> {
    let store = Store::open(&config.data_dir)?;
    let pool = BuilderPool::new(vec![BuilderConfig {
        name: "local".into(),
        host: config.docker_host.clone(),
        max_concurrent_builds: config.max_concurrent_builds,
        build_network: config.build_network.clone(),
        // Config validation keeps both within i32; 0 means "not set".
        build_memory_bytes: i32::try_from(config.build_memory_bytes)
            .ok()
            .filter(|&m| m > 0),
        build_cpu_shares: i32::try_from(config.build_cpu_shares)
            .ok()
            .filter(|&s| s > 0),
    }]);
    let limits = Limits {
        max_dockerfile_bytes: config.max_dockerfile_bytes,
        networks: NetworkPolicy {
            default: config.build_network.clone(),
            allowed: config.build_networks(),
        },
    };
    let settings = RunSettings {
        build_timeout: Duration::from_secs(config.build_timeout_secs),
        credentials: CredentialResolver::new(
            config.registry_credentials()?,
            builds::docker_config::DockerConfig::from_env(),
        ),
    };
    let service = BuildService::start(store, pool, limits, settings).await?;
    let address = listener.local_addr()?;
    let server = http::server(service, &config, listener)?;
    log::info!("dockpub listening on http://{address}");
    Ok(server)
}
