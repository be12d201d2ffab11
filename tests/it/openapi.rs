//! The OpenAPI document: generated from the code, listing every v1 route, and
//! checked against the running server by schemathesis.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::{Server, TestEnv};
use reqwest::blocking::multipart::{Form, Part};
use reqwest::blocking::RequestBuilder;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn the_document_lists_every_v1_route() {
    let server = Server::in_process(&[]);
    let document = server.get_json("/api/v1/openapi.json");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("/api/v1/builds", "post"),
        ("/api/v1/builds", "get"),
        ("/api/v1/builds/{id}", "get"),
        ("/api/v1/builds/{id}", "delete"),
        ("/api/v1/builds/{id}/logs", "get"),
        ("/api/v1/builds/{id}/events", "get"),
        ("/api/v1/builds/{id}/cancel", "post"),
        ("/api/v1/builds/{id}/retry", "post"),
        ("/api/v1/builds/{id}/deliveries", "get"),
        ("/api/v1/deliveries/{id}/redeliver", "post"),
        ("/api/v1/builders", "get"),
        ("/api/v1/triggers", "get"),
        ("/api/v1/triggers/{name}/events", "post"),
        ("/api/v1/triggers/{name}/run", "post"),
        ("/api/v1/builds/{id}/provenance", "get"),
        ("/api/v1/provenance/public-key", "get"),
    ];
    for (path, method) in expected {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {path}: no 401"
        );
    }
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        14,
        "undocumented or unexpected paths: {:?}",
        paths.keys()
    );
    let build = &document["components"]["schemas"]["Build"]["properties"];
    for field in [
        "id",
        "status",
        "repository",
        "tags",
        "digest",
        "digests",
        "options",
        "progress",
        "links",
        "source",
        "trigger",
        "provenance",
    ] {
        assert!(build[field].is_object(), "the Build schema lacks {field}");
    }
    // Progress per platform: its phases, and the counts it shares with the build's.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["PlatformPhase"]["enum"],
        serde_json::json!([
            "waiting_for_slot",
            "building",
            "pushing",
            "done",
            "failed",
            "stopped"
        ])
    );
    let platform = schemas["PlatformProgress"].to_string();
    for part in ["\"builder\"", "\"phase\"", "ProgressCounts"] {
        assert!(
            platform.contains(part),
            "PlatformProgress lacks {part}: {platform}"
        );
    }
    assert!(
        schemas["Progress"].to_string().contains("PlatformProgress"),
        "{}",
        schemas["Progress"]
    );
}

#[test]
fn schemathesis_finds_no_server_error_and_no_nonconforming_response() {
    // The server builds what schemathesis submits: the daemon must be there.
    TestEnv::get();
    let schemathesis = std::env::var("DOCKPUB_TEST_SCHEMATHESIS")
        .expect("DOCKPUB_TEST_SCHEMATHESIS is not set: run the tests through scripts/test, which installs schemathesis");
    let server = Server::start();
    let out = Command::new(&schemathesis)
        .args([
            "run",
            &server.url("/api/v1/openapi.json"),
            "--url",
            &server.base,
        ])
        // Every check but positive_data_acceptance: the document gives fields their
        // types, not dockpub's full rules (a repository's grammar), so schema-valid
        // data is often, and rightly, refused with a 400.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "30", "--seed", "1", "--no-color"])
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(!server.log().contains("panicked"));
}

const ADMIN: &str = "openapi-admin-token";
const READER: &str = "openapi-read-token";
const BUILDER: &str = "openapi-build-token";

/// An answer's status, to check that the document lists it for the route.
struct Seen {
    method: &'static str,
    path: &'static str,
    status: u16,
}

/// A request over a raw socket: the head as written, a body that may stop short.
fn raw(server: &Server, head: &str, body: &[u8]) -> u16 {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = head.replace("{host}", address);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"))
}

#[test]
fn every_status_a_route_answered_is_in_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let digest = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    let config = format!(
        "[[tokens]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\nscopes = [\"admin\"]\n\n\
         [[tokens]]\nname = \"reader\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n\n\
         [[tokens]]\nname = \"builder\"\ntoken_sha256 = \"{}\"\nscopes = [\"build\"]\nrepositories = [\"127.0.0.1:5000/mine/*\"]\n",
        digest(ADMIN),
        digest(READER),
        digest(BUILDER),
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::in_process(&[
        "--config",
        path.to_str().unwrap(),
        "--max-queued-builds",
        "1",
        "--max-upload-bytes",
        "100000",
        "--max-context-bytes",
        "100000",
        "--upload-idle-timeout-secs",
        "1",
        "--max-concurrent-uploads",
        "1",
    ]);
    let client = reqwest::blocking::Client::new();
    let send = |method: Method, path: &str, token: Option<&str>| {
        let request = client.request(method, server.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    let form = |repository: &str| {
        Form::new().text("repository", repository.to_string()).part(
            "file",
            Part::bytes(b"FROM scratch\n".to_vec()).file_name("Dockerfile"),
        )
    };
    let status = |request: RequestBuilder| request.send().unwrap().status().as_u16();
    let mut seen = Vec::new();
    let mut saw = |method, path, status| {
        seen.push(Seen {
            method,
            path,
            status,
        })
    };

    let builds = "/api/v1/builds";
    saw("post", builds, status(send(Method::POST, builds, None)));
    saw(
        "post",
        builds,
        status(send(Method::POST, builds, Some(READER)).multipart(form("127.0.0.1:5000/mine/a"))),
    );
    saw(
        "post",
        builds,
        status(
            send(Method::POST, builds, Some(BUILDER)).multipart(form("127.0.0.1:5000/theirs/a")),
        ),
    );
    saw(
        "post",
        builds,
        status(
            send(Method::POST, builds, Some(ADMIN))
                .header("Content-Type", "application/json")
                .body("{}"),
        ),
    );
    saw(
        "post",
        builds,
        status(
            send(Method::POST, builds, Some(ADMIN))
                .header("Origin", "https://evil.example")
                .multipart(form("127.0.0.1:5000/mine/a")),
        ),
    );
    saw(
        "post",
        builds,
        status(send(Method::POST, builds, Some(ADMIN)).multipart(form("Not A Repository"))),
    );
    let git = Form::new()
        .text("repository", "127.0.0.1:5000/mine/git")
        .text(
            "git",
            format!(
                "http://127.0.0.1:{}/nothing.git",
                crate::common::free_port()
            ),
        );
    saw(
        "post",
        builds,
        status(send(Method::POST, builds, Some(ADMIN)).multipart(git)),
    );
    let big = format!(
        "POST {builds} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n"
    );
    saw("post", builds, raw(&server, &big, b""));
    let stalled = big.replace("1000000", "1000");
    saw("post", builds, raw(&server, &stalled, b"--b\r\n"));
    // Builds stay queued here (no daemon): the second waits past max_queued_builds.
    let first = send(Method::POST, builds, Some(ADMIN))
        .multipart(form("127.0.0.1:5000/mine/a"))
        .send()
        .unwrap();
    saw("post", builds, first.status().as_u16());
    let id = first.json::<Value>().unwrap()["id"].as_i64().unwrap();
    saw(
        "post",
        builds,
        status(send(Method::POST, builds, Some(ADMIN)).multipart(form("127.0.0.1:5000/mine/b"))),
    );
    saw(
        "get",
        builds,
        status(send(Method::GET, "/api/v1/builds?limit=x", Some(READER))),
    );
    saw(
        "get",
        builds,
        status(send(Method::GET, builds, Some(READER)).header("Host", "evil.example")),
    );

    let one = format!("/api/v1/builds/{id}");
    saw(
        "get",
        "/api/v1/builds/{id}",
        status(send(Method::GET, "/api/v1/builds/0", Some(READER))),
    );
    saw(
        "get",
        "/api/v1/builds/{id}",
        status(send(Method::GET, "/api/v1/builds/999999", Some(READER))),
    );
    saw(
        "delete",
        "/api/v1/builds/{id}",
        status(send(Method::DELETE, &one, Some(ADMIN))),
    );
    saw(
        "delete",
        "/api/v1/builds/{id}",
        status(send(Method::DELETE, &one, Some(READER))),
    );
    saw(
        "get",
        "/api/v1/builds/{id}/logs",
        status(send(
            Method::GET,
            &format!("{one}/logs?tail=x"),
            Some(READER),
        )),
    );
    saw(
        "get",
        "/api/v1/builds/{id}/events",
        status(
            send(Method::GET, &format!("{one}/events"), Some(READER)).header("Last-Event-ID", "x"),
        ),
    );
    saw(
        "get",
        "/api/v1/builds/{id}/deliveries",
        status(send(
            Method::GET,
            "/api/v1/builds/999999/deliveries",
            Some(ADMIN),
        )),
    );
    saw(
        "post",
        "/api/v1/builds/{id}/retry",
        status(send(Method::POST, &format!("{one}/retry"), Some(ADMIN))),
    );
    saw(
        "post",
        "/api/v1/builds/{id}/cancel",
        status(send(Method::POST, &format!("{one}/cancel"), Some(READER))),
    );
    saw(
        "post",
        "/api/v1/builds/{id}/cancel",
        status(send(Method::POST, &format!("{one}/cancel"), Some(ADMIN))),
    );
    saw(
        "post",
        "/api/v1/builds/{id}/cancel",
        status(send(Method::POST, &format!("{one}/cancel"), Some(ADMIN))),
    );
    saw(
        "post",
        "/api/v1/deliveries/{id}/redeliver",
        status(send(
            Method::POST,
            "/api/v1/deliveries/999999/redeliver",
            Some(ADMIN),
        )),
    );
    saw(
        "get",
        "/api/v1/builders",
        status(send(Method::GET, "/api/v1/builders", None)),
    );
    saw(
        "get",
        "/api/v1/triggers",
        status(send(Method::GET, "/api/v1/triggers", None)),
    );
    saw(
        "post",
        "/api/v1/triggers/{name}/events",
        status(send(Method::POST, "/api/v1/triggers/none/events", None).body("{}")),
    );
    saw(
        "post",
        "/api/v1/triggers/{name}/run",
        status(
            send(Method::POST, "/api/v1/triggers/none/run", Some(ADMIN))
                .json(&serde_json::json!({"ref": "main"})),
        ),
    );

    let document: Value = send(Method::GET, "/api/v1/openapi.json", Some(READER))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let statuses: std::collections::BTreeSet<u16> = seen.iter().map(|s| s.status).collect();
    for expected in [400, 401, 403, 404, 408, 409, 413, 415, 421, 422, 429] {
        assert!(
            statuses.contains(&expected),
            "no request here answered {expected}: {statuses:?}"
        );
    }
    for Seen {
        method,
        path,
        status,
    } in &seen
    {
        let responses = &document["paths"][path][method]["responses"];
        assert!(
            responses[status.to_string()].is_object(),
            "{method} {path} answered {status}, which the document does not list: {responses}"
        );
        if *status >= 400 {
            let listed = responses[status.to_string()]["content"]["application/json"]["schema"]
                ["$ref"]
                .as_str();
            assert_eq!(
                listed,
                Some("#/components/schemas/ErrorBody"),
                "{method} {path} {status}"
            );
        }
    }
}
