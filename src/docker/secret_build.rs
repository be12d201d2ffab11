//! BuildKit builds that mount secrets or SSH agents. The daemon's HTTP build
//! serves neither, so these go over BuildKit's own gRPC API, which builds into
//! the daemon's image store: with a session of dockpub's own on a daemon reached by a plain socket
//! (`buildkit_session`: the registry cache is imported as on the HTTP build), else
//! with bollard's Moby driver (TLS daemons: no cache import, no progress). Values
//! stay in memory (for bollard, in anonymous memory files): never on disk, never
//! in an argument.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::grpc::build::{
    ImageBuildFrontendOptions, ImageBuildLoadInput, ImageBuildNetworkMode, ImageBuildPlatform,
    SecretSource,
};
use bollard::grpc::driver::moby::Moby;
use bollard::grpc::driver::Build;
use bollard::grpc::error::GrpcError;
use bollard::grpc::BuildRef;
use bollard::moby::buildkit::v1::CacheOptionsEntry;
use bollard::Docker;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::registry_config;
use super::build_status::{follow_status, DaemonSocket};
use super::buildkit_session::{self, SessionSolve};
use super::events::{BuildEvent, BuildkitTranslator};
use super::secret_files::SecretFiles;
use super::spec::{dockerfile_context, BuildSource, BuildSpec, INLINE_CACHE_ARG};
use super::DockerError;

/// Builds `spec` with its secrets on the daemon `fresh` (a client of its own:
/// see [`solve_on_own_runtime`]) and reads the image id with `docker`.
pub(super) async fn build_with_secrets<F>(
    docker: &Docker,
    fresh: Docker,
    socket: Option<DaemonSocket>,
    spec: &BuildSpec<'_>,
    network: Option<&str>,
    on_event: &mut F,
) -> Result<String, DockerError>
where
    F: FnMut(BuildEvent) + Send,
{
    let (context, dockerfile) = context_bytes(&spec.source).await?;
    refuse_host_network(network)?;
    if socket.is_none() && !spec.ssh.is_empty() {
        return Err(DockerError::BuildFailed(SSH_NEEDS_SESSION.into()));
    }
    on_event(BuildEvent::Output {
        step: None,
        elapsed: None,
        text: format!(
            "dockpub: building with {} over BuildKit's gRPC API",
            mounted_ids(spec)
        ),
    });
    if socket.is_none() && !spec.cache_from.is_empty() {
        on_event(BuildEvent::Output {
            step: None,
            elapsed: None,
            text: format!("dockpub: {CACHE_NOT_IMPORTED}"),
        });
    }
    let build_ref = BuildRef::random();
    let (sender, mut updates) = mpsc::channel(STATUS_BUFFER);
    let _follower = socket.clone().map(|socket| {
        AbortOnDrop(tokio::spawn(follow_status(
            socket,
            build_ref.as_ref().to_string(),
            sender,
        )))
    });
    let solve: SolveFuture = match socket {
        Some(socket) => {
            let request = SessionSolve {
                build_ref: build_ref.as_ref().to_string(),
                reference: spec.reference.to_string(),
                frontend_attrs: frontend_attrs(spec, dockerfile, network),
                cache_imports: cache_imports(spec),
                cache_exports: cache_exports(spec),
                context,
                secrets: spec
                    .secrets
                    .iter()
                    .map(|secret| (secret.id.clone(), secret.value().to_vec()))
                    .collect(),
                ssh: spec.ssh.to_vec(),
                logins: registry_config(spec.pull_logins),
            };
            Box::pin(buildkit_session::solve(socket, request))
        }
        None => {
            let files = SecretFiles::new(spec.secrets)?;
            let solve = Solve {
                reference: spec.reference.to_string(),
                options: frontend_options(spec, dockerfile, network, &files),
                context,
                logins: registry_config(spec.pull_logins),
                files,
                build_ref,
            };
            Box::pin(solve_on_own_runtime(fresh, solve))
        }
    };
    let mut translator = BuildkitTranslator::default();
    tokio::pin!(solve);
    let result = loop {
        tokio::select! {
            result = &mut solve => break result,
            Some(update) = updates.recv() => {
                translator.translate(update).into_iter().for_each(&mut *on_event);
            }
        }
    };
    // The status stream ends with the build: what it still holds is the end.
    let rest = async {
        while let Some(update) = updates.recv().await {
            translator
                .translate(update)
                .into_iter()
                .for_each(&mut *on_event);
        }
    };
    let _ = tokio::time::timeout(STATUS_DRAIN, rest).await;
    translator.finish().into_iter().for_each(&mut *on_event);
    result.map_err(|message| {
        on_event(BuildEvent::Output {
            step: None,
            elapsed: None,
            text: message.clone(),
        });
        DockerError::BuildFailed(message)
    })?;
    let image = docker.inspect_image(spec.reference).await?;
    let id = image.id.ok_or(DockerError::NoImageId)?;
    translator.succeeded().into_iter().for_each(&mut *on_event);
    on_event(BuildEvent::ImageBuilt(id.clone()));
    Ok(id)
}

/// One build for BuildKit's gRPC API, owning all it needs.
struct Solve {
    reference: String,
    options: ImageBuildFrontendOptions,
    context: Vec<u8>,
    logins: HashMap<String, DockerCredentials>,
    /// Open until the build ends: BuildKit reads the values when a step needs them.
    files: SecretFiles,
    build_ref: BuildRef,
}

/// Why a build with SSH mounts cannot go to a TLS daemon.
const SSH_NEEDS_SESSION: &str = "SSH mounts are served on dockpub's own BuildKit session, \
    which it opens on daemons reached by unix:// or tcp:// only; this builder is a TLS daemon";

/// What the build mounts, for its log: `secrets (a, b)`, `ssh (default)`.
fn mounted_ids(spec: &BuildSpec<'_>) -> String {
    let secrets: Vec<&str> = spec.secrets.iter().map(|s| s.id.as_str()).collect();
    let ssh: Vec<&str> = spec.ssh.iter().map(|key| key.id.as_str()).collect();
    [("secrets", secrets), ("ssh", ssh)]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(kind, ids)| format!("{kind} ({})", ids.join(", ")))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Why a build with secrets on a TLS daemon starts without the registry's cache.
const CACHE_NOT_IMPORTED: &str = "builds with secrets on a TLS daemon do not import cache_from \
    or the tags' registry cache (bollard's gRPC build); they still export their inline cache";

type SolveFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Status updates waiting to be logged.
const STATUS_BUFFER: usize = 256;
/// How long the last status updates may take to arrive after the build.
const STATUS_DRAIN: Duration = Duration::from_secs(2);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// bollard's gRPC build is not `Send`, so it runs on a current-thread runtime of
/// its own, with a client of its own (a client's pooled connections belong to the
/// runtime that opened them). Dropping the returned future (cancel, timeout)
/// stops it: the build's connection closes and BuildKit stops the build.
async fn solve_on_own_runtime(fresh: Docker, solve: Solve) -> Result<(), String> {
    let stop = CancellationToken::new();
    let _stop_when_dropped = stop.clone().drop_guard();
    let thread = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start the secret build's runtime: {err}"))?;
        runtime.block_on(async move {
            let docker = fresh
                .negotiate_version()
                .await
                .map_err(|err| err.to_string())?;
            let credentials = (!solve.logins.is_empty()).then(|| {
                solve
                    .logins
                    .iter()
                    .map(|(server, login)| (server.as_str(), login.clone()))
                    .collect::<HashMap<_, _>>()
            });
            let build = Moby::new(&docker).docker_build(
                &solve.reference,
                solve.options,
                ImageBuildLoadInput::Upload(solve.context.into()),
                credentials,
                Some(solve.build_ref),
            );
            let result = tokio::select! {
                result = build => result.map_err(grpc_message),
                () = stop.cancelled() => Err("stopped".to_string()),
            };
            drop(solve.files);
            result
        })
    });
    thread
        .await
        .map_err(|err| format!("the secret build's thread failed: {err}"))?
}

fn refuse_host_network(network: Option<&str>) -> Result<(), DockerError> {
    match network {
        Some("host") => Err(DockerError::BuildFailed(
            "network 'host' cannot be used with secrets or ssh: BuildKit's gRPC API refuses it"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The Dockerfile frontend's attributes, as the daemon's HTTP build sets them
/// (and bollard's options do, but for `cache-from`).
fn frontend_attrs(
    spec: &BuildSpec<'_>,
    dockerfile: &str,
    network: Option<&str>,
) -> HashMap<String, String> {
    let options = spec.options;
    let mut attrs = HashMap::from([
        ("filename".to_string(), dockerfile.to_string()),
        (
            "image-resolve-mode".to_string(),
            if options.pull { "pull" } else { "default" }.to_string(),
        ),
    ]);
    if options.no_cache {
        attrs.insert("no-cache".into(), String::new());
    }
    for (key, value) in &options.build_args {
        attrs.insert(format!("build-arg:{key}"), value.clone());
    }
    if spec.inline_cache {
        attrs.insert(format!("build-arg:{INLINE_CACHE_ARG}"), "1".into());
    }
    for (key, value) in &options.labels {
        attrs.insert(format!("label:{key}"), value.clone());
    }
    if let Some(target) = &options.target {
        attrs.insert("target".into(), target.clone());
    }
    if let Some(platform) = &options.platform {
        attrs.insert("platform".into(), platform.clone());
    }
    if network == Some("none") {
        attrs.insert("force-network-mode".into(), "none".into());
    }
    if !spec.cache_from.is_empty() {
        attrs.insert("cache-from".into(), spec.cache_from.join(","));
    }
    attrs
}

fn cache_imports(spec: &BuildSpec<'_>) -> Vec<CacheOptionsEntry> {
    spec.cache_from
        .iter()
        .map(|reference| CacheOptionsEntry {
            r#type: "registry".into(),
            attrs: HashMap::from([("ref".to_string(), reference.clone())]),
        })
        .collect()
}

/// The inline cache, written into the image's config: the HTTP build turns the
/// `BUILDKIT_INLINE_CACHE` build arg into this export; the gRPC API takes it as is.
fn cache_exports(spec: &BuildSpec<'_>) -> Vec<CacheOptionsEntry> {
    match spec.inline_cache {
        true => vec![CacheOptionsEntry {
            r#type: "inline".into(),
            attrs: HashMap::new(),
        }],
        false => Vec::new(),
    }
}

fn frontend_options(
    spec: &BuildSpec<'_>,
    dockerfile: &str,
    network: Option<&str>,
    files: &SecretFiles,
) -> ImageBuildFrontendOptions {
    let options = spec.options;
    let mut builder = ImageBuildFrontendOptions::builder()
        .dockerfile(Path::new(dockerfile))
        .pull(options.pull)
        .nocache(options.no_cache);
    for (key, value) in &options.build_args {
        builder = builder.buildarg(key, value);
    }
    if spec.inline_cache {
        builder = builder.buildarg(INLINE_CACHE_ARG, "1");
    }
    for export in cache_exports(spec) {
        builder = builder.cacheto(&export);
    }
    // The daemon's frontend (Docker 20.10) imports only what its `cache-from`
    // attribute names, which bollard's options cannot set: see `CACHE_NOT_IMPORTED`.
    for source in cache_imports(spec) {
        builder = builder.cachefrom(&source);
    }
    for (key, value) in &options.labels {
        builder = builder.label(key, value);
    }
    if let Some(target) = &options.target {
        builder = builder.target(target);
    }
    if let Some(platform) = &options.platform {
        builder = builder.platforms(&platform_of(platform));
    }
    if network == Some("none") {
        builder = builder.force_network_mode(&ImageBuildNetworkMode::None);
    }
    for (id, path) in files.paths() {
        builder = builder.set_secret(id, &SecretSource::File(path));
    }
    builder.build()
}

fn platform_of(platform: &str) -> ImageBuildPlatform {
    let mut parts = platform.splitn(3, '/');
    ImageBuildPlatform {
        os: parts.next().unwrap_or_default().to_string(),
        architecture: parts.next().unwrap_or_default().to_string(),
        variant: parts.next().map(str::to_string),
    }
}

/// The whole context: the gRPC path takes it as one upload.
async fn context_bytes<'a>(source: &BuildSource<'a>) -> Result<(Vec<u8>, &'a str), DockerError> {
    match *source {
        BuildSource::Dockerfile(text) => Ok((dockerfile_context(text)?, "Dockerfile")),
        BuildSource::Archive { path, dockerfile } => {
            let bytes = tokio::fs::read(path).await.map_err(|err| {
                DockerError::BuildFailed(format!("cannot read the stored context: {err}"))
            })?;
            Ok((bytes, dockerfile))
        }
    }
}

/// The daemon's own words for a failed build.
fn grpc_message(err: GrpcError) -> String {
    match err {
        GrpcError::TonicStatus { err } => err.message().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BuildOptions;

    #[test]
    fn the_frontend_gets_the_cache_sources_and_the_inline_export() {
        let options = BuildOptions {
            no_cache: true,
            build_args: [("V".to_string(), "1".to_string())].into(),
            ..BuildOptions::default()
        };
        let cache_from = ["r/a:1".to_string(), "r/a:latest".to_string()];
        let spec = BuildSpec {
            source: BuildSource::Dockerfile("FROM scratch\n"),
            reference: "dockpub-build:1",
            options: &options,
            pull_logins: &[],
            secrets: &[],
            ssh: &[],
            cache_from: &cache_from,
            inline_cache: true,
            timeout: Duration::from_secs(1),
        };
        let attrs = frontend_attrs(&spec, "build/app.Dockerfile", Some("none"));
        assert_eq!(attrs["cache-from"], "r/a:1,r/a:latest");
        assert_eq!(attrs["filename"], "build/app.Dockerfile");
        assert_eq!(attrs["build-arg:V"], "1");
        assert_eq!(attrs[&format!("build-arg:{INLINE_CACHE_ARG}")], "1");
        assert_eq!(attrs["force-network-mode"], "none");
        assert_eq!(attrs["no-cache"], "");
        assert_eq!(cache_exports(&spec)[0].r#type, "inline");
        assert_eq!(cache_imports(&spec)[1].attrs["ref"], "r/a:latest");
    }

    #[test]
    fn platforms_split_into_their_parts() {
        let platform = platform_of("linux/arm/v7");
        assert_eq!(platform.to_string(), "linux/arm/v7");
        assert_eq!(platform_of("linux/amd64").variant, None);
    }
}
