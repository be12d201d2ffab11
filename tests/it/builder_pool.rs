//! The builder pool on real daemons: the machine's own, private ones the test
//! starts and stops, and one reached over TCP with TLS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{
    field, pushed_digest, registry_digest, unique, with_file, PrivateDaemon, Server, TestEnv,
    TlsCerts,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(180);
const MACHINE_DAEMON: &str = "unix:///var/run/docker.sock";

/// One `[[builders]]` entry: name, host, slots, and TLS files when given.
struct Entry<'a> {
    name: &'a str,
    host: String,
    slots: usize,
    tls: Option<(&'a Path, &'a Path, &'a Path)>,
    platforms: &'a [&'a str],
}

impl<'a> Entry<'a> {
    fn plain(name: &'a str, host: String) -> Self {
        Entry {
            name,
            host,
            slots: 1,
            tls: None,
            platforms: &[],
        }
    }
}

/// Writes a config file with these builders and starts dockpub on it.
fn start_with_builders(dir: &Path, entries: &[Entry]) -> Server {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&format!(
            "[[builders]]\nname = \"{}\"\nhost = \"{}\"\nmax_concurrent_builds = {}\n",
            entry.name, entry.host, entry.slots
        ));
        if !entry.platforms.is_empty() {
            text.push_str(&format!("platforms = {:?}\n", entry.platforms));
        }
        if let Some((ca, cert, key)) = entry.tls {
            text.push_str(&format!(
                "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                ca.display(),
                cert.display(),
                key.display()
            ));
        }
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    Server::start_with(&["--config", path.to_str().unwrap()])
}

fn submit(server: &Server, env: &TestEnv, run: &str, push: bool) -> (i64, String) {
    let repository = format!("{}/{}", env.registry, unique("pool"));
    let form = field(with_file(env.dockerfile(run)), "repository", &repository);
    (
        server.submit(field(form, "push", &push.to_string())),
        repository,
    )
}

fn builder<'a>(builders: &'a Value, name: &str) -> &'a Value {
    builders["builders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no builder {name} in {builders}"))
}

/// Polls `/api/v1/builders` until `name`'s `up` is `up`.
fn wait_builder_up(server: &Server, name: &str, up: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let builders = server.get_json("/api/v1/builders");
        if builder(&builders, name)["up"] == up {
            return builders;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became up={up}: {builders}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn time(build: &Value, key: &str) -> DateTime<Utc> {
    build[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {build}"))
        .parse()
        .unwrap()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dockpub-pool")
        .tempdir()
        .unwrap()
}

#[test]
fn two_builders_with_one_slot_each_share_six_builds_never_two_at_once() {
    let env = TestEnv::get();
    let second = PrivateDaemon::start(&env);
    let dir = temp_dir();
    // A builder that never answers, the only one with linux/arm64.
    let nowhere = format!("unix:///tmp/{}.sock", unique("arm-daemon"));
    let server = start_with_builders(
        dir.path(),
        &[
            Entry::plain("machine", MACHINE_DAEMON.into()),
            Entry::plain("second", second.host()),
            Entry {
                platforms: &["linux/arm64"],
                ..Entry::plain("arm", nowhere)
            },
        ],
    );
    wait_builder_up(&server, "machine", true);
    wait_builder_up(&server, "second", true);
    let arm_form = |platform: &str| {
        let repository = format!("{}/{}", env.registry, unique("arm"));
        let form = field(with_file(env.dockerfile("true")), "repository", &repository);
        field(form, "platform", platform)
    };
    // No builder offers it: refused at once, naming what the pool offers.
    let refused = server.post_form("/api/v1/builds", arm_form("linux/s390x"));
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("linux/amd64, linux/arm64"), "{message}");
    // Its only builder is down: it waits, saying so, while the others run.
    let arm = server.submit(arm_form("linux/arm64"));
    assert_eq!(
        server.build(arm)["waiting_for"],
        "platform linux/arm64: its builders are down"
    );
    let ids: Vec<(i64, String)> = (0..6)
        .map(|n| submit(&server, &env, &format!("sleep 2 && echo pool-{n}"), true))
        .collect();
    let builds: Vec<Value> = ids
        .iter()
        .map(|(id, _)| server.wait_final(*id, BUILD_TIME))
        .collect();
    for (build, (_, repository)) in builds.iter().zip(&ids) {
        assert_eq!(build["status"], "succeeded", "{build}");
        assert_eq!(build["attempts"], 1, "{build}");
        let digest = pushed_digest(repository, "latest", None);
        assert_eq!(digest.as_deref(), build["digest"].as_str(), "{build}");
    }
    for name in ["machine", "second"] {
        let ran: Vec<&Value> = builds.iter().filter(|b| b["builder"] == name).collect();
        assert!(ran.len() >= 2, "{name} ran {} of 6 builds", ran.len());
        let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = ran
            .iter()
            .map(|b| (time(b, "started_at"), time(b, "finished_at")))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "two builds at once on {name}: {spans:?}"
            );
        }
    }
    let builders = server.get_json("/api/v1/builders");
    let done: u64 = ["machine", "second"]
        .iter()
        .map(|name| builder(&builders, name)["builds_done"].as_u64().unwrap())
        .sum();
    assert_eq!(done, 6, "{builders}");
    assert_eq!(builder(&builders, "second")["slots"], 1);
    assert_eq!(builder(&builders, "second")["platforms"][0], "linux/amd64");
    assert_eq!(server.build(arm)["status"], "queued");
    assert_eq!(
        server
            .client
            .post(server.url(&format!("/api/v1/builds/{arm}/cancel")))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn a_build_on_a_builder_that_stops_runs_again_on_the_other_and_the_builder_comes_back() {
    let env = TestEnv::get();
    let mut second = PrivateDaemon::start(&env);
    let dir = temp_dir();
    // Listed first: with both idle, the tie goes to configuration order.
    let server = start_with_builders(
        dir.path(),
        &[
            Entry::plain("second", second.host()),
            Entry::plain("machine", MACHINE_DAEMON.into()),
        ],
    );
    wait_builder_up(&server, "second", true);
    wait_builder_up(&server, "machine", true);
    let (id, repository) = submit(
        &server,
        &env,
        "echo step-started && sleep 20 && echo survived",
        true,
    );
    server.wait_for(id, BUILD_TIME, |b| b["status"] == "building");
    assert_eq!(server.build(id)["builder"], "second");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.logs(id).contains("step-started") {
        assert!(
            Instant::now() < deadline,
            "the step never started: {}",
            server.logs(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    second.stop();
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.log());
    assert_eq!(build["builder"], "machine", "{build}");
    assert_eq!(build["attempts"], 2, "{build}");
    let logs = server.logs(id);
    assert!(logs.contains("dockpub: back to the queue"), "{logs}");
    assert_eq!(
        logs.matches("dockpub: registry confirmed").count(),
        1,
        "{logs}"
    );
    let name = repository.split_once('/').unwrap().1;
    assert_eq!(
        registry_digest(&env.registry, name, "latest", None).as_deref(),
        build["digest"].as_str()
    );
    assert!(
        server.log().contains(&format!("build {id}: queued")),
        "the build never went back to queued"
    );
    let builders = wait_builder_up(&server, "second", false);
    let down = builder(&builders, "second");
    assert!(down["last_error"].as_str().is_some(), "{builders}");
    let ready = server.get("/readyz");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["builders_down"],
        serde_json::json!(["second"]),
        "{ready}"
    );
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("builder 'second' does not answer"),
        "{ready}"
    );

    second.resume();
    wait_builder_up(&server, "second", true);
    assert!(server
        .log()
        .contains("builder 'second': the Docker daemon is back"));
    // Two at once: one slot each, so one of them runs on the builder that came back.
    let again: Vec<i64> = (0..2)
        .map(|n| submit(&server, &env, &format!("sleep 3 && echo again-{n}"), false).0)
        .collect();
    let ran_on: Vec<Value> = again
        .iter()
        .map(|id| {
            let build = server.wait_final(*id, BUILD_TIME);
            assert_eq!(build["status"], "succeeded", "{build}");
            build["builder"].clone()
        })
        .collect();
    assert!(ran_on.contains(&Value::from("second")), "{ran_on:?}");

    // Delete: the image goes from the builder that built it; when that one is
    // down, the record goes anyway and the answer says what was left where.
    second.stop();
    wait_builder_up(&server, "second", false);
    for (id, builder) in again.iter().zip(&ran_on) {
        let response = server
            .client
            .delete(server.url(&format!("/api/v1/builds/{id}")))
            .send()
            .unwrap();
        if builder == "second" {
            assert_eq!(response.status(), 200);
            let body: Value = response.json().unwrap();
            assert_eq!(body["image_left_on"], "second", "{body}");
        } else {
            assert_eq!(response.status(), 204);
        }
        assert_eq!(server.get(&format!("/api/v1/builds/{id}")).status(), 404);
    }
}

#[test]
fn a_builder_with_wrong_tls_certificates_is_down_with_the_reason_and_the_others_carry_on() {
    let env = TestEnv::get();
    let dir = temp_dir();
    let certs = TlsCerts::make(&dir.path().join("certs"));
    let strangers = TlsCerts::make(&dir.path().join("other-ca"));
    let tls_daemon = PrivateDaemon::start_tls(&env, &certs);
    let files = |c: &TlsCerts| -> (PathBuf, PathBuf, PathBuf) {
        (c.ca.clone(), c.client_cert.clone(), c.client_key.clone())
    };
    let (good, bad) = (files(&certs), files(&strangers));
    let server = start_with_builders(
        dir.path(),
        &[
            Entry {
                tls: Some((&good.0, &good.1, &good.2)),
                ..Entry::plain("tls", tls_daemon.host())
            },
            Entry {
                tls: Some((&bad.0, &bad.1, &bad.2)),
                ..Entry::plain("wrong-certs", tls_daemon.host())
            },
            Entry::plain("machine", MACHINE_DAEMON.into()),
        ],
    );
    let builders = wait_builder_up(&server, "tls", true);
    let builders_text = builders.to_string();
    assert!(!builders_text.contains(".pem"), "{builders_text}");
    assert_eq!(builder(&builders, "tls")["tls"], true);
    let builders = wait_builder_up(&server, "wrong-certs", false);
    let reason = builder(&builders, "wrong-certs")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(reason.contains("certificate"), "{builders}");

    let ids: Vec<i64> = (0..4)
        .map(|n| submit(&server, &env, &format!("sleep 2 && echo tls-{n}"), true).0)
        .collect();
    let ran_on: Vec<String> = ids
        .iter()
        .map(|id| {
            let build = server.wait_final(*id, BUILD_TIME);
            assert_eq!(build["status"], "succeeded", "{build}");
            build["builder"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(ran_on.iter().any(|b| b == "tls"), "{ran_on:?}");
    assert!(!ran_on.iter().any(|b| b == "wrong-certs"), "{ran_on:?}");
    assert_eq!(server.get("/readyz").status(), 200);
}
