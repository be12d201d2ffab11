//! Progress per platform: while a two-platform build runs, the API, its events
//! and the CLI show each platform's phase, builder and counts, and its log tells
//! the platforms apart.

use std::time::{Duration, Instant};

use super::{dockerfile, server_offering_both, submit, BUILD_TIME};
use crate::common::{
    dockpub_client as dockpub, read_events_within, text, unique, Server, SseEvent, TestEnv,
};
use serde_json::Value;

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// The `progress` events, in order.
fn progress_events(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

/// `(platform, phase, builder)` of each platform in a progress object.
fn phases(progress: &Value) -> Vec<(String, String, Option<String>)> {
    let platforms = progress["platforms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    platforms
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap().to_string(),
                p["phase"].as_str().unwrap().to_string(),
                p["builder"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn both_building(progress: &Value) -> bool {
    let phases = phases(progress);
    phases.len() == 2
        && phases
            .iter()
            .all(|(_, phase, builder)| phase == "building" && builder.as_deref() == Some("local"))
}

/// Polls the build until it is final; returns the CLI's `status` line taken
/// while both platforms were building, and every progress the API showed.
fn watch_the_api(server: &Server, id: i64) -> (Option<String>, Vec<Value>) {
    let deadline = Instant::now() + BUILD_TIME;
    let mut status_line = None;
    let mut shown = Vec::new();
    loop {
        let build = server.build(id);
        if ["succeeded", "failed", "cancelled"].contains(&build["status"].as_str().unwrap()) {
            return (status_line, shown);
        }
        let progress = build["progress"].clone();
        if status_line.is_none() && both_building(&progress) {
            let out = dockpub(server, &["status", &id.to_string()]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            status_line = Some(text(&out.stdout));
        }
        if !progress.is_null() {
            shown.push(progress);
        }
        assert!(Instant::now() < deadline, "{build}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_platform_shows_its_phase_in_the_api_events_and_cli_and_ends_done() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-progress"));
    // Long enough that both platforms are seen building side by side.
    let run = "sleep 4 && uname -m | tee /arch";
    let id = submit(&server, dockerfile(run), &repository, &["latest"]);
    let (events, followed, (status_line, shown)) = std::thread::scope(|scope| {
        let events = scope.spawn(|| read_events_within(&server, id, BUILD_TIME));
        let followed = scope.spawn(|| dockpub(&server, &["logs", &id.to_string(), "--follow"]));
        let api = watch_the_api(&server, id);
        (events.join().unwrap(), followed.join().unwrap(), api)
    });
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["status"], "succeeded", "{done}\n{}", server.logs(id));

    // The API: both platforms building side by side on the one builder.
    assert!(shown.iter().any(both_building), "{shown:?}");
    let status_line = status_line.expect("the CLI's status while both were building");
    for platform in PLATFORMS {
        assert!(
            status_line.contains(&format!("{platform} building on local")),
            "{status_line}"
        );
    }

    // The events: each platform went through building and pushing to done,
    // with its own steps and layers; the build's counts are their sums.
    let progress = progress_events(&events);
    for platform in PLATFORMS {
        for phase in ["building", "pushing"] {
            assert!(
                progress
                    .iter()
                    .flat_map(phases)
                    .any(|(p, ph, _)| p == platform && ph == phase),
                "{platform} never {phase}: {progress:?}"
            );
        }
    }
    let last = progress.last().expect("a progress event");
    let platforms = last["platforms"].as_array().unwrap();
    let names: Vec<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, PLATFORMS, "{last}");
    let mut layers = 0;
    for platform in platforms {
        assert_eq!(platform["phase"], "done", "{last}");
        assert_eq!(platform["builder"], "local", "{last}");
        assert_eq!(platform["step"], platform["steps"], "{last}");
        let pushed = platform["layers_done"].as_u64().unwrap();
        assert!(pushed > 0, "{last}");
        assert_eq!(platform["layers_total"].as_u64(), Some(pushed), "{last}");
        layers += pushed;
    }
    assert_eq!(last["layers_done"].as_u64(), Some(layers), "{last}");

    // The CLI's follow: a line each time a platform changed phase.
    let stderr = text(&followed.stderr);
    assert!(followed.status.success(), "{stderr}");
    for platform in PLATFORMS {
        for line in ["building on local", "done on local"] {
            assert!(stderr.contains(&format!("{platform}: {line}")), "{stderr}");
        }
    }

    // The log: every line of the build step names its platform.
    let logs = server.logs(id);
    assert!(
        !logs.lines().any(|line| line.starts_with('#')),
        "a step line without its platform:\n{logs}"
    );
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let said = logs
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("[{platform}] #")))
            .any(|rest| rest.ends_with(&format!(" {arch}")));
        assert!(said, "no [{platform}] line saying {arch}:\n{logs}");
    }
}

#[test]
fn a_platform_without_a_free_slot_shows_it_waits_for_one_then_builds() {
    let dir = tempfile::tempdir().unwrap();
    // One slot: the platforms take turns on it.
    let config = dir.path().join("config.toml");
    let host = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    std::fs::write(
        &config,
        format!(
            "[[builders]]\nname = \"local\"\nhost = \"{host}\"\nmax_concurrent_builds = 1\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-one-slot"));
    let id = submit(&server, dockerfile("sleep 2"), &repository, &["latest"]);
    let events = read_events_within(&server, id, BUILD_TIME);
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["status"], "succeeded", "{done}\n{}", server.logs(id));
    let progress = progress_events(&events);
    // One building while the other waits, with no builder yet.
    let turns = progress.iter().any(|p| {
        let phases = phases(p);
        phases.iter().any(|(_, phase, _)| phase == "building")
            && phases
                .iter()
                .any(|(_, phase, builder)| phase == "waiting_for_slot" && builder.is_none())
    });
    assert!(turns, "{progress:?}");
    let last = phases(progress.last().unwrap());
    assert!(
        last.iter()
            .all(|(_, phase, builder)| phase == "done" && builder.as_deref() == Some("local")),
        "{last:?}"
    );
}
