//! `Expect: 100-continue` over a raw socket: a request the server will refuse
//! gets its final answer (401, 403, 413) and never a `100 Continue` first; one
//! it takes is told to go on. A real dockpub process with tokens and scopes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::Server;

const ADMIN: &str = "expect-admin-token";
const READER: &str = "expect-reader-token";
const MAX_UPLOAD_BYTES: u64 = 100_000;

fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[tokens]]\nname = \"reader\"\ntoken_env = \"T_READER\"\nscopes = [\"read\"]\n\n\
         [[tokens]]\nname = \"admin\"\ntoken_env = \"T_ADMIN\"\nscopes = [\"admin\"]\n",
    )
    .unwrap();
    let server = Server::start_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-upload-bytes",
            &MAX_UPLOAD_BYTES.to_string(),
        ],
        &[("T_READER", READER), ("T_ADMIN", ADMIN)],
    );
    (server, dir)
}

/// Sends the head of `POST path` with `Expect: 100-continue` and no body yet;
/// returns the stream and the first response head that comes back.
fn post_head(server: &Server, path: &str, token: Option<&str>, length: u64) -> (TcpStream, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\n{auth}\
         Content-Type: multipart/form-data; boundary=XyZ\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream);
    (stream, head)
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The head and the body after it, up to the end of the connection or 4 KiB.
fn refused(server: &Server, path: &str, token: Option<&str>, length: u64) -> String {
    let (mut stream, head) = post_head(server, path, token, length);
    let mut body = vec![0u8; 4096];
    let read = stream.read(&mut body).unwrap_or(0);
    format!("{head}{}", String::from_utf8_lossy(&body[..read]))
}

#[test]
fn a_request_that_will_be_refused_gets_its_answer_and_no_100_continue() {
    let (server, _dir) = start();
    let cases = [
        ("/api/v1/builds", None, 1000, "401", "unauthorized"),
        // The path as the router decodes it meets the same check.
        ("/%61pi/v1/builds", None, 1000, "401", "unauthorized"),
        ("/api/v1/builds", Some(READER), 1000, "403", "forbidden"),
        (
            "/api/v1/builds/1/cancel",
            Some(READER),
            10,
            "403",
            "forbidden",
        ),
        // Past the body and the context together.
        (
            "/api/v1/builds",
            Some(ADMIN),
            1 << 40,
            "413",
            "payload_too_large",
        ),
        // The seed API takes no context, and answers in its own shape.
        (
            "/api/dockerfile-build/",
            Some(ADMIN),
            MAX_UPLOAD_BYTES + 1,
            "413",
            "\"message\"",
        ),
    ];
    for (path, token, length, status, says) in cases {
        let answer = refused(&server, path, token, length);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "POST {path} ({length} bytes, token {token:?}): {answer}"
        );
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains(says), "POST {path}: {answer}");
    }
}

#[test]
fn a_request_the_checks_let_through_is_told_to_continue_and_then_answered() {
    let (server, _dir) = start();
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"repository\"\r\n\r\nNot/Valid\r\n--XyZ--\r\n";
    let (mut stream, head) = post_head(&server, "/api/v1/builds", Some(ADMIN), body.len() as u64);
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    stream.write_all(body.as_bytes()).unwrap();
    let answer = read_head(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
