//! A large context is streamed to disk and on to the daemon, never held in memory.

use std::io::{Cursor, Read};
use std::time::Duration;

use crate::common::{field, status_kib, unique, Server, TestEnv};
use reqwest::blocking::multipart::{Form, Part};

const CONTEXT_FILE_BYTES: u64 = 600 * 1024 * 1024;
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;

/// A tar archive of a Dockerfile and a 600 MiB file of zeros, generated as it is
/// read so the test holds none of it either; and its length.
fn big_context(dockerfile: &str) -> (impl Read + Send + 'static, u64) {
    let mut head = Vec::new();
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    {
        let mut archive = tar::Builder::new(&mut head);
        archive
            .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
            .unwrap();
        let mut big = tar::Header::new_gnu();
        big.set_path("big.bin").unwrap();
        big.set_size(CONTEXT_FILE_BYTES);
        big.set_mode(0o644);
        big.set_cksum();
        // Only the header: the builder would want the whole content.
        archive.get_mut().extend_from_slice(big.as_bytes());
    }
    // 600 MiB is a whole number of 512-byte blocks, so no padding; then the end blocks.
    let length = head.len() as u64 + CONTEXT_FILE_BYTES + 1024;
    let reader = Cursor::new(head)
        .chain(std::io::repeat(0).take(CONTEXT_FILE_BYTES))
        .chain(Cursor::new(vec![0u8; 1024]));
    (reader, length)
}

#[test]
fn a_600_mib_context_keeps_the_server_rss_growth_under_64_mib() {
    let env = TestEnv::get();
    let server = Server::start();
    // Warm up: the first request sets up what every request needs.
    server.get_json("/api/v1/builds");
    let before = status_kib(server.pid(), "VmRSS:");

    let dockerfile = format!("FROM {}\nRUN ls -l /\n", env.base_image);
    let repository = format!("{}/{}", env.registry, unique("big"));
    let (archive, length) = big_context(&dockerfile);
    let part = Part::reader(archive).file_name("context.tar");
    let form = field(
        field(Form::new().part("context", part), "repository", &repository),
        "push",
        "false",
    );
    let id = server.submit(form);
    let build = server.wait_final(id, Duration::from_secs(600));
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["options"]["context_bytes"], length);

    let peak = status_kib(server.pid(), "VmHWM:");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "RSS grew by {growth} KiB (from {before} KiB to a peak of {peak} KiB)"
    );
    eprintln!("RSS before {before} KiB, peak {peak} KiB, growth {growth} KiB");
}
