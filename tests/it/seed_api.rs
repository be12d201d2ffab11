//! The seed-compatible API: scripts written for the Django service keep working.

use std::time::Duration;

use crate::common::{field, registry_digest, unique, with_file, Server, TestEnv};
use reqwest::blocking::multipart::Form;
use serde_json::{json, Value};

const BUILD_TIME: Duration = Duration::from_secs(120);
const ROUTE: &str = "/api/dockerfile-build/";

fn seed_form(env: &TestEnv, repository: &str, password: &str) -> Form {
    let form = field(with_file(env.dockerfile("true")), "docker_repo", repository);
    field(
        field(form, "docker_username", &env.auth_user),
        "docker_password",
        password,
    )
}

fn wait_seed_status(server: &Server, id: i64, done: impl Fn(&str) -> bool) -> Value {
    let deadline = std::time::Instant::now() + BUILD_TIME;
    loop {
        let body = server.get_json(&format!("{ROUTE}?dockerfile_build_id={id}"));
        if done(body["data"]["status"].as_str().unwrap()) {
            return body["data"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "seed build {id} stuck: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_seed_upload_builds_and_pushes_with_a_unique_timestamp_tag() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.auth_registry, unique("seed"));
    let first = server.post_form(ROUTE, seed_form(&env, &repository, &env.auth_password));
    assert_eq!(first.status(), 202);
    let first: Value = first.json().unwrap();
    let data = &first["data"];
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "created_at",
            "docker_repo",
            "docker_username",
            "file",
            "id",
            "image_id",
            "status"
        ]
    );
    assert_eq!(data["docker_username"], env.auth_user.as_str());
    assert_eq!(data["docker_repo"], repository.as_str());
    assert_eq!(data["status"], "Build is starting");
    assert_eq!(data["image_id"], Value::Null);
    let first_id = data["id"].as_i64().unwrap();
    // The `username`/`password` spellings work too, and a second upload within the
    // same second still gets its own tag.
    let form = field(
        with_file(env.dockerfile("true")),
        "docker_repo",
        &repository,
    );
    let form = field(
        field(form, "username", &env.auth_user),
        "password",
        &env.auth_password,
    );
    let second = server.post_form(ROUTE, form);
    assert_eq!(second.status(), 202);
    let second_id = second.json::<Value>().unwrap()["data"]["id"]
        .as_i64()
        .unwrap();

    let pushed = "Docker Image is successfully pushed to Docker Hub.";
    let done = wait_seed_status(&server, first_id, |s| s == pushed || s.starts_with("Error"));
    assert_eq!(done["status"], pushed);
    assert!(done["image_id"].as_str().unwrap().starts_with("sha256:"));
    wait_seed_status(&server, second_id, |s| s == pushed);

    let tags: Vec<String> = [first_id, second_id]
        .iter()
        .map(|id| server.build(*id)["tags"][0].as_str().unwrap().to_string())
        .collect();
    assert_ne!(tags[0], tags[1]);
    for (tag, id) in tags.iter().zip([first_id, second_id]) {
        let (stamp, suffix) = tag.split_once('-').unwrap();
        assert_eq!(stamp.len(), 14, "{tag}");
        assert!(stamp.chars().all(|c| c.is_ascii_digit()), "{tag}");
        assert_eq!(suffix, id.to_string());
        let auth = Some((env.auth_user.as_str(), env.auth_password.as_str()));
        let path = repository.split_once('/').unwrap().1;
        assert_eq!(
            registry_digest(&env.auth_registry, path, tag, auth).as_deref(),
            server.build(id)["digest"].as_str()
        );
    }

    let listed = server.get_json(ROUTE);
    let ids: Vec<i64> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.contains(&first_id) && ids.contains(&second_id),
        "{listed}"
    );
}

#[test]
fn a_rejected_push_reads_as_an_error() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.auth_registry, unique("seedwrong"));
    let response = server.post_form(ROUTE, seed_form(&env, &repository, "wrong-password"));
    let id = response.json::<Value>().unwrap()["data"]["id"]
        .as_i64()
        .unwrap();
    let done = wait_seed_status(&server, id, |s| {
        s.starts_with("Error") || s.starts_with("Docker Image")
    });
    let status = done["status"].as_str().unwrap();
    assert!(
        status.starts_with("Error: ") && status.contains("unauthorized"),
        "{status}"
    );
}

#[test]
fn seed_errors_keep_the_old_messages() {
    let env = TestEnv::offline();
    let server = Server::in_process(&[]);
    let repository = format!("{}/{}", env.registry, unique("seederr"));

    let no_credentials = field(
        with_file(env.dockerfile("true")),
        "docker_repo",
        &repository,
    );
    let response = server.post_form(ROUTE, no_credentials);
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"message": "Username key 'docker_username' and password 'docker_password' for docker connection is missing."})
    );

    let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    let form = field(
        field(
            field(with_file(pdf), "docker_repo", &repository),
            "docker_username",
            "u",
        ),
        "docker_password",
        "p",
    );
    let response = server.post_form(ROUTE, form);
    assert_eq!(response.status(), 400);
    let body: Value = response.json().unwrap();
    assert_eq!(body["message"], "File is not valid");
    assert!(
        body["errors"]["file"][0]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{body}"
    );

    let response = server
        .client
        .post(server.url(ROUTE))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"message": "Content-Type is not valid. Expected binary data, actual header is application/json"})
    );

    let response = server.get(&format!("{ROUTE}?dockerfile_build_id=4242"));
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"message": "Dockerfile build process with 'id = 4242' is not found."})
    );
    let response = server.get(&format!("{ROUTE}?dockerfile_build_id=abc"));
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("abc"));

    let response = server.get(&format!(
        "{ROUTE}?dockerfile_build_id=1&dockerfile_build_id=2"
    ));
    assert_eq!(response.status(), 400);
    let body: Value = response.json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Query string is not valid"),
        "{body}"
    );

    let response = server.client.delete(server.url(ROUTE)).send().unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("dockerfile_build_id"));

    let response = server.client.put(server.url(ROUTE)).send().unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST, DELETE");
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"message": "Method not allowed."})
    );

    assert_eq!(
        server.get_json(ROUTE),
        json!({"data": []}),
        "a rejected upload left a build"
    );

    let guarded = Server::in_process(&["--api-tokens", "seed-token"]);
    let response = guarded.get(ROUTE);
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().unwrap();
    assert!(
        body["message"].is_string() && body.get("error").is_none(),
        "{body}"
    );
}

#[test]
fn seed_delete_removes_a_finished_build() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.auth_registry, unique("seeddel"));
    let response = server.post_form(ROUTE, seed_form(&env, &repository, &env.auth_password));
    let id = response.json::<Value>().unwrap()["data"]["id"]
        .as_i64()
        .unwrap();
    wait_seed_status(&server, id, |s| {
        s.starts_with("Docker Image") || s.starts_with("Error")
    });

    let response = server
        .client
        .delete(server.url(&format!("{ROUTE}?dockerfile_build_id={id}")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"message": format!("Dockerfile build process with 'id = {id}' is deleted.")})
    );
    assert_eq!(
        server
            .get(&format!("{ROUTE}?dockerfile_build_id={id}"))
            .status(),
        404
    );
    assert!(!server.data_dir().join(format!("builds/{id}")).exists());
}
