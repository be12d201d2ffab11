//! dockpub served from the test process itself: `dockpub::launch` on a listener
//! the harness binds to port 0, so the address is known before the server runs.
//! Its builder is a Docker socket that does not exist: these servers need no
//! daemon, and cannot touch one. For API-level tests (validation, auth, bad
//! input, the OpenAPI document, hostile requests); anything that builds, or
//! kills and restarts the server, uses a `dockpub` process instead.

use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use clap::Parser;
use dockpub::config::{Config, ServeArgs};

use super::captured_log;

/// The threads of in-process servers are named so; a panic on one is logged.
pub const THREAD_NAME: &str = "dockpub-in-process";

/// `dockpub serve`'s flags, parsed as the binary parses them.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    serve: ServeArgs,
}

pub struct InProcess {
    runtime: tokio::runtime::Handle,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
    /// Where this server's lines start in the captured log.
    pub log_start: usize,
}

impl InProcess {
    /// Serves on a fresh port with `--data-dir DIR/data`, `--build-network none`,
    /// a builder on a missing socket and `extra` flags; returns it and its URL.
    pub fn start(dir: &Path, extra: &[&str]) -> (InProcess, String) {
        captured_log::install();
        let log_start = captured_log::len();
        let config = config(dir, extra);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (started, outcome) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || serve(config, listener, started))
            .expect("a thread for the server");
        match outcome.recv().expect("the server thread answers") {
            Ok((runtime, server)) => {
                let server = InProcess {
                    runtime,
                    server,
                    thread: Some(thread),
                    log_start,
                };
                (server, base)
            }
            Err(err) => panic!(
                "dockpub did not start in process: {err}\n{}",
                captured_log::since(log_start)
            ),
        }
    }
}

/// The settings `dockpub serve` would run with: never the repository's own
/// ./config.toml, which the test process would otherwise read (an empty file
/// unless `extra` names one).
fn config(dir: &Path, extra: &[&str]) -> Config {
    let file = dir.join("config.toml");
    std::fs::write(&file, "").unwrap();
    let missing_socket = format!("unix://{}", dir.join("no-docker.sock").display());
    let data = dir.join("data");
    // A test that brings its own config file names it in `extra`.
    let own_config = match extra.contains(&"--config") {
        true => vec![],
        false => vec!["--config", file.to_str().unwrap()],
    };
    let mut args = vec!["dockpub"];
    args.extend(own_config);
    args.extend([
        "--data-dir",
        data.to_str().unwrap(),
        "--build-network",
        "none",
        "--docker-host",
        &missing_socket,
    ]);
    args.extend(extra);
    let flags = Flags::try_parse_from(args.clone()).unwrap_or_else(|err| panic!("{args:?}: {err}"));
    Config::load(flags.serve).unwrap_or_else(|err| panic!("{args:?}: {err}"))
}

type Started = Result<(tokio::runtime::Handle, ServerHandle), String>;

/// Runs on the server's own thread until the server is stopped.
fn serve(config: Config, listener: TcpListener, started: mpsc::Sender<Started>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let handle = runtime.handle().clone();
    runtime.block_on(async move {
        match dockpub::launch(config, listener).await {
            Ok(server) => {
                let _ = started.send(Ok((handle, server.handle())));
                let _ = server.await;
            }
            Err(err) => {
                let _ = started.send(Err(err.to_string()));
            }
        }
    });
    // Builds queued on the missing daemon never end; their tasks are dropped.
    runtime.shutdown_timeout(Duration::from_secs(5));
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.runtime.block_on(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
