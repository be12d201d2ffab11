//! Registry passwords live in memory only: never in SQLite, logs or responses.

use std::time::Duration;

use crate::common::{field, unique, with_file, Server, TestEnv};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(120);

#[test]
fn passwords_are_never_stored_logged_or_returned() {
    let env = TestEnv::get();
    let server = Server::start();
    let wrong_password = unique("wrong-password");
    let repository = format!("{}/{}", env.auth_registry, unique("secret"));
    let mut responses = Vec::new();
    let mut ids = Vec::new();
    for password in [env.auth_password.as_str(), wrong_password.as_str()] {
        let form = field(with_file(env.dockerfile("true")), "repository", &repository);
        let form = field(
            field(form, "username", &env.auth_user),
            "password",
            password,
        );
        let response = server.post_form("/api/v1/builds", form).text().unwrap();
        ids.push(
            serde_json::from_str::<Value>(&response).unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
        responses.push(response);
    }
    let form = field(
        with_file(env.dockerfile("true")),
        "docker_repo",
        &repository,
    );
    let form = field(
        field(form, "docker_username", &env.auth_user),
        "docker_password",
        &env.auth_password,
    );
    let response = server
        .post_form("/api/dockerfile-build/", form)
        .text()
        .unwrap();
    ids.push(
        serde_json::from_str::<Value>(&response).unwrap()["data"]["id"]
            .as_i64()
            .unwrap(),
    );
    responses.push(response);

    let outcomes: Vec<String> = ids
        .iter()
        .map(|&id| server.wait_final(id, BUILD_TIME)["status"].to_string())
        .collect();
    assert_eq!(
        outcomes,
        vec!["\"succeeded\"", "\"failed\"", "\"succeeded\""]
    );
    for &id in &ids {
        for path in [
            format!("/api/v1/builds/{id}"),
            format!("/api/v1/builds/{id}/logs"),
            format!("/api/dockerfile-build/?dockerfile_build_id={id}"),
        ] {
            responses.push(server.get(&path).text().unwrap());
        }
    }
    responses.push(server.get("/api/v1/builds").text().unwrap());
    responses.push(server.get("/api/dockerfile-build/").text().unwrap());

    let mut places: Vec<(String, Vec<u8>)> = responses
        .into_iter()
        .enumerate()
        .map(|(n, r)| (format!("response {n}"), r.into_bytes()))
        .collect();
    places.push(("server log".into(), server.log().into_bytes()));
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            places.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        places
            .iter()
            .any(|(name, _)| name.ends_with("dockpub.sqlite3")),
        "no database found"
    );
    for password in [&env.auth_password, &wrong_password] {
        for (name, bytes) in &places {
            let found = bytes
                .windows(password.len())
                .any(|window| window == password.as_bytes());
            assert!(!found, "a password is in {name}");
        }
    }
}
