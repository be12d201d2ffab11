//! A registry with a fault in front of it (`common::fault_proxy`): one that stops
//! answering mid-push, and one that takes a push and then fails the read that
//! would confirm it. Nothing waits forever, and the record follows the registry.

use std::time::Duration;

use crate::common::fault_proxy::{Fault, FaultProxy};
use crate::common::{
    docker, field, manifest_config, pushed_digest, unique, with_file, Server, TestEnv,
};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(300);

/// A build of a layer no registry has yet, so its push uploads a blob.
fn submit(server: &Server, env: &TestEnv, repository: &str, tag: &str) -> i64 {
    let run = format!("echo {} > /fresh", unique("layer"));
    let form = field(with_file(env.dockerfile(&run)), "repository", repository);
    server.submit(field(form, "tag", tag))
}

#[test]
fn a_registry_that_stops_answering_fails_the_push_naming_it() {
    let env = TestEnv::get();
    let proxy = FaultProxy::start(&env.registry);
    proxy.set(Fault::HangBlobUpload);
    let server = Server::start_with(&["--push-idle-timeout-secs", "5"]);
    let repository = format!("{}/{}", proxy.address(), unique("stalled"));
    let id = submit(&server, &env, &repository, "t");

    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "the registry {} stopped answering",
            proxy.address()
        )),
        "{build}"
    );
    assert!(error.contains("push_idle_timeout_secs"), "{build}");
    let logs = server.logs(id);
    assert!(logs.contains("cut, pushing once more"), "{logs}");
    // Its layers never all got in: nothing says the registry may serve it.
    assert_eq!(build["tags_pushed"], serde_json::json!([]), "{build}");

    // The server is not held up: the same repository, once the registry
    // answers again, takes the next push.
    proxy.set(Fault::None);
    let next = submit(&server, &env, &repository, "t");
    let next = server.wait_final(next, BUILD_TIME);
    assert_eq!(
        next["status"],
        "succeeded",
        "{next}\n{}",
        server.logs(next["id"].as_i64().unwrap())
    );
}

#[test]
fn a_push_that_lands_but_is_not_confirmed_moves_the_tag_on_the_record() {
    let env = TestEnv::get();
    let proxy = FaultProxy::start(&env.registry);
    let server = Server::start_with(&["--push-idle-timeout-secs", "30"]);
    let name = unique("unconfirmed");
    let repository = format!("{}/{name}", proxy.address());

    let first = submit(&server, &env, &repository, "t");
    let first = server.wait_final(first, BUILD_TIME);
    assert_eq!(first["status"], "succeeded", "{first}");

    // The next build's push lands, and the read that would confirm it fails.
    proxy.set(Fault::FailManifestReads);
    let second = submit(&server, &env, &repository, "t");
    let second = server.wait_final(second, BUILD_TIME);
    assert_eq!(second["status"], "failed", "{second}");
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("did not confirm"),
        "{second}"
    );
    assert_eq!(second["tags_pushed"], serde_json::json!(["t"]), "{second}");
    let first = server.build(first["id"].as_i64().unwrap());
    assert_eq!(first["tag_moved_by"]["t"], second["id"], "{first}");

    // And that is what the registry serves: the second build's image.
    let direct = format!("{}/{name}", env.registry);
    let digest = pushed_digest(&direct, "t", None).expect("the tag is served");
    assert_eq!(
        manifest_config(&direct, &digest).as_deref(),
        second["image_id"].as_str(),
        "{second}"
    );
    let logs = server.logs(second["id"].as_i64().unwrap());
    assert!(logs.contains("may have reached the registry"), "{logs}");

    // A later build that pushes the tag and is confirmed takes it from the
    // failed one's record too.
    proxy.set(Fault::None);
    let third = submit(&server, &env, &repository, "t");
    let third: Value = server.wait_final(third, BUILD_TIME);
    assert_eq!(third["status"], "succeeded", "{third}");
    let second = server.build(second["id"].as_i64().unwrap());
    assert_eq!(second["tag_moved_by"]["t"], third["id"], "{second}");
}

#[test]
fn a_cache_import_that_stalls_is_given_up_and_the_build_goes_on() {
    let env = TestEnv::get();
    let proxy = FaultProxy::start(&env.registry);
    let server = Server::start_with(&[
        "--cache-import-timeout-secs",
        "5",
        "--push-idle-timeout-secs",
        "30",
    ]);
    let repository = format!("{}/{}", proxy.address(), unique("cache"));
    let first = submit(&server, &env, &repository, "t");
    assert_eq!(server.wait_final(first, BUILD_TIME)["status"], "succeeded");
    // Without its local tag, the daemon finds the cache only in the registry.
    docker(&["rmi", &format!("{repository}:t")]);

    // The registry stops answering manifest reads: BuildKit's import of the
    // build's own tag as cache hangs, and is given up.
    proxy.set(Fault::HangManifestReads);
    let second = submit(&server, &env, &repository, "t");
    let given_up = format!("importing the cache from {repository}:t made no progress for 5 s");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !server.logs(second).contains(&given_up) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.logs(second)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The registry answers again, in time for the push.
    proxy.set(Fault::None);
    let second = server.wait_final(second, BUILD_TIME);
    assert_eq!(second["status"], "succeeded", "{second}");
    let logs = server.logs(second["id"].as_i64().unwrap());
    assert!(logs.contains("building again without it"), "{logs}");
}

/// This server's build names (`dockpub-build:INSTANCE-…`) on the daemon.
fn build_names(server: &Server) -> Vec<String> {
    let instance = std::fs::read_to_string(server.data_dir().join("instance")).unwrap();
    let prefix = format!("dockpub-build:{}-", instance.trim());
    docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_kill_during_a_push_leaves_no_build_name_once_the_build_ran_again() {
    let env = TestEnv::get();
    let proxy = FaultProxy::start(&env.registry);
    proxy.set(Fault::HangBlobUpload);
    let mut server = Server::start();
    let repository = format!("{}/{}", proxy.address(), unique("killed"));
    let id = submit(&server, &env, &repository, "t");
    let deadline = std::time::Instant::now() + BUILD_TIME;
    while !server.logs(id).contains("Pushing") {
        assert!(std::time::Instant::now() < deadline, "{}", server.logs(id));
        std::thread::sleep(Duration::from_millis(250));
    }
    server.kill();
    let left = build_names(&server);
    assert_eq!(left.len(), 1, "the killed attempt's name: {left:?}");

    proxy.set(Fault::None);
    server.restart();
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["attempts"], 2, "{build}");
    assert_eq!(build_names(&server), Vec::<String>::new());
}

#[test]
fn a_cancel_while_the_manifest_is_put_leaves_the_tag_unknown_on_the_record() {
    let env = TestEnv::get();
    let proxy = FaultProxy::start(&env.registry);
    let server = Server::start();
    let repository = format!("{}/{}", proxy.address(), unique("cancelled"));
    let first = submit(&server, &env, &repository, "t");
    assert_eq!(server.wait_final(first, BUILD_TIME)["status"], "succeeded");

    // Every layer is in; the manifest PUT is held on its way to the registry.
    proxy.set(Fault::HangManifestPut);
    let second = submit(&server, &env, &repository, "t");
    let deadline = std::time::Instant::now() + BUILD_TIME;
    while proxy.hanging() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.logs(second)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.cancel(second).status().is_success());
    let cancelled = server.wait_for(second, BUILD_TIME, |b| b["status"] == "cancelled");
    proxy.set(Fault::None);

    // Whether or not the PUT got through, the record does not claim the tag
    // for the first build any more: the cancelled one may be what it serves.
    assert_eq!(
        cancelled["tags_pushed"],
        serde_json::json!(["t"]),
        "{cancelled}"
    );
    let first = server.build(first);
    assert_eq!(first["tag_moved_by"]["t"], second, "{first}");
}
