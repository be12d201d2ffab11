// An unwrap is a panic no one explained: errors are propagated or an `expect`
// says why it cannot fail.
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dockpub::cli::{self, ClientArgs, ListArgs, LogRangeArgs, Request, RetryArgs, SubmitArgs};
use dockpub::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "dockpub",
    version,
    about = "Build uploaded Dockerfiles, push them, and keep an honest record"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand, dockpub serves with these flags.
    #[command(flatten)]
    serve: ServeCommand,
}

/// `dockpub serve`: the settings, and how this run tells where it listens.
#[derive(Args)]
struct ServeCommand {
    #[command(flatten)]
    settings: ServeArgs,
    /// Once listening, write the address (http://HOST:PORT) to this file, removed again on a clean stop; with --bind HOST:0 a script learns the port picked
    #[arg(long, env = "DOCKPUB_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default)
    Serve(Box<ServeCommand>),
    /// Submit a build: a Dockerfile, or a directory as its context
    Submit {
        #[command(flatten)]
        submit: Box<SubmitArgs>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the newest builds
    List {
        #[command(flatten)]
        filter: ListArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one build
    Status {
        /// The build's id
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a build's log
    Logs {
        /// The build's id
        id: i64,
        /// Keep printing until the build ends (as docker logs -f)
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        range: LogRangeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a queued or running build
    Cancel {
        /// The build's id
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a finished build again
    Retry {
        /// The build's id
        id: i64,
        #[command(flatten)]
        retry: RetryArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the builders: health, load, platforms
    Builders {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a build's webhook deliveries (callback_url and webhooks)
    Deliveries {
        /// The build's id
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send an ended webhook delivery again
    Redeliver {
        /// The delivery's id (the `id` that `dockpub deliveries` lists)
        delivery: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the server's triggers, with their last delivery and build
    Triggers {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Build a ref of a trigger's repository now, as a push would
    Trigger {
        /// The trigger's name
        name: String,
        /// A branch, tag, refs/… name or full commit SHA
        #[arg(long = "ref")]
        git_ref: String,
        /// Follow the build to its end; the exit code is then its result
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a build's provenance statement and verify its DSSE signature
    Provenance {
        /// The build's id
        id: i64,
        /// Verify with this PEM public key instead of the server's
        #[arg(long)]
        public_key: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a finished build (with --force, cancel it first)
    Delete {
        /// The build's id
        id: i64,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (request, client) = match cli.command.unwrap_or(Command::Serve(Box::new(cli.serve))) {
        Command::Serve(args) => return serve(*args).await,
        Command::Submit { submit, client } => (Request::Submit(submit), client),
        Command::List { filter, client } => (Request::List(filter), client),
        Command::Status { id, client } => (Request::Status(id), client),
        Command::Logs {
            id,
            follow,
            range,
            client,
        } => (Request::Logs { id, follow, range }, client),
        Command::Cancel { id, client } => (Request::Cancel(id), client),
        Command::Retry { id, retry, client } => (Request::Retry { id, retry }, client),
        Command::Builders { client } => (Request::Builders, client),
        Command::Deliveries { id, client } => (Request::Deliveries(id), client),
        Command::Redeliver { delivery, client } => (Request::Redeliver(delivery), client),
        Command::Delete { id, force, client } => (Request::Delete { id, force }, client),
        Command::Triggers { client } => (Request::Triggers, client),
        Command::Provenance {
            id,
            public_key,
            client,
        } => (Request::Provenance { id, public_key }, client),
        Command::Trigger {
            name,
            git_ref,
            follow,
            client,
        } => (
            Request::Trigger {
                name,
                git_ref,
                follow,
            },
            client,
        ),
    };
    cli::run(request, client).await
}

async fn serve(command: ServeCommand) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::load(command.settings) {
        Ok(config) => config,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::from(2);
        }
    };
    match dockpub::serve(config, command.address_file.as_deref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}
