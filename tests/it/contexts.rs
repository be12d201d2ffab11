//! Build contexts and build options end to end: real server, real daemon, real
//! registry. Images are checked by running them with network none.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::{
    assert_processes_gone, buildkit_step, docker, field, output_text, pushed_digest,
    registry_digest, run_in, tar_of, unique, with_file, Server, TestEnv,
};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(120);

/// A tar archive with a Dockerfile and one entry whose name, type and link target
/// are written raw, as a hostile client would.
fn tar_with_raw_entry(
    dockerfile: &str,
    name: &str,
    kind: tar::EntryType,
    target: Option<&str>,
) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    archive
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(0o644);
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(target) = target {
        header.set_link_name(target).unwrap();
    }
    header.set_cksum();
    archive.append(&header, std::io::empty()).unwrap();
    archive.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A form with `archive` as the `context` field, under a name that says nothing
/// of its format: dockpub must tell by content.
fn with_context(archive: Vec<u8>) -> Form {
    Form::new().part("context", Part::bytes(archive).file_name("upload.bin"))
}

fn build_only(server: &Server, form: Form, repository: &str) -> Value {
    let form = field(field(form, "repository", repository), "push", "false");
    server.wait_final(server.submit(form), BUILD_TIME)
}

fn assert_refused(server: &Server, form: Form, status: u16, code: &str, needle: &str) {
    let response = server.post_form("/api/v1/builds", form);
    let got = response.status();
    let body: Value = response.json().unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "'{needle}' not in: {message}");
}

/// Nothing of a refused request remains: no row, no stored file, no staged upload.
fn assert_nothing_left(server: &Server) {
    let list = server.get_json("/api/v1/builds");
    assert_eq!(list["builds"], Value::Array(vec![]), "{list}");
    for folder in ["builds", "uploads"] {
        let path = server.data_dir().join(folder);
        let left: Vec<_> = std::fs::read_dir(&path).unwrap().collect();
        assert!(left.is_empty(), "{} holds {left:?}", path.display());
    }
}

#[test]
fn copy_from_a_plain_or_gzip_context_ends_in_the_image() {
    let env = TestEnv::get();
    let server = Server::start();
    let greeting = unique("hello from the context");
    let dockerfile = format!(
        "FROM {}\nCOPY hello.txt /hello.txt\nCOPY sub/ /sub/\n",
        env.base_image
    );
    let archive = tar_of(&[
        ("Dockerfile", dockerfile.as_bytes()),
        ("hello.txt", greeting.as_bytes()),
        ("sub/nested.txt", b"nested"),
    ]);
    for (kind, bytes) in [("plain", archive.clone()), ("gzip", gzip(&archive))] {
        let repository = format!("{}/{}", env.registry, unique(kind));
        let build = build_only(&server, with_context(bytes), &repository);
        assert_eq!(build["status"], "succeeded", "{kind}: {build}");
        assert_eq!(build["options"]["dockerfile"], "Dockerfile");
        // The tar's size, also when it came gzipped: one meaning for every source.
        assert_eq!(build["options"]["context_bytes"], archive.len(), "{kind}");
        let image = format!("{repository}:latest");
        assert_eq!(run_in(&image, "cat /hello.txt"), greeting, "{kind}");
        assert_eq!(run_in(&image, "cat /sub/nested.txt"), "nested", "{kind}");
    }
}

#[test]
fn the_dockerfile_field_names_a_path_in_the_context() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!(
        "FROM {}\nRUN echo from-docker-dir > /which\n",
        env.base_image
    );
    let archive = tar_of(&[("docker/Dockerfile.prod", dockerfile.as_bytes())]);
    let repository = format!("{}/{}", env.registry, unique("path"));
    let form = field(
        with_context(archive),
        "dockerfile",
        "./docker/Dockerfile.prod",
    );
    let build = build_only(&server, form, &repository);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["options"]["dockerfile"], "docker/Dockerfile.prod");
    assert_eq!(
        run_in(&format!("{repository}:latest"), "cat /which"),
        "from-docker-dir\n"
    );
}

#[test]
fn an_uploaded_file_is_the_dockerfile_of_the_context() {
    let env = TestEnv::get();
    let server = Server::start();
    let context_dockerfile = format!("FROM {}\nRUN false\n", env.base_image);
    let archive = tar_of(&[
        ("Dockerfile", context_dockerfile.as_bytes()),
        ("data.txt", b"data"),
    ]);
    let uploaded = format!("FROM {}\nCOPY . /ctx/\n", env.base_image);
    // The legacy builder drops the added Dockerfile (listed in .dockerignore);
    // BuildKit reads a tar context as it is, so `COPY .` copies it too (README).
    let builders = [
        ("false", vec!["Dockerfile", "data.txt"]),
        (
            "true",
            vec![
                ".dockerignore",
                ".dockpub-Dockerfile",
                "Dockerfile",
                "data.txt",
            ],
        ),
    ];
    for (buildkit, expected) in builders {
        let form =
            with_context(archive.clone()).part("file", Part::bytes(uploaded.clone().into_bytes()));
        let repository = format!("{}/{}", env.registry, unique("inject"));
        let build = build_only(&server, field(form, "buildkit", buildkit), &repository);
        assert_eq!(build["status"], "succeeded", "{build}");
        assert_eq!(build["options"]["dockerfile"], Value::Null);
        let listing = run_in(&format!("{repository}:latest"), "ls -A /ctx");
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(names, expected, "buildkit={buildkit}");
    }
}

#[test]
fn dockerignore_is_honoured() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!("FROM {}\nCOPY . /ctx/\n", env.base_image);
    let archive = tar_of(&[
        ("Dockerfile", dockerfile.as_bytes()),
        (
            ".dockerignore",
            b"# not for the image\nsecret.txt\n**/*.log\ncache\n!cache/keep.txt\n",
        ),
        ("secret.txt", b"s3cr3t"),
        ("keep.txt", b"keep"),
        ("logs/app.log", b"log"),
        ("cache/drop.bin", b"drop"),
        ("cache/keep.txt", b"kept"),
    ]);
    let repository = format!("{}/{}", env.registry, unique("ignore"));
    let build = build_only(&server, with_context(archive), &repository);
    assert_eq!(build["status"], "succeeded", "{build}");
    let listing = run_in(
        &format!("{repository}:latest"),
        "cd /ctx && find . -type f | sort",
    );
    let files: Vec<&str> = listing.lines().collect();
    assert_eq!(
        files,
        vec![
            "./.dockerignore",
            "./Dockerfile",
            "./cache/keep.txt",
            "./keep.txt"
        ],
        "{listing}"
    );
}

#[test]
fn unsafe_or_broken_contexts_are_refused_and_leave_nothing() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-context-bytes", "1048576"]);
    let dockerfile = format!("FROM {}\n", env.base_image);
    let repository = format!("{}/{}", env.registry, unique("unsafe"));
    let submit = |archive: Vec<u8>| field(with_context(archive), "repository", &repository);
    let hostile = [
        ("../escape.txt", tar::EntryType::Regular, None),
        ("/etc/cron.d/evil", tar::EntryType::Regular, None),
        ("dev/console", tar::EntryType::Char, None),
        ("dev/sda", tar::EntryType::Block, None),
        ("passwd", tar::EntryType::Symlink, Some("/etc/passwd")),
        ("sub/up", tar::EntryType::Symlink, Some("../../outside")),
        ("hard", tar::EntryType::Link, Some("../../etc/shadow")),
    ];
    for (name, kind, target) in hostile {
        let archive = tar_with_raw_entry(&dockerfile, name, kind, target);
        assert_refused(
            &server,
            submit(archive.clone()),
            400,
            "invalid_context",
            name,
        );
        assert_refused(
            &server,
            submit(gzip(&archive)),
            400,
            "invalid_context",
            name,
        );
    }
    assert_refused(
        &server,
        submit(b"just some text, not a tar".to_vec()),
        400,
        "invalid_context",
        "tar",
    );
    assert_refused(
        &server,
        submit(tar_of(&[("other.txt", b"x")])),
        400,
        "invalid_context",
        "no Dockerfile at 'Dockerfile'",
    );
    assert_refused(
        &server,
        submit(tar_of(&[("Dockerfile", b"RUN echo no FROM")])),
        400,
        "invalid_dockerfile",
        "FROM",
    );
    assert_refused(
        &server,
        field(
            submit(tar_of(&[("Dockerfile", dockerfile.as_bytes())])),
            "dockerfile",
            "../Dockerfile",
        ),
        400,
        "invalid_option",
        "dockerfile",
    );
    let big = tar_of(&[
        ("Dockerfile", dockerfile.as_bytes()),
        ("big.bin", &vec![7u8; 2 * 1024 * 1024]),
    ]);
    assert_refused(&server, submit(big), 413, "payload_too_large", "1048576");
    assert_nothing_left(&server);
}

#[test]
fn an_oversized_context_sent_without_a_length_is_cut_off_with_413() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-context-bytes", "1048576"]);
    // A streamed part: the body goes out chunked, so dockpub only learns its size
    // by counting what it writes to disk.
    let body = std::io::Cursor::new(vec![0u8; 8 * 1024 * 1024]);
    let form = field(
        Form::new().part("context", Part::reader(body).file_name("big.tar")),
        "repository",
        &format!("{}/{}", env.registry, unique("big")),
    );
    let response = server.post_form("/api/v1/builds", form);
    assert_eq!(response.status(), 413);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_nothing_left(&server);
}

#[test]
fn build_args_and_labels_reach_the_image() {
    let env = TestEnv::get();
    let server = Server::start();
    let greeting = unique("hi");
    let dockerfile = format!(
        "FROM {}\nARG GREETING\nARG EMPTY\nRUN echo \"$GREETING|$EMPTY\" > /greeting\n",
        env.base_image
    );
    let form = with_file(dockerfile);
    let form = field(
        field(form, "build_arg", &format!("GREETING={greeting}")),
        "build_arg",
        "EMPTY=",
    );
    let form = field(
        field(form, "label", "org.example.team=core"),
        "label",
        "org.example.note=a b=c",
    );
    let repository = format!("{}/{}", env.registry, unique("args"));
    let build = build_only(&server, form, &repository);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["options"]["build_args"]["GREETING"], greeting);
    assert_eq!(build["options"]["labels"]["org.example.note"], "a b=c");
    let image = format!("{repository}:latest");
    assert_eq!(run_in(&image, "cat /greeting"), format!("{greeting}|\n"));
    let labels: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &image,
    ]))
    .unwrap();
    assert_eq!(labels["org.example.team"], "core", "{labels}");
    assert_eq!(labels["org.example.note"], "a b=c", "{labels}");
}

#[test]
fn target_picks_the_stage() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!(
        "FROM {base} AS first\nRUN echo first > /stage\nFROM {base} AS second\nRUN echo second > /stage\n",
        base = env.base_image
    );
    let repository = format!("{}/{}", env.registry, unique("target"));
    let build = build_only(
        &server,
        field(with_file(dockerfile), "target", "first"),
        &repository,
    );
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["options"]["target"], "first");
    assert_eq!(
        run_in(&format!("{repository}:latest"), "cat /stage"),
        "first\n"
    );
}

#[test]
fn no_cache_rebuilds_every_step() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!(
        "FROM {}\nRUN echo {} > /x\n",
        env.base_image,
        unique("cache")
    );
    let repository = format!("{}/{}", env.registry, unique("nocache"));
    let build = |no_cache: &str| {
        let form = field(with_file(dockerfile.clone()), "no_cache", no_cache);
        let build = build_only(&server, form, &repository);
        assert_eq!(build["status"], "succeeded", "{build}");
        let id = build["id"].as_i64().unwrap();
        (build, server.logs(id))
    };
    let (first, _) = build("false");
    let run = dockerfile.lines().nth(1).unwrap();
    let (cached, cached_logs) = build("false");
    let step = buildkit_step(&cached_logs, run);
    assert!(
        cached_logs.contains(&format!("{step} CACHED")),
        "{cached_logs}"
    );
    assert_eq!(cached["image_id"], first["image_id"]);
    let (fresh, fresh_logs) = build("true");
    assert_eq!(fresh["options"]["no_cache"], true);
    let step = buildkit_step(&fresh_logs, run);
    assert!(
        !fresh_logs.contains(&format!("{step} CACHED")),
        "{fresh_logs}"
    );
    assert!(fresh_logs.contains(&format!("{step} DONE")), "{fresh_logs}");
    assert_ne!(fresh["image_id"], first["image_id"]);
}

#[test]
fn only_allowed_networks_may_be_chosen() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--allowed-build-networks", "none,host"]);
    let repository = format!("{}/{}", env.registry, unique("net"));
    let list_interfaces = || with_file(env.dockerfile("ls /sys/class/net"));
    let form = field(list_interfaces(), "repository", &repository);
    assert_refused(
        &server,
        field(form, "network", "bridge"),
        400,
        "invalid_option",
        "allowed: none, host",
    );
    let interfaces = |build: &Value| {
        assert_eq!(build["status"], "succeeded", "{build}");
        let logs = server.logs(build["id"].as_i64().unwrap());
        logs.lines()
            .map(output_text)
            .filter(|line| *line == "lo" || *line == "eth0")
            .count()
    };
    let default = build_only(&server, list_interfaces(), &repository);
    assert_eq!(
        default["options"]["network"], "none",
        "the configured default"
    );
    assert_eq!(
        interfaces(&default),
        1,
        "with network none a step sees only lo"
    );
    let host = build_only(
        &server,
        field(list_interfaces(), "network", "host"),
        &repository,
    );
    assert_eq!(host["options"]["network"], "host");
    assert_eq!(
        interfaces(&host),
        2,
        "with network host a step sees the host's eth0"
    );
    let list = server.get_json("/api/v1/builds");
    assert_eq!(list["builds"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn the_daemon_enforces_the_configured_limits() {
    let env = TestEnv::get();
    let server = Server::start_with(&[
        "--build-memory-bytes",
        "67108864",
        "--build-cpu-shares",
        "512",
    ]);
    let dockerfile = env.dockerfile(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares",
    );
    assert!(
        server
            .log()
            .contains("build_memory_bytes applies to legacy builds only"),
        "no warning that BuildKit builds ignore the limit"
    );
    let repository = format!("{}/{}", env.registry, unique("limits"));
    let form = field(with_file(dockerfile), "buildkit", "false");
    let build = build_only(&server, form, &repository);
    assert_eq!(build["status"], "succeeded", "{build}");
    let logs = server.logs(build["id"].as_i64().unwrap());
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.contains(&"67108864") && lines.contains(&"512"),
        "{logs}"
    );
}

#[test]
fn a_build_past_its_timeout_fails_and_leaves_no_container() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--build-timeout-secs", "2"]);
    for buildkit in ["true", "false"] {
        let repository = format!("{}/{}", env.registry, unique("timeout"));
        let marker = unique("timeout-marker");
        let started = Instant::now();
        let form = field(
            with_file(env.dockerfile(&format!("sleep 600 && echo {marker}"))),
            "repository",
            &repository,
        );
        let id = server.submit(field(form, "buildkit", buildkit));
        let build = server.wait_final(id, Duration::from_secs(30));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(build["status"], "failed", "{build}");
        assert_eq!(build["error"], "timed out after 2 s");
        // The step's process (BuildKit's, or the legacy step container's) is gone.
        assert_processes_gone(&marker, Duration::from_secs(10));
        if buildkit == "false" {
            assert_step_container_removed(&server.logs(id));
        }
        assert_eq!(pushed_digest(&repository, "latest", None), None);
    }
}

/// The legacy builder's step container named in the log is gone.
fn assert_step_container_removed(logs: &str) {
    let container = logs
        .lines()
        .find_map(|line| {
            line.split_once("Running in ")
                .map(|(_, id)| id.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no step container in the log: {logs}"));
    let left = docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("id={container}"),
    ]);
    assert_eq!(left.trim(), "", "container {container} was left behind");
}

#[test]
fn every_tag_is_pushed_with_its_digest() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/team/{}", env.registry, unique("tags"));
    let form = field(with_file(env.dockerfile("true")), "repository", &repository);
    let form = field(
        field(field(form, "tag", "1.0"), "tag", "1"),
        "tag",
        "latest",
    );
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    let path = repository.split_once('/').unwrap().1;
    for tag in ["1.0", "1", "latest"] {
        let served = registry_digest(&env.registry, path, tag, None);
        assert_eq!(
            served.as_deref(),
            build["digests"][tag].as_str(),
            "tag {tag}: {build}"
        );
    }
    assert_eq!(
        build["digest"], build["digests"]["1.0"],
        "digest is the first tag's"
    );
}

#[test]
fn pull_fetches_the_base_image_even_when_it_is_present() {
    let env = TestEnv::get();
    let server = Server::start();
    let base = format!("{}/{}", env.registry, unique("base"));
    let pushed = server.wait_final(
        server.submit(field(
            with_file(env.dockerfile("true")),
            "repository",
            &base,
        )),
        BUILD_TIME,
    );
    assert_eq!(pushed["status"], "succeeded", "{pushed}");
    let dockerfile = format!("FROM {base}:latest\nRUN true\n");
    let repository = format!("{}/{}", env.registry, unique("pulled"));
    for pull in ["false", "true"] {
        let build = build_only(
            &server,
            field(with_file(dockerfile.clone()), "pull", pull),
            &repository,
        );
        assert_eq!(build["status"], "succeeded", "{build}");
        let logs = server.logs(build["id"].as_i64().unwrap());
        // BuildKit asks the registry for the tag's digest, and builds on that.
        assert_eq!(
            logs.contains(&format!("resolve {base}:latest@sha256:")),
            pull == "true",
            "pull={pull}: {logs}"
        );
    }
}

/// A gzip-compressed tar holding a Dockerfile and `zeros` bytes of zeros.
fn gzip_bomb(env: &TestEnv, zeros: u64) -> Vec<u8> {
    let dockerfile = env.dockerfile("true");
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut archive = tar::Builder::new(gzip);
    let mut append = |name: &str, size: u64, content: &mut dyn std::io::Read| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        archive.append_data(&mut header, name, content).unwrap();
    };
    append(
        "Dockerfile",
        dockerfile.len() as u64,
        &mut dockerfile.as_bytes(),
    );
    append("zeros", zeros, &mut std::io::repeat(0).take(zeros));
    archive.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_gzip_bomb_is_measured_decompressed_and_leaves_nothing() {
    let env = TestEnv::get();
    let server = Server::start_with(&[
        "--max-context-bytes",
        "2000000",
        "--max-context-entries",
        "20",
    ]);
    let repository = format!("{}/{}", env.registry, unique("bomb"));
    let bomb = gzip_bomb(&env, 256 * 1024 * 1024);
    assert!(bomb.len() < 1_000_000, "the bomb is small: {}", bomb.len());
    let form = field(with_context(bomb), "repository", &repository);
    assert_refused(
        &server,
        form,
        413,
        "payload_too_large",
        "2000000 bytes once decompressed",
    );

    let dockerfile = env.dockerfile("true");
    let mut files: Vec<(String, &[u8])> = vec![("Dockerfile".into(), dockerfile.as_bytes())];
    files.extend((1..30).map(|n| (format!("f{n}"), &b"x"[..])));
    let named: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let form = field(with_context(tar_of(&named)), "repository", &repository);
    assert_refused(&server, form, 413, "payload_too_large", "20 entries");
    assert_nothing_left(&server);
}

#[test]
fn a_full_queue_refuses_before_unpacking_a_context() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-concurrent-builds", "1", "--max-queued-builds", "1"]);
    let repository = format!("{}/{}", env.registry, unique("full"));
    let submit = |run: &str| {
        let form = field(with_file(env.dockerfile(run)), "repository", &repository);
        server.submit(field(form, "push", "false"))
    };
    let running = submit("sleep 60");
    server.wait_for(running, BUILD_TIME, |b| b["status"] == "building");
    let queued = submit("true");
    // A bomb that is also too large: the full queue answers first.
    let form = field(
        with_context(gzip_bomb(&env, 64 * 1024 * 1024)),
        "repository",
        &repository,
    );
    let response = server.post_form("/api/v1/builds", form);
    let got = response.status();
    let body: Value = response.json().unwrap();
    // Should the queue not be full, the builds say why.
    let why = || {
        format!(
            "{body}\nrunning: {}\nqueued: {}",
            server.build(running),
            server.build(queued)
        )
    };
    assert_eq!(got, 429, "{}", why());
    assert_eq!(body["error"]["code"], "queue_full", "{}", why());
    for id in [queued, running] {
        let cancel = server
            .client
            .post(server.url(&format!("/api/v1/builds/{id}/cancel")))
            .send()
            .unwrap();
        assert!(
            cancel.status().is_success(),
            "cancel {id}: {}",
            cancel.status()
        );
    }
}

/// A body whose boundary line arrives split (the network cut it right after
/// its `\r\n--`): the parts on either side stay apart. actix-multipart 0.7
/// merged the next part into the archive here, which lost `repository`.
#[test]
fn a_boundary_split_across_packets_keeps_the_parts_apart() {
    let env = TestEnv::get();
    let server = Server::start();
    let archive = tar_of(&[("Dockerfile", env.dockerfile("true").as_bytes())]);
    let repository = format!("{}/{}", env.registry, unique("split"));
    let mut body =
        b"--b\r\nContent-Disposition: form-data; name=\"context\"; filename=\"c.tar\"\r\n\r\n"
            .to_vec();
    body.extend_from_slice(&archive);
    let cut = body.len() + 4;
    body.extend_from_slice(
        format!(
            "\r\n--b\r\nContent-Disposition: form-data; name=\"repository\"\r\n\r\n{repository}\
         \r\n--b\r\nContent-Disposition: form-data; name=\"push\"\r\n\r\nfalse\r\n--b--\r\n"
        )
        .as_bytes(),
    );
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let head = format!(
        "POST /api/v1/builds HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body[cut..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["repository"], repository.as_str(), "{json}");
    assert_eq!(
        json["options"]["context_bytes"],
        archive.len() as u64,
        "{json}"
    );
}

/// `members` of the folder (options, then names, in order) packed by GNU tar in
/// `format` (gnu, ustar, pax).
fn system_tar(dir: &std::path::Path, format: &str, members: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args([&format!("--format={format}"), "-cf", "-", "-C"])
        .arg(dir)
        .args(members)
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The folder packed by Python's tarfile with its defaults (PAX).
fn python_tar(dir: &std::path::Path) -> Vec<u8> {
    let script = "import sys, tarfile\n\
                  with tarfile.open(fileobj=sys.stdout.buffer, mode='w|') as t:\n    \
                  t.add(sys.argv[1], arcname='.')\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gnu_ustar_and_pax_archives_build_plain_or_gzipped() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let greeting = unique("hello");
    // Past ustar's 100-byte name field: a long-name or PAX record, or a prefix.
    let long_dir = "d".repeat(50);
    let long_path = format!("{long_dir}/{}.txt", "n".repeat(60));
    // Past ustar's 255 bytes with its prefix: a record in the formats that have one.
    let longer_dir = "a".repeat(150);
    let longer_path = format!("{longer_dir}/{}", "b".repeat(150));
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "Dockerfile",
        &format!("FROM {}\nCOPY . /ctx/\n", env.base_image),
    );
    write("hello.txt", &greeting);
    write(&long_path, "long");
    write(&longer_path, "longer");
    let without_longer = format!("--exclude=./{longer_dir}");
    let archives = [
        ("gnu", system_tar(dir.path(), "gnu", &["."]), true),
        (
            "ustar",
            system_tar(dir.path(), "ustar", &[&without_longer, "."]),
            false,
        ),
        ("pax", system_tar(dir.path(), "pax", &["."]), true),
        ("python", python_tar(dir.path()), true),
        // Led by a long-name record: written out led by a short global header.
        (
            "gnu-long-first",
            system_tar(
                dir.path(),
                "gnu",
                &[&longer_dir, "Dockerfile", "hello.txt", &long_dir],
            ),
            true,
        ),
    ];
    for (format, plain, has_longer) in archives {
        let (show, expected) = match has_longer {
            true => (
                format!("cat /ctx/hello.txt /ctx/{long_path} /ctx/{longer_path}"),
                format!("{greeting}longlonger"),
            ),
            false => (
                format!("cat /ctx/hello.txt /ctx/{long_path}"),
                format!("{greeting}long"),
            ),
        };
        let cases = [
            ("buildkit-plain", plain.clone(), "true"),
            ("buildkit-gzip", gzip(&plain), "true"),
            ("legacy-plain", plain.clone(), "false"),
        ];
        for (how, bytes, buildkit) in cases {
            let kind = format!("{format}-{how}");
            let repository = format!("{}/{}", env.registry, unique(&kind));
            let form = field(with_context(bytes), "buildkit", buildkit);
            let build = build_only(&server, form, &repository);
            assert_eq!(build["status"], "succeeded", "{kind}: {build}");
            let shown = run_in(&format!("{repository}:latest"), &show);
            assert_eq!(shown, expected, "{kind}");
        }
    }
}
#[test]
fn buildkit_takes_the_dockerfiles_own_ignore_file_and_legacy_the_root_one() {
    let env = TestEnv::get();
    let server = Server::start();
    let dockerfile = format!("FROM {}\nCOPY . /ctx/\n", env.base_image);
    let archive = tar_of(&[
        ("build/app.Dockerfile", dockerfile.as_bytes()),
        ("build/app.Dockerfile.dockerignore", b"secrets.txt\n"),
        (".dockerignore", b"other.txt\n"),
        ("secrets.txt", b"s3cr3t"),
        ("other.txt", b"other"),
    ]);
    let cases = [
        ("true", "other.txt\n", "secrets.txt"),
        ("false", "secrets.txt\n", "other.txt"),
    ];
    for (buildkit, kept, left_out) in cases {
        let repository = format!("{}/{}", env.registry, unique("own-ignore"));
        let form = field(
            field(
                with_context(archive.clone()),
                "dockerfile",
                "build/app.Dockerfile",
            ),
            "buildkit",
            buildkit,
        );
        let build = build_only(&server, form, &repository);
        assert_eq!(build["status"], "succeeded", "buildkit={buildkit}: {build}");
        let listing = run_in(
            &format!("{repository}:latest"),
            "cd /ctx && ls other.txt secrets.txt 2>/dev/null; true",
        );
        assert_eq!(
            listing, kept,
            "buildkit={buildkit}: {left_out} must be left out"
        );
    }
}
