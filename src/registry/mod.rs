//! The registry's own HTTP API (the OCI distribution API), for what the Engine
//! API cannot do: reading a manifest or index by tag or digest, and putting an
//! image index. The protocol and its logins (HTTP basic, and the token flow of
//! registries that answer `401` with `WWW-Authenticate: Bearer`) are the ORAS
//! project's `oci-client`; this module says what dockpub asks of a registry.
//!
//! Registries on loopback are spoken to over plain HTTP, as the Docker daemon
//! does by default; every other registry over HTTPS.

use std::net::IpAddr;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::Credentials;

mod artifacts;

/// Manifests and indexes, in the media types Docker and OCI registries serve.
const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("'{reference}' is not a reference the registry API takes: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("the registry did not answer for {reference} within {secs} s")]
    TimedOut { reference: String, secs: u64 },
    #[error("the registry refused {what} {reference}: {reason}")]
    Refused {
        what: &'static str,
        reference: String,
        reason: String,
    },
    #[error("the registry serves no manifest for {reference}")]
    NotFound { reference: String },
    #[error("the manifest of {reference} does not parse: {reason}")]
    Unreadable { reference: String, reason: String },
}

/// One manifest or index as the registry serves it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its `mediaType`: an index, a manifest list, or an image manifest.
    pub media_type: String,
    /// The digest of exactly these bytes.
    pub digest: String,
    pub bytes: bytes::Bytes,
}

/// One entry of an image index: a platform's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<IndexPlatform>,
    /// An attestation manifest's `vnd.docker.reference.*`; None for an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl IndexPlatform {
    /// From `os/arch[/variant]`; None for anything else.
    pub fn parse(platform: &str) -> Option<IndexPlatform> {
        let mut parts = platform.split('/');
        let (os, architecture) = (parts.next()?, parts.next()?);
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(IndexPlatform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant,
        })
    }
}

/// An OCI image index: what dockpub puts under a multi-platform build's tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<IndexEntry>,
}

impl ImageIndex {
    pub fn new(manifests: Vec<IndexEntry>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
            manifests,
        }
    }
}

/// The part of an image manifest dockpub reads: its config's digest.
#[derive(Debug, Deserialize)]
struct ImageManifest {
    config: Descriptor,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Debug, Deserialize)]
struct MediaTyped {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
}

/// Talks to registries, each request bounded by `timeout`.
#[derive(Debug, Clone)]
pub struct Registry {
    timeout: Duration,
}

impl Registry {
    pub fn new(timeout: Duration) -> Registry {
        // oci-client's reqwest brings no TLS provider: ring, as everywhere else
        // in dockpub, is the process's. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Registry { timeout }
    }

    /// The manifest or index `repository` serves under `reference`: a tag or a
    /// `sha256:` digest.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        login: Option<&Credentials>,
    ) -> Result<Manifest, RegistryError> {
        let (client, image) = self.client_for(repository, reference)?;
        let named = image.whole();
        let pulled = self
            .bounded(
                &named,
                client.pull_manifest_raw(&image, &auth(login), MANIFEST_TYPES),
            )
            .await?;
        let (bytes, digest) = pulled.map_err(|err| match &err {
            OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
                reference: named.clone(),
            },
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
                    )
                }) =>
            {
                RegistryError::NotFound {
                    reference: named.clone(),
                }
            }
            _ => refused("reading", &named, err),
        })?;
        let typed: MediaTyped =
            serde_json::from_slice(&bytes).map_err(|err| RegistryError::Unreadable {
                reference: named.clone(),
                reason: err.to_string(),
            })?;
        Ok(Manifest {
            media_type: typed.media_type.unwrap_or_default(),
            digest,
            bytes,
        })
    }

    /// The config digest (the image id) of the image manifest `digest` in
    /// `repository`.
    pub async fn config_digest(
        &self,
        repository: &str,
        digest: &str,
        login: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let manifest = self.manifest(repository, digest, login).await?;
        let image: ImageManifest =
            serde_json::from_slice(&manifest.bytes).map_err(|err| RegistryError::Unreadable {
                reference: format!("{repository}@{digest}"),
                reason: err.to_string(),
            })?;
        Ok(image.config.digest)
    }

    /// Puts `index` under `repository:tag`; returns its digest.
    pub async fn put_index(
        &self,
        repository: &str,
        tag: &str,
        index: &ImageIndex,
        login: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let body = serde_json::to_vec(index).expect("an index always serializes");
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        self.push_manifest(
            repository,
            tag,
            OCI_IMAGE_INDEX_MEDIA_TYPE,
            body,
            login,
            "the index for",
        )
        .await?;
        Ok(digest)
    }

    /// A client for the registry `repository` lives on, and the reference.
    fn client_for(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Client, Reference), RegistryError> {
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let written = format!("{repository}{separator}{reference}");
        let image: Reference =
            written
                .parse()
                .map_err(|err: oci_client::ParseError| RegistryError::BadReference {
                    reference: written.clone(),
                    reason: err.to_string(),
                })?;
        let protocol = if is_loopback(image.registry()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(self.timeout),
            read_timeout: Some(self.timeout),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        Ok((Client::new(config), image))
    }

    /// One exchange with the registry, bounded by the timeout.
    async fn bounded<T>(
        &self,
        reference: &str,
        exchange: impl std::future::Future<Output = T>,
    ) -> Result<T, RegistryError> {
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RegistryError::TimedOut {
                reference: reference.to_string(),
                secs: self.timeout.as_secs(),
            })
    }
}

fn auth(login: Option<&Credentials>) -> RegistryAuth {
    match login {
        Some(login) => {
            RegistryAuth::Basic(login.username.clone(), login.password.expose().to_string())
        }
        None => RegistryAuth::Anonymous,
    }
}

fn refused(what: &'static str, reference: &str, err: OciDistributionError) -> RegistryError {
    RegistryError::Refused {
        what,
        reference: reference.to_string(),
        reason: err.to_string(),
    }
}

/// `127.0.0.1:5000`, `localhost`, `[::1]:5000`: the daemon's default insecure registries.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registry_that_never_answers_fails_at_the_timeout() {
        // A real socket that accepts and then says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut accepted = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.push(socket);
            }
        });
        let registry = Registry::new(Duration::from_millis(300));
        let repository = format!("{address}/stalled");
        // Whichever bound comes first, the whole exchange's or one read's.
        let read = registry.manifest(&repository, "latest", None).await;
        assert!(
            matches!(
                read,
                Err(RegistryError::TimedOut { .. } | RegistryError::Refused { .. })
            ),
            "{read:?}"
        );
        let index = ImageIndex::new(Vec::new());
        let put = registry
            .put_index(&repository, "latest", &index, None)
            .await;
        assert!(
            matches!(
                put,
                Err(RegistryError::TimedOut { .. } | RegistryError::Refused { .. })
            ),
            "{put:?}"
        );
        held.abort();
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        for host in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "index.docker.io",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn a_platform_is_os_arch_and_an_optional_variant() {
        let arm = IndexPlatform::parse("linux/arm/v7").unwrap();
        assert_eq!(
            (
                arm.os.as_str(),
                arm.architecture.as_str(),
                arm.variant.as_deref()
            ),
            ("linux", "arm", Some("v7"))
        );
        assert_eq!(IndexPlatform::parse("linux/amd64").unwrap().variant, None);
        assert!(IndexPlatform::parse("linux").is_none());
    }

    #[test]
    fn an_index_is_written_as_oci_says() {
        let index = ImageIndex::new(vec![IndexEntry {
            media_type: IMAGE_MANIFEST_MEDIA_TYPE.into(),
            digest: "sha256:ab".into(),
            size: 2,
            platform: IndexPlatform::parse("linux/arm64"),
            annotations: None,
        }]);
        let json: serde_json::Value = serde_json::to_value(&index).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], OCI_IMAGE_INDEX_MEDIA_TYPE);
        assert_eq!(json["manifests"][0]["platform"]["architecture"], "arm64");
        assert!(json["manifests"][0]["platform"].get("variant").is_none());
    }
}
