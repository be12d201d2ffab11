//! SSH mounts (`RUN --mount=type=ssh`) served by dockpub's own agent from the
//! `[ssh.ID]` keys, on the real daemon.
//!
//! How the step reaches an sshd: builds with SSH mounts go over BuildKit's gRPC
//! API, which refuses `host` networking, so the step cannot reach one on the
//! host. It runs its own instead: the context carries this machine's sshd and
//! ssh with their shared libraries (as `ldd` lists them), and the step starts
//! sshd on 127.0.0.1 in its own network namespace (network `none` still has
//! loopback), authorizing one key's public half, then logs in with `ssh -T`
//! through the mounted agent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, field, unique, with_file, Server, TestEnv};

const BUILD_TIME: Duration = Duration::from_secs(180);
const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";

/// A fresh Ed25519 key pair from ssh-keygen: (private key file, public line).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public)
}

/// A config with `[ssh.ID]` for each (id, key file), and `extra` after it.
fn config_with_keys(dir: &Path, keys: &[(&str, &Path)], extra: &str) -> PathBuf {
    let mut text = String::new();
    for (id, path) in keys {
        text.push_str(&format!("[ssh.{id}]\nfile = \"{}\"\n\n", path.display()));
    }
    text.push_str(extra);
    let config = dir.join("config.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// The shared libraries `binary` loads, as `ldd` resolves them.
fn libraries(binary: &str) -> Vec<String> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// A gzipped context: the Dockerfile, and under `ssh/` this machine's sshd and
/// ssh with their libraries, a host key and `authorized` as authorized_keys.
fn sshd_context(dir: &Path, dockerfile: &str, authorized: &str) -> Vec<u8> {
    let (host_key, _) = key_pair(dir, "host_key");
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut add = |name: &str, bytes: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        archive.append_data(&mut header, name, bytes).unwrap();
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644);
    add("ssh/authorized_keys", authorized.as_bytes(), 0o644);
    add("ssh/host_key", &std::fs::read(&host_key).unwrap(), 0o600);
    add("ssh/bin/sshd", &std::fs::read(SSHD).unwrap(), 0o755);
    add("ssh/bin/ssh", &std::fs::read(SSH).unwrap(), 0o755);
    let mut libs: Vec<String> = libraries(SSHD).into_iter().chain(libraries(SSH)).collect();
    libs.sort();
    libs.dedup();
    for lib in libs {
        add(
            &format!("ssh/root{lib}"),
            &std::fs::read(&lib).unwrap(),
            0o755,
        );
    }
    let mut gz = archive.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

/// A step that logs in to the step's own sshd with the agent of its mount,
/// printing `{label}: logged in` or `{label}: refused`.
fn login_step(mount: &str, label: &str) -> String {
    format!(
        "RUN {mount} /ssh/bin/ssh -T -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no \\\n    \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 echo {label}: logged in \\\n    \
         || echo {label}: refused\n"
    )
}

fn dockerfile(env: &TestEnv) -> String {
    // The sshd starts in each step: a step's processes end with it.
    let sshd = "/ssh/bin/sshd -f /dev/null -h /ssh/host_key -p 2222 -o ListenAddress=127.0.0.1 \
                -o AuthorizedKeysFile=/ssh/authorized_keys -o StrictModes=no -o PidFile=none &&";
    format!(
        "FROM {}\nARG RUN_ID={}\nCOPY ssh /ssh\n\
         RUN cp -a /ssh/root/. / && mkdir -p /run/sshd /root && \\\n    \
             echo 'sshd:x:74:74::/run/sshd:/bin/false' >> /etc/passwd\n{}{}",
        env.base_image,
        unique("run"),
        login_step(&format!("--mount=type=ssh {sshd}"), "default key"),
        login_step(&format!("--mount=type=ssh,id=deploy {sshd}"), "deploy key"),
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every file's bytes under `dir`, one after another.
fn bytes_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(bytes_under(&path));
        } else if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

#[test]
fn an_ssh_mount_logs_in_with_its_granted_key_only_and_the_key_stays_out() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let (authorized_key, authorized_public) = key_pair(dir.path(), "authorized");
    let (other_key, _) = key_pair(dir.path(), "other");
    let config = config_with_keys(
        dir.path(),
        &[("default", &authorized_key), ("deploy", &other_key)],
        "",
    );
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let context = sshd_context(dir.path(), &dockerfile(&env), &authorized_public);
    let repository = format!("{}/{}", env.registry, unique("ssh"));
    let form = Form::new()
        .part("context", Part::bytes(context).file_name("context.tar.gz"))
        .text("repository", repository.clone())
        .text("ssh", "default")
        .text("ssh", "deploy");
    let mut responses = server.post_form("/api/v1/builds", form).text().unwrap();
    let id = serde_json::from_str::<Value>(&responses).unwrap()["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{responses}"));
    let build = server.wait_final(id, BUILD_TIME);
    let logs = server.logs(id);
    assert_eq!(build["status"], "succeeded", "{build}\n{logs}");
    assert_eq!(
        build["options"]["ssh"],
        serde_json::json!(["default", "deploy"])
    );
    let said = |text: &str| logs.lines().any(|line| common::output_text(line) == text);
    assert!(said("default key: logged in"), "{logs}");
    assert!(
        said("deploy key: refused"),
        "the other key let the step in: {logs}"
    );

    responses.push_str(&build.to_string());
    responses.push_str(&server.get("/api/v1/builds").text().unwrap());
    let image = format!("{repository}:latest");
    let saved = dir.path().join("image.tar");
    common::docker(&["save", "-o", saved.to_str().unwrap(), &image]);
    let saved = std::fs::read(&saved).unwrap();
    let stored = bytes_under(&server.data_dir());
    for key in [&authorized_key, &other_key] {
        let text = std::fs::read_to_string(key).unwrap();
        // Each line of the key's base64 body but the first (the format's header,
        // the same in every Ed25519 key file: the image's sshd host key has it),
        // and the file's hash for good measure.
        let mut pieces: Vec<String> = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .skip(1)
            .map(str::to_string)
            .collect();
        pieces.push(hex::encode(Sha256::digest(text.as_bytes())));
        for piece in &pieces {
            assert!(!responses.contains(piece.as_str()), "the key in a response");
            assert!(!logs.contains(piece.as_str()), "the key in the build's log");
            assert!(
                !server.log().contains(piece.as_str()),
                "the key in dockpub's log"
            );
            assert!(!contains(&saved, piece), "the key in the image");
            assert!(!contains(&stored, piece), "the key in the data directory");
        }
    }
}

/// A config with two keys and two tokens: `reader` (read) and `builder` (build).
fn checking_server(dir: &Path) -> Server {
    let (first, _) = key_pair(dir, "first");
    let (second, _) = key_pair(dir, "second");
    let tokens = format!(
        "[[tokens]]\nname = \"reader\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n\n\
         [[tokens]]\nname = \"builder\"\ntoken_sha256 = \"{}\"\nscopes = [\"build\"]\n",
        hex::encode(Sha256::digest(b"ssh-reader-token")),
        hex::encode(Sha256::digest(b"ssh-builder-token")),
    );
    let config = config_with_keys(dir, &[("default", &first), ("deploy", &second)], &tokens);
    Server::in_process(&[
        "--config",
        config.to_str().unwrap(),
        "--allowed-build-networks",
        "none,host",
    ])
}

fn submit(server: &Server, form: Form, token: &str) -> (u16, Value) {
    let response = server
        .client
        .post(server.url("/api/v1/builds"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

#[test]
fn ssh_ids_are_checked_at_submit_naming_the_id() {
    let env = TestEnv::offline();
    let dir = tempfile::tempdir().unwrap();
    let server = checking_server(dir.path());
    let mounting = |mount: &str| {
        let dockerfile = format!("FROM {}\nRUN {mount} true\n", env.base_image);
        field(
            with_file(dockerfile),
            "repository",
            "127.0.0.1:5000/ssh-check",
        )
    };
    let with_ssh =
        |form: Form, ids: &[&str]| ids.iter().fold(form, |form, id| field(form, "ssh", id));
    let cases: Vec<(Form, u16, &str, &str)> = vec![
        // A mount whose id the request did not grant, named.
        (
            with_ssh(mounting("--mount=type=ssh,id=deploy"), &["default"]),
            400,
            "invalid_option",
            "'deploy'",
        ),
        (
            mounting("--mount=type=ssh"),
            400,
            "invalid_option",
            "'default'",
        ),
        // An id the server has no key for; a path instead of an id; twice.
        (
            with_ssh(mounting("--mount=type=ssh"), &["nope"]),
            400,
            "invalid_option",
            "'nope'",
        ),
        (
            with_ssh(
                mounting("--mount=type=ssh"),
                &["default=/root/.ssh/id_ed25519"],
            ),
            400,
            "invalid_option",
            "ssh",
        ),
        (
            with_ssh(mounting("--mount=type=ssh"), &["default", "default"]),
            400,
            "invalid_option",
            "more than once",
        ),
        (
            with_ssh(mounting("--mount=type=ssh"), &["k"; 9]),
            400,
            "field_limit",
            "ssh",
        ),
        // Only BuildKit serves the agent, and not with host networking.
        (
            field(
                with_ssh(mounting("--mount=type=ssh"), &["default"]),
                "buildkit",
                "false",
            ),
            400,
            "invalid_option",
            "BuildKit",
        ),
        (
            field(
                with_ssh(mounting("--mount=type=ssh"), &["default"]),
                "network",
                "host",
            ),
            400,
            "invalid_option",
            "host",
        ),
    ];
    for (form, status, code, named) in cases {
        let (got, body) = submit(&server, form, "ssh-builder-token");
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{named} not in {message}");
    }

    // A token that may not build is refused, ssh or not; one that may is taken.
    let granted = || with_ssh(mounting("--mount=type=ssh,id=deploy"), &["deploy"]);
    let (status, body) = submit(&server, granted(), "ssh-reader-token");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = submit(&server, granted(), "ssh-builder-token");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["options"]["ssh"], serde_json::json!(["deploy"]));
}

#[test]
fn the_cli_sends_ssh_ids_and_shows_the_refusal_naming_one() {
    let env = TestEnv::offline();
    let dir = tempfile::tempdir().unwrap();
    let server = checking_server(dir.path());
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {}\nRUN --mount=type=ssh,id=deploy true\n",
            env.base_image
        ),
    )
    .unwrap();
    let submit = |ids: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dockpub"));
        command
            .args([
                "submit",
                dockerfile.to_str().unwrap(),
                "-r",
                "127.0.0.1:5000/ssh-cli",
            ])
            .env("DOCKPUB_URL", &server.base)
            .env("DOCKPUB_TOKEN", "ssh-builder-token");
        for id in ids {
            command.args(["--ssh", id]);
        }
        command.output().expect("run the dockpub client")
    };
    let taken = submit(&["default", "deploy"]);
    let said = String::from_utf8_lossy(&taken.stdout).into_owned()
        + &String::from_utf8_lossy(&taken.stderr);
    assert!(taken.status.success(), "{said}");
    let id: i64 = said
        .split(|c: char| !c.is_ascii_digit())
        .find(|word| !word.is_empty())
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no build id in {said}"));
    let build: Value = server
        .client
        .get(server.url(&format!("/api/v1/builds/{id}")))
        .bearer_auth("ssh-builder-token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        build["options"]["ssh"],
        serde_json::json!(["default", "deploy"])
    );
    for (ids, named) in [(&["default"][..], "'deploy'"), (&["nope"][..], "'nope'")] {
        let refused = submit(ids);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success());
        assert!(stderr.contains(named), "{named} not in {stderr}");
    }
}
