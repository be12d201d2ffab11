//! Watching builds live, cancelling them and running them again.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    assert_processes_gone, field, local_image_exists, output_text, read_events, registry_digest,
    unique, wait_for_process, with_file, Server, SseEvent, TestEnv,
};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(120);

fn submit(server: &Server, env: &TestEnv, run: &str) -> (i64, String) {
    let repository = format!("{}/{}", env.registry, unique("live"));
    let id = server.submit(field(
        with_file(env.dockerfile(run)),
        "repository",
        &repository,
    ));
    (id, repository)
}

fn follow_log(server: &Server, id: i64) -> String {
    let mut response = server.get(&format!("/api/v1/builds/{id}/logs?follow=true"));
    assert_eq!(response.status(), 200);
    let mut body = String::new();
    response.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn a_follower_gets_every_line_in_order_and_the_response_ends_with_the_build() {
    let env = TestEnv::get();
    let server = Server::start();
    let (id, _) = submit(&server, &env, "seq 1 300 && sleep 1 && seq 301 600");
    let followed = follow_log(&server, id);
    assert_eq!(
        server.build(id)["status"],
        "succeeded",
        "the stream ended before the build"
    );
    assert_eq!(
        followed,
        server.logs(id),
        "the followed log differs from the stored one"
    );
    let numbers: Vec<u32> = followed
        .lines()
        .filter_map(|line| output_text(line).parse().ok())
        .collect();
    assert_eq!(numbers, (1..=600).collect::<Vec<_>>());
}

#[test]
fn fifty_followers_of_one_build_all_get_the_whole_log() {
    let env = TestEnv::get();
    let server = Server::start();
    let (id, _) = submit(&server, &env, "sleep 1 && seq 1 2000");
    let logs: Vec<String> = std::thread::scope(|scope| {
        let followers: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| follow_log(&server, id)))
            .collect();
        followers.into_iter().map(|f| f.join().unwrap()).collect()
    });
    let stored = server.logs(id);
    assert!(stored.lines().any(|line| output_text(line) == "2000"));
    for (n, log) in logs.iter().enumerate() {
        assert_eq!(log, &stored, "follower {n}");
    }
}

#[test]
fn events_tell_status_log_progress_and_done_in_order_and_resume() {
    let env = TestEnv::get();
    let server = Server::start();
    let (id, _) = submit(&server, &env, "sleep 1 && echo done-sleeping");
    let events = read_events(&server, id, None);
    let position = |wanted: &dyn Fn(&SseEvent) -> bool| events.iter().position(wanted);
    let status_is = |status: &'static str| {
        move |e: &SseEvent| {
            e.event == "status"
                && serde_json::from_str::<Value>(&e.data).unwrap()["status"] == status
        }
    };
    let building = position(&status_is("building")).expect("no building status");
    let pushing = position(&status_is("pushing")).expect("no pushing status");
    let progress = position(&|e| e.event == "progress").expect("no progress event");
    let done = position(&|e| e.event == "done").expect("no done event");
    assert!(
        building < pushing && pushing < done && progress < done,
        "out of order"
    );
    assert_eq!(done, events.len() - 1, "done is the last event");
    let final_build: Value = serde_json::from_str(&events[done].data).unwrap();
    assert_eq!(final_build["status"], "succeeded");
    assert!(events
        .iter()
        .any(|e| e.event == "log" && output_text(&e.data) == "done-sleeping"));
    let push_progress: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    // FROM and RUN: the steps as the log numbers them, [1/2] and [2/2].
    assert!(
        push_progress
            .iter()
            .any(|p| p["step"] == 2 && p["steps"] == 2),
        "{push_progress:?}"
    );

    let log_ids: Vec<i64> = events.iter().filter_map(|e| e.id).collect();
    assert_eq!(
        log_ids,
        (1..=log_ids.len() as i64).collect::<Vec<_>>(),
        "log event ids count lines"
    );
    let resumed = read_events(&server, id, Some(5));
    let resumed_ids: Vec<i64> = resumed.iter().filter_map(|e| e.id).collect();
    assert_eq!(resumed_ids, (6..=log_ids.len() as i64).collect::<Vec<_>>());
    assert_eq!(resumed.last().unwrap().event, "done");
}

/// The containers whose command holds `marker`, running or not.
fn containers_with(marker: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(marker))
        .map(str::to_string)
        .collect()
}

fn post(server: &Server, path: &str) -> (u16, Value) {
    let response = server.client.post(server.url(path)).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

#[test]
fn cancelling_a_running_build_stops_it_long_before_it_would_end_and_leaves_nothing() {
    let env = TestEnv::get();
    let server = Server::start();
    let marker = unique("cancel-marker");
    let (id, repository) = submit(&server, &env, &format!("sleep 60 && echo {marker}"));
    wait_for_process(&marker, BUILD_TIME);

    let asked = Instant::now();
    let (status, build) = post(&server, &format!("/api/v1/builds/{id}/cancel"));
    assert_eq!(status, 200, "{build}");
    assert_eq!(build["status"], "cancelled");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(build["error"], Value::Null);
    assert!(build["finished_at"].is_string());
    assert!(
        containers_with(&marker).is_empty(),
        "left: {:?}",
        containers_with(&marker)
    );
    // BuildKit's step is a process, not a container: gone within 10 s of the cancel (a bound for a loaded CI machine, far below the step's sleep).
    assert_processes_gone(
        &marker,
        Duration::from_secs(10).saturating_sub(asked.elapsed()),
    );
    assert!(!local_image_exists(&format!("{repository}:latest")));
    assert!(server.logs(id).ends_with("dockpub: cancelled\n"));
    let seed = server.get_json(&format!("/api/dockerfile-build/?dockerfile_build_id={id}"));
    assert_eq!(seed["data"]["status"], "Cancelled");

    let (status, body) = post(&server, &format!("/api/v1/builds/{id}/cancel"));
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "build_final");
}

#[test]
fn cancelling_a_queued_build_lets_the_next_one_start() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-concurrent-builds", "1"]);
    let (running, _) = submit(&server, &env, "sleep 60");
    let (queued, _) = submit(&server, &env, "true");
    let (next, _) = submit(&server, &env, "true");
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");

    let (status, build) = post(&server, &format!("/api/v1/builds/{queued}/cancel"));
    assert_eq!((status, build["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(build["started_at"], Value::Null, "it never ran");
    assert_eq!(server.build(next)["status"], "queued");

    let (status, build) = post(&server, &format!("/api/v1/builds/{running}/cancel"));
    assert_eq!((status, build["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(server.wait_final(next, BUILD_TIME)["status"], "succeeded");
}

#[test]
fn delete_with_force_cancels_a_running_build_first() {
    let env = TestEnv::get();
    let server = Server::start();
    let marker = unique("force-marker");
    let (id, _) = submit(&server, &env, &format!("sleep 60 && echo {marker}"));
    server.wait_for(id, BUILD_TIME, |b| b["status"] == "building");
    let url = server.url(&format!("/api/v1/builds/{id}"));
    let plain = server.client.delete(&url).send().unwrap();
    assert_eq!(plain.status(), 409);
    let forced = server
        .client
        .delete(format!("{url}?force=true"))
        .send()
        .unwrap();
    assert_eq!(forced.status(), 204);
    assert_eq!(server.get(&format!("/api/v1/builds/{id}")).status(), 404);
    assert!(containers_with(&marker).is_empty());
    assert_processes_gone(&marker, Duration::from_secs(10));
}

#[test]
fn a_build_that_failed_on_a_wrong_password_succeeds_when_retried_with_the_right_one() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.auth_registry, unique("retry"));
    let form = field(with_file(env.dockerfile("true")), "repository", &repository);
    let failed = server.submit(field(
        field(form, "username", &env.auth_user),
        "password",
        "wrong",
    ));
    assert_eq!(server.wait_final(failed, BUILD_TIME)["status"], "failed");

    let (status, body) = post(&server, &format!("/api/v1/builds/{}/retry", failed + 1000));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("build_not_found"))
    );
    let credentials = reqwest::blocking::multipart::Form::new()
        .text("username", env.auth_user.clone())
        .text("password", env.auth_password.clone());
    let response = server.post_form(&format!("/api/v1/builds/{failed}/retry"), credentials);
    assert_eq!(response.status(), 202);
    let retried: Value = response.json().unwrap();
    assert_eq!(retried["retry_of"], failed);
    assert_eq!(retried["repository"], repository.as_str());
    let done = server.wait_final(retried["id"].as_i64().unwrap(), BUILD_TIME);
    assert_eq!(done["status"], "succeeded", "{done}");
    let auth = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    let path = repository.split_once('/').unwrap().1;
    assert_eq!(
        registry_digest(&env.auth_registry, path, "latest", auth).as_deref(),
        done["digest"].as_str()
    );

    let running = server.submit(field(
        with_file(env.dockerfile("sleep 5")),
        "repository",
        &format!("{}/{}", env.registry, unique("r")),
    ));
    let (status, body) = post(&server, &format!("/api/v1/builds/{running}/retry"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("build_not_final"))
    );
}

#[test]
fn build_progress_counts_the_dockerfiles_steps_as_the_log_shows_them() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!(
        "FROM {} AS tools\nRUN echo {} > /tool\n\nFROM {}\nCOPY --from=tools /tool /tool\nRUN cat /tool\nRUN true\n",
        env.base_image,
        unique("tool"),
        env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("steps"));
    let id = server.submit(field(
        field(with_file(dockerfile), "repository", &repository),
        "push",
        "false",
    ));
    let events = read_events(&server, id, None);
    let steps: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
        .filter_map(|p| Some((p["step"].as_u64()?, p["steps"].as_u64()?)))
        .collect();
    let logs = server.logs(id);
    // The log numbers the stages [tools 1/2] [tools 2/2] and [stage-1 1/4] … [stage-1 4/4]
    // (its FROM is the same vertex as the first stage's, shown once): six steps.
    assert!(
        logs.contains("[tools 2/2]") && logs.contains("[stage-1 4/4]"),
        "{logs}"
    );
    assert_eq!(steps.last(), Some(&(6, 6)), "{steps:?}");
    assert!(
        steps.iter().all(|(step, of)| step <= of && *of <= 6),
        "{steps:?}"
    );
}
