//! What an attacker tries first: encoded paths past the token check, and a hostile
//! web page (cross-site posts, DNS rebinding). The gzip bomb is in `contexts.rs`.
//! Requests go over a raw TCP socket so that no client library normalises the
//! path (`/./api`, `%61pi`) before the server sees it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{field, unique, with_file, Server, TestEnv};
use serde_json::Value;

const TOKEN: &str = "t1secret";

/// The status line and body of one raw HTTP/1.1 request.
fn raw(
    server: &Server,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{request_line} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, body.to_string())
}

/// `/api` written in every way that decodes, or normalises, to the same thing.
fn spellings_of_api() -> Vec<String> {
    let spellings: Vec<String> = vec![
        "/%61pi".to_string(),
        "/a%70i".into(),
        "/ap%69".into(),
        "/%61%70%69".into(),
        "/%41pi".into(), // not the same path, but must not be open either
        "/%61%50%49".into(),
        "/%2561pi".into(),
        "//api".into(),
        "/./api".into(),
        "/api/../api".into(),
        "/x/..%2Fapi".into(),
        "/x/..%2fapi".into(),
        "/%2Fapi".into(),
        "/%2fapi".into(),
        "/%252Fapi".into(),
    ];
    spellings
}

fn multipart_body(boundary: &str, repository: &str, dockerfile: &str) -> Vec<u8> {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"repository\"\r\n\r\n{repository}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"push\"\r\n\r\nfalse\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n{dockerfile}\r\n\
         --{boundary}--\r\n"
    )
    .into_bytes()
}

fn build_count(server: &Server) -> usize {
    let response = server
        .client
        .get(server.url("/api/v1/builds?limit=100"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    body["builds"].as_array().unwrap().len()
}

#[test]
fn encoded_paths_never_pass_the_token_check() {
    let env = TestEnv::offline();
    let server = Server::in_process(&["--api-tokens", TOKEN]);
    let repository = format!("{}/{}", env.registry, unique("sec"));
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let created: Value = server
        .client
        .post(server.url("/api/v1/builds"))
        .bearer_auth(TOKEN)
        .multipart(field(
            field(with_file(env.dockerfile("true")), "repository", &repository),
            "push",
            "false",
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["id"].as_i64().expect("a build with the token");
    let form = multipart_body(boundary, &repository, &env.dockerfile("true"));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    for api in spellings_of_api() {
        let routes = [
            ("GET", format!("{api}/v1/builds"), &b""[..]),
            ("POST", format!("{api}/v1/builds"), &form[..]),
            ("GET", format!("{api}/v1/builds/{id}"), b""),
            ("DELETE", format!("{api}/v1/builds/{id}"), b""),
            ("GET", format!("{api}/v1/builds/{id}/logs"), b""),
            ("GET", format!("{api}/v1/builds/{id}/events"), b""),
            ("POST", format!("{api}/v1/builds/{id}/retry"), b""),
            ("POST", format!("{api}/v1/builds/{id}/cancel"), b""),
            ("GET", format!("{api}/v1/builders"), b""),
            ("GET", format!("{api}/v1/builds/{id}/deliveries"), b""),
            ("POST", format!("{api}/v1/deliveries/1/redeliver"), b""),
            ("GET", format!("{api}/v1/openapi.json"), b""),
            ("GET", format!("{api}/dockerfile-build/"), b""),
            ("POST", format!("{api}/dockerfile-build/"), &form[..]),
            (
                "DELETE",
                format!("{api}/dockerfile-build/?dockerfile_build_id={id}"),
                b"",
            ),
            ("GET", format!("{api}%2Fv1%2Fbuilds"), b""),
            ("GET", format!("{api}%2fv1/builds"), b""),
        ];
        for (method, path, body) in routes {
            let (status, answer) = raw(
                &server,
                &format!("{method} {path}"),
                &[("Content-Type", &content_type)],
                body,
            );
            assert_eq!(
                status, 401,
                "{method} {path} without a token answered {answer}"
            );
        }
    }
    // Nothing reached a handler: the one build is still there, alone, and no
    // submission, retry or delete was logged.
    assert_eq!(build_count(&server), 1);
    let log = server.log();
    let queued = format!(": queued ({repository}");
    assert_eq!(log.matches(&queued).count(), 1, "{log}");
    assert!(!log.contains(&format!("build {id}: deleted")), "{log}");
    // Open: answered without a token. No builder is up here, so /readyz says 503.
    for (open, answer) in [
        ("/", 200),
        ("/healthz", 200),
        ("/readyz", 503),
        ("/metrics", 200),
        ("/assets/app.js", 200),
    ] {
        let (status, _) = raw(&server, &format!("GET {open}"), &[], b"");
        assert_eq!(status, answer, "{open} stays open");
    }
}

#[test]
fn a_hostile_page_can_neither_submit_nor_rebind() {
    let env = TestEnv::offline();
    let server = Server::in_process(&[]);
    let address = server.base.trim_start_matches("http://").to_string();
    let port = address.rsplit_once(':').unwrap().1.to_string();
    let repository = format!("{}/{}", env.registry, unique("csrf"));
    let boundary = "----WebKitFormBoundaryX3bY9vQpLz2mK8aR";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let form = multipart_body(boundary, &repository, &env.dockerfile("true"));
    let browser = |origin: &'static str, site: &'static str| {
        vec![
            ("Origin", origin),
            ("Sec-Fetch-Site", site),
            ("Sec-Fetch-Mode", "no-cors"),
            ("User-Agent", "Mozilla/5.0 AppleWebKit/537.36"),
        ]
    };
    for (headers, why) in [
        (
            browser("https://evil.example", "cross-site"),
            "another site",
        ),
        (browser("null", "cross-site"), "a sandboxed frame"),
        (
            vec![("Origin", "https://evil.example")],
            "an Origin without fetch metadata",
        ),
        (
            vec![("Sec-Fetch-Site", "cross-site")],
            "fetch metadata without an Origin",
        ),
    ] {
        for path in ["/api/v1/builds", "/api/dockerfile-build/"] {
            let mut headers = headers.clone();
            headers.push(("Content-Type", &content_type));
            let (status, body) = raw(&server, &format!("POST {path}"), &headers, &form);
            assert_eq!(status, 403, "{why} on {path}: {body}");
            // Each API in its own shape: v1's code, the seed API's message.
            assert!(
                body.contains("cross_site_request") || body.contains("another site's page"),
                "{body}"
            );
        }
    }
    let delete = raw(
        &server,
        "DELETE /api/v1/builds/1",
        &browser("https://evil.example", "cross-site"),
        b"",
    );
    assert_eq!(delete.0, 403, "{}", delete.1);
    assert_eq!(build_count(&server), 0, "a cross-site request made a build");

    // The page's own origin, and clients that are no browser, still submit.
    let own_origin = format!("http://{address}");
    let mut same_origin = vec![
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    same_origin.push(("Content-Type", &content_type));
    let (status, body) = raw(&server, "POST /api/v1/builds", &same_origin, &form);
    assert_eq!(status, 202, "same-origin submit: {body}");
    let plain = [("Content-Type", content_type.as_str())];
    let (status, body) = raw(&server, "POST /api/v1/builds", &plain, &form);
    assert_eq!(
        status, 202,
        "a submit without Origin (curl, the CLI): {body}"
    );

    // DNS rebinding: the attacker's name, pointed at loopback, is not this server's.
    let rebound = format!("rebind.evil.example:{port}");
    for path in ["/api/v1/builds", "/healthz", "/metrics", "/"] {
        let (status, body) = raw(&server, &format!("GET {path}"), &[("Host", &rebound)], b"");
        assert_eq!(status, 421, "Host {rebound} on {path}: {body}");
    }
    let (status, body) = raw(
        &server,
        "GET /api/v1/builds",
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("host_not_allowed"), "{body}");
    // The seed-compatible API answers in its own shape.
    let (status, body) = raw(
        &server,
        "GET /api/dockerfile-build/",
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(status, 421, "{body}");
    assert!(body.starts_with("{\"message\":"), "{body}");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _) = raw(&server, "GET /api/v1/builds", &[("Host", &host)], b"");
        assert_eq!(status, 200, "Host {host}");
    }

    let allowing = Server::in_process(&["--allowed-hosts", "builds.internal"]);
    let (status, _) = raw(
        &allowing,
        "GET /healthz",
        &[("Host", "builds.internal")],
        b"",
    );
    assert_eq!(status, 200, "a name in allowed_hosts");
}

/// Sends a multipart POST's headers and the first bytes of its body, then
/// nothing, and keeps the connection open.
fn stall(server: &Server) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /api/v1/builds HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"repository\"\r\n\r\nx"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

fn answer_of(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn stalled_uploads_are_cut_off_and_capped() {
    let server = Server::in_process(&[
        "--upload-idle-timeout-secs",
        "2",
        "--max-concurrent-uploads",
        "2",
    ]);
    let started = std::time::Instant::now();
    let mut stalled: Vec<TcpStream> = (0..2).map(|_| stall(&server)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // Both slots are held by clients that send nothing: the next one is told to come back.
    let mut third = stall(&server);
    let busy = answer_of(&mut third);
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.to_ascii_lowercase().contains("retry-after:"), "{busy}");
    assert!(busy.contains("too_many_uploads"), "{busy}");
    for stream in &mut stalled {
        let cut = answer_of(stream);
        assert!(cut.starts_with("HTTP/1.1 408"), "{cut}");
        assert!(cut.contains("upload_stalled"), "{cut}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The slots are free again, and nothing was kept.
    let (status, body) = raw(&server, "GET /api/v1/builds", &[], b"");
    assert_eq!(status, 200);
    assert!(body.contains("\"builds\":[]"), "{body}");
    let staged = std::fs::read_dir(server.data_dir().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(staged, 0);
}
