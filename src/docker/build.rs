//! Building an image with the daemon's builder (BuildKit, or the legacy one when
//! asked or when the daemon refuses BuildKit): the context streamed from its
//! file, the request's options, the configured limits, and a deadline. Both
//! builders' output reaches the caller as [`BuildEvent`]s.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{
    BuildImageOptions, BuildImageOptionsBuilder, BuilderVersion, RemoveContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tokio_util::io::ReaderStream;

use super::auth::registry_config;
use super::events::{legacy_line_events, BuildEvent, BuildkitTranslator};
use super::spec::{dockerfile_context, BuildSource, BuildSpec, INLINE_CACHE_ARG};
use super::{is_not_found, Builder, DockerError};

/// How long a stopped build's containers may take to go away.
const CONTAINER_REMOVAL: Duration = Duration::from_secs(20);
const CONTEXT_CHUNK: usize = 64 * 1024;
/// Which builder a build runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Buildkit,
    Legacy,
}

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
        if buildkit && !spec.secrets.is_empty() {
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

    fn build_options(
        &self,
        spec: &BuildSpec<'_>,
        dockerfile: &str,
        engine: Engine,
    ) -> BuildImageOptions {
        let options = spec.options;
        let mut builder = BuildImageOptionsBuilder::default()
            .dockerfile(dockerfile)
            .t(spec.reference)
            .rm(true)
            // Intermediate containers of a failed step are removed too: nothing left behind.
            .forcerm(true)
            .nocache(options.no_cache);
        if options.pull {
            builder = builder.pull("1");
        }
        let mut build_args = to_hash_map(&options.build_args);
        if spec.inline_cache && engine == Engine::Buildkit {
            build_args.insert(INLINE_CACHE_ARG.into(), "1".into());
        }
        if !build_args.is_empty() {
            builder = builder.buildargs(&build_args);
        }
        if !spec.cache_from.is_empty() {
            builder = builder.cachefrom(&spec.cache_from.to_vec());
        }
        if !options.labels.is_empty() {
            builder = builder.labels(&to_hash_map(&options.labels));
        }
        if let Some(target) = &options.target {
            builder = builder.target(target);
        }
        if let Some(platform) = &options.platform {
            builder = builder.platform(platform);
        }
        if let Some(network) = options
            .network
            .as_ref()
            .or(self.config.build_network.as_ref())
        {
            builder = builder.networkmode(network);
        }
        match engine {
            Engine::Buildkit => builder
                .version(BuilderVersion::BuilderBuildKit)
                // bollard serves the pull logins on this session.
                .session(&uuid::Uuid::new_v4().to_string()),
            Engine::Legacy => {
                // BuildKit on the daemon's HTTP API takes no step limits: legacy only
                // (the start warns when they are set with BuildKit on).
                if let Some(memory) = self.config.build_memory_bytes {
                    builder = builder.memory(memory);
                }
                if let Some(shares) = self.config.build_cpu_shares {
                    builder = builder.cpushares(shares);
                }
                builder
            }
        }
        .build()
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

/// Turns the daemon's messages, of either builder, into events.
#[derive(Default)]
struct Translator {
    lines: LineSplitter,
    buildkit: BuildkitTranslator,
    /// Anything at all came from the daemon: a refusal of BuildKit comes first.
    heard: bool,
}

impl Translator {
    fn events(&mut self, info: BuildInfo) -> Vec<BuildEvent> {
        self.heard = true;
        let mut events = Vec::new();
        match info.aux.clone() {
            Some(BuildInfoAux::BuildKit(status)) => events.extend(self.buildkit.translate(status)),
            Some(BuildInfoAux::Default(image)) => {
                events.extend(image.id.map(BuildEvent::ImageBuilt));
            }
            None => {}
        }
        for line in self.lines.push(&info) {
            events.extend(legacy_line_events(line));
        }
        events
    }

    fn finish(&mut self) -> Vec<BuildEvent> {
        let mut events = self.buildkit.finish();
        events.extend(self.lines.finish().into_iter().flat_map(legacy_line_events));
        events
    }
}

/// Reads the build's output to its end; notes every step container it starts.
async fn follow<F>(
    stream: impl Stream<Item = Result<BuildInfo, bollard::errors::Error>>,
    engine: Engine,
    on_event: &mut F,
    containers: &mut Vec<String>,
) -> Result<String, DockerError>
where
    F: FnMut(BuildEvent) + Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut translator = Translator::default();
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(err) => {
                if engine == Engine::Buildkit && !translator.heard {
                    if let Some(reason) = buildkit_refusal(&err) {
                        return Err(DockerError::BuildkitRefused(reason));
                    }
                }
                translator.finish().into_iter().for_each(&mut *on_event);
                return Err(match err {
                    bollard::errors::Error::DockerStreamError { error } => {
                        on_event(BuildEvent::Output {
                            step: None,
                            elapsed: None,
                            text: error.trim_end().to_string(),
                        });
                        DockerError::BuildFailed(error.trim().to_string())
                    }
                    other => other.into(),
                });
            }
        };
        for event in translator.events(info) {
            match &event {
                BuildEvent::StepContainer(id) => containers.push(id.clone()),
                BuildEvent::ImageBuilt(id) => image_id = Some(id.clone()),
                _ => {}
            }
            on_event(event);
        }
    }
    translator.finish().into_iter().for_each(&mut *on_event);
    image_id.ok_or(DockerError::NoImageId)
}

/// The daemon's answer when it cannot build with BuildKit at all (an old or a
/// Windows daemon, BuildKit switched off), as opposed to a build that failed.
fn buildkit_refusal(err: &bollard::errors::Error) -> Option<String> {
    use bollard::errors::Error as E;
    let message = match err {
        E::DockerResponseServerError { message, .. } => message,
        E::DockerStreamError { error } => error,
        _ => return None,
    };
    let lower = message.to_ascii_lowercase();
    let refused = lower.contains("buildkit")
        && ["not supported", "not enabled", "unsupported", "disabled"]
            .iter()
            .any(|phrase| lower.contains(phrase));
    refused.then(|| message.trim().to_string())
}

fn to_hash_map(map: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The daemon sends output in arbitrary pieces; the log wants whole lines.
#[derive(Default)]
struct LineSplitter {
    partial: String,
}

impl LineSplitter {
    fn push(&mut self, info: &BuildInfo) -> Vec<String> {
        let mut complete = Vec::new();
        if let Some(text) = &info.stream {
            self.partial.push_str(text);
            // One pass, then one drain: draining line by line from the front moves the
            // rest of the piece each time, quadratic in the lines a piece holds (the
            // daemon sends up to 32 KiB of RUN output per message).
            let mut start = 0;
            while let Some(offset) = self.partial[start..].find('\n') {
                let end = start + offset;
                complete.push(self.partial[start..end].trim_end_matches('\r').to_string());
                start = end + 1;
            }
            self.partial.drain(..start);
        }
        if let Some(status) = &info.status {
            complete.extend(self.finish());
            complete.push(status_line(status, info));
        }
        complete
    }

    fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

fn status_line(status: &str, info: &BuildInfo) -> String {
    let id = info
        .id
        .as_deref()
        .map(|id| format!("{id}: "))
        .unwrap_or_default();
    let progress = info
        .progress_detail
        .as_ref()
        .and_then(|p| Some(format!(" {}/{}", p.current?, p.total?)))
        .unwrap_or_default();
    format!("{id}{status}{progress}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn joins_pieces_into_lines() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(&stream("Step 1/2 : FROM scr")).is_empty());
        assert_eq!(
            splitter.push(&stream("atch\n ---> \n")),
            vec!["Step 1/2 : FROM scratch", " ---> "]
        );
        assert_eq!(splitter.push(&stream("tail")), Vec::<String>::new());
        assert_eq!(splitter.finish(), Some("tail".to_string()));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn splits_a_piece_of_many_lines_in_order() {
        let mut splitter = LineSplitter::default();
        let text: String = (1..=5000).map(|n| format!("{n}\r\n")).collect();
        let (head, tail) = text.split_at(text.len() / 2 + 3);
        let mut lines = splitter.push(&stream(head));
        lines.extend(splitter.push(&stream(tail)));
        let expected: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
        assert_eq!(lines, expected);
        assert_eq!(splitter.finish(), None);
        assert_eq!(splitter.push(&stream("\n\nlast")), vec!["", ""]);
        assert_eq!(splitter.finish(), Some("last".to_string()));
    }

    #[test]
    fn tells_a_refused_buildkit_from_a_failed_build() {
        let refused = bollard::errors::Error::DockerResponseServerError {
            status_code: 400,
            message: "buildkit not supported by daemon".into(),
        };
        assert!(buildkit_refusal(&refused).is_some());
        let failed = bollard::errors::Error::DockerStreamError {
            error: "executor failed running [/bin/sh -c false]: exit code: 1".into(),
        };
        assert_eq!(buildkit_refusal(&failed), None);
    }

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
