//! Builds from git end to end: a repository the test makes with real `git`,
//! served by a real `git daemon` on loopback (and read as file://), built by a
//! real dockpub on the real daemon. Images are checked by running them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::git::{
    commit, commit_submodule, git, make_repo, server_with, server_with_env, write, GitDaemon, Repo,
    SmartHttp, SshServer,
};
use crate::common::{
    assert_processes_gone, docker, field, free_port, processes_with, run_in, unique, Server,
    TestEnv,
};
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
            git_form("https://ghp_t0ken4f9e@git.example.com/app.git", &[]),
            400,
            "invalid_git",
            vec!["user name", "git_username"],
        ),
        (
            git_form(
                &format!("git://anyone@127.0.0.1:{}/app.git", daemon.port),
                &[],
            ),
            400,
            "invalid_git",
            vec!["git_username"],
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
        assert!(!message.contains("ghp_t0ken4f9e"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(10), "{message}");
    }
    let listed = server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"], serde_json::json!([]), "nothing stored");
    assert!(!server.log().contains("hunter2"));
    assert!(!server.log().contains("ghp_t0ken4f9e"));
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

    // git names the submodule's folder when its fetch fails: not by the data
    // directory's absolute path.
    let missing = daemon.url("missing.git");
    git(&repo.path, &[&gitmodules[..], &[missing.as_str()]].concat());
    git(&repo.path, &["commit", "-q", "-am", "lib is gone"]);
    let (status, body) = refused(&server, git_form(&url, &asked));
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("<fetch folder>"), "{message}");
    let data = server.data_dir();
    for path in [data.clone(), data.canonicalize().unwrap()] {
        let path = path.display().to_string();
        assert!(!body.to_string().contains(&path), "{path} in {body}");
    }
    assert!(!message.contains("/uploads"), "{message}");
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
    let (address, heads) = refusing_http_server_on("127.0.0.1");
    (format!("http://{address}/app.git"), heads)
}

/// [`refusing_http_server`] on `host`, any free port: its address.
fn refusing_http_server_on(host: &str) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind((host, 0)).unwrap();
    let address = listener.local_addr().unwrap();
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
    (address, heads)
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
fn logins_go_only_to_the_repositorys_own_scheme_host_and_port() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &env);
    let password = "host-login-pw-5e2a";
    let http = SmartHttp::start(root.path(), "alice", password);
    let url = http.url("app.git");
    let (other_port, port_heads) = refusing_http_server_on("127.0.0.1");
    let (other_host, host_heads) = refusing_http_server_on("127.0.0.2");
    let (by_name, name_heads) = refusing_http_server_on("127.0.0.1");
    let (relative, relative_heads) = refusing_http_server_on("127.0.0.2");
    // A branch each, whose submodule names one of the recording servers.
    let cases = [
        (
            "sub-port",
            format!("http://{other_port}/sec.git"),
            port_heads,
        ),
        (
            "sub-host",
            format!("http://{other_host}/sec.git"),
            host_heads,
        ),
        (
            "sub-name",
            format!("http://localhost:{}/sec.git", by_name.port()),
            name_heads,
        ),
        // Against http://127.0.0.1:PORT/git/app.git, three levels up leave the host.
        (
            "sub-relative",
            format!("../../../{relative}/sec.git"),
            relative_heads,
        ),
    ];
    for (branch, submodule_url, _) in &cases {
        commit_submodule(&repo.path, branch, "app/sec", submodule_url, &repo.tip);
    }
    let config = format!(
        "[git.\"127.0.0.1:{}\"]\nusername = \"alice\"\n\
         password_env = \"DOCKPUB_TEST_GIT_PASSWORD\"\n",
        http.port
    );
    let (_config, server) = server_with_env(&config, &[("DOCKPUB_TEST_GIT_PASSWORD", password)]);
    // The host's login opens the repository itself.
    let built = build_app(&server, &url, "main");
    assert_eq!(built["source"]["commit"], repo.tip.as_str(), "{built}");

    for (branch, submodule_url, heads) in &cases {
        // With the host's login, then with the request's own.
        for own_login in [false, true] {
            let mut extra = vec![
                ("git_ref", *branch),
                ("git_subdir", "app"),
                ("git_submodules", "true"),
            ];
            if own_login {
                extra.extend([("git_username", "alice"), ("git_password", password)]);
            }
            let (status, body) = refused(&server, git_form(&url, &extra));
            assert_eq!(status, 422, "{branch}: {body}");
            assert_eq!(body["error"]["code"], "git_fetch_failed", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            // The repository came with the login; its submodule got none.
            assert!(message.contains("(submodules)"), "{branch}: {message}");
            assert!(!message.contains(password), "{message}");
        }
        let heads = heads.lock().unwrap();
        assert!(
            !heads.is_empty(),
            "{branch}: {submodule_url} was never asked"
        );
        for head in heads.iter() {
            assert!(
                !head.to_ascii_lowercase().contains("authorization"),
                "{branch} sent a login to {submodule_url}: {head}"
            );
        }
    }
    assert!(!server.log().contains(password));

    // A login keyed by host alone serves the scheme's own port, not another
    // port of the host: the repository's port gets none of it.
    let bare = "[git.\"127.0.0.1\"]\nusername = \"alice\"\n\
                password_env = \"DOCKPUB_TEST_GIT_PASSWORD\"\n";
    let (_bare, bare) = server_with_env(bare, &[("DOCKPUB_TEST_GIT_PASSWORD", password)]);
    let (status, body) = refused(&bare, git_form(&url, &[]));
    assert_eq!(
        status, 422,
        "a bare host's login went to port {}: {body}",
        http.port
    );
    drop(bare);

    // A login keyed by host and port: a request naming another port of the
    // host gets none of it.
    let exact = &server;
    let (other_port, heads) = refusing_http_server_on("127.0.0.1");
    let other_url = format!("http://{other_port}/app.git");
    let (status, body) = refused(exact, git_form(&other_url, &[]));
    assert_eq!(status, 422, "{body}");
    let heads = heads.lock().unwrap();
    assert!(!heads.is_empty(), "{other_url} was never asked");
    for head in heads.iter() {
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
    }
}

/// A loopback HTTP server for `/app.git` that asks for a login (401 Basic) and,
/// once it has one, redirects to the same path under `to`.
fn redirecting_http_server(to: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/app.git", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let rest = path.strip_prefix("/app.git").unwrap_or(path);
            let answer = match head.to_ascii_lowercase().contains("authorization:") {
                true => format!("HTTP/1.1 302 Found\r\nLocation: {to}{rest}\r\n"),
                false => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n"
                    .to_string(),
            };
            let answer = format!("{answer}Content-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

#[test]
fn a_redirect_to_another_host_gets_no_login() {
    let (elsewhere, heads) = refusing_http_server_on("127.0.0.2");
    let url = redirecting_http_server(format!("http://{elsewhere}/sec.git"));
    let (_config, server) = server_with("");
    let password = "redirected-pw-81b0";
    let form = git_form(
        &url,
        &[("git_username", "alice"), ("git_password", password)],
    );
    let (status, body) = refused(&server, form);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "git_fetch_failed", "{body}");
    let heads = heads.lock().unwrap();
    assert!(!heads.is_empty(), "the redirect was not followed: {body}");
    for head in heads.iter() {
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "the login followed the redirect: {head}"
        );
    }
}

/// A blob of `bytes` zeros written into `repo`'s objects (a few KiB packed): its id.
fn zeros_blob(repo: &std::path::Path, bytes: usize) -> String {
    stored_blob(repo, bytes, |_| {})
}

/// A blob of `bytes` that do not compress: its id.
fn noise_blob(repo: &std::path::Path, bytes: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    stored_blob(repo, bytes, |chunk| {
        for byte in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
    })
}

/// A blob of `bytes` written into `repo`'s objects, each MiB as `fill` makes it: its id.
fn stored_blob(repo: &std::path::Path, bytes: usize, mut fill: impl FnMut(&mut [u8])) -> String {
    let mut child = Command::new("git")
        .current_dir(repo)
        .args(["hash-object", "-w", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git hash-object");
    let mut stdin = child.stdin.take().unwrap();
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..bytes / chunk.len() {
        fill(&mut chunk);
        stdin.write_all(&chunk).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Bytes of the files under `folder`, what vanishes meanwhile not counted.
fn folder_bytes(folder: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// What `run` returns, and the most `folder` held while it ran.
fn peak_size_while<T>(folder: &std::path::Path, run: impl FnOnce() -> T) -> (T, u64) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(folder_bytes(folder));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let answer = run();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (answer, sampler.join().unwrap())
    })
}

#[test]
fn a_repository_that_expands_past_the_limits_is_stopped_while_it_is_written() {
    const MIB: u64 = 1024 * 1024;
    const LIMIT: u64 = 96 * MIB;
    // Room for the database and a few buffers besides the context.
    const MARGIN: u64 = 16 * MIB;
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("big.git");
    std::fs::create_dir_all(&path).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    git(&path, &["config", "user.email", "test@example.com"]);
    git(&path, &["config", "user.name", "test"]);
    write(&path, "Dockerfile", "FROM scratch\nCOPY . /\n");
    git(&path, &["add", "Dockerfile"]);
    // One 64 MiB blob named 8 times: 512 MiB once written out.
    let blob = zeros_blob(&path, 64 * MIB as usize);
    for n in 0..8 {
        let entry = format!("100644,{blob},zeros-{n}");
        git(&path, &["update-index", "--add", "--cacheinfo", &entry]);
    }
    git(&path, &["commit", "-q", "-m", "zeros"]);
    let zeros = git(&path, &["rev-parse", "HEAD"]);
    // A small repository whose submodule is that one.
    let outer = root.path().join("outer.git");
    std::fs::create_dir_all(&outer).unwrap();
    git(&outer, &["init", "-q", "-b", "main"]);
    git(&outer, &["config", "user.email", "test@example.com"]);
    git(&outer, &["config", "user.name", "test"]);
    write(&outer, "Dockerfile", "FROM scratch\n");
    git(&outer, &["add", "Dockerfile"]);
    git(&outer, &["commit", "-q", "-m", "outer"]);
    commit_submodule(&outer, "with-zeros", "zeros", "../big.git", &zeros);
    // A branch of many small files, for the entries limit.
    git(&path, &["checkout", "-q", "--orphan", "many"]);
    git(&path, &["rm", "-q", "-r", "--cached", "."]);
    for n in 0..60 {
        write(&path, &format!("many/{n}.txt"), "x");
    }
    write(&path, "Dockerfile", "FROM scratch\n");
    git(&path, &["add", "Dockerfile", "many"]);
    git(&path, &["commit", "-q", "-m", "many"]);
    let daemon = GitDaemon::start(root.path());
    let url = daemon.url("big.git");
    let (_config, server) = server_with(&format!(
        "max_context_bytes = {LIMIT}\nmax_context_entries = 50\n"
    ));
    let data = server.data_dir();

    for submodules in ["false", "true"] {
        let form = git_form(&url, &[("git_ref", "main"), ("git_submodules", submodules)]);
        let ((status, body), peak) = peak_size_while(&data, || refused(&server, form));
        assert_eq!(status, 413, "submodules={submodules}: {body}");
        assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        // Counted as an upload is, not caught by the fetch folder's budget.
        assert!(
            message.contains(&format!("limit of {LIMIT} bytes")),
            "{message}"
        );
        assert!(message.contains("max_context_bytes"), "{message}");
        assert!(
            peak < LIMIT + MARGIN,
            "submodules={submodules}: the data folder held {peak} bytes"
        );

        let form = git_form(&url, &[("git_ref", "many"), ("git_submodules", submodules)]);
        let (status, body) = refused(&server, form);
        assert_eq!(status, 413, "submodules={submodules}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("max_context_entries"), "{message}");
    }
    // The same tree as a submodule: sized after its fetch, before its checkout.
    let outer = daemon.url("outer.git");
    let asked = [("git_ref", "with-zeros"), ("git_submodules", "true")];
    let ((status, body), peak) =
        peak_size_while(&data, || refused(&server, git_form(&outer, &asked)));
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("limit of {LIMIT} bytes")),
        "{message}"
    );
    assert!(peak < LIMIT + MARGIN, "the data folder held {peak} bytes");
    let listed = server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"], serde_json::json!([]), "nothing stored");
    let left: Vec<_> = std::fs::read_dir(data.join("uploads"))
        .expect("the staging folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn a_fetch_past_its_folders_budget_is_refused_and_removed() {
    const MIB: usize = 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("heavy.git");
    std::fs::create_dir_all(&path).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    git(&path, &["config", "user.email", "test@example.com"]);
    git(&path, &["config", "user.name", "test"]);
    write(&path, "app/Dockerfile", "FROM scratch\n");
    git(&path, &["add", "app"]);
    // 40 MiB that do not compress, beside a small context folder.
    let noise = noise_blob(&path, 40 * MIB);
    let entry = format!("100644,{noise},assets/noise.bin");
    git(&path, &["update-index", "--add", "--cacheinfo", &entry]);
    git(&path, &["commit", "-q", "-m", "heavy"]);
    let daemon = GitDaemon::start(root.path());
    // The fetch folder may hold 2 × 8 MiB + 16 MiB: less than git's objects.
    let (_config, server) = server_with(&format!("max_context_bytes = {}\n", 8 * MIB));
    let form = git_form(&daemon.url("heavy.git"), &[("git_subdir", "app")]);
    let (status, body) = refused(&server, form);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("twice max_context_bytes"), "{message}");
    let left: Vec<_> = std::fs::read_dir(server.data_dir().join("uploads"))
        .expect("the staging folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn a_stalling_server_is_cut_by_the_idle_bound_and_git_gets_none_of_dockpubs_variables() {
    // Accepts connections, keeps them open, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stall.git", silent.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let holding = accepted.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            holding.lock().unwrap().push(stream);
        }
    });
    let marker = "marker-token-value-3c9d";
    let (_config, server) = server_with_env(
        "git_idle_timeout_secs = 5\n",
        &[("DOCKPUB_TEST_LEAKY_TOKEN", marker)],
    );
    std::thread::scope(|scope| {
        let submitted = scope.spawn(|| refused(&server, git_form(&url, &[])));
        // The git processes talking to the server, while they wait for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|(line, _): &(String, String)| line.contains("remote-http"))
        {
            assert!(Instant::now() < deadline, "no git process for {url}");
            for line in processes_with(&url) {
                let pid = line.split_whitespace().next().unwrap_or("");
                if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
                    seen.push((line, String::from_utf8_lossy(&environ).replace('\0', "\n")));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (line, environ) in &seen {
            assert!(!environ.contains(marker), "{line}: {environ}");
            assert!(!environ.contains("DOCKPUB_TEST_LEAKY_TOKEN"), "{environ}");
            assert!(!environ.contains("RUST_LOG"), "{line}: {environ}");
            assert!(environ.lines().any(|v| v == "LC_ALL=C"), "{environ}");
            assert!(environ.lines().any(|v| v.starts_with("PATH=")), "{environ}");
        }
        let (status, body) = submitted.join().unwrap();
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "git_timeout", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("git_idle_timeout_secs"), "{message}");
    });
    assert!(!accepted.lock().unwrap().is_empty(), "the server saw git");
    assert_processes_gone(&url, Duration::from_secs(10));
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
