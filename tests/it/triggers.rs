//! Builds on push: triggers fed push events shaped as GitHub, Gitea/Forgejo and
//! GitLab send them, signed right and wrong, against a repository served by a
//! real `git daemon`; runs by hand under scoped tokens; and smart HTTP with
//! basic auth (`git http-backend` behind lighttpd) with a `[git."HOST"]` login.
//!
//! The payloads are fixtures, trimmed from the examples in each server's
//! webhook documentation (GitHub "push", Gitea/Forgejo "push", GitLab "Push
//! Hook" / "Tag Push Hook"), with the headers each one sends; no git server
//! among Debian's packages sends webhooks. The one event that is not a fixture
//! comes from a real `git push` into a bare repository whose `post-receive`
//! hook is the README's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::git::{commit, git, make_repo, GitDaemon, Repo, SmartHttp};
use crate::common::{field, pushed_digest, run_in, status_kib, unique, Server, TestEnv};
use hmac::{Hmac, Mac};
use reqwest::blocking::multipart::Form;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use sha2::Sha256;

const BUILD_TIME: Duration = Duration::from_secs(90);
const SECRET: &str = "webhook-secret-3f9a";
const SECRET_ENV: &str = "DOCKPUB_TEST_TRIGGER_SECRET";

/// A repository on `git daemon`, a branch `feature/x` at its first commit,
/// and a server with the trigger `app` on it.
struct Setup {
    _root: tempfile::TempDir,
    served: std::path::PathBuf,
    _daemon: GitDaemon,
    _config: tempfile::TempDir,
    repo: Repo,
    url: String,
    repository: String,
    server: Server,
}

fn setup(extra_config: &str, env: &[(&str, &str)]) -> Setup {
    setup_with(extra_config, env, &[], false)
}

/// As [`setup`], with server flags, and pushing to the test registry when `push`.
fn setup_with(extra_config: &str, env: &[(&str, &str)], flags: &[&str], push: bool) -> Setup {
    let test_env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &test_env);
    git(&repo.path, &["branch", "feature/x", &repo.first]);
    // What the git server serves, and takes pushes into.
    let served = root.path().join("served.git");
    git(
        root.path(),
        &["clone", "-q", "--bare", "app.git", "served.git"],
    );
    let daemon = GitDaemon::start(root.path());
    let url = daemon.url("served.git");
    let repository = format!("{}/{}", test_env.registry, unique("trig"));
    let config = format!(
        r#"{extra_config}
[[triggers]]
name = "app"
git = "{url}"
refs = ["refs/heads/main", "refs/heads/feature/**", "refs/tags/v*"]
repository = "{repository}"
tags = ["{{branch}}", "{{tag}}", "{{short_sha}}"]
git_subdir = "app"
push = {push}
secret_env = "{SECRET_ENV}"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut all_env = vec![(SECRET_ENV, SECRET)];
    all_env.extend_from_slice(env);
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(flags);
    let server = Server::start_with_env(&args, &all_env);
    Setup {
        _root: root,
        served,
        _daemon: daemon,
        _config: dir,
        repo,
        url,
        repository,
        server,
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// GitHub's push event: `X-Hub-Signature-256: sha256=HMAC`.
fn github_push(
    git_ref: &str,
    after: &str,
    delivery: &str,
    secret: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let body = json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": "https://github.com/team/app/compare/000000000000...1234567890ab",
        "commits": [{"id": after, "message": "three", "distinct": true,
                     "author": {"name": "t", "email": "t@e"}}],
        "head_commit": {"id": after, "message": "three"},
        "repository": {"id": 1, "name": "app", "full_name": "team/app",
                       "clone_url": "https://github.com/team/app.git", "default_branch": "main"},
        "pusher": {"name": "t", "email": "t@e"},
        "sender": {"login": "t", "id": 1}
    })
    .to_string()
    .into_bytes();
    let headers = vec![
        ("X-GitHub-Event".into(), "push".into()),
        ("X-GitHub-Delivery".into(), delivery.into()),
        ("X-GitHub-Hook-ID".into(), "42".into()),
        ("X-Hub-Signature".into(), "sha1=0000".into()),
        (
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_hex(secret, &body)),
        ),
        ("User-Agent".into(), "GitHub-Hookshot/abc123".into()),
    ];
    (headers, body)
}

/// Gitea's and Forgejo's push event: `X-Gitea-Signature: HMAC`, with the
/// GitHub-style headers Gitea also sends.
fn gitea_push(git_ref: &str, after: &str, delivery: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "compare_url": "",
        "commits": [],
        "total_commits": 0,
        "head_commit": null,
        "repository": {"id": 1, "name": "app", "full_name": "team/app",
                       "clone_url": "http://gitea.local/team/app.git"},
        "pusher": {"id": 1, "login": "t"},
        "sender": {"id": 1, "login": "t"}
    })
    .to_string()
    .into_bytes();
    let signature = hmac_hex(SECRET, &body);
    let headers = vec![
        ("X-Gitea-Event".into(), "push".into()),
        ("X-Gitea-Event-Type".into(), "push".into()),
        ("X-Gitea-Delivery".into(), delivery.into()),
        ("X-Gitea-Signature".into(), signature.clone()),
        ("X-Gogs-Event".into(), "push".into()),
        ("X-Gogs-Signature".into(), signature.clone()),
        ("X-GitHub-Event".into(), "push".into()),
        ("X-GitHub-Delivery".into(), delivery.into()),
        ("X-Hub-Signature-256".into(), format!("sha256={signature}")),
    ];
    (headers, body)
}

/// GitLab's push event: the secret itself in `X-Gitlab-Token`.
fn gitlab_push(
    git_ref: &str,
    sha: &str,
    delivery: &str,
    token: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let tag = git_ref.starts_with("refs/tags/");
    let body = json!({
        "object_kind": if tag { "tag_push" } else { "push" },
        "event_name": if tag { "tag_push" } else { "push" },
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "ref": git_ref,
        "ref_protected": false,
        "checkout_sha": sha,
        "user_id": 1, "user_name": "t", "user_username": "t",
        "project_id": 15,
        "project": {"id": 15, "name": "app", "git_http_url": "http://gitlab.local/team/app.git"},
        "commits": [],
        "total_commits_count": 0,
        "repository": {"name": "app", "git_http_url": "http://gitlab.local/team/app.git"}
    })
    .to_string()
    .into_bytes();
    let headers = vec![
        (
            "X-Gitlab-Event".into(),
            if tag { "Tag Push Hook" } else { "Push Hook" }.into(),
        ),
        ("X-Gitlab-Token".into(), token.into()),
        ("X-Gitlab-Event-UUID".into(), format!("event-{delivery}")),
        ("X-Gitlab-Instance".into(), "http://gitlab.local".into()),
        ("Idempotency-Key".into(), delivery.into()),
        ("User-Agent".into(), "GitLab/17.0.0".into()),
    ];
    (headers, body)
}

fn send(
    server: &Server,
    trigger: &str,
    (headers, body): (Vec<(String, String)>, Vec<u8>),
) -> Response {
    let mut request = Client::new()
        .post(server.url(&format!("/api/v1/triggers/{trigger}/events")))
        .header("Content-Type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().expect("POST event")
}

fn build_count(server: &Server) -> usize {
    server.get_json("/api/v1/builds")["builds"]
        .as_array()
        .unwrap()
        .len()
}

fn accepted(response: Response, want: u16) -> Value {
    let status = response.status().as_u16();
    let body: Value = response.json().expect("JSON");
    assert_eq!(status, want, "{body}");
    body
}

fn short(sha: &str) -> String {
    sha[..7].to_string()
}

#[test]
fn push_events_from_each_server_build_the_pushed_commit_once() {
    let s = setup("", &[]);
    let server = &s.server;

    // GitHub, a branch push: the commit is built, with the labels and the trigger recorded.
    let built = accepted(
        send(
            server,
            "app",
            github_push("refs/heads/main", &s.repo.tip, "gh-1", SECRET),
        ),
        202,
    );
    assert_eq!(
        built["trigger"],
        json!({"name": "app", "delivery": "gh-1"}),
        "{built}"
    );
    assert_eq!(built["submitted_by"], "trigger:app");
    let done = server.wait_final(built["id"].as_i64().unwrap(), BUILD_TIME);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["source"],
        json!({"git": s.url, "ref": "refs/heads/main", "commit": s.repo.tip})
    );
    assert_eq!(done["tags"], json!(["main", short(&s.repo.tip)]));
    assert_eq!(
        run_in(done["image_id"].as_str().unwrap(), "cat /ctx/version.txt"),
        "three"
    );
    let labels = crate::common::docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        done["image_id"].as_str().unwrap(),
    ]);
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        s.repo.tip.as_str()
    );
    assert_eq!(labels["org.opencontainers.image.source"], s.url.as_str());

    // The same delivery again, and the same commit under a new delivery id: the same build.
    let again = accepted(
        send(
            server,
            "app",
            github_push("refs/heads/main", &s.repo.tip, "gh-1", SECRET),
        ),
        200,
    );
    assert_eq!(again["id"], built["id"]);
    let same_commit = accepted(
        send(
            server,
            "app",
            github_push("refs/heads/main", &s.repo.tip, "gh-2", SECRET),
        ),
        200,
    );
    assert_eq!(same_commit["id"], built["id"]);
    assert_eq!(build_count(server), 1);

    // Wrong or missing signatures: 401, and nothing is stored.
    let forged = send(
        server,
        "app",
        github_push("refs/heads/main", &s.repo.first, "gh-3", "not-the-secret"),
    );
    assert_eq!(forged.status(), 401);
    assert_eq!(
        forged.json::<Value>().unwrap()["error"]["code"],
        "bad_signature"
    );
    let (mut headers, body) = github_push("refs/heads/main", &s.repo.first, "gh-4", SECRET);
    headers.retain(|(name, _)| !name.starts_with("X-Hub-Signature"));
    assert_eq!(send(server, "app", (headers, body)).status(), 401);
    let (headers, mut body) = github_push("refs/heads/main", &s.repo.first, "gh-5", SECRET);
    body.extend_from_slice(b" ");
    assert_eq!(
        send(server, "app", (headers, body)).status(),
        401,
        "the body is signed, byte for byte"
    );
    let gitlab_wrong = send(
        server,
        "app",
        gitlab_push("refs/heads/main", &s.repo.first, "gl-0", "wrong"),
    );
    assert_eq!(gitlab_wrong.status(), 401);
    assert_eq!(build_count(server), 1);
    let listed = server.get_json("/api/v1/triggers");
    assert_eq!(
        listed["triggers"][0]["last_delivery"]["delivery"], "gh-2",
        "{listed}"
    );

    // Refs no pattern matches, deleted refs and pings: 204, no build.
    let ignored = send(
        server,
        "app",
        github_push("refs/heads/other", &s.repo.first, "gh-6", SECRET),
    );
    assert_eq!(ignored.status(), 204);
    let zeros = "0".repeat(40);
    assert_eq!(
        send(
            server,
            "app",
            github_push("refs/heads/main", &zeros, "gh-7", SECRET)
        )
        .status(),
        204
    );
    let (mut ping_headers, ping_body) =
        github_push("refs/heads/main", &s.repo.first, "gh-8", SECRET);
    ping_headers[0].1 = "ping".into();
    assert_eq!(send(server, "app", (ping_headers, ping_body)).status(), 204);
    assert_eq!(build_count(server), 1);

    // Gitea, a tag push: the tag template applies, the branch one does not.
    let tagged = accepted(
        send(
            server,
            "app",
            gitea_push("refs/tags/v1", &s.repo.tagged, "gt-1"),
        ),
        202,
    );
    let tagged = server.wait_final(tagged["id"].as_i64().unwrap(), BUILD_TIME);
    assert_eq!(tagged["status"], "succeeded", "{tagged}");
    assert_eq!(tagged["tags"], json!(["v1", short(&s.repo.tagged)]));
    assert_eq!(tagged["source"]["ref"], "refs/tags/v1");
    assert_eq!(tagged["trigger"]["delivery"], "gt-1");

    // GitLab, a branch with a slash: it becomes a valid tag.
    let feature = accepted(
        send(
            server,
            "app",
            gitlab_push("refs/heads/feature/x", &s.repo.first, "gl-1", SECRET),
        ),
        202,
    );
    let feature = server.wait_final(feature["id"].as_i64().unwrap(), BUILD_TIME);
    assert_eq!(feature["status"], "succeeded", "{feature}");
    assert_eq!(feature["tags"], json!(["feature-x", short(&s.repo.first)]));
    assert_eq!(
        run_in(
            feature["image_id"].as_str().unwrap(),
            "cat /ctx/version.txt"
        ),
        "one"
    );

    // The list: patterns, last delivery and build; never the secret.
    let listed = server.get_json("/api/v1/triggers");
    let app = &listed["triggers"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["repository"], s.repository.as_str());
    assert_eq!(app["refs"][2], "refs/tags/v*");
    assert_eq!(app["last_delivery"]["delivery"], "gl-1");
    assert_eq!(app["last_delivery"]["outcome"], "built");
    assert_eq!(app["last_build"], feature["id"]);
    assert!(!listed.to_string().contains(SECRET));
    assert!(!listed.to_string().contains(SECRET_ENV));
    assert!(!server.log().contains(SECRET));

    // A redelivery of a build that was deleted since builds anew.
    let deleted = server.delete(&format!("/api/v1/builds/{}", feature["id"]));
    assert_eq!(deleted.status(), 204);
    let rebuilt = accepted(
        send(
            server,
            "app",
            gitlab_push("refs/heads/feature/x", &s.repo.first, "gl-1", SECRET),
        ),
        202,
    );
    assert_ne!(rebuilt["id"], feature["id"]);
    server.wait_final(rebuilt["id"].as_i64().unwrap(), BUILD_TIME);

    // An unknown trigger is answered as a wrong signature.
    let unknown = send(
        server,
        "nope",
        github_push("refs/heads/main", &s.repo.tip, "gh-9", SECRET),
    );
    assert_eq!(unknown.status(), 401);
}

#[test]
fn runs_by_hand_need_the_build_scope_while_events_need_only_their_signature() {
    let config = r#"
[[tokens]]
name = "reader"
token_env = "DOCKPUB_TEST_READ_TOKEN"
scopes = ["read"]

[[tokens]]
name = "ci"
token_env = "DOCKPUB_TEST_BUILD_TOKEN"
scopes = ["build"]
"#;
    let s = setup(
        config,
        &[
            ("DOCKPUB_TEST_READ_TOKEN", "read-token"),
            ("DOCKPUB_TEST_BUILD_TOKEN", "build-token"),
        ],
    );
    let run = |token: &str, body: Value| {
        Client::new()
            .post(s.server.url("/api/v1/triggers/app/run"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap()
    };
    assert_eq!(run("read-token", json!({"ref": "main"})).status(), 403);
    let listed = Client::new()
        .get(s.server.url("/api/v1/triggers"))
        .bearer_auth("read-token")
        .send()
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        Client::new()
            .get(s.server.url("/api/v1/triggers"))
            .send()
            .unwrap()
            .status(),
        401
    );

    // By tag name: the tag is looked up, peeled to its commit, and built.
    let by_tag = accepted(run("build-token", json!({"ref": "v1"})), 202);
    assert_eq!(by_tag["submitted_by"], "ci");
    assert_eq!(by_tag["trigger"], json!({"name": "app", "delivery": null}));
    let by_tag = wait_as(&s.server, by_tag["id"].as_i64().unwrap(), "build-token");
    assert_eq!(by_tag["source"]["ref"], "refs/tags/v1");
    assert_eq!(by_tag["source"]["commit"], s.repo.tagged.as_str());
    assert_eq!(by_tag["tags"], json!(["v1", short(&s.repo.tagged)]));

    // As a form, by branch.
    let form = Client::new()
        .post(s.server.url("/api/v1/triggers/app/run"))
        .bearer_auth("build-token")
        .form(&[("ref", "main")])
        .send()
        .unwrap();
    let by_branch = accepted(form, 202);
    assert_eq!(by_branch["source"]["ref"], "refs/heads/main");
    assert_eq!(
        by_branch["source"]["commit"],
        s.repo.tip.as_str(),
        "{by_branch}"
    );

    // A ref the repository lacks (that the patterns would match), a missing ref, an unknown trigger.
    let missing = run("build-token", json!({"ref": "feature/no-such-branch"}));
    assert_eq!(missing.status(), 422);
    let missing: Value = missing.json().unwrap();
    assert_eq!(missing["error"]["code"], "git_fetch_failed", "{missing}");
    assert!(missing["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no such branch or tag"));
    assert_eq!(run("build-token", json!({})).status(), 400);
    let unknown = Client::new()
        .post(s.server.url("/api/v1/triggers/nope/run"))
        .bearer_auth("build-token")
        .json(&json!({"ref": "main"}))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // The CLI: a run followed to its end, and the list.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dockpub"))
            .args(args)
            .env("DOCKPUB_URL", &s.server.base)
            .env("DOCKPUB_TOKEN", "build-token")
            .output()
            .expect("dockpub");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text, err) = cli(&[
        "trigger", "app", "--ref", "v1", "--follow", "--output", "json",
    ]);
    assert!(ok, "{text} {err}");
    assert!(text.contains(&s.repo.tagged), "{text}");
    let (ok, text, err) = cli(&["triggers"]);
    assert!(ok && text.starts_with("app "), "{text} {err}");
    assert!(
        text.contains(&s.url) && text.contains("last build"),
        "{text}"
    );
    let (ok, _, err) = cli(&["trigger", "../builds", "--ref", "main"]);
    assert!(!ok && err.contains("not a trigger name"), "{err}");

    // Events take no bearer token: the signature is their auth.
    let event = send(
        &s.server,
        "app",
        github_push("refs/heads/feature/x", &s.repo.first, "gh-1", SECRET),
    );
    assert_eq!(event.status(), 202);
}

fn wait_as(server: &Server, id: i64, token: &str) -> Value {
    let deadline = std::time::Instant::now() + BUILD_TIME;
    loop {
        let build: Value = Client::new()
            .get(server.url(&format!("/api/v1/builds/{id}")))
            .bearer_auth(token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if ["succeeded", "failed", "cancelled"].contains(&build["status"].as_str().unwrap_or("")) {
            assert_eq!(build["status"], "succeeded", "{build}");
            return build;
        }
        assert!(std::time::Instant::now() < deadline, "{build}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn smart_http_with_basic_auth_uses_the_hosts_login_and_reports_a_wrong_one() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &env);
    let password = "http-pass-7d1c";
    let http = SmartHttp::start(root.path(), "alice", password);
    let url = http.url("app.git");
    // A password login names the port it is for.
    let config = format!(
        "[git.\"127.0.0.1:{}\"]\nusername = \"alice\"\npassword_env = \"DOCKPUB_TEST_GIT_PASSWORD\"\n",
        http.port
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();
    let server = Server::start_with_env(
        &["--config", path.to_str().unwrap()],
        &[("DOCKPUB_TEST_GIT_PASSWORD", password)],
    );
    let form = |extra: &[(&str, &str)]| {
        let repository = format!("{}/{}", env.registry, unique("http-git"));
        let mut form = field(
            field(Form::new(), "repository", &repository),
            "push",
            "false",
        );
        form = field(field(form, "git", &url), "git_subdir", "app");
        for (name, value) in extra {
            form = field(form, name, value);
        }
        form
    };

    // The host's login from the config: by branch, and by tag.
    for (git_ref, commit, version) in [("main", &repo.tip, "three"), ("v1", &repo.tagged, "two")] {
        let id = server.submit(form(&[("git_ref", git_ref)]));
        let built = server.wait_final(id, BUILD_TIME);
        assert_eq!(built["status"], "succeeded", "{built}");
        assert_eq!(built["source"]["commit"], commit.as_str());
        assert_eq!(
            run_in(built["image_id"].as_str().unwrap(), "cat /ctx/version.txt"),
            version
        );
    }

    // The request's own, wrong, login wins over the host's, and fails with git's reason.
    let wrong = "wrong-pass-0b2e";
    let response = server.post_form(
        "/api/v1/builds",
        form(&[("git_username", "alice"), ("git_password", wrong)]),
    );
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "git_fetch_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Authentication failed"), "{message}");

    // A ref that does not exist, and a host nobody listens on.
    let response = server.post_form("/api/v1/builds", form(&[("git_ref", "nope")]));
    assert_eq!(response.status(), 422);
    let closed = format!(
        "http://127.0.0.1:{}/git/app.git",
        crate::common::free_port()
    );
    let repository = format!("{}/{}", env.registry, unique("http-git"));
    let unreachable = field(
        field(
            field(Form::new(), "repository", &repository),
            "push",
            "false",
        ),
        "git",
        &closed,
    );
    let response = server.post_form("/api/v1/builds", unreachable);
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{body}"
    );

    // Neither password is anywhere: log, responses, stored files.
    let listed = server.get("/api/v1/builds").text().unwrap();
    for secret in [password, wrong] {
        assert!(!server.log().contains(secret));
        assert!(!listed.contains(secret));
        for file in walk(&server.data_dir()) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{file:?}"
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The README's post-receive hook, as a plain git server runs it.
fn readme_hook() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = "# dockpub post-receive hook";
    let at = readme.find(marker).expect("the README has the hook");
    let start = readme[..at].rfind("```sh\n").unwrap() + "```sh\n".len();
    let end = at + readme[at..].find("```").unwrap();
    readme[start..end].to_string()
}

#[test]
fn a_plain_git_servers_post_receive_hook_builds_what_was_pushed() {
    let s = setup("", &[]);
    let hook = s.served.join("hooks/post-receive");
    std::fs::write(&hook, readme_hook()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A developer commits and pushes; the hook tells dockpub.
    let pushed = commit(&s.repo.path, "four");
    let said = push(&s, "main");
    assert!(said.contains("dockpub: refs/heads/main 202"), "{said}");

    let listed = s.server.get_json("/api/v1/builds");
    let id = listed["builds"][0]["id"].as_i64().expect("a build");
    let built = s.server.wait_final(id, BUILD_TIME);
    assert_eq!(built["status"], "succeeded", "{built}");
    assert_eq!(built["source"]["commit"], pushed.as_str());
    assert_eq!(
        built["trigger"]["delivery"],
        format!("refs/heads/main@{pushed}").as_str()
    );
    assert_eq!(
        run_in(built["image_id"].as_str().unwrap(), "cat /ctx/version.txt"),
        "four"
    );

    // Deleting a branch is announced too, and builds nothing.
    let said = push(&s, ":feature/x");
    assert!(said.contains("dockpub: refs/heads/feature/x 204"), "{said}");
    let listed = s.server.get_json("/api/v1/builds");
    assert_eq!(listed["builds"].as_array().unwrap().len(), 1, "{listed}");
}

/// `git push` of `refspec` from the working repository into the served one,
/// whose hook is told where dockpub is; what git printed.
fn push(s: &Setup, refspec: &str) -> String {
    let out = std::process::Command::new("git")
        .current_dir(&s.repo.path)
        .args(["push", "-q", s.served.to_str().unwrap(), refspec])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env(
            "DOCKPUB_TRIGGER_URL",
            s.server.url("/api/v1/triggers/app/events"),
        )
        .env("DOCKPUB_HOOK_SECRET", SECRET)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    said
}

/// The server's `host:port`.
fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Opens a connection and sends an event's headers, declaring `length` bytes
/// of body, then `sent` bytes of it (writes the server refuses are ignored).
fn event_head(address: &str, trigger: &str, length: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /api/v1/triggers/{trigger}/events HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {length}\r\n\r\n",
        "0".repeat(64)
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&vec![b' '; sent]);
    stream
}

/// What the server answered on the connection: its status line and the rest,
/// read until the connection closes or the body declared has come.
fn answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_open_event_route_refuses_early_caps_stalled_senders_and_cuts_them_off() {
    let s = setup_with("", &[], &["--upload-idle-timeout-secs", "2"], false);
    let server = &s.server;
    const MIB: usize = 1024 * 1024;

    // Answered before a byte of the body is sent: a name no trigger has (as a
    // wrong signature), an event without a signature, and a declared length
    // over max_trigger_event_bytes (1 MiB by default).
    let address = address(server);
    let mut unknown = event_head(&address, "nope", MIB, 0);
    let said = answer(&mut unknown);
    assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    assert!(said.contains("bad_signature"), "{said}");
    let mut unsigned = TcpStream::connect(&address).unwrap();
    let head = format!(
        "POST /api/v1/triggers/app/events HTTP/1.1\r\nHost: {address}\r\n\
         Content-Length: {MIB}\r\n\r\n"
    );
    unsigned.write_all(head.as_bytes()).unwrap();
    let said = answer(&mut unsigned);
    assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    for name in ["app", "nope"] {
        let mut large = event_head(&address, name, MIB + 1, 0);
        let said = answer(&mut large);
        assert!(said.starts_with("HTTP/1.1 413"), "{name}: {said}");
        assert!(said.contains("1048576"), "{said}");
    }

    // Warm up, then two rounds of 100 senders that each send most of a 1 MiB
    // body and stall: the first 16 (max_concurrent_trigger_events) are read
    // and cut off by the idle timeout (408), the rest refused at once (503).
    send(
        server,
        "app",
        github_push("refs/heads/other", &s.repo.tip, "warm", SECRET),
    );
    let before = status_kib(server.pid(), "VmRSS:");
    for round in 0..2 {
        let senders: Vec<_> = (0..100)
            .map(|_| {
                let address = address.clone();
                std::thread::spawn(move || event_head(&address, "app", MIB, MIB - 64 * 1024))
            })
            .collect();
        let mut streams: Vec<TcpStream> = senders.into_iter().map(|t| t.join().unwrap()).collect();
        let (mut cut, mut refused) = (0, 0);
        for stream in &mut streams {
            let said = answer(stream);
            if said.starts_with("HTTP/1.1 408") {
                assert!(said.contains("upload_stalled"), "{said}");
                cut += 1;
            } else {
                assert!(said.starts_with("HTTP/1.1 503"), "{said}");
                assert!(said.contains("max_concurrent_trigger_events"), "{said}");
                refused += 1;
            }
        }
        assert!(
            (1..=16).contains(&cut),
            "round {round}: {cut} cut, {refused} refused"
        );
        let peak = status_kib(server.pid(), "VmHWM:");
        let growth = peak.saturating_sub(before);
        eprintln!(
            "round {round}: RSS before {before} KiB, peak {peak} KiB; {cut} cut, {refused} refused"
        );
        assert!(
            growth < 64 * 1024,
            "round {round}: RSS grew by {growth} KiB (from {before} KiB to a peak of {peak} KiB)"
        );
    }

    // The slots are free again: a signed event is taken.
    let taken = send(
        server,
        "app",
        github_push("refs/heads/main", &s.repo.tip, "after-stalls", SECRET),
    );
    assert_eq!(taken.status(), 202);
}

#[test]
fn runs_without_admin_build_only_refs_the_patterns_match_and_check_the_scope_first() {
    let registry = TestEnv::get().registry;
    let config = format!(
        r#"
[[tokens]]
name = "boss"
token_env = "DOCKPUB_TEST_ADMIN_TOKEN"
scopes = ["admin"]

[[tokens]]
name = "ci"
token_env = "DOCKPUB_TEST_BUILD_TOKEN"
scopes = ["build"]
repositories = ["{registry}/trig-*"]

[[tokens]]
name = "elsewhere"
token_env = "DOCKPUB_TEST_OTHER_TOKEN"
scopes = ["build"]
repositories = ["{registry}/elsewhere-*"]
"#
    );
    let s = setup(
        &config,
        &[
            ("DOCKPUB_TEST_ADMIN_TOKEN", "admin-token"),
            ("DOCKPUB_TEST_BUILD_TOKEN", "build-token"),
            ("DOCKPUB_TEST_OTHER_TOKEN", "other-token"),
        ],
    );
    // A branch the trigger does not listen to, at a commit no listened ref has.
    git(&s.repo.path, &["checkout", "-q", "-b", "evil"]);
    let evil = commit(&s.repo.path, "evil");
    git(&s.repo.path, &["checkout", "-q", "main"]);
    push(&s, "evil");
    let run = |token: &str, git_ref: &str| {
        Client::new()
            .post(s.server.url("/api/v1/triggers/app/run"))
            .bearer_auth(token)
            .json(&json!({ "ref": git_ref }))
            .send()
            .unwrap()
    };
    let code = |response: Response| -> (u16, Value) {
        let status = response.status().as_u16();
        (status, response.json().unwrap())
    };

    // A token that may not build the repository learns nothing about its refs:
    // a ref that exists and one that does not get the same answer.
    for git_ref in ["main", "no-such-branch", "feature/nope", evil.as_str()] {
        let (status, body) = code(run("other-token", git_ref));
        assert_eq!(status, 403, "{git_ref}: {body}");
        assert_eq!(body["error"]["code"], "forbidden_repository", "{body}");
    }

    // A build token: refs the patterns do not match are refused, whether they exist or not,
    // by name or by SHA (a SHA counts only as the tip of a listed ref).
    for git_ref in [
        "evil",
        "refs/heads/evil",
        "no-such-branch",
        evil.as_str(),
        &s.repo.tagged[..],
    ] {
        let (status, body) = code(run("build-token", git_ref));
        if git_ref == s.repo.tagged {
            // The tip of tag v1, which refs/tags/v* matches.
            assert_eq!(status, 202, "{body}");
            assert_eq!(body["source"]["ref"], "refs/tags/v1", "{body}");
            continue;
        }
        assert_eq!(status, 403, "{git_ref}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("admin"),
            "{body}"
        );
    }
    let (status, body) = code(run("build-token", "main"));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["source"]["ref"], "refs/heads/main");
    let (status, body) = code(run("build-token", &s.repo.first));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["source"]["ref"], "refs/heads/feature/x", "{body}");
    assert_eq!(body["tags"], json!(["feature-x", short(&s.repo.first)]));

    // The admin may build any ref.
    let (status, body) = code(run("admin-token", "evil"));
    assert_eq!(status, 202, "{body}");
    let built = wait_as(&s.server, body["id"].as_i64().unwrap(), "admin-token");
    assert_eq!(built["source"]["commit"], evil.as_str());
    assert_eq!(built["tags"], json!(["evil", short(&evil)]));
}

#[test]
fn push_events_build_what_the_ref_names_now_and_the_tag_follows_the_branch() {
    let s = setup_with("", &[], &[], true);
    let server = &s.server;
    // As the README's post-receive hook names deliveries: the same for the same ref and commit.
    let delivery = |sha: &str| format!("refs/heads/main@{sha}");
    let ignored = |response: Response| -> String {
        assert_eq!(response.status(), 204);
        let why = response.headers()["X-Dockpub-Ignored"].to_str().unwrap();
        why.to_string()
    };

    // v1: main at its tip.
    let v1 = s.repo.tip.clone();
    let event = |sha: &str, id: &str| github_push("refs/heads/main", sha, id, SECRET);
    let first = accepted(send(server, "app", event(&v1, &delivery(&v1))), 202);
    let first_id = first["id"].as_i64().unwrap();
    let first = server.wait_final(first_id, BUILD_TIME);
    assert_eq!(first["status"], "succeeded", "{first}");

    // Signed, but naming another ref's commit for main, or a tag that does not exist: stale.
    let wrong_sha = ignored(send(server, "app", event(&s.repo.first, "wrong-sha")));
    assert!(wrong_sha.starts_with("stale"), "{wrong_sha}");
    let no_tag = github_push("refs/tags/v9", &v1, "no-tag", SECRET);
    let no_tag = ignored(send(server, "app", no_tag));
    assert!(no_tag.starts_with("stale"), "{no_tag}");

    // v2 pushed and built; then the v1 event replayed under a new delivery id is stale.
    let v2 = commit(&s.repo.path, "four");
    push(&s, "main");
    let second = accepted(send(server, "app", event(&v2, &delivery(&v2))), 202);
    let second_id = second["id"].as_i64().unwrap();
    let second = server.wait_final(second_id, BUILD_TIME);
    assert_eq!(second["status"], "succeeded", "{second}");
    let replayed = ignored(send(server, "app", event(&v1, "replayed")));
    assert!(replayed.starts_with("stale"), "{replayed}");
    assert_eq!(build_count(server), 2);
    assert_eq!(
        server.build(first_id)["tag_moved_by"]["main"],
        second_id,
        "build 2 took main over"
    );

    // main forced back to v1 and announced with the first delivery's id: build 1
    // no longer owns main, so v1 is built again and main serves it.
    push(&s, &format!("+{v1}:refs/heads/main"));
    let third = accepted(send(server, "app", event(&v1, &delivery(&v1))), 202);
    let third_id = third["id"].as_i64().unwrap();
    assert!(third_id > second_id, "{third}");
    let third = server.wait_final(third_id, BUILD_TIME);
    assert_eq!(third["status"], "succeeded", "{third}");
    assert_eq!(
        pushed_digest(&s.repository, "main", None).as_deref(),
        third["digest"].as_str(),
        "the registry's main is build {third_id}'s image"
    );
    assert_eq!(
        run_in(third["image_id"].as_str().unwrap(), "cat /ctx/version.txt"),
        "three"
    );
    // Delivered once more while build 3 owns its tags: a duplicate.
    let again = accepted(send(server, "app", event(&v1, &delivery(&v1))), 200);
    assert_eq!(again["id"], third_id);
}

/// A TCP server that accepts connections and never answers, as a git server
/// that hangs; the connections are kept until it is dropped.
struct Tarpit {
    port: u16,
    held: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tarpit {
    fn start() -> Tarpit {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (keep, stopping) = (held.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                keep.lock().unwrap().extend(stream.ok());
            }
        });
        Tarpit {
            port,
            held,
            stop,
            thread: Some(thread),
        }
    }

    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Whether every connection it holds is still open (the client still waits).
    fn all_still_open(&self) -> bool {
        self.held.lock().unwrap().iter().all(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let open = match stream.peek(&mut byte) {
                Ok(0) => false,
                Ok(_) => true,
                Err(err) => err.kind() == std::io::ErrorKind::WouldBlock,
            };
            stream.set_nonblocking(false).unwrap();
            open
        })
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.held.lock().unwrap().clear();
    }
}

#[test]
fn a_push_event_is_answered_while_hanging_git_servers_hold_every_fetch_slot() {
    let s = setup_with(
        "max_concurrent_git_fetches = 1\ngit_timeout_secs = 600\n",
        &[],
        &[],
        false,
    );
    let tarpit = Tarpit::start();
    // A build from a git server that never answers takes the one fetch slot.
    let form = field(
        field(
            field(
                Form::new(),
                "repository",
                &format!("{}-tarpit", s.repository),
            ),
            "push",
            "false",
        ),
        "git",
        &format!("http://127.0.0.1:{}/app.git", tarpit.port),
    );
    let submitting = {
        let url = s.server.url("/api/v1/builds");
        std::thread::spawn(move || {
            Client::builder()
                .timeout(None)
                .build()
                .unwrap()
                .post(url)
                .multipart(form)
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tarpit.held() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "git never reached the tarpit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A push event has slots of its own: it is looked up, fetched and answered.
    let event = github_push("refs/heads/main", &s.repo.tip, "while-hanging", SECRET);
    let built = accepted(send(&s.server, "app", event), 202);
    assert!(
        !submitting.is_finished() && tarpit.all_still_open(),
        "the hanging fetch should still hang"
    );
    // And the tip was fetched for real.
    let built = s
        .server
        .wait_final(built["id"].as_i64().unwrap(), BUILD_TIME);
    assert_eq!(built["status"], "succeeded", "{built}");

    // The tarpit goes away: the hanging fetch fails and is answered.
    drop(tarpit);
    let status = submitting.join().unwrap().expect("an answer");
    assert_eq!(status, 422);
}

#[test]
fn an_earlier_events_build_that_finishes_last_leaves_the_branch_tag_to_the_later_one() {
    let env = TestEnv::get();
    let s = setup_with("", &[], &[], true);
    let server = &s.server;
    let event = |sha: &str| {
        let delivery = format!("refs/heads/main@{sha}");
        github_push("refs/heads/main", sha, &delivery, SECRET)
    };
    // The earlier commit builds slowly, the later one quickly.
    let dockerfile = |run: &str| format!("FROM {}\nCOPY . /ctx\n{run}\n", env.base_image);
    crate::common::git::write(&s.repo.path, "app/Dockerfile", &dockerfile("RUN sleep 20"));
    let slow = commit(&s.repo.path, &unique("slow"));
    push(&s, "main");
    let first = accepted(send(server, "app", event(&slow)), 202);
    crate::common::git::write(&s.repo.path, "app/Dockerfile", &dockerfile(""));
    let fast = commit(&s.repo.path, &unique("fast"));
    push(&s, "main");
    let second = accepted(send(server, "app", event(&fast)), 202);
    let (first_id, second_id) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );

    let second = server.wait_final(second_id, BUILD_TIME);
    assert_eq!(second["status"], "succeeded", "{second}");
    let first = server.wait_final(first_id, BUILD_TIME);
    assert_eq!(first["status"], "succeeded", "{first}");
    let finished = |build: &Value| {
        chrono::DateTime::parse_from_rfc3339(build["finished_at"].as_str().unwrap()).unwrap()
    };
    assert!(
        finished(&first) > finished(&second),
        "the slow build should finish last: {first} {second}"
    );

    // main stays with the later commit; the earlier build pushed only its own SHA tag.
    assert_eq!(
        pushed_digest(&s.repository, "main", None).as_deref(),
        second["digest"].as_str()
    );
    assert_eq!(first["tag_moved_by"], json!({"main": second_id}), "{first}");
    assert_eq!(
        pushed_digest(&s.repository, &short(&slow), None).as_deref(),
        first["digest"].as_str()
    );
    assert!(first["digest"].is_string(), "{first}");
    assert!(
        server
            .logs(first_id)
            .contains(&format!("main is left to build {second_id}")),
        "{}",
        server.logs(first_id)
    );
}
