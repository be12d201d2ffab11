//! A generated corpus of malformed requests: every answer a 4xx with a JSON body,
//! never a 5xx, and nothing left behind.

use crate::common::{unique, Server, TestEnv};
use reqwest::Method;
use serde_json::Value;

struct Case {
    name: String,
    method: Method,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    extra_header: Option<(String, String)>,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
        extra_header: None,
    }
}

/// A form part: (field name, file name, content).
type Part<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// A multipart body with `boundary` from (name, file name, content) parts.
fn multipart(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, content) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"").as_bytes(),
        );
        body.extend_from_slice(name);
        body.push(b'"');
        if let Some(file_name) = file_name {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(file_name);
            body.push(b'"');
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn form_case(name: impl Into<String>, path: &str, parts: &[Part]) -> Case {
    Case {
        content_type: Some("multipart/form-data; boundary=XyZ".into()),
        body: multipart("XyZ", parts),
        ..case(name, Method::POST, path)
    }
}

fn corpus(env: &TestEnv) -> Vec<Case> {
    let dockerfile = env.dockerfile("true");
    let dockerfile = dockerfile.as_bytes();
    let good_repository = format!("{}/{}", env.registry, unique("bad-input"));
    let mut cases = Vec::new();

    // Truncated bodies: a valid form cut short at many points (the closing boundary is always lost).
    let valid = multipart(
        "XyZ",
        &[
            (b"file", Some(b"Dockerfile"), dockerfile),
            (b"repository", None, good_repository.as_bytes()),
        ],
    );
    for cut in (0..40).map(|n| n * (valid.len() - 10) / 40) {
        cases.push(Case {
            content_type: Some("multipart/form-data; boundary=XyZ".into()),
            body: valid[..cut].to_vec(),
            ..case(
                format!("truncated at {cut}"),
                Method::POST,
                "/api/v1/builds",
            )
        });
    }
    // Broken and missing boundaries.
    for content_type in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
        "multipart/form-data; boundary=other",
        "multipart/form-data; boundary=XY",
        "multipart/form-data; boundary=Q; charset=XyZ",
        "multipart/mixed; boundary=XyZ",
        "multipart/form-data; charset=utf-8",
        "Multipart/Form-Data; Boundary=nope",
        "text/plain",
        "application/json",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "",
        "multipart/form-data; boundary=\"unterminated",
    ] {
        for path in ["/api/v1/builds", "/api/dockerfile-build/"] {
            cases.push(Case {
                content_type: Some(content_type.into()),
                body: valid.clone(),
                ..case(
                    format!("content type {content_type:?} on {path}"),
                    Method::POST,
                    path,
                )
            });
        }
    }
    for garbage in [
        &b"--XyZ\r\n"[..],
        b"--XyZ--",
        b"\r\n\r\n",
        b"--XyZ\r\nContent-Disposition: nonsense\r\n\r\nx\r\n--XyZ--\r\n",
        &[0xff; 64],
        b"--XyZ\r\n\r\n\r\n--XyZ--\r\n",
    ] {
        cases.push(Case {
            content_type: Some("multipart/form-data; boundary=XyZ".into()),
            body: garbage.to_vec(),
            ..case(
                format!("garbage body {:?}", String::from_utf8_lossy(garbage)),
                Method::POST,
                "/api/v1/builds",
            )
        });
    }
    // Bad repositories, including SQL-looking ones.
    let bad_repositories = [
        "",
        " ",
        "UPPER/case",
        "a//b",
        "'; DROP TABLE builds; --",
        "x' OR '1'='1",
        "../../etc/passwd",
        "/abs",
        "app:tag",
        "a@sha256:00",
        "a b",
        "app/",
        "-app",
        "app-",
        "a\tb",
        "é/app",
        "app/Ç",
        "127.0.0.1:port/app",
        "host:/app",
        "[::1/app",
        "a/b/c/D",
        "a\nb",
        "a;b",
        "a|b",
        "$(reboot)",
        "`id`",
        "a%2Fb",
        "a\\b",
        "..",
        ".",
        "_",
        "__/a",
        "a/__b",
        "a/b__",
        "😀/app",
    ];
    let long_repository = "a".repeat(300);
    for repository in bad_repositories
        .iter()
        .copied()
        .chain([long_repository.as_str()])
    {
        cases.push(form_case(
            format!("repository {repository:?}"),
            "/api/v1/builds",
            &[
                (b"file", Some(b"../../Dockerfile"), dockerfile),
                (b"repository", None, repository.as_bytes()),
            ],
        ));
    }
    // Bad tags.
    let long_tag = "t".repeat(129);
    for tag in [
        "",
        ".x",
        "-x",
        "a b",
        "a/b",
        "a:b",
        "ä",
        "'; DELETE FROM builds; --",
        long_tag.as_str(),
        "a\0b",
        "tag\n",
        "*",
        "a,b",
    ] {
        for repeat in [1, 2] {
            let mut parts: Vec<Part> = vec![
                (b"file", Some(b"Dockerfile"), dockerfile),
                (b"repository", None, good_repository.as_bytes()),
            ];
            parts.extend((0..repeat).map(|_| (&b"tag"[..], None, tag.as_bytes())));
            cases.push(form_case(
                format!("tag {tag:?} x{repeat}"),
                "/api/v1/builds",
                &parts,
            ));
        }
    }
    // Dockerfiles that are not, and fields that are not text.
    let not_dockerfiles: Vec<Vec<u8>> = vec![
        vec![],
        b"   \n\n".to_vec(),
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec(),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
        b"PK\x03\x04\x14\0\0\0".to_vec(),
        b"\x7fELF\x02\x01\x01\0".to_vec(),
        b"FROM scratch\0".to_vec(),
        b"FROM \xc3\x28".to_vec(),
        b"\xef\xbb\xbf\xff".to_vec(),
        b"RUN rm -rf /".to_vec(),
        b"SELECT * FROM builds;".to_vec(),
        b"<html><body>FROM</body></html>".to_vec(),
        b"#!/bin/sh\necho hi\n".to_vec(),
        b"{\"FROM\": \"scratch\"}".to_vec(),
        vec![b'#'; 2 * 1024 * 1024],
    ];
    for (n, content) in not_dockerfiles.iter().enumerate() {
        for path in ["/api/v1/builds", "/api/dockerfile-build/"] {
            let repository_field: &[u8] = if path.contains("v1") {
                b"repository"
            } else {
                b"docker_repo"
            };
            cases.push(form_case(
                format!("not a Dockerfile #{n} on {path}"),
                path,
                &[
                    (b"file", Some(b"/etc/shadow"), content),
                    (repository_field, None, good_repository.as_bytes()),
                    (b"docker_username", None, b"u"),
                    (b"docker_password", None, b"p"),
                ],
            ));
        }
    }
    let long_name = vec![b'n'; 4096];
    let weird_names: Vec<&[u8]> = vec![
        b"",
        b"colour",
        b"FILE",
        b"file ",
        b"repository\0",
        b"\xff\xfe",
        &long_name,
        b"tag[]",
        b"../file",
        b"username",
    ];
    for name in weird_names {
        cases.push(form_case(
            format!(
                "field named {:?}",
                String::from_utf8_lossy(&name[..name.len().min(20)])
            ),
            "/api/v1/builds",
            &[
                (b"file", Some(b"Dockerfile"), dockerfile),
                (b"repository", None, good_repository.as_bytes()),
                (name, None, b"value"),
            ],
        ));
    }
    for (name, value) in [
        (&b"repository"[..], &b"\xff\xfe"[..]),
        (b"push", b"maybe"),
        (b"push", b"\xff"),
        (b"username", b"\xc3\x28"),
        (b"password", b"x"),
    ] {
        cases.push(form_case(
            format!(
                "field {} = {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            ),
            "/api/v1/builds",
            &[
                (b"file", Some(b"Dockerfile"), dockerfile),
                (b"repository", None, b"team/app"),
                (name, None, value),
            ],
        ));
    }
    let long_value = vec![b'v'; 20_000];
    cases.push(form_case(
        "a 20 kB repository",
        "/api/v1/builds",
        &[
            (b"file", None, dockerfile),
            (b"repository", None, &long_value),
        ],
    ));
    cases.push(form_case(
        "file sent twice",
        "/api/v1/builds",
        &[
            (b"file", None, dockerfile),
            (b"file", None, dockerfile),
            (b"repository", None, good_repository.as_bytes()),
        ],
    ));
    cases.push(form_case(
        "repository sent twice",
        "/api/v1/builds",
        &[
            (b"file", None, dockerfile),
            (b"repository", None, good_repository.as_bytes()),
            (b"repository", None, b"x/y"),
        ],
    ));
    for callback_url in ["http://127.0.0.1:9/hook", "not a url", "file:///etc/passwd"] {
        cases.push(form_case(
            format!("callback_url {callback_url}"),
            "/api/v1/builds",
            &[
                (b"file", None, dockerfile),
                (b"repository", None, good_repository.as_bytes()),
                (b"callback_url", None, callback_url.as_bytes()),
            ],
        ));
    }
    // Ids and queries.
    let ids = [
        "-1",
        "0",
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999",
        "1.5",
        "1e3",
        "abc",
        "%27%20OR%201%3D1",
        "1%3B%20DROP%20TABLE%20builds",
        "%00",
        "%FF",
        "0x10",
        "+1",
        " 1",
    ];
    for id in ids {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::DELETE, ""),
            (Method::GET, "/logs"),
            (Method::GET, "/logs?follow=true"),
            (Method::GET, "/events"),
            (Method::POST, "/cancel"),
            (Method::POST, "/retry"),
            (Method::GET, "/deliveries"),
        ] {
            cases.push(case(
                format!("{method} id {id}{suffix}"),
                method,
                format!("/api/v1/builds/{id}{suffix}"),
            ));
        }
        cases.push(case(
            format!("redeliver id {id}"),
            Method::POST,
            format!("/api/v1/deliveries/{id}/redeliver"),
        ));
        cases.push(case(
            format!("seed id {id}"),
            Method::GET,
            format!("/api/dockerfile-build/?dockerfile_build_id={id}"),
        ));
        cases.push(case(
            format!("seed delete id {id}"),
            Method::DELETE,
            format!("/api/dockerfile-build/?dockerfile_build_id={id}"),
        ));
    }
    for query in [
        "limit=0",
        "limit=-1",
        "limit=501",
        "limit=abc",
        "limit=1e9",
        "status=done",
        "status=%27%3B",
        "before=x",
        "before=-",
        "limit=1&limit=2",
        "status=queued&status=failed",
    ] {
        cases.push(case(
            format!("list ?{query}"),
            Method::GET,
            format!("/api/v1/builds?{query}"),
        ));
    }
    cases.push(case(
        "follow=perhaps",
        Method::GET,
        "/api/v1/builds/1/logs?follow=perhaps",
    ));
    cases.push(case(
        "force=perhaps",
        Method::DELETE,
        "/api/v1/builds/1?force=perhaps",
    ));
    // Wrong methods and unknown routes.
    for (method, path) in [
        (Method::PUT, "/api/v1/builds"),
        (Method::PATCH, "/api/v1/builds"),
        (Method::DELETE, "/api/v1/builds"),
        (Method::PUT, "/api/v1/builds/1"),
        (Method::POST, "/api/v1/builds/1"),
        (Method::PATCH, "/api/v1/builds/1"),
        (Method::POST, "/api/v1/builds/1/logs"),
        (Method::DELETE, "/api/v1/builds/1/logs"),
        (Method::POST, "/api/v1/builds/1/events"),
        (Method::GET, "/api/v1/builds/1/cancel"),
        (Method::GET, "/api/v1/builds/1/retry"),
        (Method::POST, "/api/v1/builds/1/deliveries"),
        (Method::GET, "/api/v1/deliveries/1/redeliver"),
        (Method::GET, "/api/v1/deliveries/1"),
        (Method::PUT, "/api/dockerfile-build/"),
        (Method::PATCH, "/api/dockerfile-build"),
        (Method::GET, "/api/v2/builds"),
        (Method::GET, "/api/v1/builds/1/2/3"),
        (Method::GET, "/../../etc/passwd"),
        (Method::GET, "/api/v1/builds/%2e%2e/%2e%2e"),
        (Method::OPTIONS, "/api/v1/builds"),
    ] {
        cases.push(case(format!("{method} {path}"), method, path));
    }
    // The same bad requests with big headers.
    let big = "h".repeat(8 * 1024);
    for n in 0..5 {
        cases.push(Case {
            extra_header: Some((format!("X-Big-{n}"), big.clone())),
            ..case(format!("big header {n}"), Method::GET, "/api/v1/builds/abc")
        });
    }
    cases
}

#[test]
fn three_hundred_malformed_requests_get_4xx_json_and_leave_nothing() {
    let env = TestEnv::offline();
    let server = Server::in_process(&[
        "--max-upload-bytes",
        "1048576",
        "--max-dockerfile-bytes",
        "65536",
    ]);
    let cases = corpus(&env);
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut request = server
            .client
            .request(case.method.clone(), server.url(&case.path))
            .body(case.body.clone());
        if let Some(content_type) = &case.content_type {
            request = request.header("Content-Type", content_type.as_str());
        }
        if let Some((name, value)) = &case.extra_header {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = match request.send() {
            Ok(response) => response,
            Err(err) => {
                failures.push(format!("{}: no answer: {err}", case.name));
                continue;
            }
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
        let body = response.text().unwrap_or_default();
        if !status.is_client_error() || !is_json || serde_json::from_str::<Value>(&body).is_err() {
            failures.push(format!("{}: {status} {body}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    assert_eq!(server.get_json("/healthz")["status"], "ok");
    assert_eq!(
        server.get_json("/api/v1/builds")["builds"],
        serde_json::json!([])
    );
    for folder in ["builds", "uploads"] {
        let left: Vec<_> = std::fs::read_dir(server.data_dir().join(folder))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "stray files in {folder}: {left:?}");
    }
    let stray: Vec<String> = std::fs::read_dir(server.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !name.starts_with("dockpub.sqlite3")
                && !["builds", "uploads", "dockpub.lock", "instance"].contains(&name.as_str())
        })
        .collect();
    assert!(stray.is_empty(), "stray files in the data dir: {stray:?}");
    assert!(!server.log().contains("panicked"));
}
