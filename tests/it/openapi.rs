//! The OpenAPI document: generated from the code, listing every v1 route, and
//! checked against the running server by schemathesis.

use std::process::Command;

use crate::common::{Server, TestEnv};

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
        12,
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
    ] {
        assert!(build[field].is_object(), "the Build schema lacks {field}");
    }
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
