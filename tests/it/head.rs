//! `HEAD` is answered wherever `GET` is: the same status and headers, no body, and
//! never a wait for a running build's stream to end.

use std::time::{Duration, Instant};

use crate::common::{field, unique, with_file, Server, TestEnv};

#[test]
fn head_answers_like_get_without_a_body_and_without_waiting() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.registry, unique("head"));
    let form = field(
        with_file(env.dockerfile("sleep 20")),
        "repository",
        &repository,
    );
    let id = server.submit(field(form, "push", "false"));
    server.wait_for(id, Duration::from_secs(60), |b| b["status"] == "building");

    let routes = [
        "/".to_string(),
        "/assets/app.js".into(),
        "/healthz".into(),
        "/readyz".into(),
        "/metrics".into(),
        "/api/v1/builds".into(),
        "/api/v1/builders".into(),
        "/api/v1/openapi.json".into(),
        format!("/api/v1/builds/{id}"),
        format!("/api/v1/builds/{id}/logs"),
        format!("/api/v1/builds/{id}/logs?follow=true"),
        format!("/api/v1/builds/{id}/events"),
        format!("/api/v1/builds/{id}/deliveries"),
        format!("/api/dockerfile-build/?dockerfile_build_id={id}"),
    ];
    // Whether a length is given (a count like /metrics' moves between two
    // requests), and the transfer encoding.
    let framing = |headers: &reqwest::header::HeaderMap| {
        let length = headers.contains_key("content-length");
        (length, headers.get("transfer-encoding").cloned())
    };
    for route in routes {
        let started = Instant::now();
        let head = server
            .client
            .head(server.url(&route))
            .timeout(Duration::from_secs(3))
            .send()
            .unwrap_or_else(|err| panic!("HEAD {route}: {err}"));
        assert_eq!(head.status(), 200, "HEAD {route}");
        let content_type = head.headers()["content-type"].clone();
        let head_framing = framing(head.headers());
        assert_eq!(head.bytes().unwrap().len(), 0, "HEAD {route} sent a body");
        // The next request likely goes over the same connection: a server still
        // busy with the stream behind a HEAD would hold it up.
        let next = server
            .client
            .head(server.url("/healthz"))
            .timeout(Duration::from_secs(3))
            .send();
        assert!(
            next.is_ok() && started.elapsed() < Duration::from_secs(3),
            "HEAD {route} kept the connection busy"
        );
        let allow = |method: reqwest::Method| {
            let response = server.client.request(method, server.url(&route)).send();
            response.unwrap().headers().get("allow").cloned()
        };
        // The 405 of another method names HEAD beside GET (the probes outside
        // the API answer other methods 404, as the README says; the seed API
        // keeps the Allow its clients know).
        let keeps_its_own = ["/healthz", "/readyz", "/metrics"].contains(&route.as_str())
            || route.starts_with("/api/dockerfile-build/");
        if !keeps_its_own {
            let allowed = allow(reqwest::Method::PATCH).unwrap_or_else(|| panic!("PATCH {route}"));
            let allowed = allowed.to_str().unwrap();
            assert!(
                allowed.starts_with("GET, HEAD"),
                "{route}: Allow: {allowed}"
            );
        }
        let get = server
            .client
            .get(server.url(&route))
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        assert_eq!(get.headers()["content-type"], content_type, "{route}");
        // A streamed GET is chunked: its HEAD says so too, not `content-length: 0`.
        assert_eq!(framing(get.headers()), head_framing, "{route}");
    }
    assert_eq!(
        server.build(id)["status"],
        "building",
        "the streams were live"
    );
    let not_found = server
        .client
        .head(server.url("/api/v1/builds/999999"))
        .send()
        .unwrap();
    assert_eq!(not_found.status(), 404);
}
