//! BuildKit builds: the `docker init`-style Dockerfiles (RUN --mount) work, unused
//! stages are skipped, and the legacy builder refuses what it cannot build.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    assert_processes_gone, buildkit_step, field, output_text, run_in, tar_of, unique,
    wait_for_process, with_file, PrivateDaemon, Server, TestEnv,
};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(120);

fn build_only(server: &Server, form: Form, repository: &str) -> Value {
    let form = field(field(form, "repository", repository), "push", "false");
    server.wait_final(server.submit(form), BUILD_TIME)
}

/// The output lines of the build's steps, without BuildKit's `#N 0.12 ` prefix.
fn output(server: &Server, build: &Value) -> Vec<String> {
    server
        .logs(build["id"].as_i64().unwrap())
        .lines()
        .map(|line| output_text(line).to_string())
        .collect()
}

#[test]
fn a_cache_mount_persists_into_the_next_build_and_a_bind_mount_reads_the_context() {
    let env = TestEnv::get();
    let server = Server::start();
    // No `# syntax=` line: nothing can be pulled here, the daemon's own frontend builds it.
    let cache = unique("cache");
    let dockerfile = format!(
        "FROM {base} AS build\n\
         ARG ROUND\n\
         RUN --mount=type=cache,id={cache},target=/cache \\\n    \
             echo \"cache holds: $(ls /cache | tr '\\n' ' ')\" && touch /cache/round-$ROUND\n\
         RUN --mount=type=bind,source=input.txt,target=/mnt/input.txt \\\n    \
             cp /mnt/input.txt /copied.txt\n",
        base = env.base_image
    );
    let archive = tar_of(&[
        ("Dockerfile", dockerfile.as_bytes()),
        ("input.txt", b"from the context\n"),
    ]);
    let repository = format!("{}/{}", env.registry, unique("mounts"));
    let round = |n: &str| {
        let form = Form::new().part("context", Part::bytes(archive.clone()).file_name("c.tar"));
        let build = build_only(
            &server,
            field(form, "build_arg", &format!("ROUND={n}")),
            &repository,
        );
        assert_eq!(build["status"], "succeeded", "{build}");
        assert_eq!(build["options"]["buildkit"], true);
        output(&server, &build)
    };
    let first = round("1");
    assert!(first.iter().any(|l| l == "cache holds: "), "{first:?}");
    let second = round("2");
    assert!(
        second.iter().any(|l| l == "cache holds: round-1 "),
        "the cache mount kept the first build's file: {second:?}"
    );
    let image = format!("{repository}:latest");
    assert_eq!(run_in(&image, "cat /copied.txt"), "from the context\n");
    assert_eq!(
        run_in(
            &image,
            "cat /mnt/input.txt 2>/dev/null; ls -A /cache 2>/dev/null; true"
        ),
        "",
        "what was mounted is not part of the image"
    );
}

#[test]
fn an_unused_stage_does_not_run() {
    let env = TestEnv::get();
    let server = Server::start();
    let marker = unique("unused");
    let dockerfile = format!(
        "FROM {base} AS slow\nRUN sleep 30 && echo {marker}\n\
         FROM {base}\nRUN echo used-{marker}\n",
        base = env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("stages"));
    let started = Instant::now();
    let build = build_only(&server, with_file(dockerfile), &repository);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let logs = server.logs(build["id"].as_i64().unwrap());
    assert!(!logs.contains("sleep 30"), "the unused stage ran: {logs}");
    assert!(logs.contains(&format!("used-{marker}")), "{logs}");
}

#[test]
fn the_legacy_builder_refuses_run_mount_clearly() {
    let env = TestEnv::get();
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,target=/cache true\n",
        env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("legacy-mount"));
    let refused = |server: &Server, form: Form| {
        let response = server.post_form("/api/v1/builds", field(form, "repository", &repository));
        assert_eq!(response.status(), 400);
        let body: Value = response.json().unwrap();
        let message = body["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("buildkit") && message.contains("RUN --mount"),
            "{body}"
        );
    };
    let server = Server::start();
    refused(
        &server,
        field(with_file(dockerfile.clone()), "buildkit", "false"),
    );
    let legacy_server = Server::start_with(&["--buildkit", "false"]);
    refused(&legacy_server, with_file(dockerfile.clone()));
    let listed = legacy_server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"], Value::Array(vec![]), "nothing was stored");

    // A plain Dockerfile still builds on the legacy builder, and says so.
    let build = build_only(
        &legacy_server,
        with_file(env.dockerfile("true")),
        &repository,
    );
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["options"]["buildkit"], false);
    let logs = legacy_server.logs(build["id"].as_i64().unwrap());
    assert!(logs.contains("Step 3/3 : RUN true"), "{logs}");
}

#[test]
fn a_builder_without_buildkit_fails_a_run_mount_build_saying_why() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let socket = Path::new("/var/run/docker.sock");
    let host = std::env::var("DOCKER_HOST").unwrap_or(format!("unix://{}", socket.display()));
    std::fs::write(
        &config,
        format!("[[builders]]\nname = \"old\"\nhost = \"{host}\"\nbuildkit = false\n"),
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,target=/cache true\n",
        env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("old-builder"));
    let build = build_only(&server, with_file(dockerfile), &repository);
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.contains("builder 'old'")
            && error.contains("RUN --mount")
            && error.contains("BuildKit"),
        "{error}"
    );
    assert_eq!(
        build["options"]["buildkit"], false,
        "the legacy builder was to run it"
    );
}

/// Every file under `dir`, read whole: SQLite's database, its WAL, stored uploads.
fn bytes_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(bytes_under(&path));
        } else {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn sha256_hex(value: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(value.as_bytes()))
}

#[test]
fn secrets_from_the_request_and_the_config_reach_the_step_and_nothing_else() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let server_value = unique("server-secret-value");
    let request_value = unique("request-secret-value");
    let file_value = unique("file-secret-value");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[secrets.server_token]\nenv = \"DOCKPUB_TEST_SERVER_TOKEN\"\n",
    )
    .unwrap();
    let server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[("DOCKPUB_TEST_SERVER_TOKEN", &server_value)],
    );
    // The step prints each secret's hash, never the secret. A secret is no part
    // of BuildKit's cache key: the unique ARG is.
    let dockerfile = format!(
        "FROM {}\nARG RUN_ID={}\n\
         RUN --mount=type=secret,id=request_token --mount=type=secret,id=server_token \\\n    \
             --mount=type=secret,id=file.token,target=/tmp/file-token \\\n    \
             for f in /run/secrets/request_token /run/secrets/server_token /tmp/file-token; do \\\n      \
               echo \"hash: $(sha256sum < $f | cut -d' ' -f1)\"; done\n",
        env.base_image,
        unique("run")
    );
    let repository = format!("{}/{}", env.registry, unique("secrets"));
    let form = field(with_file(dockerfile), "repository", &repository);
    let form = field(form, "secret", &format!("request_token={request_value}"));
    let form = form.part(
        "secret",
        Part::bytes(file_value.clone().into_bytes()).file_name("file.token"),
    );
    let mut responses = server.post_form("/api/v1/builds", form).text().unwrap();
    let id = serde_json::from_str::<Value>(&responses).unwrap()["id"]
        .as_i64()
        .unwrap();
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(
        build["options"]["secrets"],
        serde_json::json!(["request_token", "file.token"]),
        "the ids, never the values"
    );
    let logs = server.logs(id);
    for value in [&request_value, &server_value, &file_value] {
        let hash = format!("hash: {}", sha256_hex(value));
        assert!(
            logs.lines().any(|line| output_text(line) == hash),
            "the step did not read {hash}: {logs}"
        );
    }

    responses.push_str(&build.to_string());
    responses.push_str(
        &server
            .get(&format!("/api/v1/builds/{id}/logs"))
            .text()
            .unwrap(),
    );
    responses.push_str(&server.get("/api/v1/builds").text().unwrap());
    responses.push_str(
        &server
            .get(&format!("/api/v1/builds/{id}/events"))
            .text()
            .unwrap(),
    );
    let image = format!("{repository}:latest");
    let history = common::docker(&["history", "--no-trunc", &image]);
    let saved = dir.path().join("image.tar");
    common::docker(&["save", "-o", saved.to_str().unwrap(), &image]);
    let saved = std::fs::read(&saved).unwrap();
    let stored = bytes_under(&server.data_dir());
    for value in [&request_value, &server_value, &file_value] {
        assert!(!responses.contains(value.as_str()), "{value} in a response");
        assert!(!logs.contains(value.as_str()), "{value} in the build's log");
        assert!(
            !server.log().contains(value.as_str()),
            "{value} in dockpub's log"
        );
        assert!(
            !history.contains(value.as_str()),
            "{value} in docker history"
        );
        assert!(!contains(&saved, value), "{value} in docker save");
        assert!(!contains(&stored, value), "{value} in the data directory");
    }
}

#[test]
fn bad_secrets_are_refused_and_lost_ones_fail_the_build() {
    let env = TestEnv::get();
    let mut server = Server::start_with(&["--max-concurrent-builds", "1"]);
    let repository = format!("{}/{}", env.registry, unique("secret-check"));
    let refused = |form: Form, field_name: &str| {
        let form = field(form, "repository", &repository);
        let response = server.post_form("/api/v1/builds", form);
        assert_eq!(response.status(), 400);
        let body: Value = response.json().unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field_name),
            "{body}"
        );
    };
    let plain = || with_file(env.dockerfile("true"));
    refused(field(plain(), "secret", "no-equals-sign"), "secret");
    refused(field(plain(), "secret", "bad id=x"), "secret");
    let big = Part::bytes(vec![b'x'; 64 * 1024 + 1]).file_name("big");
    refused(plain().part("secret", big), "secret");
    refused(
        field(field(plain(), "secret", "A=1"), "buildkit", "false"),
        "secret",
    );

    // A queued build's secrets do not survive a restart: it fails and says so.
    let running = server.submit(field(
        with_file(env.dockerfile("sleep 3")),
        "repository",
        &repository,
    ));
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let waiting = server.submit(field(
        field(plain(), "secret", "token=lost-value"),
        "repository",
        &repository,
    ));
    server.kill();
    server.restart();
    let lost = server.wait_final(waiting, BUILD_TIME);
    assert_eq!(lost["status"], "failed", "{lost}");
    let error = lost["error"].as_str().unwrap();
    assert!(
        error.contains("secrets") && error.contains("restarted"),
        "{error}"
    );
}

#[test]
fn a_build_on_a_fresh_builder_reuses_what_another_builder_pushed() {
    let env = TestEnv::get();
    let mut fresh_daemon = PrivateDaemon::start(&env);
    let first = Server::start();
    let second = Server::start_with(&["--docker-host", &fresh_daemon.host()]);
    let run = format!("RUN sleep 2 && echo {} > /slow", unique("slow"));
    let dockerfile = format!("FROM {}\n{run}\n", env.base_image);
    let repository = format!("{}/{}", env.registry, unique("shared-cache"));
    let build_on = |server: &Server| {
        let form = field(with_file(dockerfile.clone()), "repository", &repository);
        let build = server.wait_final(server.submit(form), BUILD_TIME);
        assert_eq!(build["status"], "succeeded", "{build}");
        server.logs(build["id"].as_i64().unwrap())
    };
    let first_logs = build_on(&first);
    let step = buildkit_step(&first_logs, &run);
    assert!(first_logs.contains(&format!("{step} DONE")), "{first_logs}");
    let started = Instant::now();
    let second_logs = build_on(&second);
    let step = buildkit_step(&second_logs, &run);
    assert!(
        second_logs.contains(&format!(
            "importing cache manifest from {repository}:latest"
        )),
        "{second_logs}"
    );
    assert!(
        second_logs.contains(&format!("{step} CACHED")),
        "{second_logs}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    fresh_daemon.stop();
}

/// Submits a secret build whose step sleeps; returns it once the step runs.
fn sleeping_secret_build(server: &Server, env: &TestEnv, marker: &str) -> i64 {
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=secret,id=token sleep 600 && echo {marker}\n",
        env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("secret-sleep"));
    let form = field(with_file(dockerfile), "repository", &repository);
    let id = server.submit(field(form, "secret", "token=value"));
    wait_for_process(marker, BUILD_TIME);
    id
}

#[test]
fn a_secret_build_past_its_timeout_fails_and_its_step_is_gone() {
    let env = TestEnv::get();
    // Long enough for the step to start on a loaded machine (the timeout counts
    // from the build's start), far below the step's 600 s.
    let server = Server::start_with(&["--build-timeout-secs", "20"]);
    let marker = unique("secret-timeout");
    let id = sleeping_secret_build(&server, &env, &marker);
    let build = server.wait_final(id, Duration::from_secs(60));
    assert_eq!(build["status"], "failed", "{build}");
    assert_eq!(build["error"], "timed out after 20 s");
    assert_processes_gone(&marker, Duration::from_secs(10));
    assert!(server.logs(id).contains("dockpub: timed out after 20 s"));
}

#[test]
fn cancelling_a_secret_build_stops_its_step_long_before_it_would_end() {
    let env = TestEnv::get();
    let server = Server::start();
    let marker = unique("secret-cancel");
    let id = sleeping_secret_build(&server, &env, &marker);
    let asked = Instant::now();
    assert_eq!(server.cancel(id).status(), 200);
    assert_processes_gone(
        &marker,
        Duration::from_secs(10).saturating_sub(asked.elapsed()),
    );
    assert_eq!(server.build(id)["status"], "cancelled");
}

#[test]
fn the_legacy_builder_refuses_a_mount_on_a_continued_line_at_submit() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!(
        "FROM {}\nRUN \\\n    --mount=type=cache,target=/cache \\\n    true\n",
        env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("legacy-continued"));
    let form = field(
        field(with_file(dockerfile), "buildkit", "false"),
        "repository",
        &repository,
    );
    let response = server.post_form("/api/v1/builds", form);
    assert_eq!(response.status(), 400);
    let body: Value = response.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("RUN --mount"), "{body}");
    let listed = server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"], Value::Array(vec![]), "nothing was stored");
}

#[test]
fn from_platform_buildplatform_on_the_legacy_builder_fails_naming_buildkit() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {}\nRUN true\n",
        env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("legacy-platform"));
    let build = build_only(
        &server,
        field(with_file(dockerfile.clone()), "buildkit", "false"),
        &repository,
    );
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.contains("invalid component") && error.contains("BuildKit"),
        "{error}"
    );
    // BuildKit sets the variable: the same Dockerfile builds.
    let build = build_only(&server, with_file(dockerfile), &repository);
    assert_eq!(build["status"], "succeeded", "{build}");
}

#[test]
fn syntax_of_a_newer_frontend_fails_with_a_hint_about_the_syntax_line() {
    let env = TestEnv::get();
    let server = Server::start();
    let base = &env.base_image;
    let cases = [
        (
            "heredocs",
            format!("FROM {base}\nRUN <<EOF\necho hi\nEOF\n"),
        ),
        (
            "--link",
            format!("FROM {base}\nCOPY --link Dockerfile /d\n"),
        ),
        (
            "RUN --network",
            format!("FROM {base}\nRUN --network=none true\n"),
        ),
    ];
    for (feature, dockerfile) in cases {
        let repository = format!("{}/{}", env.registry, unique("newer-syntax"));
        let build = build_only(&server, with_file(dockerfile), &repository);
        assert_eq!(build["status"], "failed", "{feature}: {build}");
        let error = build["error"].as_str().unwrap();
        assert!(
            error.contains(feature) && error.contains("# syntax=docker/dockerfile:1"),
            "{feature}: {error}"
        );
    }
}

#[test]
fn a_cold_builder_reuses_the_cache_a_secret_build_pushed() {
    let env = TestEnv::get();
    let mut cold_daemon = PrivateDaemon::start(&env);
    let first = Server::start();
    let second = Server::start_with(&["--docker-host", &cold_daemon.host()]);
    let run = format!(
        "RUN --mount=type=secret,id=token test -s /run/secrets/token && sleep 2 && echo {} > /slow",
        unique("slow")
    );
    let dockerfile = format!("FROM {}\n{run}\n", env.base_image);
    let repository = format!("{}/{}", env.registry, unique("secret-cache"));
    let form = field(with_file(dockerfile.clone()), "repository", &repository);
    let secret_build = first.wait_final(
        first.submit(field(form, "secret", "token=value")),
        BUILD_TIME,
    );
    assert_eq!(secret_build["status"], "succeeded", "{secret_build}");
    let first_logs = first.logs(secret_build["id"].as_i64().unwrap());
    assert!(
        first_logs.contains("over BuildKit's gRPC API"),
        "{first_logs}"
    );
    let step = buildkit_step(&first_logs, &run);
    assert!(first_logs.contains(&format!("{step} DONE")), "{first_logs}");

    // The cold daemon has neither the image nor any cache: only the registry's.
    // Its build has the secret too: BuildKit's gRPC API, with the same cache.
    let form = field(with_file(dockerfile), "repository", &repository);
    let reuse = second.wait_final(
        second.submit(field(form, "secret", "token=other")),
        BUILD_TIME,
    );
    assert_eq!(reuse["status"], "succeeded", "{reuse}");
    let second_logs = second.logs(reuse["id"].as_i64().unwrap());
    assert!(
        second_logs.contains(&format!(
            "importing cache manifest from {repository}:latest"
        )),
        "{second_logs}"
    );
    let step = buildkit_step(&second_logs, &run);
    assert!(
        second_logs.contains(&format!("{step} CACHED")),
        "{second_logs}"
    );
    cold_daemon.stop();
}
