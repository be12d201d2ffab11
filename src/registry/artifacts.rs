//! Blobs and manifests put by digest (what an attestation manifest is made of)
//! or under a tag (an index), each push with its login.

use oci_client::{Client, Reference};

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
        let (client, image) = self.pushing_client(repository, digest, login).await?;
        let named = image.whole();
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
        self.push_manifest(repository, digest, media_type, bytes, login, "the manifest")
            .await
    }

    /// Puts the manifest `body` of `media_type` under `reference` (a tag or its
    /// own digest); `what` names it in a refusal.
    pub(super) async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &'static str,
        body: Vec<u8>,
        login: Option<&Credentials>,
        what: &'static str,
    ) -> Result<(), RegistryError> {
        let (client, image) = self.pushing_client(repository, reference, login).await?;
        let named = image.whole();
        let content_type = reqwest::header::HeaderValue::from_static(media_type);
        self.bounded(&named, client.push_manifest_raw(&image, body, content_type))
            .await?
            .map_err(|err| refused(what, &named, err))?;
        Ok(())
    }

    /// A client for pushing to `repository`, holding its login: the registry's
    /// token flow is an exchange too, bounded by the timeout as the push is.
    async fn pushing_client(
        &self,
        repository: &str,
        reference: &str,
        login: Option<&Credentials>,
    ) -> Result<(Client, Reference), RegistryError> {
        let (client, image) = self.client_for(repository, reference)?;
        self.bounded(
            &image.whole(),
            client.store_auth_if_needed(image.resolve_registry(), &auth(login)),
        )
        .await?;
        Ok((client, image))
    }
}
