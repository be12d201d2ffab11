//! /metrics moves as builds run: scraped before and after, in Prometheus' text format.

use std::time::Duration;

use crate::common::{field, unique, with_file, Server, TestEnv};

fn scrape(server: &Server) -> String {
    let response = server.get("/metrics");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().unwrap()
}

/// The value of the sample whose name and labels are exactly `series`; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|value| value.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_as_builds_run() {
    let env = TestEnv::get();
    let server = Server::start();
    let before = scrape(&server);
    let repository = format!("{}/{}", env.registry, unique("metrics"));
    let ok = server.submit(field(
        with_file(env.dockerfile("true")),
        "repository",
        &repository,
    ));
    let bad = server.submit(field(
        with_file(env.dockerfile("false")),
        "repository",
        &repository,
    ));
    assert_eq!(
        server.wait_final(ok, Duration::from_secs(120))["status"],
        "succeeded"
    );
    assert_eq!(
        server.wait_final(bad, Duration::from_secs(120))["status"],
        "failed"
    );
    let after = scrape(&server);

    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        grew(r#"dockpub_builds_total{status="succeeded"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(grew(r#"dockpub_builds_total{status="failed"}"#), 1.0);
    assert_eq!(
        grew(r#"dockpub_build_duration_seconds_count{phase="build"}"#),
        1.0
    );
    assert_eq!(
        grew(r#"dockpub_build_duration_seconds_count{phase="push"}"#),
        1.0
    );
    assert!(
        sample(
            &after,
            r#"dockpub_build_duration_seconds_sum{phase="build"}"#
        ) > 0.0
    );
    assert_eq!(
        grew(r#"dockpub_http_requests_total{method="POST",route="/api/v1/builds",status="202"}"#),
        2.0
    );
    assert!(
        grew(
            r#"dockpub_http_requests_total{method="GET",route="/api/v1/builds/{id}",status="200"}"#
        ) >= 2.0
    );
    assert!(
        sample(
            &after,
            r#"dockpub_http_request_duration_seconds_count{method="GET",route="/api/v1/builds/{id}"}"#
        ) >= 2.0
    );
    assert_eq!(sample(&after, r#"dockpub_docker_up{builder="local"}"#), 1.0);
    assert_eq!(
        sample(&after, r#"dockpub_builder_slots{builder="local"}"#),
        2.0
    );
    assert_eq!(
        sample(&after, r#"dockpub_builder_running_builds{builder="local"}"#),
        0.0
    );
    assert!(after.contains("dockpub_queue_depth 0"), "{after}");
    assert!(after.contains("dockpub_running_builds 0"));
}

/// Samples (lines that are not comments) in a scrape.
fn series_count(text: &str) -> usize {
    text.lines().filter(|line| !line.starts_with('#')).count()
}

#[test]
fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let server = Server::start_with(&["--api-tokens", "metrics-token"]);
    // Warm every label that honest traffic can produce here first.
    server.get("/healthz");
    server.get("/no-such-path");
    scrape(&server);
    let before = series_count(&scrape(&server));
    for n in 0..500 {
        let method = reqwest::Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
        let path = format!("/invented/{n}/path-{n}");
        let response = server
            .client
            .request(method, server.url(&path))
            .send()
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    let text = scrape(&server);
    let after = series_count(&text);
    // One new label set, (unmatched, other): one counter sample for its 401 and
    // two histograms (duration and longest poll: buckets, +Inf, sum, count).
    assert!(
        after <= before + 30,
        "{before} series grew to {after}:\n{text}"
    );
    assert!(
        !text.contains("M499") && !text.contains("path-499"),
        "{text}"
    );
}
