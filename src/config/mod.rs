//! Settings: defaults < config.toml < `DOCKPUB_*` env < command-line flags.
//!
//! The file's keys sit at its top level or in its tables (`[auth]`, `[[builders]]`,
//! …); here they are grouped into sections, one module each. A section holds:
//! - a serde struct whose fields are its keys, with their defaults in its
//!   `Default` impl and its rules in `Section::validate`;
//! - for the keys that also have a flag, a clap struct `*Flags` with a field of
//!   the same name (`Option<T>`); clap fills it from the flag, or else from its
//!   `DOCKPUB_*` variable (named in the `env` attribute).
//!
//! [`Config::load`] layers every section the same way with figment: the section's
//! defaults, the file, then whatever flags and variables clap read.
//!
//! Adding a setting: a field in its section's struct and its default there (and
//! for a flag, a field of the same name in the section's `*Flags`); a rule in the
//! section's `validate`. Then `config.toml` and the README's table. Adding a
//! section: a module with those, and one line in `sections!` below (plus one in
//! [`ServeArgs`] if it has flags).

mod builders;
mod builds;
mod git;
mod provenance;
mod registries;
mod retention;
mod secrets;
mod server;
mod ssh;
mod tokens;
mod triggers;
mod uploads;
mod webhooks;

use std::path::PathBuf;

use clap::Args;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::Secret;

pub(crate) use builders::{BuilderFlags, BuilderSection};
pub(crate) use builds::{BuildFlags, BuildSection};
pub(crate) use git::GitSection;
pub(crate) use provenance::{ProvenanceFlags, ProvenanceSection};
pub(crate) use registries::RegistrySection;
pub(crate) use retention::{RetentionFlags, RetentionSection};
pub(crate) use secrets::{SecretSection, SecretSourceConfig};
pub(crate) use server::{ServerFlags, ServerSection};
pub(crate) use ssh::SshSection;
pub(crate) use tokens::{TokenFlags, TokenSection};
pub(crate) use uploads::{UploadFlags, UploadSection};
pub(crate) use webhooks::{WebhookFlags, WebhookSection};

const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// One section of the configuration: deserialized from the top level of the
/// layered settings (it takes its own keys and leaves the others), then checked.
trait Section: DeserializeOwned {
    /// The section's rules; the message names the key it refuses.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Declares [`Config`] from its sections: each is read, checked and its keys
/// known (for refusing unknown ones) by the same code.
macro_rules! sections {
    ($($(#[doc = $doc:literal])* $field:ident: $section:ty,)*) => {
        /// Every setting, by section.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Config {
            $($(#[doc = $doc])* pub(crate) $field: $section,)*
        }

        impl Config {
            fn extract(figment: &Figment) -> Result<Config, ConfigError> {
                Ok(Config { $($field: figment.extract()?,)* })
            }

            /// Every key the file may hold at its top level.
            fn known_keys() -> Vec<&'static str> {
                [$(keys_of::<$section>()),*].concat()
            }

            /// Each section's rules, in order; the first broken one is the error.
            pub fn validate(&self) -> Result<(), ConfigError> {
                $(self.$field.validate()?;)*
                Ok(())
            }
        }
    };
}

sections! {
    /// `bind`, `data_dir`, `allowed_hosts`, `shutdown_grace_secs`, the follower caps.
    server: ServerSection,
    /// Request body and build context limits.
    uploads: UploadSection,
    /// `[[builders]]`, or the one `docker_host`; `max_concurrent_builds`, `buildkit`.
    builders: BuilderSection,
    /// What a build may use: network, limits, timeout, the queue, registry cache.
    builds: BuildSection,
    /// Pruning of finished builds.
    retention: RetentionSection,
    /// `[auth] tokens` and `[[tokens]]`.
    tokens: TokenSection,
    /// `[registries."HOST"]` logins.
    registries: RegistrySection,
    /// `[[webhooks]]` and per-build callbacks.
    webhooks: WebhookSection,
    /// `[secrets.ID]` build secrets.
    secrets: SecretSection,
    /// `[ssh.ID]` keys for SSH mounts.
    ssh: SshSection,
    /// Builds from git: limits, host logins, triggers.
    git: GitSection,
    /// `[provenance]`: attestations pushed with every image, and their signing key.
    provenance: ProvenanceSection,
}

/// `dockpub serve` flags; each also reads its `DOCKPUB_*` variable.
#[derive(Debug, Default, Args, Serialize)]
pub struct ServeArgs {
    /// Config file [default: ./config.toml when it exists]
    #[arg(long, env = "DOCKPUB_CONFIG")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) server: ServerFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) uploads: UploadFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) builders: BuilderFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) builds: BuildFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) retention: RetentionFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) tokens: TokenFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) webhooks: WebhookFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) provenance: ProvenanceFlags,
}

/// Why the settings cannot be used; the message names the file, key or flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file exists (or was named) but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A file that does not parse, or a value of the wrong type; figment's message
    /// names the key and the file.
    #[error("{0}")]
    Parse(Box<figment::Error>),
    /// A key the file may not hold, most likely a typo: refused rather than
    /// silently ignored.
    #[error("config file {path}: unknown field `{key}`, expected one of {expected}")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The top-level key as written.
        key: String,
        /// The keys the file's top level allows, for the message.
        expected: String,
    },
    /// A value that parses but breaks a section's rule.
    #[error("{0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        ConfigError::Parse(Box::new(err))
    }
}

impl Config {
    /// The file (named, or ./config.toml when present), then env and flags over it.
    pub fn load(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.exists()),
        };
        let mut figment = Figment::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file = ConfigFile { path, text };
            refuse_unknown_keys(&file)?;
            figment = figment.merge(file);
        }
        let config = Config::extract(&figment.merge(flags_provider(&args)?))?;
        config.validate()?;
        config.validate_across_sections()?;
        Ok(config)
    }

    /// Rules that tie one section to another: each trigger's tag list fits
    /// `max_tags_per_build`, and the `ssh` ids it asks for are `[ssh.ID]`s.
    pub fn validate_across_sections(&self) -> Result<(), ConfigError> {
        self.git.triggers.iter().try_for_each(|trigger| {
            trigger.check_tag_count(self.builds.max_tags_per_build)?;
            trigger.check_ssh_ids(|id| self.ssh.has(id))
        })
    }

    /// Settings BuildKit does not honour, set while builds use BuildKit: they
    /// apply to legacy builds only (the README says so), and the start warns.
    pub(crate) fn legacy_only_settings(&self) -> Vec<&'static str> {
        let buildkit_somewhere = self.builders.buildkit
            || self
                .builders
                .entries
                .iter()
                .any(|b| b.buildkit == Some(true));
        let set = [
            ("build_memory_bytes", self.builds.build_memory_bytes != 0),
            ("build_cpu_shares", self.builds.build_cpu_shares != 0),
        ];
        set.iter()
            .filter(|(_, is_set)| buildkit_somewhere && *is_set)
            .map(|(key, _)| *key)
            .collect()
    }
}

/// The flags and variables clap read, as a layer: the ones not given are left
/// out, so they do not hide the file's values.
fn flags_provider(args: &ServeArgs) -> Result<Serialized<Dict>, ConfigError> {
    let given = match Value::serialize(args)? {
        Value::Dict(_, dict) => dict
            .into_iter()
            .filter(|(_, value)| !matches!(value, Value::Empty(..)))
            .collect(),
        _ => Dict::new(),
    };
    Ok(Serialized::defaults(given))
}

/// The config file as figment reads it, with errors naming its keys as the file
/// does (`max_concurrent_builds`, `builders.0.host`), without figment's profile.
struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl Provider for ConfigFile {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::from("TOML file", self.path.as_path())
            .interpolater(|_profile: &Profile, keys: &[&str]| keys.join("."))
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.text).data().map_err(|mut err| {
            err.metadata = Some(self.metadata());
            err
        })
    }
}

/// A key no section takes is a typo: refused rather than ignored.
fn refuse_unknown_keys(file: &ConfigFile) -> Result<(), ConfigError> {
    let known = Config::known_keys();
    let data = file.data()?;
    let mut keys = data.get(&Profile::Default).into_iter().flat_map(Dict::keys);
    match keys.find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(ConfigError::UnknownKey {
            path: file.path.clone(),
            key: key.clone(),
            expected: known
                .iter()
                .map(|key| format!("`{key}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        None => Ok(()),
    }
}

/// The keys a section takes: the field list serde derives for its struct.
fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut keys));
    keys
}

/// A deserializer that only notes the field names a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("a section is a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("only the field names were wanted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// An empty value is how a file or variable says "the default" (unset).
fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|value| !value.is_empty()))
}

/// A list without its blank entries (`DOCKPUB_ALLOWED_HOSTS=` means none).
fn without_blanks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let mut list = Vec::<String>::deserialize(d)?;
    list.retain(|entry| !entry.trim().is_empty());
    Ok(list)
}

/// The first of `values` that is 0, as the error naming its key.
fn at_least_1(values: &[(&str, u64)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((key, _)) => Err(ConfigError::Invalid(format!("{key} must be at least 1"))),
        None => Ok(()),
    }
}

/// A signing secret from the variable `name`; `key` says which setting named it.
fn read_secret(name: &str, key: &str) -> Result<Secret, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
        _ => Err(ConfigError::Invalid(format!(
            "{key}: the variable {name} is not set (or empty)"
        ))),
    }
}

#[cfg(test)]
mod tests;
