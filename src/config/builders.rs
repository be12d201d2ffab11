//! The Docker daemons builds run on: `[[builders]]`, or one builder `local` on
//! `docker_host`, and how many builds each takes at once.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{at_least_1, empty_is_none, ConfigError, Section};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BuilderSection {
    /// `unix:///path` or `tcp://host:port`; unset means DOCKER_HOST or the local socket.
    #[serde(deserialize_with = "empty_is_none")]
    pub docker_host: Option<String>,
    /// Builds running at once on each builder that sets no `max_concurrent_builds`.
    pub max_concurrent_builds: usize,
    /// Build with BuildKit unless a request or a builder says otherwise; false
    /// builds with the daemon's legacy builder.
    pub buildkit: bool,
    /// `[[builders]]`: the Docker hosts to build on. Empty: one builder, `local`,
    /// from `docker_host` with the global `max_concurrent_builds`.
    #[serde(rename = "builders")]
    pub entries: Vec<BuilderEntry>,
}

impl Default for BuilderSection {
    fn default() -> Self {
        BuilderSection {
            docker_host: None,
            max_concurrent_builds: 2,
            buildkit: true,
            entries: Vec::new(),
        }
    }
}

/// The flags (and variables) of [`BuilderSection`].
#[derive(Debug, Default, Args, Serialize)]
pub struct BuilderFlags {
    /// Docker daemon to build on [default: DOCKER_HOST or the local socket]
    #[arg(long, env = "DOCKPUB_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Builds that may run at once [default: 2]
    #[arg(long, env = "DOCKPUB_MAX_CONCURRENT_BUILDS")]
    pub max_concurrent_builds: Option<usize>,
    /// Build with BuildKit by default (true) or the legacy builder (false) [default: true]
    #[arg(long, env = "DOCKPUB_BUILDKIT")]
    pub buildkit: Option<bool>,
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

impl Section for BuilderSection {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least_1(&[("max_concurrent_builds", self.max_concurrent_builds as u64)])?;
        self.validate_docker_host()?;
        if !self.entries.is_empty() && self.docker_host.is_some() {
            return Err(ConfigError::Invalid(
                "docker_host and [[builders]] do not go together: give the host as a builder"
                    .into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for entry in &self.entries {
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
}

impl BuilderSection {
    /// `docker_host`, or when it is unset (and no `[[builders]]`) the `DOCKER_HOST`
    /// it falls back to: the same rule as a builder's `host`.
    fn validate_docker_host(&self) -> Result<(), ConfigError> {
        let inherited = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| !host.is_empty() && self.entries.is_empty());
        let (key, host) = match (&self.docker_host, inherited) {
            (Some(host), _) => ("docker_host", host.clone()),
            (None, Some(host)) => ("DOCKER_HOST", host),
            (None, None) => return Ok(()),
        };
        check_docker_host(&host)
            .map(|_| ())
            .map_err(|why| ConfigError::Invalid(format!("{key} {why}")))
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
    pub(crate) fn tls_files(&self) -> Option<crate::docker::TlsFiles> {
        Some(crate::docker::TlsFiles {
            ca: self.tls_ca.clone()?,
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
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
