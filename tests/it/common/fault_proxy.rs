//! A registry with a fault in front of it: a TCP proxy on a loopback port that
//! forwards to a real registry and, when told, hangs a request or answers 503.
//! Faults a real registry shows (stops answering mid-upload, fails a read) but
//! cannot be made to show on cue.
//!
//! Each connection carries one request: the proxy asks the registry to close
//! after its answer (`Connection: close`), and so the client opens a new
//! connection for the next request. That way the proxy reads only request heads
//! and never has to parse a body or an answer.

use std::io::ErrorKind;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the proxy does with the requests it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Everything reaches the registry.
    None = 0,
    /// A blob upload's data (PATCH, or PUT of a blob) is taken in and never
    /// answered: the registry, to the client, stopped answering.
    HangBlobUpload = 1,
    /// Once a manifest was PUT, reads of manifests answer 503.
    FailManifestReads = 2,
    /// Reads of manifests (GET, HEAD) are not answered until lifted.
    HangManifestReads = 3,
    /// A manifest PUT is taken in and held until lifted, then sent on if the
    /// client is still there.
    HangManifestPut = 4,
}

pub struct FaultProxy {
    port: u16,
    fault: Arc<AtomicU8>,
    manifest_put: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    hanging: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`host:port`), forwarding everything.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().unwrap().port();
        let proxy = FaultProxy {
            port,
            fault: Arc::new(AtomicU8::new(Fault::None as u8)),
            manifest_put: Arc::default(),
            stop: Arc::default(),
            hanging: Arc::default(),
        };
        let shared = Shared {
            upstream: upstream.to_string(),
            fault: proxy.fault.clone(),
            manifest_put: proxy.manifest_put.clone(),
            hanging: proxy.hanging.clone(),
        };
        let stop = proxy.stop.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                thread::spawn(move || shared.serve(client));
            }
        });
        proxy
    }

    /// The proxy's `host:port`, a registry address the daemon takes as insecure.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests held by a fault right now.
    pub fn hanging(&self) -> usize {
        self.hanging.load(Ordering::SeqCst)
    }

    pub fn set(&self, fault: Fault) {
        self.manifest_put.store(false, Ordering::SeqCst);
        self.fault.store(fault as u8, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    fault: Arc<AtomicU8>,
    manifest_put: Arc<AtomicBool>,
    hanging: Arc<AtomicUsize>,
}

impl Shared {
    fn fault(&self) -> u8 {
        self.fault.load(Ordering::SeqCst)
    }

    fn serve(&self, mut client: TcpStream) {
        let Some((head, rest)) = read_head(&mut client) else {
            // A TLS hello, or nothing: the client falls back to plain HTTP.
            return;
        };
        let line = head.lines().next().unwrap_or_default().to_string();
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default();
        let path = words.next().unwrap_or_default();
        let is_blob_upload = path.contains("/blobs/uploads/") && matches!(method, "PATCH" | "PUT");
        let is_manifest = path.contains("/manifests/");
        let mut rest = rest;
        let is_manifest_read = is_manifest && matches!(method, "GET" | "HEAD");
        let hangs = match self.fault() {
            f if f == Fault::HangBlobUpload as u8 => is_blob_upload,
            f if f == Fault::HangManifestReads as u8 => is_manifest_read,
            f if f == Fault::HangManifestPut as u8 => is_manifest && method == "PUT",
            _ => false,
        };
        // Take in whatever comes and do not answer while the fault lasts, as a
        // stopped registry would; once it is lifted the request goes on.
        if hangs && !self.hang(&mut client, &mut rest) {
            return;
        }
        if self.fault() == Fault::FailManifestReads as u8
            && is_manifest_read
            && self.manifest_put.load(Ordering::SeqCst)
        {
            let _ = client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let Ok(mut upstream) = TcpStream::connect(&self.upstream) else {
            return;
        };
        let head = closing(&head);
        if upstream.write_all(head.as_bytes()).is_err() || upstream.write_all(&rest).is_err() {
            return;
        }
        if is_manifest && method == "PUT" {
            self.manifest_put.store(true, Ordering::SeqCst);
        }
        pipe(client, upstream);
    }
}

impl Shared {
    /// Buffers what the client sends until the fault is lifted; false when the
    /// client gave up first.
    fn hang(&self, client: &mut TcpStream, buffered: &mut Vec<u8>) -> bool {
        let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buffer = [0u8; 64 * 1024];
        let fault = self.fault();
        self.hanging.fetch_add(1, Ordering::SeqCst);
        let mut client_there = true;
        while client_there && self.fault() == fault {
            match client.read(&mut buffer) {
                Ok(0) => client_there = false,
                Ok(n) => buffered.extend_from_slice(&buffer[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => client_there = false,
            }
        }
        self.hanging.fetch_sub(1, Ordering::SeqCst);
        let _ = client.set_read_timeout(None);
        client_there
    }
}

/// Reads up to the end of the request head; the head and the bytes read past it.
fn read_head(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut read = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = client.read(&mut buffer).ok()?;
        if n == 0 || buffer[0] == 0x16 && read.is_empty() {
            return None;
        }
        read.extend_from_slice(&buffer[..n]);
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = read.split_off(end + 4);
            return Some((String::from_utf8_lossy(&read).into_owned(), rest));
        }
        if read.len() > 64 * 1024 {
            return None;
        }
    }
}

/// The head with `Connection: close` in place of any connection header.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// Copies both ways until the registry closes after its answer.
fn pipe(client: TcpStream, upstream: TcpStream) {
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let request = thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
    });
    let (mut upstream, mut client) = (upstream, client);
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = request.join();
}
