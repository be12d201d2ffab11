//! Followers that never read: what they hold, how many there may be, and that
//! the memory comes back once they leave. A real dockpub process, real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use crate::common::{field, status_kib, unique, with_file, Server, TestEnv};

const FOLLOWERS: usize = 500;
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;
/// How long the memory may take to come back once the followers have left.
const RELEASE_LIMIT: Duration = Duration::from_secs(60);

/// `host:port` of the server.
fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// A connection with a 4 KiB receive buffer (set before connecting, so the
/// window it offers is small) that sends `GET path` and never reads.
fn stalled_follower(address: &str, path: &str) -> TcpStream {
    let peer: std::net::SocketAddrV4 = address.parse().unwrap();
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let target = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: peer.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*peer.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            &target as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    };
    let mut stream = stream;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    stream
}

/// The status line and headers of a response to `GET path`, read by a client
/// that does read.
fn response_head(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let mut text = String::from_utf8(head).unwrap();
    if text.starts_with("HTTP/1.1 503") {
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        text.push_str(&body);
    }
    text
}

#[test]
fn five_hundred_followers_that_never_read_hold_little_and_give_it_back() {
    let env = TestEnv::get();
    let server = Server::start_with(&[
        "--max-followers-per-build",
        &FOLLOWERS.to_string(),
        "--max-followers",
        "1000",
    ]);
    let address = address(&server);
    server.get_json("/api/v1/builds");
    let before = status_kib(server.pid(), "VmRSS:");

    // About 1.5 MB of log at once, then quiet until cancelled; the legacy
    // builder, as BuildKit clips a step's output past 200 KiB/s.
    let filler = "x".repeat(100);
    let run = format!("yes 'chatty {filler}' | head -n 14000; echo chatty-end; sleep 600");
    let repository = format!("{}/{}", env.registry, unique("followers"));
    let id = server.submit(field(
        field(with_file(env.dockerfile(&run)), "repository", &repository),
        "buildkit",
        "false",
    ));
    let stalled: Vec<TcpStream> = (0..FOLLOWERS)
        .map(|n| {
            let path = if n % 2 == 0 {
                format!("/api/v1/builds/{id}/events")
            } else {
                format!("/api/v1/builds/{id}/logs?follow=true")
            };
            stalled_follower(&address, &path)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let logged_end = || {
        let tail = server.get(&format!("/api/v1/builds/{id}/logs?tail=1"));
        tail.text().unwrap().ends_with("chatty-end\n")
    };
    while !logged_end() {
        assert!(
            Instant::now() < deadline,
            "the build never logged its end: {}\n{}",
            server.build(id),
            server
                .get(&format!("/api/v1/builds/{id}/logs?tail=5"))
                .text()
                .unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The build runs on and every place is taken: one more follower is refused.
    let refused = response_head(&address, &format!("/api/v1/builds/{id}/events"));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 5"),
        "{refused}"
    );
    assert!(refused.contains("\"too_many_followers\""), "{refused}");
    assert!(refused.contains("max_followers_per_build"), "{refused}");

    // Whatever the followers could take in has been handed to their connections by now.
    std::thread::sleep(Duration::from_secs(2));
    let held = status_kib(server.pid(), "VmRSS:");
    let peak = status_kib(server.pid(), "VmHWM:");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "RSS before {before} KiB, with {FOLLOWERS} stalled followers {held} KiB, peak {peak} KiB"
    );
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "{FOLLOWERS} stalled followers grew the RSS by {growth} KiB (from {before} KiB to a peak of {peak} KiB)"
    );

    // What they held is given back; some stays with the runtime (the socket
    // registrations' slab, code pages first touched here), so not all of it.
    drop(stalled);
    let wanted = held - held.saturating_sub(before) / 3;
    let deadline = Instant::now() + RELEASE_LIMIT;
    let mut now = status_kib(server.pid(), "VmRSS:");
    while now > wanted {
        assert!(
            Instant::now() < deadline,
            "the RSS stayed at {now} KiB after the followers left (before them {before} KiB, with them {held} KiB)"
        );
        std::thread::sleep(Duration::from_millis(250));
        now = status_kib(server.pid(), "VmRSS:");
    }
    eprintln!("RSS after the followers left: {now} KiB");

    // Their places came back: a follower that reads is let in.
    let admitted = response_head(&address, &format!("/api/v1/builds/{id}/events"));
    assert!(admitted.starts_with("HTTP/1.1 200"), "{admitted}");
    assert_eq!(server.cancel(id).status(), 200);
    server.wait_for(id, Duration::from_secs(120), |build| {
        build["status"] == "cancelled"
    });
}
