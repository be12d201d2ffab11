//! Keeping its word under faults: tokens, shutdown, daemon outages, a full queue,
//! crashes, retention.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    assert_processes_gone, field, local_image_exists, registry_digest, unique, wait_for_process,
    with_file, PrivateDaemon, Server, TestEnv,
};
use reqwest::blocking::RequestBuilder;
use reqwest::Method;
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(120);

fn submit(server: &Server, env: &TestEnv, run: &str, push: bool) -> i64 {
    let repository = format!("{}/{}", env.registry, unique("rel"));
    let form = field(with_file(env.dockerfile(run)), "repository", &repository);
    server.submit(field(form, "push", &push.to_string()))
}

#[test]
fn every_api_route_wants_a_configured_token() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--api-tokens", "token-one,token-two"]);
    let authorized = |request: RequestBuilder| request.bearer_auth("token-two");
    let form = || {
        field(
            field(
                with_file(env.dockerfile("true")),
                "repository",
                &format!("{}/{}", env.registry, unique("tok")),
            ),
            "push",
            "false",
        )
    };
    let created: Value = authorized(server.client.post(server.url("/api/v1/builds")))
        .multipart(form())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["id"]
        .as_i64()
        .expect("a build with the right token");
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/builds".into()),
        (Method::POST, "/api/v1/builds".into()),
        (Method::GET, format!("/api/v1/builds/{id}")),
        (Method::GET, format!("/api/v1/builds/{id}/logs")),
        (Method::GET, format!("/api/v1/builds/{id}/events")),
        (Method::POST, format!("/api/v1/builds/{id}/cancel")),
        (Method::POST, format!("/api/v1/builds/{id}/retry")),
        (Method::GET, format!("/api/v1/builds/{id}/deliveries")),
        (Method::GET, format!("/api/v1/builds/{id}/provenance")),
        (Method::GET, "/api/v1/provenance/public-key".into()),
        (Method::POST, "/api/v1/deliveries/999999/redeliver".into()),
        (Method::DELETE, format!("/api/v1/builds/{}", id + 1000)),
        (Method::GET, "/api/dockerfile-build/".into()),
        (Method::POST, "/api/dockerfile-build/".into()),
        (
            Method::DELETE,
            "/api/dockerfile-build/?dockerfile_build_id=999".into(),
        ),
        (Method::GET, "/api/v1/no-such-route".into()),
    ];
    for (method, path) in &routes {
        let request = || server.client.request(method.clone(), server.url(path));
        for (who, request) in [
            ("no token", request()),
            ("wrong token", request().bearer_auth("token-three")),
            ("basic auth", request().basic_auth("token-one", Some("x"))),
        ] {
            let response = request.send().unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {who}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().unwrap();
            if path.starts_with("/api/dockerfile-build") {
                // The seed-compatible API answers in the Django service's shape.
                assert!(body["message"].is_string(), "{method} {path}: {body}");
            } else {
                assert_eq!(
                    body["error"]["code"], "unauthorized",
                    "{method} {path} with {who}"
                );
            }
        }
        let response = authorized(request()).send().unwrap();
        assert_ne!(
            response.status(),
            401,
            "{method} {path} with the right token"
        );
        assert!(
            !response.status().is_server_error(),
            "{method} {path}: {}",
            response.status()
        );
    }
    for open in ["/healthz", "/readyz"] {
        assert_eq!(server.get(open).status(), 200, "{open} needs no token");
    }
    assert!(
        !server.log().contains("token-one") && !server.log().contains("token-two"),
        "a token was logged"
    );
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-concurrent-builds", "1", "--max-queued-builds", "2"]);
    let running = submit(&server, &env, "sleep 30", false);
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let waiting = [
        submit(&server, &env, "true", false),
        submit(&server, &env, "true", false),
    ];
    let form = field(
        with_file(env.dockerfile("true")),
        "repository",
        &format!("{}/{}", env.registry, unique("full")),
    );
    let response = server.post_form("/api/v1/builds", form);
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "10");
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    assert_eq!(
        server.get_json("/api/v1/builds?status=queued")["builds"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for id in [running, waiting[0], waiting[1]] {
        server
            .client
            .post(server.url(&format!("/api/v1/builds/{id}/cancel")))
            .send()
            .unwrap();
    }
}

#[test]
fn a_stop_lets_running_builds_finish_and_keeps_the_queue() {
    let env = TestEnv::get();
    let mut server = Server::start_with(&[
        "--max-concurrent-builds",
        "1",
        "--shutdown-grace-secs",
        "60",
    ]);
    let running = submit(&server, &env, "sleep 2", true);
    let waiting = submit(&server, &env, "true", true);
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        server.stored_statuses(),
        vec![
            (running, "succeeded".to_string()),
            (waiting, "queued".to_string())
        ]
    );

    server.restart();
    assert_eq!(
        server.wait_final(waiting, BUILD_TIME)["status"],
        "succeeded"
    );
}

#[test]
fn a_stop_past_the_grace_period_leaves_the_build_queued_and_nothing_running() {
    let env = TestEnv::get();
    let mut server = Server::start_with(&["--shutdown-grace-secs", "1"]);
    let marker = unique("grace-marker");
    let id = submit(&server, &env, &format!("sleep 60 && echo {marker}"), false);
    wait_for_process(&marker, BUILD_TIME);
    let asked = Instant::now();
    assert!(server.terminate(Duration::from_secs(30)).success());
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(server.stored_statuses(), vec![(id, "queued".to_string())]);
    let containers = Command::new("docker")
        .args(["ps", "-a", "--no-trunc", "--format", "{{.Command}}"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&containers.stdout).contains(&marker),
        "its container was left"
    );
    assert_processes_gone(&marker, Duration::from_secs(10));

    server.restart();
    server.wait_for(id, BUILD_TIME, |b| b["status"] == "building");
    let cancelled = server
        .client
        .post(server.url(&format!("/api/v1/builds/{id}/cancel")))
        .send()
        .unwrap();
    assert_eq!(cancelled.status(), 200);
}

#[test]
fn builds_wait_queued_while_the_daemon_is_down_and_run_when_it_is_back() {
    let env = TestEnv::get();
    let mut daemon = PrivateDaemon::start(&env);
    let server = Server::start_with(&["--docker-host", &daemon.host()]);
    assert_eq!(server.get("/readyz").status(), 200);
    daemon.stop();

    let readiness = server.get("/readyz");
    assert_eq!(readiness.status(), 503);
    let body: Value = readiness.json().unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(
        body["builders_down"],
        serde_json::json!(["local"]),
        "{body}"
    );
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("builder 'local'"),
        "{body}"
    );
    let id = submit(&server, &env, "echo built-after-the-outage", true);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.build(id)["status"], "queued");
    assert!(
        server.log().contains("does not answer"),
        "no log line for the outage"
    );

    daemon.resume();
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert!(server.logs(id).contains("built-after-the-outage"));
    assert!(server.log().contains("the Docker daemon is back"));
    assert_eq!(server.get("/readyz").status(), 200);
}

#[test]
fn a_crash_with_two_running_and_eight_waiting_loses_and_repeats_nothing() {
    let env = TestEnv::get();
    let mut server = Server::start_with(&["--max-concurrent-builds", "2"]);
    let repositories: Vec<String> = (0..10)
        .map(|_| format!("{}/{}", env.registry, unique("crash10")))
        .collect();
    let ids: Vec<i64> = repositories
        .iter()
        .map(|repository| {
            server.submit(field(
                with_file(env.dockerfile("sleep 2")),
                "repository",
                repository,
            ))
        })
        .collect();
    let deadline = Instant::now() + BUILD_TIME;
    loop {
        let statuses = server.get_json("/api/v1/builds?limit=20");
        let running = statuses["builds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == "building")
            .count();
        if running == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two builds never ran at once");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let statuses = server.stored_statuses();
    assert_eq!(
        statuses.iter().filter(|(_, s)| s == "building").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|(_, s)| s == "queued").count(),
        8,
        "{statuses:?}"
    );

    server.restart();
    for (id, repository) in ids.iter().zip(&repositories) {
        let build = server.wait_final(*id, BUILD_TIME * 2);
        assert_eq!(build["status"], "succeeded", "{build}");
        let pushes = server
            .logs(*id)
            .matches("dockpub: registry confirmed")
            .count();
        assert_eq!(pushes, 1, "build {id} pushed {pushes} times");
        let path = repository.split_once('/').unwrap().1;
        assert_eq!(
            registry_digest(&env.registry, path, "latest", None).as_deref(),
            build["digest"].as_str()
        );
    }
    assert_eq!(
        server.get_json("/api/v1/builds?limit=20")["builds"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn retention_prunes_old_final_builds_and_their_images() {
    let env = TestEnv::get();
    let server = Server::start_with(&[
        "--retention-keep-last",
        "2",
        "--retention-interval-secs",
        "1",
    ]);
    let repository = format!("{}/{}", env.registry, unique("retention"));
    let ids: Vec<i64> = (0..4)
        .map(|n| {
            let form = field(with_file(env.dockerfile("true")), "repository", &repository);
            let id = server.submit(field(field(form, "push", "false"), "tag", &format!("t{n}")));
            assert_eq!(server.wait_final(id, BUILD_TIME)["status"], "succeeded");
            id
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Vec<i64> = server.get_json("/api/v1/builds")["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect();
        if listed == vec![ids[3], ids[2]] {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned: {listed:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!local_image_exists(&format!("{repository}:t0")));
    assert!(!local_image_exists(&format!("{repository}:t1")));
    assert!(local_image_exists(&format!("{repository}:t3")));
    assert!(!server
        .data_dir()
        .join(format!("builds/{}", ids[0]))
        .exists());
}

#[test]
fn an_internal_error_answers_500_internal_with_a_request_id_and_no_detail() {
    let env = TestEnv::get();
    let server = Server::start();
    // A file where the stored builds' folder should be: every new build's files fail.
    let builds = server.data_dir().join("builds");
    std::fs::remove_dir_all(&builds).unwrap();
    std::fs::write(&builds, "not a folder").unwrap();
    let form = field(
        with_file(env.dockerfile("true")),
        "repository",
        &format!("{}/{}", env.registry, unique("internal")),
    );
    let response = server.post_form("/api/v1/builds", form);
    assert_eq!(response.status(), 500);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "internal", "{body}");
    let request_id = body["error"]["request_id"].as_str().expect("a request id");
    let text = body.to_string();
    let data_dir = server.data_dir().display().to_string();
    for leak in [
        data_dir.as_str(),
        "Not a directory",
        "stored files",
        "sqlite",
    ] {
        assert!(!text.contains(leak), "'{leak}' reached the client: {text}");
    }
    let log = server.log();
    let logged = log
        .lines()
        .find(|line| line.contains(request_id))
        .expect("the request id is in the log");
    assert!(logged.contains("Not a directory"), "{logged}");
}

#[test]
fn a_second_instance_on_the_same_data_dir_exits_at_once_with_code_2() {
    let env = TestEnv::get();
    let server = Server::start();
    let running = submit(&server, &env, "sleep 5", false);
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let started = Instant::now();
    let second = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("run a second dockpub");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("pid {}", server.pid())),
        "the holder is named: {stderr}"
    );
    // The first one's build was left alone: one attempt, and it finishes.
    let build = server.wait_final(running, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert!(!server.log().contains("interrupted by a restart"));
}

#[test]
fn a_build_that_cannot_start_says_why_and_fails_after_max_queue_wait() {
    let env = TestEnv::get();
    let nowhere = format!("unix:///tmp/{}.sock", unique("no-daemon"));
    let server = Server::start_with(&["--docker-host", &nowhere, "--max-queue-wait-secs", "2"]);
    let repository = format!("{}/{}", env.registry, unique("rel"));
    let form = field(with_file(env.dockerfile("true")), "repository", &repository);
    let answer: Value = server
        .post_form("/api/v1/builds", field(form, "push", "false"))
        .json()
        .unwrap();
    // The submit's answer says why, as the GET after it does.
    assert_eq!(answer["waiting_for"], "no builder up", "{answer}");
    let id = answer["id"].as_i64().unwrap();
    let queued = server.build(id);
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["waiting_for"], "no builder up", "{queued}");
    let failed = server.wait_for(id, Duration::from_secs(30), |b| b["status"] == "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("max_queue_wait_secs (2 s)") && error.contains("no builder up"),
        "{error}"
    );
    assert_eq!(failed["waiting_for"], Value::Null);
}

#[test]
fn platforms_no_builder_offers_are_refused_and_busy_slots_are_named() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-concurrent-builds", "1"]);
    // The pool knows the daemon's platform after its first health check.
    let ready = Instant::now();
    while server.get_json("/api/v1/builders")["builders"][0]["platforms"]
        .as_array()
        .is_none_or(|platforms| platforms.is_empty())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "the builder never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let repository = format!("{}/{}", env.registry, unique("plat"));
    for (platform, needle) in [
        ("linux/arm64", "the pool offers linux/amd64"),
        ("linux", "os/arch"),
        ("xx", "os/arch"),
    ] {
        let form = field(with_file(env.dockerfile("true")), "repository", &repository);
        let response = server.post_form("/api/v1/builds", field(form, "platform", platform));
        assert_eq!(response.status(), 400, "platform {platform}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "invalid_option", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{platform}: {message}");
    }
    let running = submit(&server, &env, "sleep 30", false);
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let waiting = submit(&server, &env, "true", false);
    assert_eq!(
        server.build(waiting)["waiting_for"],
        "every slot is busy (1 running)"
    );
    for id in [waiting, running] {
        let response = server
            .client
            .post(server.url(&format!("/api/v1/builds/{id}/cancel")))
            .send()
            .unwrap();
        assert!(response.status().is_success());
    }
}

#[test]
fn a_daemon_without_its_default_bridge_gets_a_hint_naming_build_network() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--allowed-build-networks", "bridge"]);
    let repository = format!("{}/{}", env.registry, unique("bridge"));
    let form = field(with_file(env.dockerfile("true")), "repository", &repository);
    let form = field(field(form, "push", "false"), "network", "bridge");
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.contains("docker0") && error.contains("build_network"),
        "{error}"
    );
}

/// Retention's first pass runs at start, before the first health check: builds
/// are pruned only on a builder known to be up, so their tags go with them.
#[test]
fn retention_at_start_waits_for_the_builder_and_removes_the_tags() {
    let env = TestEnv::get();
    let mut server = Server::start_with(&[
        "--retention-keep-last",
        "1",
        "--retention-interval-secs",
        "3600",
    ]);
    let repository = format!("{}/{}", env.registry, unique("retention-start"));
    let ids: Vec<i64> = (0..3)
        .map(|n| {
            let form = field(with_file(env.dockerfile("true")), "repository", &repository);
            let id = server.submit(field(field(form, "push", "false"), "tag", &format!("t{n}")));
            assert_eq!(server.wait_final(id, BUILD_TIME)["status"], "succeeded");
            id
        })
        .collect();
    assert_eq!(server.terminate(Duration::from_secs(30)).code(), Some(0));
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get_json("/api/v1/builds")["builds"]
        .as_array()
        .unwrap()
        .len()
        > 1
    {
        assert!(Instant::now() < deadline, "not pruned:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.build(ids[2])["status"], "succeeded");
    assert!(!local_image_exists(&format!("{repository}:t0")));
    assert!(!local_image_exists(&format!("{repository}:t1")));
    assert!(local_image_exists(&format!("{repository}:t2")));
    assert!(
        !server.log().contains("was left on builder"),
        "{}",
        server.log()
    );
}

#[test]
fn readyz_is_open_so_it_names_a_down_builder_without_its_socket_path() {
    // An in-process server's builder is a socket that does not exist.
    let server = Server::in_process(&[]);
    let readiness = server.get("/readyz");
    assert_eq!(readiness.status(), 503);
    let body: Value = readiness.json().unwrap();
    assert_eq!(
        body["reasons"],
        serde_json::json!(["builder 'local' does not answer"]),
        "{body}"
    );
    assert!(!body.to_string().contains("no-docker.sock"), "{body}");
    // The detail is for the server's log.
    assert!(
        server.log().contains("no-docker.sock"),
        "the log lacks the builder's error"
    );
}
