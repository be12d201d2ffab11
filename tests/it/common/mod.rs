//! The shared integration-test harness: a real dockpub on a real port, the real
//! Docker daemon, and the loopback registries `scripts/test` starts.
//!
//! A [`Server`] is a `dockpub serve` process (started with `--address-file`, which
//! is how the harness learns its port), or, for API-level tests that need no
//! daemon, dockpub served in this process by [`Server::in_process`].

mod captured_log;
mod daemon_share;
mod in_process;
mod sse;

pub mod attestation;
pub mod fault_proxy;
pub mod git;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use daemon_share::alone as daemon_alone;
use daemon_share::Share;
use in_process::InProcess;
use reqwest::blocking::{multipart, Client, Response};
use serde_json::Value;
pub use sse::{read_events, read_events_within, SseEvent};

/// What `scripts/test` set up. Missing pieces fail the test loudly: these tests
/// never pass without a daemon and registries.
pub struct TestEnv {
    pub registry: String,
    pub auth_registry: String,
    pub auth_user: String,
    pub auth_password: String,
    pub base_image: String,
}

impl TestEnv {
    pub fn get() -> TestEnv {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the tests through scripts/test, which starts the registries and makes the base image")
            })
        };
        let env = TestEnv {
            registry: var("DOCKPUB_TEST_REGISTRY"),
            auth_registry: var("DOCKPUB_TEST_AUTH_REGISTRY"),
            auth_user: var("DOCKPUB_TEST_AUTH_USER"),
            auth_password: var("DOCKPUB_TEST_AUTH_PASSWORD"),
            base_image: var("DOCKPUB_TEST_BASE_IMAGE"),
        };
        let daemon = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match daemon {
            Ok(out) if out.status.success() => env,
            Ok(out) => panic!(
                "the Docker daemon is not reachable: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => panic!("cannot run the docker CLI: {err}"),
        }
    }

    /// Names for tests on an in-process server, which builds nothing: the
    /// registries and the image are only written into requests, never reached,
    /// so neither `scripts/test` nor a daemon is needed.
    pub fn offline() -> TestEnv {
        TestEnv {
            registry: "127.0.0.1:5000".into(),
            auth_registry: "127.0.0.1:5001".into(),
            auth_user: "dockpub-user".into(),
            auth_password: "not-a-password".into(),
            base_image: "dockpub-test-base:latest".into(),
        }
    }

    /// A Dockerfile on the local base image whose image is unique to this call;
    /// the label comes first so the RUN step is never taken from the cache.
    /// A three-step Dockerfile whose RUN no earlier build has cached: the unique
    /// ARG is in the step's environment, so in both builders' cache keys.
    pub fn dockerfile(&self, run: &str) -> String {
        format!(
            "FROM {}\nARG DOCKPUB_TEST_UNIQUE=\"{}\"\nRUN {run}\n",
            self.base_image,
            unique("label")
        )
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `[provenance] enabled`, as the environment sets it.
pub const PROVENANCE_VARIABLE: &str = "DOCKPUB_PROVENANCE";

/// A running dockpub and the folder it lives in.
pub struct Server {
    dir: tempfile::TempDir,
    process: Process,
    pub base: String,
    pub client: Client,
    args: Vec<String>,
    env: Vec<(String, String)>,
    starts: usize,
}

enum Process {
    /// `dockpub serve`, holding its share of the Docker daemon.
    Child {
        child: Child,
        _daemon: Option<Share>,
    },
    InProcess(InProcess),
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts `dockpub serve` on port 0 with build network `none` and `extra` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// As [`Server::start_with`], with these environment variables set for dockpub.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = ["serve", "--bind", "127.0.0.1:0", "--build-network", "none"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // `data` in the server's folder, unless the test names its own.
        if !extra.contains(&"--data-dir") {
            args.extend(["--data-dir".to_string(), "data".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Provenance puts an index (the image and its attestation) under every
        // pushed tag; the tests of other concerns compare the single manifest a
        // tag served before it, so it is on only where a test turns it on
        // (provenance.rs, platforms.rs), or for every server with
        // DOCKPUB_TEST_PROVENANCE=true (to see which comparisons it changes).
        let everywhere = std::env::var("DOCKPUB_TEST_PROVENANCE").is_ok_and(|v| v == "true");
        if !everywhere && !env.iter().any(|(k, _)| k == PROVENANCE_VARIABLE) {
            env.push((PROVENANCE_VARIABLE.to_string(), "false".to_string()));
        }
        let share = daemon_share::share();
        let (child, base) = spawn(dir.path(), &args, &env, 0);
        Server {
            dir,
            process: Process::Child {
                child,
                _daemon: share,
            },
            base,
            client: client(),
            args,
            env,
            starts: 1,
        }
    }

    /// dockpub served in this test process on a fresh port, with build network
    /// `none`, `extra` flags, and a Docker host that does not exist: for tests of
    /// the API alone, which then need no daemon and cannot touch one. Builds it
    /// accepts stay queued. It cannot be killed or restarted, and its `log()` is
    /// the whole test process's since it started.
    pub fn in_process(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (server, base) = InProcess::start(dir.path(), extra);
        Server {
            dir,
            process: Process::InProcess(server),
            base,
            client: client(),
            args: Vec::new(),
            env: Vec::new(),
            starts: 1,
        }
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.process {
            Process::Child { child, .. } => child,
            Process::InProcess(_) => panic!("an in-process server has no process of its own"),
        }
    }

    /// The dockpub process's id, to read its /proc entries.
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Child { child, .. } => child.id(),
            Process::InProcess(_) => panic!("an in-process server has no process of its own"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the server has logged, across restarts.
    pub fn log(&self) -> String {
        if let Process::InProcess(server) = &self.process {
            return captured_log::since(server.log_start);
        }
        (0..self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("server-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        let child = self.child();
        child.kill().expect("kill dockpub");
        child.wait().expect("reap dockpub");
    }

    /// Starts again on the same data folder (on a new port).
    pub fn restart(&mut self) {
        let (child, base) = spawn(self.dir.path(), &self.args, &self.env, self.starts);
        *self.child() = child;
        self.base = base;
        self.starts += 1;
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().expect("GET")
    }

    pub fn get_json(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().expect("JSON body")
    }

    pub fn post_form(&self, path: &str, form: multipart::Form) -> Response {
        self.client
            .post(self.url(path))
            .multipart(form)
            .send()
            .expect("POST")
    }

    pub fn cancel(&self, id: i64) -> Response {
        self.client
            .post(self.url(&format!("/api/v1/builds/{id}/cancel")))
            .send()
            .expect("cancel request")
    }

    /// Submits through the v1 API and returns the new build's id.
    pub fn submit(&self, form: multipart::Form) -> i64 {
        let response = self.post_form("/api/v1/builds", form);
        let status = response.status();
        let body: Value = response.json().expect("JSON body");
        assert_eq!(status, 202, "submit answered {body}");
        body["id"].as_i64().expect("build id")
    }

    pub fn build(&self, id: i64) -> Value {
        self.get_json(&format!("/api/v1/builds/{id}"))
    }

    /// Polls until the build is final; panics after `limit`.
    pub fn wait_final(&self, id: i64, limit: Duration) -> Value {
        self.wait_for(id, limit, |b| {
            matches!(b["status"].as_str(), Some("succeeded" | "failed"))
        })
    }

    pub fn wait_for(&self, id: i64, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let build = self.build(id);
            if done(&build) {
                return build;
            }
            assert!(
                Instant::now() < deadline,
                "build {id} did not get there in {limit:?}: {build}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().expect("DELETE")
    }

    pub fn logs(&self, id: i64) -> String {
        let response = self.get(&format!("/api/v1/builds/{id}/logs"));
        assert_eq!(response.status(), 200);
        response.text().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // An in-process server stops when its `InProcess` is dropped.
        if let Process::Child { child, .. } = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

// The child is handed to a Server, whose Drop kills and reaps it.
#[allow(clippy::zombie_processes)]
fn spawn(dir: &Path, args: &[String], env: &[(String, String)], start: usize) -> (Child, String) {
    let log_path = dir.join(format!("server-{start}.log"));
    let log = std::fs::File::create(&log_path).expect("server log");
    // A file of its own per start: one a killed server left is never read.
    let address_file = dir.join(format!("address-{start}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .arg("--address-file")
        .arg(&address_file)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start dockpub");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // dockpub renames the file into place: it is there whole or not at all.
        if let Ok(address) = std::fs::read_to_string(&address_file) {
            return (child, address.trim().to_string());
        }
        let exited = child.try_wait().expect("dockpub status").is_some();
        if exited || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dockpub did not start: {}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A /proc/PID/status value in KiB (`VmRSS:`, `VmHWM:`, …).
/// The `dockpub` CLI client run against `server`, to its end.
pub fn dockpub_client(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .env("DOCKPUB_URL", &server.base)
        .output()
        .expect("run the dockpub client")
}

/// A process's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// A text field.
pub fn field(form: multipart::Form, name: &str, value: &str) -> multipart::Form {
    form.text(name.to_string(), value.to_string())
}

/// A form with `content` as the `file` field.
pub fn with_file(content: impl Into<Vec<u8>>) -> multipart::Form {
    let part = multipart::Part::bytes(content.into()).file_name("Dockerfile");
    multipart::Form::new().part("file", part)
}

/// The manifest digest the registry itself serves for `repository:tag`.
pub fn registry_digest(
    registry: &str,
    repository: &str,
    tag: &str,
    auth: Option<(&str, &str)>,
) -> Option<String> {
    let mut request = Client::new()
        .head(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        );
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().expect("ask the registry");
    if !response.status().is_success() {
        return None;
    }
    let digest = response.headers().get("Docker-Content-Digest")?;
    Some(digest.to_str().unwrap().to_string())
}

/// The manifest digest the registry serves for `registry/path:tag`, asked of the
/// registry named in `repository` itself.
pub fn pushed_digest(repository: &str, tag: &str, auth: Option<(&str, &str)>) -> Option<String> {
    let (registry, path) = repository
        .split_once('/')
        .expect("a repository with its registry host");
    registry_digest(registry, path, tag, auth)
}

/// The config digest (the image id) of the manifest `digest` in `registry/path`
/// (`repository`), asked of the registry itself.
pub fn manifest_config(repository: &str, digest: &str) -> Option<String> {
    let (registry, path) = repository
        .split_once('/')
        .expect("a repository with its registry host");
    let response = Client::new()
        .get(format!("http://{registry}/v2/{path}/manifests/{digest}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .expect("ask the registry");
    if !response.status().is_success() {
        return None;
    }
    let manifest: Value = response.json().expect("a manifest");
    manifest["config"]["digest"].as_str().map(str::to_string)
}

/// BuildKit's number (`#5`) of the step whose header line ends with `instruction`.
pub fn buildkit_step(logs: &str, instruction: &str) -> String {
    logs.lines()
        .find_map(|line| line.strip_suffix(instruction)?.strip_suffix("] "))
        .and_then(|header| header.split_once(' '))
        .map(|(number, _)| number.to_string())
        .unwrap_or_else(|| panic!("no BuildKit step '{instruction}' in {logs}"))
}

/// What a log line says without BuildKit's `#N 0.123 ` prefix: a RUN step's
/// output reads the same from either builder.
pub fn output_text(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('#') else {
        return line;
    };
    let mut words = rest.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some(step), Some(elapsed), Some(text))
            if step.parse::<u32>().is_ok() && elapsed.parse::<f64>().is_ok() =>
        {
            text
        }
        _ => line,
    }
}

/// The host's processes whose command line holds `marker`. BuildKit's steps
/// are not containers: `ps` is where a step that still runs shows.
pub fn processes_with(marker: &str) -> Vec<String> {
    let out = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(marker))
        .map(str::to_string)
        .collect()
}

/// Waits until a process with `marker` in its command line runs.
pub fn wait_for_process(marker: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while processes_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no process with {marker} started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that every process with `marker` in its command line is gone within `limit`.
pub fn assert_processes_gone(marker: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running after {limit:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the local daemon has an image by this reference.
pub fn local_image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("docker image inspect")
        .success()
}

impl Server {
    /// SIGTERM, then waits (up to `limit`) for the process to exit on its own.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = self.child().id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().expect("dockpub status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dockpub did not stop within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Build statuses straight from SQLite, by id (for when no server is running).
    pub fn stored_statuses(&self) -> Vec<(i64, String)> {
        let db = rusqlite::Connection::open(self.data_dir().join("dockpub.sqlite3"))
            .expect("open the database");
        let mut statement = db
            .prepare("SELECT id, status FROM builds ORDER BY id")
            .unwrap();
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }
}

/// A second, private Docker daemon the test can stop and start (for outages).
pub struct PrivateDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Set for a daemon on `tcp://127.0.0.1:port` with `--tlsverify`.
    tls: Option<(u16, TlsCerts)>,
}

/// PEM files made with the openssl CLI: a CA, a server certificate for
/// 127.0.0.1 and a client certificate, all signed by that CA.
#[derive(Clone)]
pub struct TlsCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsCerts {
    /// A new CA and its certificates under `dir`.
    pub fn make(dir: &Path) -> TlsCerts {
        std::fs::create_dir_all(dir).unwrap();
        let file = |name: &str| dir.join(name);
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &key[..],
                &["-days", "2", "-subj", "/CN=dockpub-test-ca"],
            ]
            .concat(),
            &[("-keyout", &file("ca-key.pem")), ("-out", &file("ca.pem"))],
        );
        for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = file(&format!("{who}.ext"));
            std::fs::write(
                &ext,
                format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
            )
            .unwrap();
            openssl(
                &[&["req"], &key[..], &["-subj", &format!("/CN={who}")]].concat(),
                &[
                    ("-keyout", &file(&format!("{who}-key.pem"))),
                    ("-out", &file(&format!("{who}.csr"))),
                ],
            );
            openssl(
                &["x509", "-req", "-days", "2", "-CAcreateserial"],
                &[
                    ("-in", &file(&format!("{who}.csr"))),
                    ("-CA", &file("ca.pem")),
                    ("-CAkey", &file("ca-key.pem")),
                    ("-extfile", &ext),
                    ("-out", &file(&format!("{who}.pem"))),
                ],
            );
        }
        TlsCerts {
            ca: file("ca.pem"),
            server_cert: file("server.pem"),
            server_key: file("server-key.pem"),
            client_cert: file("client.pem"),
            client_key: file("client-key.pem"),
        }
    }
}

fn openssl(args: &[&str], files: &[(&str, &Path)]) {
    let mut command = Command::new("openssl");
    command.args(args);
    for (flag, path) in files {
        command.arg(flag).arg(path);
    }
    let out = command
        .output()
        .expect("run openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free loopback port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateDaemon {
    /// Starts it and gives it the base image.
    pub fn start(env: &TestEnv) -> PrivateDaemon {
        PrivateDaemon::start_with_tls(env, None)
    }

    /// Starts one on `tcp://127.0.0.1:PORT` that accepts only clients with a
    /// certificate from `certs`' CA (`--tlsverify`).
    pub fn start_tls(env: &TestEnv, certs: &TlsCerts) -> PrivateDaemon {
        PrivateDaemon::start_with_tls(env, Some((free_port(), certs.clone())))
    }

    fn start_with_tls(env: &TestEnv, tls: Option<(u16, TlsCerts)>) -> PrivateDaemon {
        let dir = tempfile::Builder::new()
            .prefix("dockpub-dockerd")
            .tempdir()
            .expect("temp dir");
        // /etc/docker/daemon.json sets data-root and storage driver; a flag repeating them is refused.
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let mut daemon = PrivateDaemon {
            dir,
            child: None,
            tls,
        };
        daemon.resume();
        let mut save = Command::new("docker")
            .args(["save", &env.base_image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let loaded = Command::new("docker")
            .args(daemon.cli_args())
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save failed");
        assert!(
            loaded.status.success(),
            "{}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        daemon
    }

    pub fn host(&self) -> String {
        match &self.tls {
            Some((port, _)) => format!("tcp://127.0.0.1:{port}"),
            None => format!("unix://{}", self.dir.path().join("docker.sock").display()),
        }
    }

    /// The docker CLI's flags to reach this daemon.
    fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-H".to_string(), self.host()];
        if let Some((_, certs)) = &self.tls {
            args.extend(tls_flags(&certs.ca, &certs.client_cert, &certs.client_key));
        }
        args
    }

    /// dockerd's flags for where it listens (and, over TCP, its TLS files).
    fn listen_args(&self) -> Vec<String> {
        let mut args = vec!["--host".to_string(), self.host()];
        if let Some((_, certs)) = &self.tls {
            args.extend(tls_flags(&certs.ca, &certs.server_cert, &certs.server_key));
        }
        args
    }

    /// Starts the daemon (again) on the same folders and waits until it answers.
    pub fn resume(&mut self) {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .args(self.listen_args())
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args([
                "--pidfile",
                &path("docker.pid"),
                "--config-file",
                &path("daemon.json"),
            ])
            .args(["--bridge", "none", "--iptables=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "private dockerd did not start: {}",
                std::fs::read_to_string(path("dockerd.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the daemon the way an operator would (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            child.wait().expect("wait for dockerd");
        }
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .args(self.cli_args())
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// `--tlsverify` with a CA, a certificate and its key: the same flags for
/// dockerd and for the docker CLI.
fn tls_flags(ca: &Path, cert: &Path, key: &Path) -> Vec<String> {
    let mut flags = vec!["--tlsverify".to_string()];
    for (flag, path) in [("--tlscacert", ca), ("--tlscert", cert), ("--tlskey", key)] {
        flags.push(flag.into());
        flags.push(path.display().to_string());
    }
    flags
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tar archive of regular files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        archive.append_data(&mut header, name, *content).unwrap();
    }
    archive.into_inner().unwrap()
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `command` in the image with no network and returns its output.
pub fn run_in(image: &str, command: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        command,
    ])
}
