//! Builds from git end to end: a repository the test makes with real `git`,
//! served by a real `git daemon` on loopback (and read as file://), built by a
//! real dockpub on the real daemon. Images are checked by running them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::git::{commit, git, make_repo, server_with, write, GitDaemon, Repo, SshServer};
use crate::common::{docker, field, free_port, run_in, unique, Server, TestEnv};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(60);

fn git_form(url: &str, extra: &[(&str, &str)]) -> Form {
    let repository = format!("{}/{}", TestEnv::get().registry, unique("git"));
    let mut form = field(
        field(Form::new(), "repository", &repository),
        "push",
        "false",
    );
    form = field(form, "git", url);
    for (name, value) in extra {
        form = field(form, name, value);
    }
    form
}

fn build(server: &Server, form: Form) -> Value {
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    build
}

/// A build of `app/` at `git_ref`, which must succeed.
fn build_app(server: &Server, url: &str, git_ref: &str) -> Value {
    build(
        server,
        git_form(url, &[("git_ref", git_ref), ("git_subdir", "app")]),
    )
}

fn image_labels(build: &Value) -> Value {
    let image = build["image_id"].as_str().expect("image id");
    let json = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ]);
    serde_json::from_str(&json).unwrap()
}

fn image_of(build: &Value) -> &str {
    build["image_id"].as_str().expect("image id")
}

/// `show` run in the build's image starts with `starts`, and its context
/// holds neither git's files nor what `.dockerignore` drops.
fn assert_context(build: &Value, show: &str, starts: &str) {
    let listing = run_in(image_of(build), &format!("{show}; ls -aR /ctx"));
    assert!(listing.starts_with(starts), "{listing}");
    assert!(!listing.contains("secret.txt"), ".dockerignore: {listing}");
    // `.gitmodules` is the repository's own file; `.git` is git's.
    let gits = listing.lines().filter(|name| name.trim() == ".git").count();
    assert_eq!(gits, 0, "git's files: {listing}");
}

/// The answer to a submission that must be refused: its status and body.
fn refused(server: &Server, form: Form) -> (u16, Value) {
    let response = server.post_form("/api/v1/builds", form);
    let status = response.status().as_u16();
    (status, response.json().expect("JSON body"))
}

#[test]
fn builds_by_branch_tag_and_sha_record_the_commit_label_the_image_and_retry_the_same_commit() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &env);
    let daemon = GitDaemon::start(root.path());
    let (_config, server) = server_with("");
    let url = daemon.url("app.git");

    let by_branch = build_app(&server, &url, "main");
    assert_eq!(
        by_branch["source"],
        serde_json::json!({"git": url, "ref": "main", "commit": repo.tip}),
    );
    let labels = image_labels(&by_branch);
    assert_eq!(labels["org.opencontainers.image.source"], url.as_str());
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        repo.tip.as_str()
    );
    assert_context(&by_branch, "cat /ctx/version.txt", "three");

    let by_tag = build_app(&server, &url, "v1");
    assert_eq!(by_tag["source"]["commit"], repo.tagged.as_str(), "{by_tag}");
    assert_eq!(by_tag["source"]["ref"], "v1");
    assert_eq!(
        image_labels(&by_tag)["org.opencontainers.image.revision"],
        repo.tagged.as_str()
    );
    assert_eq!(run_in(image_of(&by_tag), "cat /ctx/version.txt"), "two");

    // Not a branch tip: the server may refuse it alone, so the whole history comes.
    let by_sha = build_app(&server, &url, &repo.first);
    assert_eq!(by_sha["source"]["commit"], repo.first.as_str(), "{by_sha}");
    assert_eq!(run_in(image_of(&by_sha), "cat /ctx/version.txt"), "one");

    // The remote's HEAD, the Dockerfile at the root, named by `dockerfile`.
    let by_head = build(&server, git_form(&url, &[("dockerfile", "Dockerfile")]));
    assert_eq!(by_head["source"]["ref"], "HEAD");
    assert_eq!(by_head["source"]["commit"], repo.tip.as_str());
    assert_eq!(run_in(image_of(&by_head), "cat /root-version"), "three");

    // main moves on; a retry builds the commit the original built.
    let moved = commit(&repo.path, "four");
    let id = by_branch["id"].as_i64().unwrap();
    let retry_url = server.url(&format!("/api/v1/builds/{id}/retry"));
    let response = server.client.post(retry_url).send().unwrap();
    let status = response.status();
    let answer: Value = response.json().unwrap();
    assert_eq!(status, 202, "{answer}");
    let retry_id = answer["id"].as_i64().unwrap();
    let retry = server.wait_final(retry_id, BUILD_TIME);
    assert_eq!(retry["status"], "succeeded", "{retry}");
    assert_eq!(retry["source"]["commit"], repo.tip.as_str(), "not {moved}");
    assert_eq!(run_in(image_of(&retry), "cat /ctx/version.txt"), "three");
    assert_eq!(
        image_labels(&retry)["org.opencontainers.image.revision"],
        repo.tip.as_str()
    );
}

#[test]
fn bad_git_requests_are_refused_clearly_and_leave_nothing() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    make_repo(root.path(), &env);
    let daemon = GitDaemon::start(root.path());
    // Accepts connections and never answers: a fetch that would hang.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("git://{}/app.git", silent.local_addr().unwrap());
    let (_config, server) = server_with("git_timeout_secs = 2\n");
    let url = daemon.url("app.git");

    let cases: Vec<(Form, u16, &str, Vec<&str>)> = vec![
        (
            git_form("https://alice:hunter2@git.example.com/app.git", &[]),
            400,
            "invalid_git",
            vec!["git_password"],
        ),
        (
            git_form(&url, &[]).part(
                "file",
                Part::bytes(b"FROM x\n".to_vec()).file_name("Dockerfile"),
            ),
            400,
            "invalid_git",
            vec!["not with 'file'"],
        ),
        (
            git_form(
                &format!("file://{}", root.path().join("app.git").display()),
                &[],
            ),
            400,
            "invalid_git",
            vec!["allow_file_git"],
        ),
        (
            git_form("http://git.example.com/app.git", &[]),
            400,
            "invalid_git",
            vec!["allow_insecure_git_hosts"],
        ),
        (
            git_form(&url, &[("git_ref", "no-such-branch")]),
            422,
            "git_fetch_failed",
            vec!["no-such-branch", "couldn't find remote ref"],
        ),
        (
            git_form(&format!("git://127.0.0.1:{}/app.git", free_port()), &[]),
            422,
            "git_fetch_failed",
            vec!["unable to connect"],
        ),
        (
            git_form("git://no-such-host.invalid/app.git", &[]),
            422,
            "git_fetch_failed",
            vec!["unable to look up no-such-host.invalid"],
        ),
        (
            git_form(&url, &[("git_subdir", "nowhere")]),
            400,
            "invalid_git",
            vec!["'nowhere' is not a folder"],
        ),
        (
            git_form(&url, &[("git_ref", "--upload-pack=touch")]),
            400,
            "invalid_git",
            vec!["git_ref"],
        ),
        (
            git_form(&silent_url, &[]),
            422,
            "git_timeout",
            vec!["git_timeout_secs"],
        ),
    ];
    for (form, status, code, words) in cases {
        let started = Instant::now();
        let (answered, body) = refused(&server, form);
        assert_eq!(answered, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        for word in words {
            assert!(message.contains(word), "'{word}' not in: {message}");
        }
        assert!(!message.contains("hunter2"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(10), "{message}");
    }
    let listed = server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"], serde_json::json!([]), "nothing stored");
    assert!(!server.log().contains("hunter2"));
    let staging = server.data_dir().join("uploads");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .expect("the staging folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn submodules_come_only_when_asked() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    // lib.git has a submodule of its own, inner.git: fetched level by level.
    let inner = root.path().join("inner.git");
    std::fs::create_dir_all(&inner).unwrap();
    git(&inner, &["init", "-q", "-b", "main"]);
    write(&inner, "inner.txt", "from the inner submodule");
    git(&inner, &["add", "-A"]);
    git(
        &inner,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "-m",
            "inner",
        ],
    );
    let lib = root.path().join("lib.git");
    std::fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    write(&lib, "lib.txt", "from the submodule");
    git(
        &lib,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            "../inner.git",
            "inner",
        ],
    );
    git(&lib, &["add", "-A"]);
    git(
        &lib,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "-m",
            "lib",
        ],
    );
    let repo = make_repo(root.path(), &env);
    // Relative, so the server resolves it against the URL it fetched from.
    git(
        &repo.path,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            "../lib.git",
            "app/lib",
        ],
    );
    git(&repo.path, &["commit", "-q", "-m", "with lib"]);
    let daemon = GitDaemon::start(root.path());
    let (_config, server) = server_with("");
    let url = daemon.url("app.git");

    let asked = [("git_subdir", "app"), ("git_submodules", "true")];
    let with = build(&server, git_form(&url, &asked));
    assert_context(&with, "cat /ctx/lib/lib.txt", "from the submodule");
    let nested = run_in(image_of(&with), "cat /ctx/lib/inner/inner.txt");
    assert_eq!(nested, "from the inner submodule");

    let without = build_app(&server, &url, "main");
    let listing = run_in(image_of(&without), "ls -a /ctx/lib");
    assert!(!listing.contains("lib.txt"), "{listing}");

    // A submodule URL is held to the same rules as `git`: plain http to a
    // host that is neither loopback nor allowed is refused before any fetch.
    let gitmodules = ["config", "-f", ".gitmodules", "submodule.app/lib.url"];
    git(
        &repo.path,
        &[&gitmodules[..], &["http://198.51.100.7/lib.git"]].concat(),
    );
    git(&repo.path, &["commit", "-q", "-am", "lib elsewhere"]);
    let (status, body) = refused(&server, git_form(&url, &asked));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_git", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("submodule") && message.contains("http://"),
        "{message}"
    );
}

/// A repository read as file://, and a server that allows that, with `config` too.
fn file_repo_and_server(
    config: &str,
) -> (tempfile::TempDir, Repo, tempfile::TempDir, Server, String) {
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &TestEnv::get());
    let (config, server) = server_with(&format!("allow_file_git = true\n{config}"));
    let url = format!("file://{}", repo.path.display());
    (root, repo, config, server, url)
}

/// A loopback HTTP server that refuses every request with 401 Basic and
/// keeps the head of each request it got.
fn refusing_http_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/app.git", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            kept.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, heads)
}

#[test]
fn refused_credentials_fail_with_gits_reason_and_the_password_shows_nowhere() {
    let (url, heads) = refusing_http_server();
    let (_config, server) = server_with("");
    let password = "s3cret-git-pw";
    let form = git_form(
        &url,
        &[("git_username", "alice"), ("git_password", password)],
    );
    let (status, body) = refused(&server, form);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "git_fetch_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Authentication failed"), "{message}");
    // git asked for the login and sent it: the askpass helper answered.
    use base64::Engine;
    let login = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let sent = heads.lock().unwrap().join("\n");
    assert!(sent.contains(&format!("Basic {login}")), "{sent}");
    for place in [body.to_string(), server.log()] {
        assert!(!place.contains(password), "{place}");
    }
    let stored = server.data_dir();
    let everything = std::fs::read_dir(&stored)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file());
    for file in everything {
        let bytes = std::fs::read(file.path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(password),
            "{:?}",
            file.path()
        );
    }
}

#[test]
fn file_urls_build_when_the_server_allows_them() {
    let env = TestEnv::get();
    let (root, repo, _config, server, url) = file_repo_and_server("");
    let built = build_app(&server, &url, "v1");
    assert_eq!(
        built["source"],
        serde_json::json!({"git": url, "ref": "v1", "commit": repo.tagged}),
    );
    assert_eq!(run_in(image_of(&built), "cat /ctx/version.txt"), "two");

    // The CLI sends the same fields and packs nothing local.
    let repository = format!("{}/{}", env.registry, unique("git-cli"));
    let out = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args([
            "submit",
            "--git",
            &url,
            "--ref",
            &repo.first,
            "--subdir",
            "app",
        ])
        .args(["-r", &repository, "--no-push", "--output", "json"])
        .env("DOCKPUB_URL", &server.base)
        .current_dir(root.path())
        .output()
        .expect("dockpub submit");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"]
        .as_i64()
        .unwrap();
    let by_cli = server.wait_final(id, BUILD_TIME);
    assert_eq!(by_cli["source"]["commit"], repo.first.as_str(), "{by_cli}");
    assert_eq!(run_in(image_of(&by_cli), "cat /ctx/version.txt"), "one");
}

#[test]
fn a_repository_over_the_context_limit_is_refused() {
    let (_root, _repo, _config, server, url) = file_repo_and_server("max_context_bytes = 1024\n");
    let (status, body) = refused(&server, git_form(&url, &[]));
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_context_bytes"), "{message}");
    let listed = server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"], serde_json::json!([]), "nothing stored");
}

#[test]
fn ssh_urls_use_the_hosts_key_and_check_its_host_key() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &env);
    let ssh = SshServer::start();
    let url = ssh.url(&repo.path);
    let config = |known_hosts: &std::path::Path| {
        format!(
            "[git.\"127.0.0.1\"]\nssh_key = \"{}\"\nknown_hosts = \"{}\"\n",
            ssh.client_key.display(),
            known_hosts.display()
        )
    };
    let (_config, server) = server_with(&config(&ssh.known_hosts));
    let built = build_app(&server, &url, "v1");
    assert_eq!(built["source"]["commit"], repo.tagged.as_str(), "{built}");
    assert_eq!(run_in(image_of(&built), "cat /ctx/version.txt"), "two");

    // The server's key is not the one known_hosts names: refused, with ssh's reason.
    let (_config, wary) = server_with(&config(&ssh.wrong_known_hosts()));
    let (status, body) = refused(&wary, git_form(&url, &[("git_subdir", "app")]));
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Host key verification failed"),
        "{message}"
    );
}

#[test]
fn a_git_build_on_buildkit_takes_the_dockerfiles_own_ignore_file() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("own-ignore.git");
    std::fs::create_dir_all(&path).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    git(&path, &["config", "user.email", "test@example.com"]);
    git(&path, &["config", "user.name", "test"]);
    let dockerfile = format!("FROM {}\nCOPY . /ctx\n", env.base_image);
    write(&path, "build/app.Dockerfile", &dockerfile);
    write(&path, "build/app.Dockerfile.dockerignore", "secrets.txt\n");
    write(&path, ".dockerignore", "other.txt\n");
    write(&path, "secrets.txt", "s3cr3t");
    write(&path, "other.txt", "other");
    git(&path, &["add", "-A"]);
    git(&path, &["commit", "-q", "-m", "own ignore file"]);
    let daemon = GitDaemon::start(root.path());
    let (_config, server) = server_with("");
    let form = git_form(
        &daemon.url("own-ignore.git"),
        &[("dockerfile", "build/app.Dockerfile")],
    );
    let built = build(&server, form);
    let listing = run_in(
        image_of(&built),
        "cd /ctx && ls other.txt secrets.txt 2>/dev/null; true",
    );
    assert_eq!(listing, "other.txt\n");
}
