//! Registry logins that are not in the request: from dockpub's config (password or
//! password_env), from Docker's config.json (auths and credential helpers), used
//! for the push, for pulling a private base image, and after a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{field, registry_digest, unique, with_file, Server, TestEnv};
use base64::Engine as _;
use serde_json::{json, Value};

const BUILD_TIME: Duration = Duration::from_secs(120);

/// Files a test hands to dockpub (config, Docker config, helper), kept until the end.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Pushes to the auth registry without credentials in the request; returns the build.
fn push_without_request_credentials(server: &Server, env: &TestEnv) -> (Value, String) {
    let repository = format!("{}/{}", env.auth_registry, unique("stored"));
    let id = server.submit(field(
        with_file(env.dockerfile("true")),
        "repository",
        &repository,
    ));
    (server.wait_final(id, BUILD_TIME), repository)
}

fn assert_pushed(env: &TestEnv, build: &Value, repository: &str) {
    assert_eq!(build["status"], "succeeded", "{build}");
    let auth = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    let path = repository.split_once('/').unwrap().1;
    assert_eq!(
        registry_digest(&env.auth_registry, path, "latest", auth).as_deref(),
        build["digest"].as_str(),
        "{build}"
    );
}

fn assert_password_nowhere(server: &Server, password: &str) {
    assert!(
        !server.log().contains(password),
        "the password is in the server log"
    );
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes());
            assert!(!found, "the password is in {}", path.display());
        }
    }
}

fn config_with_password(env: &TestEnv) -> String {
    format!(
        "[registries.\"{}\"]\nusername = \"{}\"\npassword = \"{}\"\n",
        env.auth_registry, env.auth_user, env.auth_password
    )
}

#[test]
fn a_config_password_pushes_to_the_auth_registry() {
    let env = TestEnv::get();
    let files = Files::new();
    let config = files.write("config.toml", &config_with_password(&env));
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let (build, repository) = push_without_request_credentials(&server, &env);
    assert_pushed(&env, &build, &repository);
    assert_password_nowhere(&server, &env.auth_password);
}

#[test]
fn password_env_names_the_variable_holding_the_password() {
    let env = TestEnv::get();
    let files = Files::new();
    let config = files.write(
        "config.toml",
        &format!(
            "[registries.\"{}\"]\nusername = \"{}\"\npassword_env = \"DOCKPUB_TEST_PUSH_PASSWORD\"\n",
            env.auth_registry, env.auth_user
        ),
    );
    let server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[("DOCKPUB_TEST_PUSH_PASSWORD", &env.auth_password)],
    );
    let (build, repository) = push_without_request_credentials(&server, &env);
    assert_pushed(&env, &build, &repository);
    assert_password_nowhere(&server, &env.auth_password);
}

#[test]
fn a_missing_password_variable_stops_the_start() {
    let env = TestEnv::get();
    let files = Files::new();
    let config = files.write(
        "config.toml",
        &format!(
            "[registries.\"{}\"]\nusername = \"u\"\npassword_env = \"DOCKPUB_TEST_UNSET_{}\"\n",
            env.auth_registry,
            std::process::id()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("password_env is not set"), "{stderr}");
}

#[test]
fn docker_config_json_auths_push_to_the_auth_registry() {
    let env = TestEnv::get();
    let files = Files::new();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", env.auth_user, env.auth_password));
    let docker_config =
        json!({ "auths": { format!("http://{}", env.auth_registry): { "auth": auth } } });
    files.write("docker/config.json", &docker_config.to_string());
    let docker_dir = files.path("docker");
    let server = Server::start_with_env(&[], &[("DOCKER_CONFIG", docker_dir.to_str().unwrap())]);
    let (build, repository) = push_without_request_credentials(&server, &env);
    assert_pushed(&env, &build, &repository);
}

/// A credential helper as Docker's protocol has it: `get` reads the server address
/// on stdin and prints the login as JSON. This one also notes what it was asked.
fn install_helper(files: &Files, env: &TestEnv) -> PathBuf {
    let asked = files.path("helper-asked");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nserver=$(cat)\necho \"$server\" >> '{asked}'\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" '{user}' '{password}'\n",
        asked = asked.display(),
        user = env.auth_user,
        password = env.auth_password,
    );
    let helper = files.write("bin/docker-credential-dockpubtest", &script);
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    asked
}

fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}

#[test]
fn a_credential_helper_gives_the_login() {
    let env = TestEnv::get();
    for key in ["credHelpers", "credsStore"] {
        let files = Files::new();
        let asked = install_helper(&files, &env);
        let docker_config = match key {
            "credHelpers" => json!({ "credHelpers": { env.auth_registry.clone(): "dockpubtest" } }),
            _ => json!({ "credsStore": "dockpubtest" }),
        };
        files.write("docker/config.json", &docker_config.to_string());
        let server = Server::start_with_env(
            &[],
            &[
                ("DOCKER_CONFIG", files.path("docker").to_str().unwrap()),
                ("PATH", &path_with(&files.path("bin"))),
            ],
        );
        let (build, repository) = push_without_request_credentials(&server, &env);
        assert_pushed(&env, &build, &repository);
        let asked = std::fs::read_to_string(&asked).unwrap();
        let asked: Vec<&str> = asked.lines().collect();
        let expected = match key {
            "credHelpers" => vec![env.auth_registry.as_str()],
            // The store is asked for every registry: also Docker Hub's, where the
            // build's base image name points.
            _ => vec![env.auth_registry.as_str(), "https://index.docker.io/v1/"],
        };
        assert!(
            expected.iter().all(|server| asked.contains(server)),
            "{key}: {asked:?}"
        );
        assert!(
            asked.iter().all(|server| expected.contains(server)),
            "{key}: {asked:?}"
        );
    }
}

#[test]
fn request_credentials_win_over_stored_ones() {
    let env = TestEnv::get();
    let files = Files::new();
    let config = files.write("config.toml", &config_with_password(&env));
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let repository = format!("{}/{}", env.auth_registry, unique("wins"));
    let form = field(with_file(env.dockerfile("true")), "repository", &repository);
    let form = field(
        field(form, "username", &env.auth_user),
        "password",
        "wrong-password",
    );
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(
        build["status"], "failed",
        "the request's wrong password was used: {build}"
    );
    assert!(
        build["error"].as_str().unwrap().contains("unauthorized"),
        "{build}"
    );
}

/// A build FROM an image only the auth registry has, pulled with the stored
/// login; `run` is its step (one that mounts a secret goes over BuildKit's gRPC
/// API, whose session serves the login).
fn build_on_a_private_base(run: &str, secret: Option<&str>) -> String {
    let env = TestEnv::get();
    let files = Files::new();
    let config = files.write("config.toml", &config_with_password(&env));
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let (base, base_repository) = push_without_request_credentials(&server, &env);
    assert_pushed(&env, &base, &base_repository);
    let base_image = format!("{base_repository}:latest");
    // Only the registry has it now: the build must pull it, with the stored login.
    let removed = Command::new("docker")
        .args(["rmi", &base_image])
        .output()
        .unwrap();
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let repository = format!("{}/{}", env.registry, unique("frompriv"));
    let dockerfile = format!("FROM {base_image}\n{run}\n");
    let mut form = field(
        field(with_file(dockerfile), "repository", &repository),
        "push",
        "false",
    );
    if let Some(secret) = secret {
        form = field(form, "secret", secret);
    }
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    let logs = server.logs(build["id"].as_i64().unwrap());
    // BuildKit resolves the tag in the registry (with the stored login) and pulls it.
    assert!(
        logs.contains(&format!("resolve {base_image}@sha256:")),
        "the base was not pulled: {logs}"
    );
    logs
}

#[test]
fn a_private_base_image_is_pulled_with_stored_credentials() {
    build_on_a_private_base("RUN echo built-on-private-base", None);
}

#[test]
fn a_secret_build_pulls_a_private_base_image_with_stored_credentials() {
    let run = "RUN --mount=type=secret,id=token test -s /run/secrets/token";
    let logs = build_on_a_private_base(run, Some("token=value"));
    assert!(logs.contains("over BuildKit's gRPC API"), "{logs}");
}

#[test]
fn a_recovered_build_pushes_with_config_credentials() {
    let env = TestEnv::get();
    let files = Files::new();
    let config = files.write("config.toml", &config_with_password(&env));
    let mut server = Server::start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--max-concurrent-builds",
        "1",
    ]);
    let blocker = server.submit(field(
        with_file(env.dockerfile("sleep 3")),
        "repository",
        &format!("{}/{}", env.registry, unique("blocker")),
    ));
    let repository = format!("{}/{}", env.auth_registry, unique("recovered"));
    let queued = server.submit(field(
        with_file(env.dockerfile("true")),
        "repository",
        &repository,
    ));
    server.wait_for(blocker, BUILD_TIME, |b| b["status"] == "building");
    assert_eq!(server.build(queued)["status"], "queued");
    server.kill();
    server.restart();
    let build = server.wait_final(queued, BUILD_TIME);
    assert_pushed(&env, &build, &repository);
}
