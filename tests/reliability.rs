//! Keeping its word under faults: tokens, shutdown, daemon outages, a full queue,
//! crashes, retention.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
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
            assert_eq!(
                body["error"]["code"], "unauthorized",
                "{method} {path} with {who}"
            );
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
    assert_processes_gone(&marker, Duration::from_secs(3));

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
