//! Builds of several platforms: linux/amd64 natively and linux/arm64 under QEMU
//! (scripts/test registers it with binfmt_misc), from the two-platform base
//! scripts/test pushes as an OCI index (`DOCKPUB_TEST_PLATFORM_BASE`). Each
//! platform's image is pushed by digest and one image index goes under every tag.
//! `progress`: each platform's progress and log lines; `faults`: a platform
//! that fails or is cancelled; `lifecycle`: retry, retention and the build
//! timeout, as for one platform.

mod faults;
mod lifecycle;
mod progress;

use std::path::Path;
use std::time::Duration;

use crate::common::{
    docker, field, manifest_config, read_events_within, unique, with_file, PrivateDaemon, Server,
    TestEnv, PROVENANCE_VARIABLE,
};
use reqwest::blocking::Client;
use serde_json::Value;

/// Emulated steps are slow, and the machine is shared.
const BUILD_TIME: Duration = Duration::from_secs(120);
const BOTH: &str = "linux/amd64,linux/arm64";

/// The two-platform base pushed by scripts/test.
fn platform_base() -> String {
    std::env::var("DOCKPUB_TEST_PLATFORM_BASE").unwrap_or_else(|_| {
        panic!("DOCKPUB_TEST_PLATFORM_BASE is not set: run the tests through scripts/test, which pushes the two-platform base")
    })
}

/// A server whose one builder, the local daemon, offers both platforms (arm64
/// under emulation), pushing provenance: each index holds an attestation of
/// each platform's image too.
fn server_offering_both(dir: &Path) -> Server {
    server_offering_both_with(dir, &[])
}

/// The same, started with the `flags` given.
fn server_offering_both_with(dir: &Path, flags: &[&str]) -> Server {
    let config = dir.join("config.toml");
    let socket = "unix:///var/run/docker.sock".to_string();
    let host = std::env::var("DOCKER_HOST").unwrap_or(socket);
    std::fs::write(
        &config,
        format!(
            "[[builders]]\nname = \"local\"\nhost = \"{host}\"\nmax_concurrent_builds = 2\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\n"
        ),
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(flags);
    Server::start_with_env(&args, &[(PROVENANCE_VARIABLE, "true")])
}

/// A Dockerfile on the two-platform base whose RUN no earlier build cached.
fn dockerfile(run: &str) -> String {
    format!(
        "FROM {}\nARG DOCKPUB_TEST_UNIQUE=\"{}\"\nRUN {run}\n",
        platform_base(),
        unique("platforms")
    )
}

fn submit(server: &Server, dockerfile: String, repository: &str, tags: &[&str]) -> i64 {
    let mut form = field(with_file(dockerfile), "repository", repository);
    form = field(form, "platform", BOTH);
    for tag in tags {
        form = field(form, "tag", tag);
    }
    server.submit(form)
}

/// A server on `builders`: `(name, host, platforms)`, one slot each beyond the first.
fn server_on(dir: &Path, builders: &[(&str, String, &[&str])]) -> Server {
    let config = dir.join("config.toml");
    let text: String = builders
        .iter()
        .map(|(name, host, platforms)| {
            format!(
                "[[builders]]\nname = \"{name}\"\nhost = \"{host}\"\nmax_concurrent_builds = 2\n\
                 platforms = {platforms:?}\n"
            )
        })
        .collect();
    std::fs::write(&config, text).unwrap();
    Server::start_with(&["--config", config.to_str().unwrap()])
}

/// Waits until every builder of the server is up.
fn wait_all_up(server: &Server) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let builders = server.get_json("/api/v1/builders");
        let all = builders["builders"].as_array().unwrap();
        if all.iter().all(|b| b["up"] == true) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{builders}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The index (or manifest) the registry serves for `repository:reference`, and its digest.
fn served(repository: &str, reference: &str) -> Option<(String, Value)> {
    served_with(repository, reference, None)
}

fn served_with(
    repository: &str,
    reference: &str,
    login: Option<(&str, &str)>,
) -> Option<(String, Value)> {
    let (registry, path) = repository.split_once('/').unwrap();
    let mut request =
        Client::new().get(format!("http://{registry}/v2/{path}/manifests/{reference}"));
    if let Some((user, password)) = login {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .expect("ask the registry");
    if !response.status().is_success() {
        return None;
    }
    let digest = response.headers()["Docker-Content-Digest"]
        .to_str()
        .unwrap()
        .to_string();
    Some((digest, response.json().expect("a manifest")))
}

/// Pulls `reference` for `platform` and prints /arch from it.
fn arch_of(reference: &str, platform: &str) -> String {
    docker(&["pull", "-q", "--platform", platform, reference]);
    let arch = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--platform",
        platform,
        reference,
        "cat",
        "/arch",
    ]);
    docker(&["rmi", reference]);
    arch.trim().to_string()
}

#[test]
fn two_platforms_are_one_index_at_every_tag_each_naming_its_platforms_image() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi"));
    let id = submit(
        &server,
        dockerfile("uname -m > /arch"),
        &repository,
        &["one", "two"],
    );
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.logs(id));
    let platforms = build["platforms"].as_array().unwrap();
    let named: Vec<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["linux/amd64", "linux/arm64"]);
    for tag in ["one", "two"] {
        let (digest, index) = served(&repository, tag).expect("the tag is in the registry");
        assert_eq!(build["digests"][tag], digest.as_str(), "{build}");
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(
            entries.len(),
            4,
            "two images, an attestation of each: {index}"
        );
        let (images, attestations): (Vec<&Value>, Vec<&Value>) = entries
            .iter()
            .partition(|entry| entry.get("annotations").is_none());
        for (attestation, image) in attestations.iter().zip(&images) {
            assert_eq!(attestation["platform"]["os"], "unknown", "{index}");
            let annotations = &attestation["annotations"];
            assert_eq!(annotations["vnd.docker.reference.digest"], image["digest"]);
        }
        for (entry, platform) in images.iter().zip(platforms) {
            let name = format!(
                "{}/{}",
                entry["platform"]["os"].as_str().unwrap(),
                entry["platform"]["architecture"].as_str().unwrap()
            );
            assert_eq!(name, platform["platform"].as_str().unwrap());
            assert_eq!(entry["digest"], platform["digest"]);
            let config = manifest_config(&repository, entry["digest"].as_str().unwrap());
            assert_eq!(config.as_deref(), platform["image_id"].as_str(), "{name}");
        }
    }
    assert_eq!(build["digest"], build["digests"]["one"]);
    assert_eq!(build["provenance"]["signed"], false, "{build}");
    let reference = format!("{repository}:two");
    assert_eq!(arch_of(&reference, "linux/arm64"), "aarch64");
    assert_eq!(arch_of(&reference, "linux/amd64"), "x86_64");
    let logs = server.logs(id);
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            logs.contains(&format!("[{platform}] dockpub: built sha256:")),
            "{logs}"
        );
    }
    // A delete takes the record; the registry keeps what was pushed, as for one platform.
    let deleted = server.delete(&format!("/api/v1/builds/{id}"));
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_eq!(server.get(&format!("/api/v1/builds/{id}")).status(), 404);
    assert!(served(&repository, "one").is_some());
}

#[test]
fn a_platform_list_with_a_repeat_or_without_a_push_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-bad"));
    for (platform, push, says) in [
        ("linux/amd64,linux/amd64", "true", "given twice"),
        ("linux/amd64,linux/arm64", "false", "push=true"),
        (
            "linux/amd64,linux/s390x",
            "true",
            "no builder offers platform 'linux/s390x'",
        ),
    ] {
        let form = field(with_file(dockerfile("true")), "repository", &repository);
        let form = field(field(form, "platform", platform), "push", push);
        let response = server.post_form("/api/v1/builds", form);
        assert_eq!(response.status(), 400, "{platform}");
        let body: Value = response.json().unwrap();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{platform}: {body}");
    }
    assert_eq!(
        server.get_json("/api/v1/builds")["builds"],
        Value::Array(Vec::new()),
        "a refused build was stored"
    );
}

#[test]
fn the_index_goes_to_a_registry_with_a_login_as_the_push_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.auth_registry, unique("multi-auth"));
    let form = field(
        with_file(dockerfile("uname -m > /arch")),
        "repository",
        &repository,
    );
    let form = field(field(form, "platform", BOTH), "username", &env.auth_user);
    let id = server.submit(field(form, "password", &env.auth_password));
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.logs(id));
    let login = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    let (digest, index) = served_with(&repository, "latest", login).expect("the index");
    assert_eq!(build["digest"], digest.as_str());
    // Two images, and an attestation of each.
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4);
    assert!(
        served(&repository, "latest").is_none(),
        "the registry wants a login"
    );
}

#[test]
fn two_builds_of_one_tag_at_once_both_publish_and_the_later_takes_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_offering_both(dir.path());
    let env = TestEnv::get();
    let repository = format!("{}/{}", env.registry, unique("multi-same"));
    let first = submit(
        &server,
        dockerfile("uname -m > /arch"),
        &repository,
        &["latest"],
    );
    let second = submit(
        &server,
        dockerfile("uname -m > /arch"),
        &repository,
        &["latest"],
    );
    let first = server.wait_final(first, BUILD_TIME);
    let second = server.wait_final(second, BUILD_TIME);
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(second["status"], "succeeded", "{second}");
    let (served_digest, _) = served(&repository, "latest").unwrap();
    // Whichever published last holds the tag, and the other says who took it.
    let (last, earlier) = if served_digest == second["digest"].as_str().unwrap() {
        (&second, &first)
    } else {
        (&first, &second)
    };
    assert_eq!(last["digest"], served_digest.as_str());
    let earlier = server.build(earlier["id"].as_i64().unwrap());
    assert_eq!(earlier["tag_moved_by"]["latest"], last["id"], "{earlier}");
}

#[test]
fn in_a_pool_the_arm64_half_runs_on_the_one_builder_offering_it() {
    let env = TestEnv::get();
    let second = PrivateDaemon::start(&env);
    let dir = tempfile::tempdir().unwrap();
    let machine = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    let server = server_on(
        dir.path(),
        &[
            ("machine", machine, &["linux/amd64"]),
            ("arm", second.host(), &["linux/arm64"]),
        ],
    );
    wait_all_up(&server);
    let repository = format!("{}/{}", env.registry, unique("multi-pool"));
    let id = submit(
        &server,
        dockerfile("uname -m > /arch"),
        &repository,
        &["latest"],
    );
    let events = read_events_within(&server, id, BUILD_TIME);
    let build = server.build(id);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.logs(id));
    // Its progress names each platform's builder.
    let last: Value = events
        .iter()
        .rev()
        .find(|e| e.event == "progress")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .expect("a progress event");
    for (n, builder) in ["machine", "arm"].iter().enumerate() {
        assert_eq!(last["platforms"][n]["builder"], *builder, "{last}");
        assert_eq!(last["platforms"][n]["phase"], "done", "{last}");
    }
    let logs = server.logs(id);
    assert!(
        logs.contains("[linux/arm64] dockpub: on builder arm"),
        "{logs}"
    );
    assert!(
        logs.contains("[linux/amd64] dockpub: on builder machine"),
        "{logs}"
    );
    assert_eq!(
        arch_of(&format!("{repository}:latest"), "linux/arm64"),
        "aarch64"
    );
}
