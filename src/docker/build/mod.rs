//! Building an image with the daemon's builder (BuildKit, or the legacy one when
//! asked or when the daemon refuses BuildKit): the context streamed from its
//! file, the request's options, the configured limits, and a deadline. Both
//! builders' output reaches the caller as [`BuildEvent`]s.
//!
//! This file starts a build and keeps its deadline; `options` turns the request
//! into bollard's build options, `stream` reads the daemon's output into events.

mod options;
mod stream;

use std::time::Duration;

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use futures_util::Stream;
use tokio_util::io::ReaderStream;

use super::auth::registry_config;
use super::events::BuildEvent;
use super::spec::{dockerfile_context, BuildSource, BuildSpec};
use super::{is_not_found, Builder, DockerError};
use options::Engine;
use stream::follow;

/// How long a stopped build's containers may take to go away.
const CONTAINER_REMOVAL: Duration = Duration::from_secs(20);
const CONTEXT_CHUNK: usize = 64 * 1024;

impl Builder {
    /// Whether a build that asks for BuildKit (or not) gets it here: a builder
    /// configured without BuildKit builds everything with the legacy builder.
    pub fn runs_buildkit(&self, asked: bool) -> bool {
        asked && self.config.buildkit
    }

    /// Builds the image, handing every event to `on_event` as it happens.
    /// Returns the image id.
    pub async fn build<F>(
        &self,
        spec: BuildSpec<'_>,
        mut on_event: F,
    ) -> Result<String, DockerError>
    where
        F: FnMut(BuildEvent) + Send,
    {
        let buildkit = self.runs_buildkit(spec.options.buildkit);
        if buildkit && (!spec.secrets.is_empty() || !spec.ssh.is_empty()) {
            let docker = self.client().await?;
            let network = spec
                .options
                .network
                .as_deref()
                .or(self.config.build_network.as_deref());
            let fresh = self.connect().map_err(|source| DockerError::Unreachable {
                builder: self.name().to_string(),
                source,
            })?;
            let socket = super::build_status::DaemonSocket::of(&self.host(), self.uses_tls());
            let built = super::secret_build::build_with_secrets(
                docker,
                fresh,
                socket,
                &spec,
                network,
                &mut on_event,
            );
            return match tokio::time::timeout(spec.timeout, built).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(spec.timeout, &mut on_event)),
            };
        }
        if buildkit {
            match self
                .build_with(&spec, Engine::Buildkit, &mut on_event)
                .await
            {
                Err(DockerError::BuildkitRefused(reason)) => {
                    on_event(BuildEvent::FellBackToLegacy { reason })
                }
                other => return other,
            }
        }
        self.build_with(&spec, Engine::Legacy, &mut on_event).await
    }

    async fn build_with<F>(
        &self,
        spec: &BuildSpec<'_>,
        engine: Engine,
        on_event: &mut F,
    ) -> Result<String, DockerError>
    where
        F: FnMut(BuildEvent) + Send,
    {
        let docker = self.client().await?;
        let (body, dockerfile) = context_body(&spec.source).await?;
        let options = self.build_options(spec, dockerfile, engine);
        let logins = (!spec.pull_logins.is_empty()).then(|| registry_config(spec.pull_logins));
        let stream = docker.build_image(options, logins, Some(bollard::body_try_stream(body)));
        let mut containers = Vec::new();
        let followed = tokio::time::timeout(
            spec.timeout,
            follow(stream, engine, on_event, &mut containers),
        )
        .await;
        match followed {
            Ok(result) => result,
            Err(_) => {
                // Dropping the stream closed the connection, which cancels the build
                // (BuildKit kills its step's process); a legacy build's step
                // containers are then removed here if the daemon left any.
                let timed_out = timed_out(spec.timeout, on_event);
                self.remove_containers(&containers).await?;
                Err(timed_out)
            }
        }
    }

    /// Force-removes the given containers and waits until the daemon reports them gone.
    async fn remove_containers(&self, ids: &[String]) -> Result<(), DockerError> {
        let docker = self.client().await?;
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let deadline = tokio::time::Instant::now() + CONTAINER_REMOVAL;
        for id in ids {
            loop {
                match docker.inspect_container(id, None).await {
                    Err(err) if is_not_found(&err) => break,
                    Err(err) => return Err(err.into()),
                    Ok(_) => {}
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(DockerError::BuildFailed(format!(
                        "the stopped build's container {id} is still there after {} s",
                        CONTAINER_REMOVAL.as_secs()
                    )));
                }
                // 409: the daemon is already removing it; 404: gone meanwhile.
                if let Err(err) = docker.remove_container(id, Some(options.clone())).await {
                    log::debug!("removing build container {id}: {err}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            log::info!("build container {id} is gone");
        }
        Ok(())
    }

    /// Kills and removes a build step's container, and waits until it is gone. The
    /// daemon does this itself when a build is abandoned, but in its own time; a
    /// cancel must not leave it running.
    pub async fn remove_step_container(&self, container: &str) -> Result<(), DockerError> {
        self.remove_containers(&[container.to_string()]).await
    }
}

/// Logs that the build was stopped at its deadline.
fn timed_out<F: FnMut(BuildEvent)>(timeout: Duration, on_event: &mut F) -> DockerError {
    let secs = timeout.as_secs();
    on_event(BuildEvent::Output {
        step: None,
        elapsed: None,
        text: format!("dockpub: timed out after {secs} s; build stopped"),
    });
    DockerError::TimedOut { secs }
}

/// The context archive as it is sent, and the Dockerfile's path in it.
type ContextChunks = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

async fn context_body<'a>(
    source: &BuildSource<'a>,
) -> Result<(ContextChunks, &'a str), DockerError> {
    Ok(match *source {
        BuildSource::Dockerfile(text) => {
            let archive = bytes::Bytes::from(dockerfile_context(text)?);
            let chunks = futures_util::stream::once(async move { Ok(archive) });
            (Box::pin(chunks), "Dockerfile")
        }
        BuildSource::Archive { path, dockerfile } => {
            let file = tokio::fs::File::open(path).await.map_err(|err| {
                DockerError::BuildFailed(format!("cannot open the stored context: {err}"))
            })?;
            let chunks = ReaderStream::with_capacity(file, CONTEXT_CHUNK);
            (Box::pin(chunks), dockerfile)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_holds_the_dockerfile() {
        let tar = dockerfile_context("FROM scratch\n").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(entries, vec!["Dockerfile"]);
    }
}
