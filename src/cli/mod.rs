//! The CLI client: `dockpub submit|list|status|logs|cancel|retry|delete|provenance`, talking
//! to a dockpub server over its HTTP API, for scripts and people at a terminal.

mod api;
mod follow;
mod listing;
mod options;
mod pack;
mod platforms;
mod provenance;
mod secret;
mod terminal;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::Value;

use api::ApiClient;
use options::{BuildOptionArgs, GitArgs};
pub use options::{ListArgs, LogRangeArgs, LoginArgs, RetryArgs};

/// Whatever stops a CLI command, as the message it prints.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{}", crate::error_chain::with_causes(.0))]
    Http(#[from] reqwest::Error),
    #[error("cannot reach {url}: {cause}; is dockpub serving there? (--server or DOCKPUB_URL)")]
    Unreachable { url: String, cause: String },
    #[error("the server answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot pack the build context: {0}")]
    Pack(String),
    #[error("--secret {spec}: {reason}")]
    Secret { spec: String, reason: String },
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    #[error("{0}")]
    Usage(String),
}

/// How to reach the server and how to print its answers: the flags every
/// client command shares.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The dockpub server
    #[arg(long, env = "DOCKPUB_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) server: String,
    /// API token, when the server wants one
    #[arg(long, env = "DOCKPUB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// How to print answers
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

/// `--output`: text for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// What `dockpub submit` sends: the Dockerfile or context, where the image goes,
/// and the build's options, secrets and login.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A Dockerfile, or a directory sent as the build context (tarred and gzipped
    /// here, honouring its .dockerignore)
    #[arg(default_value = ".")]
    pub(crate) path: PathBuf,
    /// The Dockerfile of the context directory PATH, as docker's -f: inside PATH or anywhere else [default: PATH/Dockerfile]
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "dockerfile"
    )]
    pub(crate) file: Option<PathBuf>,
    /// Repository to push to, e.g. 127.0.0.1:5000/team/app
    #[arg(short, long)]
    pub(crate) repository: String,
    /// Tag (repeatable) [default: latest]
    #[arg(short, long = "tag")]
    pub(crate) tags: Vec<String>,
    /// Build without pushing
    #[arg(long)]
    pub(crate) no_push: bool,
    /// Build secret, docker's syntax: id=ID,src=FILE or id=ID,env=VAR (repeatable)
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// SSH key for RUN --mount=type=ssh: the ID of one of the server's [ssh.ID]
    /// keys, which stays on the server (repeatable; `default` for a mount without id)
    #[arg(long = "ssh", value_name = "ID")]
    pub(crate) ssh: Vec<String>,
    /// Build with the daemon's legacy builder instead of BuildKit
    #[arg(long)]
    pub(crate) no_buildkit: bool,
    /// An image whose layers the build may reuse (repeatable)
    #[arg(long = "cache-from")]
    pub(crate) cache_from: Vec<String>,
    /// Show the log and push progress live; exit non-zero unless the build succeeds
    #[arg(long)]
    pub(crate) follow: bool,
    #[command(flatten)]
    pub(crate) options: BuildOptionArgs,
    #[command(flatten)]
    pub(crate) git: GitArgs,
    #[command(flatten)]
    pub(crate) login: LoginArgs,
}

/// What the client was asked to do.
#[derive(Debug)]
pub enum Request {
    /// Submit a build, optionally following it to its end.
    Submit(Box<SubmitArgs>),
    /// List the newest builds, those the filter lets through.
    List(ListArgs),
    /// Show the build with this id.
    Status(i64),
    /// Print a build's log.
    Logs {
        /// The build.
        id: i64,
        /// Keep printing new lines until the build ends.
        follow: bool,
        /// Which lines.
        range: LogRangeArgs,
    },
    /// Cancel the queued or running build with this id.
    Cancel(i64),
    /// Run a finished build again.
    Retry {
        /// The build to run again.
        id: i64,
        /// The registry login for its push and the build's secrets, never
        /// stored by the server.
        retry: RetryArgs,
    },
    /// List the builders.
    Builders,
    /// List a build's webhook deliveries.
    Deliveries(i64),
    /// Send an ended delivery again.
    Redeliver(i64),
    /// List the server's triggers.
    Triggers,
    /// Build a ref of a trigger's repository now.
    Trigger {
        /// The trigger's name.
        name: String,
        /// A branch, tag, `refs/…` name or full commit SHA.
        git_ref: String,
        /// Follow the build to its end.
        follow: bool,
    },
    /// Print a build's provenance statement and verify its signature.
    Provenance {
        /// The build.
        id: i64,
        /// The PEM public key to verify with, instead of the server's.
        public_key: Option<PathBuf>,
    },
    /// Delete a finished build.
    Delete {
        /// The build.
        id: i64,
        /// Cancel the build first when it has not finished yet.
        force: bool,
    },
}

/// Carries out `request` against the server of `args`, printing what it
/// answers; the exit code says whether it worked (for `--follow`, whether the
/// build succeeded).
pub async fn run(request: Request, args: ClientArgs) -> ExitCode {
    exit_quietly_on_a_closed_pipe();
    let result = match ApiClient::new(&args.server, args.token.clone()) {
        Ok(client) => execute(&client, request, args.output).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dockpub: {}", terminal::for_stderr(&err.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// `dockpub list | head -1`: once the reader has gone, the next write ends the
/// process as it ends `cat` (SIGPIPE's default), instead of a panic in `println!`.
/// Rust ignores SIGPIPE; its sockets write with MSG_NOSIGNAL, so a server that
/// closes a connection is still an error, not a signal.
fn exit_quietly_on_a_closed_pipe() {
    // SAFETY: signal() with SIG_DFL installs no handler; nothing else sets it.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn execute(
    client: &ApiClient,
    request: Request,
    output: Output,
) -> Result<ExitCode, CliError> {
    let answer = match request {
        Request::Submit(submit) => return submit_build(client, *submit, output).await,
        Request::Logs {
            id,
            follow: true,
            range,
        } => return follow::follow_range(client, id, &range, output).await,
        Request::Logs {
            id,
            follow: false,
            range,
        } => {
            let log = client.logs(id, &range).await?;
            print_log(id, &log, output);
            return Ok(ExitCode::SUCCESS);
        }
        Request::List(filter) => client.list(&filter).await?,
        Request::Status(id) => client.build(id).await?,
        Request::Cancel(id) => client.cancel(id).await?,
        Request::Retry { id, retry } => client.retry(id, &retry).await?,
        Request::Builders => client.get_json("/api/v1/builders").await?,
        Request::Deliveries(id) => {
            client
                .get_json(&format!("/api/v1/builds/{id}/deliveries"))
                .await?
        }
        Request::Redeliver(id) => client.redeliver(id).await?,
        Request::Delete { id, force } => {
            client.delete(id, force).await?;
            Value::Null
        }
        Request::Triggers => client.triggers().await?,
        Request::Provenance { id, public_key } => {
            return provenance::show(client, id, public_key.as_deref()).await;
        }
        Request::Trigger {
            name,
            git_ref,
            follow,
        } => {
            let build = client.run_trigger(&name, &git_ref).await?;
            return print_or_follow(client, build, follow, output).await;
        }
    };
    print_answer(&answer, output);
    Ok(ExitCode::SUCCESS)
}

async fn submit_build(
    client: &ApiClient,
    submit: SubmitArgs,
    output: Output,
) -> Result<ExitCode, CliError> {
    let follow = submit.follow;
    // indicatif draws nothing off a terminal; asking keeps the intent in sight.
    let show_progress = output == Output::Text && std::io::stderr().is_terminal();
    let build = client.submit(&submit, show_progress).await?;
    print_or_follow(client, build, follow, output).await
}

/// A build just queued: printed, or followed to its end.
async fn print_or_follow(
    client: &ApiClient,
    build: Value,
    follow: bool,
    output: Output,
) -> Result<ExitCode, CliError> {
    let id = build["id"]
        .as_i64()
        .ok_or_else(|| CliError::Unexpected(build.to_string()))?;
    if !follow {
        print_answer(&build, output);
        return Ok(ExitCode::SUCCESS);
    }
    if output == Output::Text {
        println!("build {id} queued");
    }
    follow::follow(client, id, output).await
}

fn print_answer(answer: &Value, output: Output) {
    match (output, answer) {
        (_, Value::Null) => {}
        (Output::Json, answer) => println!("{}", terminal::json(answer)),
        (Output::Text, Value::Object(list)) if list.contains_key("builds") => {
            for build in list["builds"].as_array().into_iter().flatten() {
                println!("{}", terminal::for_stdout(&summary(build)));
            }
        }
        (Output::Text, Value::Object(list)) if list.contains_key("triggers") => {
            for trigger in list["triggers"].as_array().into_iter().flatten() {
                println!("{}", terminal::for_stdout(&trigger_summary(trigger)));
            }
        }
        (Output::Text, answer) if listing::is_listing(answer) => listing::print(answer),
        (Output::Text, build) => println!("{}", terminal::for_stdout(&summary(build))),
    }
}

/// A log as text, or with `--output json` as `{"id": ID, "lines": [...]}`.
fn print_log(id: i64, log: &str, output: Output) {
    match output {
        Output::Text => print!("{}", terminal::for_stdout(log)),
        Output::Json => {
            let lines: Vec<&str> = log.lines().collect();
            println!("{}", serde_json::json!({ "id": id, "lines": lines }));
        }
    }
}

/// The strings of a JSON array (none for anything else).
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// `app  https://git.example.com/app.git  refs/heads/main,refs/tags/v*  last build 12`
fn trigger_summary(trigger: &Value) -> String {
    let refs = strings(&trigger["refs"]);
    let mut line = format!(
        "{:<16} {}  {}",
        trigger["name"].as_str().unwrap_or("?"),
        trigger["git"].as_str().unwrap_or("?"),
        refs.join(",")
    );
    if let Some(id) = trigger["last_build"].as_i64() {
        line.push_str(&format!("  last build {id}"));
    }
    line
}

/// `12  succeeded  127.0.0.1:5000/app:latest  sha256:…`
fn summary(build: &Value) -> String {
    let tags = strings(&build["tags"]);
    let mut line = format!(
        "{:<6} {:<10} {}:{}",
        build["id"],
        build["status"].as_str().unwrap_or("?"),
        build["repository"].as_str().unwrap_or("?"),
        tags.join(",")
    );
    if let Some(digest) = build["digest"].as_str() {
        line.push_str(&format!("  {digest}"));
    }
    if let Some(error) = build["error"].as_str() {
        line.push_str(&format!("  error: {error}"));
    }
    line.push_str(&platforms::status_suffix(&build["progress"]));
    line
}
