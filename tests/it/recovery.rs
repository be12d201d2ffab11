//! A dockpub killed mid-build picks its work up again on restart.

use std::time::Duration;

use crate::common::{field, registry_digest, unique, with_file, Server, TestEnv};

const BUILD_TIME: Duration = Duration::from_secs(120);

#[test]
fn a_build_interrupted_by_a_crash_runs_again_after_restart() {
    let env = TestEnv::get();
    let mut server = Server::start_with(&["--max-concurrent-builds", "1"]);
    let repository = format!("{}/{}", env.registry, unique("crash"));
    let running = server.submit(field(
        with_file(env.dockerfile("sleep 3")),
        "repository",
        &repository,
    ));
    let other_repository = format!("{}/{}", env.registry, unique("waiting"));
    let waiting = server.submit(field(
        with_file(env.dockerfile("true")),
        "repository",
        &other_repository,
    ));
    let with_password = {
        let form = field(
            with_file(env.dockerfile("true")),
            "repository",
            &format!("{}/{}", env.auth_registry, unique("lost")),
        );
        server.submit(field(
            field(form, "username", &env.auth_user),
            "password",
            &env.auth_password,
        ))
    };
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let deadline = std::time::Instant::now() + BUILD_TIME;
    while !server.logs(running).contains("RUN sleep 3") {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never reached its RUN step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();

    server.restart();
    assert!(server.log().contains(&format!(
        "build {running}: queued (interrupted by a restart"
    )));
    let done = server.wait_final(running, BUILD_TIME);
    assert_eq!(done["status"], "succeeded", "{done}");
    let path = repository.split_once('/').unwrap().1;
    assert_eq!(
        registry_digest(&env.registry, path, "latest", None).as_deref(),
        done["digest"].as_str()
    );
    let logs = server.logs(running);
    assert!(
        logs.matches("RUN sleep 3").count() >= 2,
        "the first attempt's log is kept too: {logs}"
    );
    let (first, second) = logs
        .split_once("dockpub: attempt 2 (the previous one was interrupted)\n")
        .unwrap_or_else(|| panic!("no marker where the first attempt was cut off: {logs}"));
    assert!(first.contains("RUN sleep 3") && second.contains("RUN sleep 3"));

    assert_eq!(
        server.wait_final(waiting, BUILD_TIME)["status"],
        "succeeded"
    );
    let lost = server.wait_final(with_password, BUILD_TIME);
    assert_eq!(lost["status"], "failed");
    let error = lost["error"].as_str().unwrap();
    assert!(
        error.contains("credentials") && error.contains("restarted"),
        "{error}"
    );
}
