//! `[provenance]`: whether pushed images get a provenance attestation, and the
//! key that signs it.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Section};
use crate::builds::ProvenanceSettings;
use crate::provenance::SigningKey;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProvenanceSection {
    pub provenance: ProvenanceTable,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvenanceTable {
    /// Every pushed image gets an attestation manifest in its tags' index.
    pub enabled: bool,
    /// An ed25519 or ECDSA P-256 private key (PEM) that signs the statement.
    pub signing_key_file: Option<PathBuf>,
    /// How the statement names this dockpub (`runDetails.builder.id`).
    pub builder_id: Option<String>,
}

impl Default for ProvenanceTable {
    fn default() -> Self {
        ProvenanceTable {
            enabled: true,
            signing_key_file: None,
            builder_id: None,
        }
    }
}

/// The flags (and variables) of [`ProvenanceSection`]: they set `[provenance]`.
#[derive(Debug, Default, Args, Serialize)]
pub struct ProvenanceFlags {
    #[command(flatten)]
    #[serde(rename = "provenance")]
    pub table: ProvenanceFlagTable,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct ProvenanceFlagTable {
    /// Push a provenance attestation with every image [default: true]
    #[arg(long = "provenance", env = "DOCKPUB_PROVENANCE", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// PEM private key (ed25519 or ECDSA P-256) signing the provenance [default: unsigned]
    #[arg(
        long = "provenance-signing-key-file",
        env = "DOCKPUB_PROVENANCE_SIGNING_KEY_FILE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The statement's builder id for this dockpub [default: dockpub@HOSTNAME]
    #[arg(long = "provenance-builder-id", env = "DOCKPUB_PROVENANCE_BUILDER_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder_id: Option<String>,
}

impl Section for ProvenanceSection {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl ProvenanceSection {
    /// The settings the runner uses, with the key read (a key that cannot be
    /// read or is of another kind stops the start).
    pub fn provenance_settings(&self) -> Result<ProvenanceSettings, ConfigError> {
        let table = &self.provenance;
        let key = match &table.signing_key_file {
            Some(path) => Some(SigningKey::from_file(path).map_err(|err| {
                ConfigError::Invalid(format!("provenance.signing_key_file: {err}"))
            })?),
            None => None,
        };
        let builder_id = table.builder_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("dockpub@{}", host.trim())
        });
        Ok(ProvenanceSettings {
            enabled: table.enabled,
            key,
            builder_id,
        })
    }
}
