//! The shared integration-test harness: a real dockpub process on a real port, the
//! real Docker daemon, and the loopback registries `scripts/test` starts.
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client, Response};
use serde_json::Value;

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

    /// A Dockerfile on the local base image whose image is unique to this call;
    /// the label comes first so the RUN step is never taken from the cache.
    pub fn dockerfile(&self, run: &str) -> String {
        format!(
            "FROM {}\nLABEL dockpub.test.unique=\"{}\"\nRUN {run}\n",
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

/// A running dockpub and the folder it lives in.
pub struct Server {
    dir: tempfile::TempDir,
    child: Child,
    pub base: String,
    pub client: Client,
    args: Vec<String>,
    starts: usize,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts `dockpub serve` on port 0 with build network `none` and `extra` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = [
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--build-network",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, base) = spawn(dir.path(), &args, 0);
        Server {
            dir,
            child,
            base,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            args,
            starts: 1,
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
        (0..self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("server-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill dockpub");
        self.child.wait().expect("reap dockpub");
    }

    /// Starts again on the same data folder (on a new port).
    pub fn restart(&mut self) {
        let (child, base) = spawn(self.dir.path(), &self.args, self.starts);
        self.child = child;
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

    pub fn logs(&self, id: i64) -> String {
        let response = self.get(&format!("/api/v1/builds/{id}/logs"));
        assert_eq!(response.status(), 200);
        response.text().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child goes to the caller, whose Server kills and waits for it on drop.
#[allow(clippy::zombie_processes)]
fn spawn(dir: &Path, args: &[String], start: usize) -> (Child, String) {
    let log_path = dir.join(format!("server-{start}.log"));
    let log = std::fs::File::create(&log_path).expect("server log");
    let child = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start dockpub");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let file = std::fs::File::open(&log_path).expect("server log");
        let listening = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("listening on ")
                    .map(|(_, url)| url.trim().to_string())
            });
        if let Some(url) = listening {
            return (child, url);
        }
        assert!(
            Instant::now() < deadline,
            "dockpub did not start: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
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
