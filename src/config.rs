//! Settings: defaults < config.toml < `DOCKPUB_*` env < command-line flags.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

const DEFAULT_CONFIG_FILE: &str = "config.toml";

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
        } = args;
        set(&mut self.bind, bind);
        set(&mut self.data_dir, data_dir);
        set(&mut self.max_concurrent_builds, max_concurrent_builds);
        set(&mut self.max_upload_bytes, max_upload_bytes);
        set(&mut self.max_dockerfile_bytes, max_dockerfile_bytes);
        if docker_host.is_some() {
            self.docker_host = docker_host;
        }
        if build_network.is_some() {
            self.build_network = build_network;
        }
        // An empty value is how a file or variable says "the default".
        self.docker_host.take_if(|host| host.is_empty());
        self.build_network.take_if(|network| network.is_empty());
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_concurrent_builds", self.max_concurrent_builds),
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_dockerfile_bytes", self.max_dockerfile_bytes),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((key, _)) => Err(ConfigError::Invalid(format!("{key} must be at least 1"))),
            None => Ok(()),
        }
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
