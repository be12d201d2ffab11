//! Repeated form fields and the stored options are bounded (issue 25.4): past a
//! limit a request gets `400 field_limit` naming it and nothing is stored; a
//! list page of builds at the limits stays under its byte bound, and so does
//! the server's memory when such pages are read at once.

use std::time::Duration;

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

use crate::common::{field, status_kib, unique, with_file, Server, TestEnv};

/// The README's bound of a list page's JSON.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// And of one build object at the limits.
const MAX_BUILD_BYTES: usize = 100 * 1024;

fn minimal(env: &TestEnv) -> Form {
    let form = with_file(format!("FROM {}\n", env.base_image));
    field(
        form,
        "repository",
        &format!("{}/{}", env.registry, unique("limits")),
    )
}

fn repeated(mut form: Form, name: &str, values: impl IntoIterator<Item = String>) -> Form {
    for value in values {
        form = field(form, name, &value);
    }
    form
}

fn refused(server: &Server, path: &str, form: Form) -> (u16, Value) {
    let response = server.post_form(path, form);
    let status = response.status().as_u16();
    (status, response.json().expect("a JSON body"))
}

#[test]
fn each_repeated_field_past_its_limit_is_refused_naming_the_limit() {
    let env = TestEnv::offline();
    let server = Server::in_process(&[]);
    let long_value = "v".repeat(4000);
    let cases: Vec<(&str, Form, &str)> = vec![
        (
            "33 tags",
            repeated(minimal(&env), "tag", (0..33).map(|n| format!("t{n}"))),
            "at most 32 (max_tags_per_build)",
        ),
        (
            "65 labels",
            repeated(minimal(&env), "label", (0..65).map(|n| format!("l{n}=x"))),
            "at most 64 (labels)",
        ),
        (
            "65 build args",
            repeated(
                minimal(&env),
                "build_arg",
                (0..65).map(|n| format!("A{n}=x")),
            ),
            "at most 64 (build args)",
        ),
        (
            "17 secrets",
            repeated(minimal(&env), "secret", (0..17).map(|n| format!("s{n}=x"))),
            "at most 16 (secrets)",
        ),
        (
            "9 cache sources",
            repeated(
                minimal(&env),
                "cache_from",
                (0..9).map(|n| format!("{}/cache:{n}", env.registry)),
            ),
            "at most 8 (cache sources)",
        ),
        (
            "9 ssh ids",
            repeated(minimal(&env), "ssh", (0..9).map(|n| format!("k{n}"))),
            "at most 8 (ssh ids)",
        ),
        (
            "a label key of 257 bytes",
            field(minimal(&env), "label", &format!("{}=x", "k".repeat(257))),
            "at most 256 bytes",
        ),
        (
            "a build arg value of 4097 bytes",
            field(
                minimal(&env),
                "build_arg",
                &format!("A={}", "v".repeat(4097)),
            ),
            "at most 4096 bytes",
        ),
        (
            "options of more than 64 KiB",
            repeated(
                minimal(&env),
                "label",
                (0..20).map(|n| format!("l{n}={long_value}")),
            ),
            "at most 65536",
        ),
        (
            "more fields than a build takes",
            repeated(minimal(&env), "junk", (0..300).map(|n| n.to_string())),
            "more than 256 fields",
        ),
    ];
    for (name, form, says) in cases {
        let (status, body) = refused(&server, "/api/v1/builds", form);
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "field_limit", "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: '{says}' not in {message}");
    }

    // The seed API and a retry take fewer fields, and the same limits.
    let seed = repeated(
        field(
            field(
                with_file(format!("FROM {}\n", env.base_image)),
                "docker_repo",
                "x/y",
            ),
            "docker_username",
            "u",
        ),
        "label",
        (0..300).map(|n| format!("l{n}=x")),
    );
    let (status, body) = refused(&server, "/api/dockerfile-build/", seed);
    assert_eq!(status, 400, "seed: {body}");
    assert!(body.to_string().contains("more than 256 fields"), "{body}");
    let retry = (0..17).fold(Form::new(), |form, n| {
        form.part(
            "secret",
            Part::bytes(b"x".to_vec()).file_name(format!("s{n}")),
        )
    });
    let (status, body) = refused(&server, "/api/v1/builds/1/retry", retry);
    assert_eq!(status, 400, "retry: {body}");
    assert_eq!(body["error"]["code"], "field_limit", "retry: {body}");

    assert_eq!(
        server.get_json("/api/v1/builds")["builds"],
        serde_json::json!([]),
        "a refused request stores nothing"
    );
    // At the limits, a build is taken.
    let form = repeated(minimal(&env), "tag", (0..32).map(|n| format!("t{n}")));
    let form = repeated(form, "label", (0..64).map(|n| format!("l{n}=x")));
    let form = repeated(form, "build_arg", (0..64).map(|n| format!("A{n}=x")));
    let form = repeated(
        form,
        "cache_from",
        (0..8).map(|n| format!("{}/cache:{n}", env.registry)),
    );
    server.submit(form);
}

#[test]
fn max_tags_per_build_is_a_setting() {
    let env = TestEnv::offline();
    let server = Server::in_process(&["--max-tags-per-build", "2"]);
    let form = repeated(minimal(&env), "tag", ["a", "b", "c"].map(String::from));
    let (status, body) = refused(&server, "/api/v1/builds", form);
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("at most 2 (max_tags_per_build)"),
        "{message}"
    );
    server.submit(repeated(minimal(&env), "tag", ["a", "b"].map(String::from)));
}

/// A build form with every repeated field near its limit: 32 tags of 128
/// characters, and labels that bring the stored options close to 64 KiB.
fn largest_build(env: &TestEnv, n: usize) -> Form {
    let form = with_file(format!("FROM {}\nARG N={n}\n", env.base_image));
    let form = field(
        form,
        "repository",
        &format!("{}/limits/page-{n:04}", env.registry),
    );
    let tags = (0..32).map(|t| format!("{t:02}{}", "t".repeat(126)));
    let labels = (0..14).map(|l| format!("{}{l:02}={}", "k".repeat(254), "v".repeat(4096)));
    repeated(repeated(form, "tag", tags), "label", labels)
}

fn submit_largest_builds(server: &Server, env: &TestEnv, count: usize) {
    for n in 0..count {
        server.submit(largest_build(env, n));
    }
}

/// Every page from `first` on: (its body's length, its builds' ids).
fn pages_from(server: &Server, first: &str) -> Vec<(usize, Vec<i64>)> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(path) = next {
        let body = server.get(&path).text().unwrap();
        let page: Value = serde_json::from_str(&body).unwrap();
        let ids = page["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|build| build["id"].as_i64().unwrap())
            .collect();
        pages.push((body.len(), ids));
        next = page["next"].as_str().map(str::to_string);
    }
    pages
}

#[test]
fn a_list_of_500_builds_at_the_limits_stays_under_the_page_bound() {
    let env = TestEnv::offline();
    let server = Server::in_process(&[]);
    submit_largest_builds(&server, &env, 500);
    let one = server.get("/api/v1/builds/1").text().unwrap();
    assert!(
        one.len() > 60 * 1024 && one.len() < MAX_BUILD_BYTES,
        "one build at the limits is {} bytes",
        one.len()
    );
    let pages = pages_from(&server, "/api/v1/builds?limit=500");
    assert!(
        pages.len() > 1,
        "500 builds at the limits need several pages"
    );
    for (bytes, ids) in &pages {
        assert!(*bytes <= MAX_PAGE_BYTES, "a page of {bytes} bytes");
        assert!(!ids.is_empty());
    }
    let mut ids: Vec<i64> = pages.into_iter().flat_map(|(_, ids)| ids).collect();
    let listed = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (listed, ids.len()),
        (500, 500),
        "each build once, none lost"
    );
    // The seed API lists them all, read a bounded page at a time.
    let seed = server.get_json("/api/dockerfile-build/");
    assert_eq!(seed["data"].as_array().unwrap().len(), 500);
}

#[test]
fn five_lists_of_500_builds_at_the_limits_keep_the_server_memory_bounded() {
    let env = TestEnv::offline();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}", dir.path().join("no-docker.sock").display());
    // A real process, for its memory; no daemon, so the builds stay queued.
    let server = Server::start_with(&["--docker-host", &missing]);
    submit_largest_builds(&server, &env, 500);
    std::thread::sleep(Duration::from_secs(1));
    let before = status_kib(server.pid(), "VmRSS:");
    let bodies: Vec<usize> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..5)
            .map(|_| {
                scope.spawn(|| {
                    let response = server.get("/api/v1/builds?limit=500");
                    assert_eq!(response.status(), 200);
                    response.bytes().unwrap().len()
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(
        bodies.iter().all(|&bytes| bytes <= MAX_PAGE_BYTES),
        "{bodies:?}"
    );
    let after = status_kib(server.pid(), "VmRSS:");
    let peak = status_kib(server.pid(), "VmHWM:");
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "five pages of 500 builds took the server from {before} KiB to {after} KiB (peak {peak} KiB)"
    );
}
