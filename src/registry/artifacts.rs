//! Blobs and manifests put by digest: what an attestation manifest is made of.

use super::{auth, refused, Registry, RegistryError};
use crate::domain::Credentials;

impl Registry {
    /// Puts `bytes` as the blob `digest` (`sha256:…`) of `repository`.
    pub async fn put_blob(
        &self,
        repository: &str,
        digest: &str,
        bytes: Vec<u8>,
        login: Option<&Credentials>,
    ) -> Result<(), RegistryError> {
        let (client, image) = self.client_for(repository, digest)?;
        let named = image.whole();
        client
            .store_auth_if_needed(image.resolve_registry(), &auth(login))
            .await;
        self.bounded(&named, client.push_blob(&image, bytes, digest))
            .await?
            .map_err(|err| refused("the blob", &named, err))?;
        Ok(())
    }

    /// Puts the manifest `bytes` of `media_type` under its own digest, `digest`.
    pub async fn put_manifest(
        &self,
        repository: &str,
        digest: &str,
        media_type: &'static str,
        bytes: Vec<u8>,
        login: Option<&Credentials>,
    ) -> Result<(), RegistryError> {
        let (client, image) = self.client_for(repository, digest)?;
        let named = image.whole();
        client
            .store_auth_if_needed(image.resolve_registry(), &auth(login))
            .await;
        let content_type = reqwest::header::HeaderValue::from_static(media_type);
        self.bounded(
            &named,
            client.push_manifest_raw(&image, bytes, content_type),
        )
        .await?
        .map_err(|err| refused("the manifest", &named, err))?;
        Ok(())
    }
}
