//! A daemon's build that goes silent: after a minute the build object and the
//! builders panel say since when; at `build_idle_timeout_secs` the build is
//! stopped on the daemon and fails, saying why.

use std::time::Duration;

use crate::common::{
    assert_processes_gone, field, unique, wait_for_process, with_file, Server, TestEnv,
};

const BUILD_TIME: Duration = Duration::from_secs(300);

#[test]
fn a_silent_build_says_since_when_and_is_stopped_at_its_idle_limit() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--build-idle-timeout-secs", "75"]);
    let marker = unique("silent");
    let run = format!("sleep 600 && echo {marker}");
    let repository = format!("{}/{}", env.registry, unique("silent"));
    let form = field(with_file(env.dockerfile(&run)), "repository", &repository);
    let id = server.submit(field(form, "push", "false"));
    wait_for_process(&marker, BUILD_TIME);

    // Past a minute without news, the build and its builder say since when.
    let silent = server.wait_for(id, Duration::from_secs(120), |b| {
        !b["silent_since"].is_null() || b["status"] != "building"
    });
    assert_eq!(silent["status"], "building", "{silent}");
    let since = silent["silent_since"].as_str().unwrap().to_string();
    let builders = server.get_json("/api/v1/builders");
    let listed = &builders["builders"][0]["silent_builds"];
    assert_eq!(listed[0]["id"], id, "{builders}");
    assert_eq!(listed[0]["silent_since"], since.as_str(), "{builders}");

    // At the idle limit it fails, and its step stops on the daemon.
    let failed = server.wait_final(id, BUILD_TIME);
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("no output and no progress") && error.contains("build_idle_timeout_secs"),
        "{failed}"
    );
    assert!(failed["silent_since"].is_null(), "{failed}");
    assert_processes_gone(&marker, Duration::from_secs(60));
    let builders = server.get_json("/api/v1/builders");
    assert_eq!(
        builders["builders"][0]["silent_builds"],
        serde_json::json!([]),
        "{builders}"
    );
}
