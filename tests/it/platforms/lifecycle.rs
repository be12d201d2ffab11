//! Retry, retention and the build timeout work for a build of several
//! platforms as for one.

use std::time::{Duration, Instant};

use super::{dockerfile, served, server_offering_both_with, submit, BUILD_TIME};
use crate::common::{assert_processes_gone, processes_with, read_events_within, unique, TestEnv};
use serde_json::Value;

/// Long enough for both steps to start on a loaded machine.
const TIMEOUT_SECS: u64 = 15;

#[test]
fn a_retry_builds_both_platforms_again_and_retention_prunes_the_build_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both_with(
        dir.path(),
        &[
            "--retention-keep-last",
            "1",
            "--retention-interval-secs",
            "1",
        ],
    );
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-retry"));
    let first = submit(
        &server,
        dockerfile("uname -m > /arch"),
        &repository,
        &["latest"],
    );
    let built = server.wait_final(first, BUILD_TIME);
    assert_eq!(built["status"], "succeeded", "{built}");

    let response = server
        .client
        .post(server.url(&format!("/api/v1/builds/{first}/retry")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text());
    let retry: Value = response.json().unwrap();
    assert_eq!(retry["retry_of"], first);
    assert_eq!(retry["options"]["platform"], built["options"]["platform"]);
    let second = retry["id"].as_i64().unwrap();
    let retried = server.wait_final(second, BUILD_TIME);
    assert_eq!(
        retried["status"],
        "succeeded",
        "{retried}\n{}",
        server.logs(second)
    );
    let names: Vec<&str> = retried["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    let (digest, index) = served(&repository, "latest").expect("the index");
    assert_eq!(retried["digest"], digest.as_str());
    // Two images, and an attestation of each.
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4);

    // Keep the newest succeeded build: the first goes, the registry keeps the retry's index.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Vec<i64> = server.get_json("/api/v1/builds")["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect();
        if listed == [second] {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned: {listed:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.get(&format!("/api/v1/builds/{first}")).status(), 404);
    assert_eq!(
        served(&repository, "latest").map(|(digest, _)| digest),
        retried["digest"].as_str().map(str::to_string)
    );
}

#[test]
fn a_platform_past_the_build_timeout_fails_the_build_naming_it_and_stops_both() {
    let dir = tempfile::tempdir().unwrap();
    let limit = TIMEOUT_SECS.to_string();
    let server = server_offering_both_with(dir.path(), &["--build-timeout-secs", &limit]);
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-timeout"));
    let marker = unique("multi-timeout");
    let id = submit(
        &server,
        dockerfile(&format!("sleep 600 && echo {marker}")),
        &repository,
        &["latest"],
    );
    let events = std::thread::scope(|scope| {
        let events = scope.spawn(|| read_events_within(&server, id, BUILD_TIME));
        // Both steps run (the native one and the emulated one) before the limit.
        let deadline = Instant::now() + Duration::from_secs(TIMEOUT_SECS);
        while processes_with(&marker).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "both platforms' steps did not start before the timeout: {:?}",
                processes_with(&marker)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        events.join().unwrap()
    });
    let build = server.build(id);
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.starts_with("platform linux/")
            && error.contains(&format!("timed out after {TIMEOUT_SECS} s")),
        "{error}"
    );
    assert_processes_gone(&marker, Duration::from_secs(30));
    assert!(
        served(&repository, "latest").is_none(),
        "the tag was pushed"
    );
    // No platform ended done: the one past its time failed, the other failed too or was stopped.
    let last: Value = events
        .iter()
        .rev()
        .find(|e| e.event == "progress")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .expect("a progress event");
    let phases: Vec<&str> = last["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"failed"), "{last}");
    assert!(
        phases.iter().all(|p| ["failed", "stopped"].contains(p)),
        "{last}"
    );
}
