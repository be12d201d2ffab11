use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default)
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command.unwrap_or(Command::Serve(cli.serve));
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::from(2);
        }
    };
    match dockpub::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
