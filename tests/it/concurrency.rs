//! Honest under concurrency: builds of the same tag side by side, builds that
//! share an image (delete, retention, retry), and retries racing deletes.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::common::{
    daemon_alone, field, local_image_exists, manifest_config, pushed_digest, unique, with_file,
    Server, TestEnv,
};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};

const BUILD_TIME: Duration = Duration::from_secs(120);

/// A Dockerfile of its own with no RUN step: built in a moment, so the builds of
/// a pair reach their push close together.
fn label_only(env: &TestEnv) -> String {
    format!(
        "FROM {}\nLABEL dockpub.test.unique=\"{}\"\n",
        env.base_image,
        unique("label")
    )
}

fn submit(server: &Server, dockerfile: &str, repository: &str, tag: &str, push: bool) -> i64 {
    let form = field(with_file(dockerfile), "repository", repository);
    let form = field(field(form, "tag", tag), "push", &push.to_string());
    server.submit(form)
}

fn succeeded(server: &Server, id: i64) -> Value {
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    build
}

/// The manifest the build's digest names in the registry is made of its own image.
fn assert_registry_has_its_image(repository: &str, build: &Value) {
    let digest = build["digest"].as_str().expect("a digest");
    assert_eq!(
        manifest_config(repository, digest).as_deref(),
        build["image_id"].as_str(),
        "the manifest of {digest} is not build {}'s image",
        build["id"]
    );
}

fn listed_ids(server: &Server) -> Vec<i64> {
    server.get_json("/api/v1/builds?limit=100")["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|build| build["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn same_tag_builds_each_push_their_own_image_and_the_earlier_says_its_tag_moved() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-concurrent-builds", "4"]);
    const PAIRS: usize = 4;
    let pairs: Vec<(String, [i64; 2])> = (0..PAIRS)
        .map(|_| {
            let repository = format!("{}/{}", env.registry, unique("same-tag"));
            let ids = [(); 2].map(|()| submit(&server, &label_only(&env), &repository, "v1", true));
            (repository, ids)
        })
        .collect();
    for (repository, ids) in &pairs {
        for &id in ids {
            succeeded(&server, id);
        }
        // Read again once both ended: the later one marks the earlier one.
        let builds = ids.map(|id| server.build(id));
        assert_ne!(builds[0]["image_id"], builds[1]["image_id"]);
        for build in &builds {
            assert_registry_has_its_image(repository, build);
        }
        let served = pushed_digest(repository, "v1", None);
        let (owner, earlier) = if served.as_deref() == builds[0]["digest"].as_str() {
            (&builds[0], &builds[1])
        } else {
            (&builds[1], &builds[0])
        };
        assert_eq!(served.as_deref(), owner["digest"].as_str(), "{builds:?}");
        assert!(
            owner["finished_at"].as_str() >= earlier["finished_at"].as_str(),
            "the last build to finish owns the tag: {builds:?}"
        );
        assert_eq!(owner["tag_moved_by"], json!({}));
        assert_eq!(earlier["tag_moved_by"], json!({ "v1": owner["id"] }));
        let owner_log = server.logs(owner["id"].as_i64().unwrap());
        assert!(
            owner_log.contains(&format!(
                "{repository}:v1 now names this build's image; it moved from build {}",
                earlier["id"]
            )),
            "{owner_log}"
        );
    }
}

/// Two dockpubs on one daemon share its local tags but not their locks: a tag
/// moved by the other one under a push must fail the build, never pass as its own.
#[test]
fn two_dockpubs_sharing_a_daemon_and_a_tag_never_report_the_others_image() {
    let env = TestEnv::get();
    let servers = [Server::start(), Server::start()];
    const ROUNDS: usize = 3;
    let mut failures = Vec::new();
    for _ in 0..ROUNDS {
        let repository = format!("{}/{}", env.registry, unique("two-dockpubs"));
        let ids: Vec<i64> = servers
            .iter()
            .map(|server| submit(server, &label_only(&env), &repository, "v1", true))
            .collect();
        for (server, id) in servers.iter().zip(ids) {
            let build = server.wait_final(id, BUILD_TIME);
            match build["status"].as_str() {
                Some("succeeded") => assert_registry_has_its_image(&repository, &build),
                Some("failed") => failures.push(build["error"].as_str().unwrap().to_string()),
                _ => panic!("{build}"),
            }
        }
    }
    // A build may fail only in its push: the check caught the other's image, or
    // the registry refused one of two pushes to the repository at once (the two
    // dockpubs do not take turns as one does; "blob unknown to registry").
    for error in failures {
        assert!(
            error.contains("the registry now serves")
                || error.contains("sent another image")
                || error.starts_with("push of "),
            "{error}"
        );
    }
}

/// Two build-only builds of one Dockerfile with tag `same`: the layer cache gives
/// them one image. Returns `repository:same` and the builds, older first.
fn identical_pair(server: &Server, env: &TestEnv, name: &str) -> (String, Value, Value) {
    let repository = format!("{}/{}", env.registry, unique(name));
    let dockerfile = label_only(env);
    let [older, newer] = [(); 2].map(|()| {
        succeeded(
            server,
            submit(server, &dockerfile, &repository, "same", false),
        )
    });
    assert_eq!(older["image_id"], newer["image_id"], "the layer cache");
    (format!("{repository}:same"), older, newer)
}

#[test]
fn deleting_the_older_of_two_identical_builds_keeps_the_newer_ones_image_and_tag() {
    let env = TestEnv::get();
    // Deletes images: see `common::daemon_alone`.
    let _daemon = daemon_alone();
    let server = Server::start();
    let (reference, older, newer) = identical_pair(&server, &env, "identical");
    let image_id = newer["image_id"].as_str().unwrap();

    let response = server.delete(&format!("/api/v1/builds/{}", older["id"]));
    assert_eq!(response.status(), 204);
    assert!(local_image_exists(&reference), "the newer build's tag went");
    assert!(local_image_exists(image_id), "the newer build's image went");
    assert_eq!(
        server.build(newer["id"].as_i64().unwrap())["image_id"],
        image_id
    );

    // With nobody else naming them, the tag and the image go.
    let response = server.delete(&format!("/api/v1/builds/{}", newer["id"]));
    assert_eq!(response.status(), 204);
    assert!(!local_image_exists(&reference));
    assert!(!local_image_exists(image_id));
}

#[test]
fn deleting_two_identical_builds_at_once_leaves_neither_their_tag_nor_their_image() {
    let env = TestEnv::get();
    // Deletes images: see `common::daemon_alone`.
    let _daemon = daemon_alone();
    let server = Arc::new(Server::start());
    let (reference, older, newer) = identical_pair(&server, &env, "both-deleted");
    let start = Arc::new(Barrier::new(2));
    let deletes: Vec<_> = [older["id"].clone(), newer["id"].clone()]
        .into_iter()
        .map(|id| {
            let (server, start) = (server.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                server.delete(&format!("/api/v1/builds/{id}")).status()
            })
        })
        .collect();
    for delete in deletes {
        assert_eq!(delete.join().unwrap(), 204);
    }
    assert!(!local_image_exists(&reference), "the tag was left");
    assert!(!local_image_exists(newer["image_id"].as_str().unwrap()));
}

#[test]
fn deleting_a_failed_build_keeps_the_tag_and_image_of_its_retry() {
    let env = TestEnv::get();
    // Deletes images: see `common::daemon_alone`.
    let _daemon = daemon_alone();
    let server = Server::start();
    let repository = format!("{}/{}", env.auth_registry, unique("retried"));
    let reference = format!("{repository}:latest");
    let failed = server.wait_final(
        submit(&server, &label_only(&env), &repository, "latest", true),
        BUILD_TIME,
    );
    assert_eq!(failed["status"], "failed", "no credentials: {failed}");
    let image_id = failed["image_id"].as_str().expect("built before the push");
    assert!(local_image_exists(&reference));

    let login = Form::new()
        .text("username", env.auth_user.clone())
        .text("password", env.auth_password.clone());
    let response = server.post_form(&format!("/api/v1/builds/{}/retry", failed["id"]), login);
    assert_eq!(response.status(), 202);
    let retry: Value = response.json().unwrap();
    let retry = succeeded(&server, retry["id"].as_i64().unwrap());
    assert_eq!(retry["image_id"], image_id, "the layer cache");

    let response = server.delete(&format!("/api/v1/builds/{}", failed["id"]));
    assert_eq!(response.status(), 204);
    assert!(local_image_exists(&reference), "the retry's tag went");
    assert!(local_image_exists(image_id), "the retry's image went");
    let response = server.delete(&format!("/api/v1/builds/{}", retry["id"]));
    assert_eq!(response.status(), 204);
    assert!(!local_image_exists(&reference));
}

/// Retention prunes the older of two identical builds and keeps the newer one's
/// tag; a newer failed build does not count among the kept succeeded ones.
#[test]
fn retention_keeps_the_newest_succeeded_build_and_its_shared_image() {
    let env = TestEnv::get();
    let server = Server::start_with(&[
        "--retention-keep-last",
        "1",
        "--retention-interval-secs",
        "1",
    ]);
    let (reference, older, newer) = identical_pair(&server, &env, "retained");
    let broken = format!("{}RUN false\n", label_only(&env));
    let repository = reference.trim_end_matches(":same");
    let failed = server.wait_final(
        submit(&server, &broken, repository, "broken", false),
        BUILD_TIME,
    );
    assert_eq!(failed["status"], "failed");
    let kept = vec![
        failed["id"].as_i64().unwrap(),
        newer["id"].as_i64().unwrap(),
    ];

    let deadline = Instant::now() + Duration::from_secs(30);
    while listed_ids(&server) != kept {
        assert!(
            Instant::now() < deadline,
            "older build {} not pruned, or more: {:?}",
            older["id"],
            listed_ids(&server)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more pruning runs change nothing.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(listed_ids(&server), kept);
    assert!(local_image_exists(&reference), "the kept build's tag went");
    assert!(local_image_exists(newer["image_id"].as_str().unwrap()));
}

/// A small context archive holding only a Dockerfile, packed from a folder as a
/// client would.
fn context_of(dockerfile: &str) -> Vec<u8> {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("Dockerfile");
    std::fs::write(&path, dockerfile).unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    archive.append_path_with_name(&path, "Dockerfile").unwrap();
    archive.into_inner().unwrap()
}

/// Builds that are final without running: submitted while no builder answers
/// (nothing listens on the builder's socket), then cancelled while queued.
fn cancelled_builds(server: &Server, env: &TestEnv, count: usize) -> Vec<i64> {
    (0..count)
        .map(|n| {
            let repository = format!("{}/{}", env.registry, unique("race"));
            let dockerfile = label_only(env);
            let form = if n % 2 == 0 {
                with_file(dockerfile)
            } else {
                Form::new().part(
                    "context",
                    Part::bytes(context_of(&dockerfile)).file_name("context.tar"),
                )
            };
            let id = server.submit(field(form, "repository", &repository));
            let response = server
                .client
                .post(server.url(&format!("/api/v1/builds/{id}/cancel")))
                .send()
                .unwrap();
            assert_eq!(response.status(), 200);
            id
        })
        .collect()
}

#[test]
fn retries_racing_deletes_answer_202_or_404_and_never_5xx() {
    let env = TestEnv::get();
    let nowhere = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/docker.sock", nowhere.path().display());
    let server = Arc::new(Server::start_with(&["--docker-host", &socket]));
    const RACES: usize = 50;
    let originals = cancelled_builds(&server, &env, RACES);
    let mut retried = Vec::new();
    for &id in &originals {
        let start = Arc::new(Barrier::new(2));
        let retry = {
            let (server, start) = (server.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let url = server.url(&format!("/api/v1/builds/{id}/retry"));
                let response = server.client.post(url).send().unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().unwrap(),
                )
            })
        };
        start.wait();
        let deleted = server.delete(&format!("/api/v1/builds/{id}")).status();
        let (status, body) = retry.join().unwrap();
        assert_eq!(deleted, 204, "delete of build {id}");
        match status {
            202 => retried.push(body["id"].as_i64().unwrap()),
            404 => assert_eq!(body["error"]["code"], "build_not_found", "{body}"),
            _ => panic!("retry of build {id} raced with its delete: {status} {body}"),
        }
    }
    // Every original is gone; every retry that was answered 202 is there, with
    // its own stored files; nothing is left waiting in the upload folder.
    let mut listed = listed_ids(&server);
    listed.sort();
    assert_eq!(listed, retried);
    let data = server.data_dir();
    for id in originals {
        assert!(!data.join(format!("builds/{id}")).exists());
    }
    for id in &retried {
        assert!(data.join(format!("builds/{id}/Dockerfile")).exists());
    }
    assert_eq!(std::fs::read_dir(data.join("uploads")).unwrap().count(), 0);
    eprintln!("{} of {RACES} retries went first", retried.len());
}
