//! Named tokens with scopes and repositories, against a real server, daemon and
//! registry: what each token may do on every route, v1 and seed-compatible.

use std::time::Duration;

use crate::common::{field, registry_digest, unique, with_file, Server, TestEnv};
use reqwest::blocking::RequestBuilder;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

const BUILD_TIME: Duration = Duration::from_secs(120);
const READER: &str = "reader-token-1";
const TEAM_A: &str = "team-a-token-1";
const ADMIN: &str = "admin-token-1";

struct Setup {
    server: Server,
    env: TestEnv,
    team_a: String,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let team_a = format!("{}/team-a-{}", env.auth_registry, unique("t"));
    let config = format!(
        "[[tokens]]\nname = \"reader\"\ntoken_env = \"T_READER\"\nscopes = [\"read\"]\n\n\
         [[tokens]]\nname = \"team-a\"\ntoken_sha256 = \"{}\"\nscopes = [\"build\"]\nrepositories = [\"{team_a}/*\"]\n\n\
         [[tokens]]\nname = \"admin\"\ntoken_env = \"T_ADMIN\"\nscopes = [\"admin\"]\n\n\
         [registries.\"{}\"]\nusername = \"{}\"\npassword_env = \"T_REGISTRY_PASSWORD\"\n",
        hex::encode(Sha256::digest(TEAM_A.as_bytes())),
        env.auth_registry,
        env.auth_user,
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_with_env(
        &["--config", path.to_str().unwrap()],
        &[
            ("T_READER", READER),
            ("T_ADMIN", ADMIN),
            ("T_REGISTRY_PASSWORD", env.auth_password.as_str()),
        ],
    );
    Setup {
        server,
        env,
        team_a,
        _dir: dir,
    }
}

fn form(env: &TestEnv, repository: &str, run: &str) -> reqwest::blocking::multipart::Form {
    field(with_file(env.dockerfile(run)), "repository", repository)
}

fn send(request: RequestBuilder, token: Option<&str>) -> (u16, Value) {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Polls the build with the admin token until it has ended.
fn wait_final(server: &Server, id: i64) -> Value {
    let deadline = std::time::Instant::now() + BUILD_TIME;
    loop {
        let (_, build) = send(
            server
                .client
                .get(server.url(&format!("/api/v1/builds/{id}"))),
            Some(ADMIN),
        );
        if matches!(
            build["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return build;
        }
        assert!(std::time::Instant::now() < deadline, "build {id}: {build}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_token_may_do_what_its_scopes_and_repositories_allow() {
    let Setup {
        server,
        env,
        team_a,
        ..
    } = start();
    let url = |path: &str| server.url(path);
    let post = |path: &str| server.client.post(url(path));

    // team-a builds in its own repositories, with the server's stored login.
    let (status, own) = send(
        post("/api/v1/builds").multipart(form(&env, &format!("{team_a}/app"), "true")),
        Some(TEAM_A),
    );
    assert_eq!(status, 202, "{own}");
    let own_id = own["id"].as_i64().unwrap();
    assert_eq!(own["submitted_by"], "team-a");
    let built = wait_final(&server, own_id);
    assert_eq!(built["status"], "succeeded", "{built}");

    // Another team's repository on the same registry: refused before anything runs,
    // so the stored login never pushes there.
    let other = format!("{}/team-b-{}/app", env.auth_registry, unique("t"));
    for path in ["/api/v1/builds", "/api/dockerfile-build/"] {
        let request = if path.contains("dockerfile-build") {
            let form = field(
                field(
                    field(with_file(env.dockerfile("true")), "docker_repo", &other),
                    "docker_username",
                    "u",
                ),
                "docker_password",
                "p",
            );
            post(path).multipart(form)
        } else {
            post(path).multipart(form(&env, &other, "true"))
        };
        let (status, body) = send(request, Some(TEAM_A));
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body.to_string().contains(&format!("{team_a}/*")),
            "{path}: {body}"
        );
    }
    let auth = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    let (registry, repository) = other.split_once('/').unwrap();
    assert_eq!(registry_digest(registry, repository, "latest", auth), None);

    // The admin's build: team-a may read it, not cancel or retry it.
    let (_, admins) = send(
        post("/api/v1/builds").multipart(field(form(&env, &other, "true"), "push", "false")),
        Some(ADMIN),
    );
    let admins_id = admins["id"].as_i64().unwrap();
    assert_eq!(admins["submitted_by"], "admin");
    wait_final(&server, admins_id);

    let get = |path: String| (Method::GET, path);
    let routes: Vec<((Method, String), [u16; 4])> = vec![
        // [no token, reader, team-a, admin]
        (get("/api/v1/builds".into()), [401, 200, 200, 200]),
        (
            get(format!("/api/v1/builds/{own_id}")),
            [401, 200, 200, 200],
        ),
        (
            get(format!("/api/v1/builds/{own_id}/logs")),
            [401, 200, 200, 200],
        ),
        (get("/api/v1/builders".into()), [401, 200, 200, 200]),
        (get("/api/dockerfile-build/".into()), [401, 200, 200, 200]),
        (
            get(format!("/api/v1/builds/{own_id}/deliveries")),
            [401, 403, 403, 200],
        ),
        (
            (Method::POST, format!("/api/v1/builds/{admins_id}/retry")),
            [401, 403, 403, 202],
        ),
        (
            (Method::POST, format!("/api/v1/builds/{own_id}/retry")),
            [401, 403, 202, 202],
        ),
        (
            (Method::POST, format!("/api/v1/builds/{admins_id}/cancel")),
            [401, 403, 403, 409],
        ),
        (
            (Method::POST, "/api/v1/deliveries/999999/redeliver".into()),
            [401, 403, 403, 404],
        ),
        (
            (Method::DELETE, "/api/v1/builds/999999".into()),
            [401, 403, 403, 404],
        ),
        (
            (
                Method::DELETE,
                "/api/dockerfile-build/?dockerfile_build_id=999999".into(),
            ),
            [401, 403, 403, 404],
        ),
        (get("/api/v1/no-such-route".into()), [401, 403, 403, 404]),
    ];
    for ((method, path), expected) in &routes {
        for (token, want) in [None, Some(READER), Some(TEAM_A), Some(ADMIN)]
            .into_iter()
            .zip(expected)
        {
            let (status, body) = send(server.client.request(method.clone(), url(path)), token);
            assert_eq!(status, *want, "{method} {path} with {token:?}: {body}");
        }
    }
    let (status, body) = send(
        server.client.get(url("/api/v1/builds")),
        Some("unknown-token"),
    );
    assert_eq!(status, 401, "{body}");

    // The list filters by who submitted.
    let (_, listed) = send(
        server.client.get(url("/api/v1/builds?submitted_by=team-a")),
        Some(READER),
    );
    let names: Vec<&str> = listed["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["submitted_by"].as_str().unwrap())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| *n == "team-a"),
        "{listed}"
    );
    let (status, _) = send(
        server.client.get(url("/api/v1/builds?submitted_by=a%20b")),
        Some(READER),
    );
    assert_eq!(status, 400);
    for token in [READER, TEAM_A, ADMIN] {
        assert!(!server.log().contains(token), "a token is in the log");
    }
}
