//! Tagging and pushing, and checking with the registry that the push landed.

use std::sync::LazyLock;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use regex::Regex;

use super::auth;
use super::{Builder, DockerError};
use crate::domain::{auth_server_of, registry_of, Credentials, PushUpdate};

/// The push's last status line: `TAG: digest: sha256:HEX size: N`.
static PUSHED_DIGEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"digest: (sha256:[0-9a-f]{64})").expect("digest regex"));

impl Builder {
    pub async fn tag(
        &self,
        image_id: &str,
        repository: &str,
        tag: &str,
    ) -> Result<(), DockerError> {
        let options = TagImageOptionsBuilder::default()
            .repo(repository)
            .tag(tag)
            .build();
        self.client()
            .await?
            .tag_image(image_id, Some(options))
            .await?;
        Ok(())
    }

    /// Pushes `repository:tag`, handing progress to `on_update`, and returns the
    /// manifest digest once it is sure the registry serves `image_id` under the tag:
    /// the daemon made the pushed manifest from `image_id` (so its config is that
    /// image), and the registry itself names that manifest for the tag.
    ///
    /// A push that makes no progress for `idle` (a registry that stopped
    /// answering) is cut and started once more; a second stall fails it.
    pub async fn push<F>(
        &self,
        image_id: &str,
        repository: &str,
        tag: &str,
        credentials: Option<&Credentials>,
        idle: Duration,
        mut on_update: F,
    ) -> Result<String, DockerError>
    where
        F: FnMut(PushUpdate) + Send,
    {
        // One push at a time per repository on a daemon. The daemon shares a layer
        // upload between concurrent pushes to the same repository, so a push with a
        // wrong password would otherwise fail a concurrent push that has the right one.
        let _one_push_per_repository = self.push_locks.lock(repository).await;
        let reference = format!("{repository}:{tag}");
        let mut pushed = self
            .push_once(repository, tag, credentials, idle, &mut on_update)
            .await;
        if matches!(pushed, Err(DockerError::RegistryStalled { .. })) {
            on_update(PushUpdate {
                status: format!(
                    "dockpub: no progress pushing {reference} for {} s; cut, pushing once more",
                    idle.as_secs()
                ),
                current: None,
                total: None,
            });
            pushed = self
                .push_once(repository, tag, credentials, idle, &mut on_update)
                .await;
        }
        let pushed_digest = pushed?;
        self.confirm_manifest_of(image_id, &reference, &pushed_digest)
            .await?;
        let confirmed = self.confirm_with_registry(&reference, &pushed_digest, credentials);
        match tokio::time::timeout(idle, confirmed).await {
            Ok(confirmed) => confirmed?,
            Err(_) => {
                return Err(DockerError::Unconfirmed {
                    reference,
                    reason: format!(
                        "the registry {} did not answer within {} s (push_idle_timeout_secs)",
                        registry_of(repository),
                        idle.as_secs()
                    ),
                })
            }
        }
        Ok(pushed_digest)
    }

    /// One push of `repository:tag` to its end; the digest the daemon reports.
    /// Dropping the stream (at a stall) closes the connection, which stops the
    /// daemon's push.
    async fn push_once<F>(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<&Credentials>,
        idle: Duration,
        on_update: &mut F,
    ) -> Result<String, DockerError>
    where
        F: FnMut(PushUpdate) + Send,
    {
        let docker = self.client().await?;
        let reference = format!("{repository}:{tag}");
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = docker.push_image(
            repository,
            Some(options),
            docker_credentials(repository, credentials),
        );
        let mut pushed_digest = None;
        loop {
            let Ok(item) = tokio::time::timeout(idle, stream.next()).await else {
                return Err(DockerError::RegistryStalled {
                    registry: registry_of(repository),
                    reference,
                    secs: idle.as_secs(),
                });
            };
            let Some(item) = item else { break };
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    on_update(PushUpdate {
                        status: error.clone(),
                        current: None,
                        total: None,
                    });
                    return Err(DockerError::PushRejected {
                        reference,
                        message: error,
                    });
                }
                Err(err) => {
                    return Err(DockerError::PushRejected {
                        reference,
                        message: err.to_string(),
                    })
                }
            };
            let Some(status) = info.status else { continue };
            if let Some(found) = PUSHED_DIGEST.captures(&status) {
                pushed_digest = Some(found[1].to_string());
            }
            let detail = info.progress_detail.unwrap_or_default();
            on_update(PushUpdate {
                status,
                current: detail.current,
                total: detail.total,
            });
        }
        pushed_digest.ok_or_else(|| DockerError::Unconfirmed {
            reference,
            reason: "the push ended without a digest".into(),
        })
    }

    /// The daemon records the manifest digest a push made on the image it pushed.
    /// A push goes by name, so this is where a tag moved under the push shows.
    async fn confirm_manifest_of(
        &self,
        image_id: &str,
        reference: &str,
        pushed_digest: &str,
    ) -> Result<(), DockerError> {
        let image = self.client().await?.inspect_image(image_id).await?;
        let digest_suffix = format!("@{pushed_digest}");
        let made_from_image = image
            .repo_digests
            .unwrap_or_default()
            .iter()
            .any(|repo_digest| repo_digest.ends_with(&digest_suffix));
        if made_from_image {
            return Ok(());
        }
        Err(DockerError::PushedAnotherImage {
            reference: reference.to_string(),
            image_id: image_id.to_string(),
            pushed_digest: pushed_digest.to_string(),
        })
    }

    /// Asks the registry (through the daemon's distribution endpoint) which manifest
    /// `reference` names now, and insists it is the one just pushed.
    async fn confirm_with_registry(
        &self,
        reference: &str,
        pushed_digest: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(), DockerError> {
        let repository = reference
            .rsplit_once(':')
            .map_or(reference, |(repo, _)| repo);
        let unconfirmed = |reason: String| DockerError::Unconfirmed {
            reference: reference.to_string(),
            reason,
        };
        let inspected = self
            .client()
            .await?
            .inspect_registry_image(reference, docker_credentials(repository, credentials))
            .await
            .map_err(|err| unconfirmed(format!("asking the registry failed: {err}")))?;
        match inspected.descriptor.digest {
            Some(digest) if digest == pushed_digest => Ok(()),
            Some(digest) => Err(DockerError::RegistryServesOther {
                reference: reference.to_string(),
                serves: digest,
                pushed_digest: pushed_digest.to_string(),
            }),
            None => Err(unconfirmed("the registry reported no digest".into())),
        }
    }
}

/// X-Registry-Auth for `repository`'s registry, as the docker CLI would send it.
fn docker_credentials(
    repository: &str,
    credentials: Option<&Credentials>,
) -> Option<DockerCredentials> {
    Some(auth::docker_credentials(
        &auth_server_of(repository),
        credentials?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_digest_from_the_final_status() {
        let line = "latest: digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef size: 527";
        let found = PUSHED_DIGEST.captures(line).unwrap();
        assert_eq!(
            &found[1],
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert!(PUSHED_DIGEST.captures("Pushed").is_none());
    }
}
