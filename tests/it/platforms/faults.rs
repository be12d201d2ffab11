//! A platform that fails or is cancelled: the build fails or is cancelled,
//! every platform stops, and no tag is written.

use std::time::Duration;

use super::{dockerfile, served, server_offering_both, submit, BUILD_TIME};
use crate::common::{assert_processes_gone, processes_with, read_events_within, unique, TestEnv};
use serde_json::Value;

#[test]
fn a_step_failing_on_arm64_fails_the_build_naming_it_and_no_tag_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-fail"));
    let id = submit(
        &server,
        dockerfile("[ \"$(uname -m)\" = x86_64 ]"),
        &repository,
        &["latest"],
    );
    let events = read_events_within(&server, id, BUILD_TIME);
    let build = server.build(id);
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(error.contains("platform linux/arm64"), "{error}");
    // Its last progress: arm64 failed; amd64 was done by then, or stopped with the build.
    let last = events
        .iter()
        .rev()
        .find(|e| e.event == "progress")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
        .expect("a progress event");
    let phase = |i: usize| last["platforms"][i]["phase"].as_str().unwrap_or_default();
    assert_eq!(last["platforms"][1]["platform"], "linux/arm64", "{last}");
    assert_eq!(phase(1), "failed", "{last}");
    assert!(["done", "stopped"].contains(&phase(0)), "{last}");
    assert!(
        served(&repository, "latest").is_none(),
        "the tag was pushed"
    );
    assert_eq!(build["platforms"], Value::Array(Vec::new()));
}

#[test]
fn a_cancel_stops_both_platforms_steps_and_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-cancel"));
    let marker = unique("multi-cancel");
    let id = submit(
        &server,
        dockerfile(&format!("sleep 600 && echo {marker}")),
        &repository,
        &["latest"],
    );
    let deadline = std::time::Instant::now() + BUILD_TIME;
    // Both steps run: the native one and the emulated one (under qemu's binfmt handler).
    while processes_with(&marker).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "both platforms' steps did not start: {:?}\n{}",
            processes_with(&marker),
            server.logs(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.cancel(id).status(), 200);
    assert_processes_gone(&marker, Duration::from_secs(30));
    let build = server.wait_for(id, Duration::from_secs(30), |b| b["status"] == "cancelled");
    assert!(build["platforms"].as_array().unwrap().is_empty(), "{build}");
    assert!(served(&repository, "latest").is_none());
}
