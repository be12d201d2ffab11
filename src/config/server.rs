//! Where dockpub listens, what it answers to, and where it keeps its data.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{at_least_1, without_blanks, ConfigError, Section};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerSection {
    /// `HOST:PORT` to listen on; a name such as `localhost` is looked up at start.
    pub bind: String,
    /// The SQLite database and stored uploads.
    pub data_dir: PathBuf,
    /// Host names (with or without `:port`) the server answers to besides its bind
    /// address, localhost and loopback addresses; `*` accepts any.
    #[serde(deserialize_with = "without_blanks")]
    pub allowed_hosts: Vec<String>,
    /// On SIGTERM/SIGINT, how long running builds may take to finish before they
    /// are stopped and left queued for the next start; 0 stops them at once.
    pub shutdown_grace_secs: u64,
    /// Followers of one build's log or events at once; more get 503 with Retry-After.
    pub max_followers_per_build: usize,
    /// Followers of all builds at once; more get 503 with Retry-After.
    pub max_followers: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            allowed_hosts: Vec::new(),
            shutdown_grace_secs: 30,
            max_followers_per_build: 100,
            max_followers: 1000,
        }
    }
}

/// The flags (and variables) of [`ServerSection`].
#[derive(Debug, Default, Args, Serialize)]
pub struct ServerFlags {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "DOCKPUB_BIND")]
    pub bind: Option<String>,
    /// Folder for the SQLite database and stored uploads [default: ./data]
    #[arg(long, env = "DOCKPUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Host names the server answers to besides its bind address and localhost, comma-separated
    #[arg(long, env = "DOCKPUB_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Seconds running builds get to finish on SIGTERM/SIGINT; 0 stops them at once [default: 30]
    #[arg(long, env = "DOCKPUB_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Followers of one build's log or events at once; more get 503 [default: 100]
    #[arg(long, env = "DOCKPUB_MAX_FOLLOWERS_PER_BUILD")]
    pub max_followers_per_build: Option<usize>,
    /// Followers of all builds at once; more get 503 [default: 1000]
    #[arg(long, env = "DOCKPUB_MAX_FOLLOWERS")]
    pub max_followers: Option<usize>,
}

impl Section for ServerSection {
    /// `bind` must be `HOST:PORT` that resolves; the follower caps at least 1.
    fn validate(&self) -> Result<(), ConfigError> {
        use std::net::ToSocketAddrs;
        at_least_1(&[
            (
                "max_followers_per_build",
                self.max_followers_per_build as u64,
            ),
            ("max_followers", self.max_followers as u64),
        ])?;
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
}
