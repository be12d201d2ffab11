//! The multipart forms of the v1 API, described for the OpenAPI document. The
//! forms are read field by field as they stream in (http/form.rs); these types
//! only describe them.

/// The fields of `POST /api/v1/builds`. The form is read field by field as it
/// streams in (http/form.rs); this type only describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SubmitForm {
    /// The Dockerfile (or send `context` holding one)
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
    /// The build context: a tar archive, plain or gzipped
    #[schema(value_type = Option<String>, format = Binary)]
    context: Option<Vec<u8>>,
    /// The Dockerfile's path inside `context` (default `Dockerfile`)
    dockerfile: Option<String>,
    /// `[host[:port]/]path`, lowercase, no tag
    repository: String,
    /// Repeatable; default `latest`
    tag: Option<Vec<String>>,
    /// Default true; false builds only
    push: Option<bool>,
    /// Registry login for this build (memory only), with `password`
    username: Option<String>,
    password: Option<String>,
    /// Repeatable `KEY=VALUE`
    build_arg: Option<Vec<String>>,
    /// Repeatable `KEY=VALUE`
    label: Option<Vec<String>>,
    target: Option<String>,
    /// `os/arch[/variant]`, or several comma-separated (`linux/amd64,linux/arm64`,
    /// at most 4): one image per platform, pushed as one OCI image index
    platform: Option<String>,
    no_cache: Option<bool>,
    pull: Option<bool>,
    /// Only `build_network` or a value of `allowed_build_networks`
    network: Option<String>,
    /// Default: the server's `buildkit` (true); false builds with the legacy builder
    buildkit: Option<bool>,
    /// Repeatable `repository:tag`: images whose layers the build may reuse
    cache_from: Option<Vec<String>>,
    /// Repeatable: a file part whose filename is the id, or text `ID=VALUE`
    secret: Option<Vec<String>>,
    /// Repeatable (at most 8): the id of a server's `[ssh.ID]` key that the
    /// Dockerfile's `RUN --mount=type=ssh[,id=ID]` steps may use through
    /// dockpub's SSH agent (`default` for a mount without `id`), as buildx's `--ssh`
    ssh: Option<Vec<String>>,
    /// Told when the build ends; its host must be in `allowed_callback_hosts`
    callback_url: Option<String>,
    /// A repository to fetch the context from instead of `file`/`context`:
    /// https://, ssh://, git@host:path, git://; http:// to loopback or
    /// `allow_insecure_git_hosts`; file:// with `allow_file_git`.
    git: Option<String>,
    /// Branch, tag or full commit SHA; default the remote's HEAD.
    git_ref: Option<String>,
    /// The context folder inside the repository; default its root.
    git_subdir: Option<String>,
    /// Also fetch the repository's submodules (default false).
    git_submodules: Option<bool>,
    git_username: Option<String>,
    /// Kept in memory for the fetch only.
    git_password: Option<String>,
}

/// The optional fields of `POST /api/v1/builds/{id}/retry`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RetryForm {
    /// The registry login, which is never kept, so a retry that pushes with one sends it again
    username: Option<String>,
    password: Option<String>,
    /// Repeatable, as on submit: the build's secrets, which are never kept either
    secret: Option<Vec<String>>,
}
