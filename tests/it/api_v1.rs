//! The v1 API end to end: real server, real daemon, real registries.

use std::time::Duration;

use crate::common::{
    buildkit_step, field, local_image_exists, pushed_digest, registry_digest, unique, with_file,
    Server, TestEnv,
};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(120);

#[test]
fn a_pushed_build_reports_the_digest_the_registry_serves() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/team/{}", env.registry, unique("digest"));
    let form = field(
        field(
            field(
                with_file(env.dockerfile("echo hello")),
                "repository",
                &repository,
            ),
            "tag",
            "v1",
        ),
        "tag",
        "v2",
    );
    let response = server.post_form("/api/v1/builds", form);
    assert_eq!(response.status(), 202);
    let id = response.headers()["location"].to_str().unwrap().to_string();
    let queued: Value = response.json().unwrap();
    assert_eq!(queued["status"], "queued");
    assert_eq!(id, format!("/api/v1/builds/{}", queued["id"]));
    assert_eq!(queued["links"]["logs"], format!("{id}/logs"));

    let build = server.wait_final(queued["id"].as_i64().unwrap(), BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["error"], Value::Null);
    assert!(build["image_id"].as_str().unwrap().starts_with("sha256:"));
    let digest = build["digest"].as_str().unwrap();
    for tag in ["v1", "v2"] {
        let served = pushed_digest(&repository, tag, None);
        assert_eq!(served.as_deref(), Some(digest), "tag {tag}");
    }
    let times: Vec<&str> = ["created_at", "started_at", "built_at", "finished_at"]
        .iter()
        .map(|key| {
            build[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} missing in {build}"))
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "timestamps out of order: {times:?}"
    );

    assert_eq!(
        build["options"]["buildkit"], true,
        "BuildKit is the default"
    );
    let logs = server.logs(build["id"].as_i64().unwrap());
    // BuildKit's progress in `--progress=plain` shape: `#N [2/2] RUN …`, `#N 0.12 hello`.
    let run_step = buildkit_step(&logs, "RUN echo hello");
    assert!(
        logs.lines()
            .any(|line| line.starts_with(&format!("{run_step} ")) && line.ends_with(" hello")),
        "{logs}"
    );
    assert!(logs.contains(&format!("{run_step} DONE ")), "{logs}");
    assert!(
        logs.contains("importing cache manifest from"),
        "registry cache: {logs}"
    );
    assert!(logs.contains(&format!("digest: {digest}")), "{logs}");
}

#[test]
fn the_auth_registry_takes_the_right_password_and_refuses_a_wrong_one() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.auth_registry, unique("auth"));
    let submit = |password: &str, tag: &str| {
        let form = with_file(env.dockerfile("true"));
        let form = field(field(form, "repository", &repository), "tag", tag);
        server.submit(field(
            field(form, "username", &env.auth_user),
            "password",
            password,
        ))
    };
    let wrong = submit("not-the-password", "wrong");
    let right = submit(&env.auth_password, "right");

    let wrong = server.wait_final(wrong, BUILD_TIME);
    assert_eq!(wrong["status"], "failed", "{wrong}");
    assert_eq!(wrong["digest"], Value::Null);
    let error = wrong["error"].as_str().unwrap();
    assert!(
        error.contains("unauthorized"),
        "not the registry's message: {error}"
    );
    let path = repository.split_once('/').unwrap().1;
    let auth = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    assert_eq!(
        registry_digest(&env.auth_registry, path, "wrong", auth),
        None
    );

    let right = server.wait_final(right, BUILD_TIME);
    assert_eq!(right["status"], "succeeded", "{right}");
    assert_eq!(
        registry_digest(&env.auth_registry, path, "right", auth).as_deref(),
        right["digest"].as_str()
    );
}

#[test]
fn a_failing_step_fails_the_build_with_its_log() {
    let env = TestEnv::get();
    let server = Server::start();
    // Each builder's own words for the step that failed.
    let builders = [
        ("true", "] RUN false", "exit code: 1"),
        (
            "false",
            "Step 3/3 : RUN false",
            "returned a non-zero code: 1",
        ),
    ];
    for (buildkit, step_line, message) in builders {
        let repository = format!("{}/{}", env.registry, unique("false"));
        let form = field(
            with_file(env.dockerfile("false")),
            "repository",
            &repository,
        );
        let id = server.submit(field(form, "buildkit", buildkit));
        let build = server.wait_final(id, BUILD_TIME);
        assert_eq!(build["status"], "failed");
        assert_eq!(build["options"]["buildkit"].to_string(), buildkit);
        assert_eq!(
            build["built_at"],
            Value::Null,
            "a failed build was never built"
        );
        let error = build["error"].as_str().unwrap();
        assert!(error.contains(message), "{error}");
        let logs = server.logs(id);
        assert!(logs.contains(step_line), "{logs}");
        assert!(logs.contains(message), "{logs}");
        if buildkit == "true" {
            assert!(logs.contains(" ERROR: "), "the step's error line: {logs}");
        }
        assert_eq!(pushed_digest(&repository, "latest", None), None);
    }
}

#[test]
fn a_push_to_a_registry_that_is_down_fails() {
    let env = TestEnv::get();
    let server = Server::start();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repository = format!("127.0.0.1:{closed_port}/{}", unique("down"));
    let id = server.submit(field(
        with_file(env.dockerfile("true")),
        "repository",
        &repository,
    ));
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "failed", "{build}");
    assert!(
        build["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{build}"
    );
    assert_eq!(build["digest"], Value::Null);
    assert!(
        build["built_at"].is_string(),
        "it was built, then the push failed: {build}"
    );
}

#[test]
fn build_only_skips_the_push() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.registry, unique("nopush"));
    let form = field(
        field(with_file(env.dockerfile("true")), "repository", &repository),
        "push",
        "false",
    );
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(build["status"], "succeeded");
    assert_eq!(build["push"], false);
    assert_eq!(build["digest"], Value::Null);
    assert!(local_image_exists(&format!("{repository}:latest")));
    assert_eq!(pushed_digest(&repository, "latest", None), None);
}

#[test]
fn ten_submissions_on_two_slots_never_run_more_than_two_at_once() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-concurrent-builds", "2"]);
    let ids: Vec<i64> = (0..10)
        .map(|_| {
            let repository = format!("{}/{}", env.registry, unique("pool"));
            server.submit(field(
                with_file(env.dockerfile("sleep 1")),
                "repository",
                &repository,
            ))
        })
        .collect();
    let builds: Vec<Value> = ids
        .iter()
        .map(|&id| server.wait_final(id, BUILD_TIME * 2))
        .collect();
    for build in &builds {
        assert_eq!(build["status"], "succeeded", "{build}");
    }
    let spans: Vec<(&str, &str)> = builds
        .iter()
        .map(|b| {
            (
                b["started_at"].as_str().unwrap(),
                b["finished_at"].as_str().unwrap(),
            )
        })
        .collect();
    let most_at_once = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, f)| s <= start && start < f)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most_at_once, 2, "spans: {spans:?}");
    let mut started: Vec<(&str, i64)> = builds
        .iter()
        .map(|b| (b["started_at"].as_str().unwrap(), b["id"].as_i64().unwrap()))
        .collect();
    started.sort();
    let order: Vec<i64> = started.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        order, ids,
        "builds did not start in the order they were queued"
    );
}

#[test]
fn delete_removes_the_tags_row_and_stored_file_of_a_finished_build_only() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.registry, unique("delete"));
    let form = field(
        field(with_file(env.dockerfile("true")), "repository", &repository),
        "push",
        "false",
    );
    let form = field(field(form, "tag", "one"), "tag", "two");
    let id = server.submit(form);
    assert_eq!(server.wait_final(id, BUILD_TIME)["status"], "succeeded");
    // A later build takes tag "two": deleting the first must leave it alone.
    let later = field(
        field(with_file(env.dockerfile("true")), "repository", &repository),
        "push",
        "false",
    );
    let later = server.submit(field(later, "tag", "two"));
    assert_eq!(server.wait_final(later, BUILD_TIME)["status"], "succeeded");

    let stored = server.data_dir().join(format!("builds/{id}/Dockerfile"));
    assert!(stored.exists());
    assert!(local_image_exists(&format!("{repository}:one")));

    let response = server
        .client
        .delete(server.url(&format!("/api/v1/builds/{id}")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(server.get(&format!("/api/v1/builds/{id}")).status(), 404);
    assert_eq!(
        server.get(&format!("/api/v1/builds/{id}/logs")).status(),
        404
    );
    assert!(
        !stored.parent().unwrap().exists(),
        "stored files left behind"
    );
    assert!(
        !local_image_exists(&format!("{repository}:one")),
        "its tag was left"
    );
    assert!(
        local_image_exists(&format!("{repository}:two")),
        "another build's tag was removed"
    );

    let running = server.submit(field(
        with_file(env.dockerfile("sleep 5")),
        "repository",
        &repository,
    ));
    server.wait_for(running, BUILD_TIME, |b| b["status"] != "queued");
    let response = server
        .client
        .delete(server.url(&format!("/api/v1/builds/{running}")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "build_not_final");
    assert_eq!(
        server.wait_final(running, BUILD_TIME)["status"],
        "succeeded"
    );
}

#[test]
fn listing_is_newest_first_with_paging_and_a_status_filter() {
    let env = TestEnv::get();
    let server = Server::start();
    let repository = format!("{}/{}", env.registry, unique("list"));
    let ids: Vec<i64> = ["true", "false", "true"]
        .iter()
        .map(|run| {
            let form = field(
                field(with_file(env.dockerfile(run)), "repository", &repository),
                "push",
                "false",
            );
            server.submit(form)
        })
        .collect();
    for &id in &ids {
        server.wait_final(id, BUILD_TIME);
    }
    let page = server.get_json("/api/v1/builds?limit=2");
    let listed: Vec<i64> = page["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[2], ids[1]]);
    let next = page["next"].as_str().unwrap();
    let rest = server.get_json(next);
    let listed: Vec<i64> = rest["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[0]]);
    assert_eq!(rest["next"], Value::Null);
    let failed = server.get_json("/api/v1/builds?status=failed");
    let listed: Vec<i64> = failed["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[1]]);
}

/// Every bad request: a 4xx with a JSON error naming the problem, and nothing stored.
#[test]
fn bad_requests_get_clear_json_errors_and_leave_nothing_behind() {
    let env = TestEnv::offline();
    let server = Server::in_process(&[
        "--max-upload-bytes",
        "65536",
        "--max-dockerfile-bytes",
        "4096",
    ]);
    let good_repository = format!("{}/{}", env.registry, unique("bad"));
    let dockerfile = env.dockerfile("true");
    let form =
        |file: &[u8], repository: &str| field(with_file(file.to_vec()), "repository", repository);
    let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();

    let cases: Vec<(&str, reqwest::blocking::multipart::Form, u16, &str, &str)> = vec![
        (
            "missing file",
            field(
                reqwest::blocking::multipart::Form::new(),
                "repository",
                &good_repository,
            ),
            400,
            "missing_field",
            "file",
        ),
        (
            "missing repository",
            with_file(dockerfile.clone()),
            400,
            "missing_field",
            "repository",
        ),
        (
            "empty file",
            form(b"", &good_repository),
            400,
            "invalid_dockerfile",
            "empty",
        ),
        (
            "a PDF",
            form(&pdf, &good_repository),
            400,
            "invalid_dockerfile",
            "UTF-8",
        ),
        (
            "text that is no Dockerfile",
            form(b"hello world\n", &good_repository),
            400,
            "invalid_dockerfile",
            "FROM",
        ),
        (
            "NUL bytes",
            form(b"FROM scratch\n\0", &good_repository),
            400,
            "invalid_dockerfile",
            "NUL",
        ),
        (
            "over the Dockerfile limit",
            form(
                format!("FROM scratch\n#{}\n", "x".repeat(5000)).as_bytes(),
                &good_repository,
            ),
            400,
            "invalid_dockerfile",
            "4096",
        ),
        (
            "uppercase repository",
            form(dockerfile.as_bytes(), "Team/App"),
            400,
            "invalid_repository",
            "Team/App",
        ),
        (
            "repository with a tag",
            form(dockerfile.as_bytes(), "team/app:1.0"),
            400,
            "invalid_repository",
            "tag",
        ),
        (
            "bad tag",
            field(form(dockerfile.as_bytes(), &good_repository), "tag", "-bad"),
            400,
            "invalid_tag",
            "-bad",
        ),
        (
            "unknown field",
            field(
                form(dockerfile.as_bytes(), &good_repository),
                "colour",
                "blue",
            ),
            400,
            "unknown_field",
            "colour",
        ),
        (
            "push not a bool",
            field(
                form(dockerfile.as_bytes(), &good_repository),
                "push",
                "maybe",
            ),
            400,
            "invalid_field",
            "push",
        ),
        (
            "username without password",
            field(
                form(dockerfile.as_bytes(), &good_repository),
                "username",
                "alice",
            ),
            400,
            "missing_field",
            "password",
        ),
        (
            "repository twice",
            field(
                form(dockerfile.as_bytes(), &good_repository),
                "repository",
                "x/y",
            ),
            400,
            "invalid_field",
            "repository",
        ),
    ];
    for (name, form, status, code, mentions) in cases {
        let response = server.post_form("/api/v1/builds", form);
        assert_error(name, response, status, code, mentions);
    }

    let not_multipart = server
        .client
        .post(server.url("/api/v1/builds"))
        .header("Content-Type", "application/json")
        .body(r#"{"repository":"x"}"#)
        .send()
        .unwrap();
    assert_error(
        "not multipart",
        not_multipart,
        415,
        "unsupported_media_type",
        "application/json",
    );
    let too_large = form(
        format!("FROM scratch\n#{}\n", "x".repeat(70_000)).as_bytes(),
        &good_repository,
    );
    assert_error(
        "over the body limit",
        server.post_form("/api/v1/builds", too_large),
        413,
        "payload_too_large",
        "65536",
    );

    for (path, status, code, mentions) in [
        ("/api/v1/builds/999999", 404, "build_not_found", "999999"),
        ("/api/v1/builds/abc", 400, "invalid_id", "abc"),
        (
            "/api/v1/builds/99999999999999999999999",
            400,
            "invalid_id",
            "9999",
        ),
        ("/api/v1/builds/abc/logs", 400, "invalid_id", "abc"),
        (
            "/api/v1/builds/999999/logs",
            404,
            "build_not_found",
            "999999",
        ),
        ("/api/v1/builds?limit=0", 400, "invalid_query", "limit"),
        ("/api/v1/builds?limit=501", 400, "invalid_query", "limit"),
        ("/api/v1/builds?status=done", 400, "invalid_query", "status"),
        ("/api/v1/builds?before=x", 400, "invalid_id", "x"),
        // One rule for ids: a positive decimal, no sign, no leading zero.
        ("/api/v1/builds/0", 400, "invalid_id", "'0'"),
        ("/api/v1/builds/-1", 400, "invalid_id", "'-1'"),
        ("/api/v1/builds/+5", 400, "invalid_id", "'+5'"),
        ("/api/v1/builds/05", 400, "invalid_id", "'05'"),
        ("/api/v1/builds/0/logs", 400, "invalid_id", "'0'"),
        ("/api/v1/builds?before=-1", 400, "invalid_id", "'-1'"),
        ("/api/v1/builds?before=0", 400, "invalid_id", "'0'"),
        ("/api/v1/builds?before=%2B5", 400, "invalid_id", "'+5'"),
        ("/api/v1/nothing", 404, "not_found", "route"),
    ] {
        assert_error(path, server.get(path), status, code, mentions);
    }
    let redeliver_zero = server
        .client
        .post(server.url("/api/v1/deliveries/0/redeliver"))
        .send()
        .unwrap();
    assert_error("redeliver 0", redeliver_zero, 400, "invalid_id", "'0'");
    let wrong_method = server
        .client
        .put(server.url("/api/v1/builds/1"))
        .send()
        .unwrap();
    assert_eq!(wrong_method.headers()["allow"], "GET, HEAD, DELETE");
    assert_error("PUT", wrong_method, 405, "method_not_allowed", "method");
    // The document is a route like the others: another method is a 405, not a 404.
    let openapi_put = server
        .client
        .put(server.url("/api/v1/openapi.json"))
        .send()
        .unwrap();
    assert_eq!(openapi_put.headers()["allow"], "GET, HEAD");
    assert_error(
        "PUT openapi",
        openapi_put,
        405,
        "method_not_allowed",
        "method",
    );
    let delete_unknown = server
        .client
        .delete(server.url("/api/v1/builds/424242"))
        .send()
        .unwrap();
    assert_error(
        "DELETE unknown",
        delete_unknown,
        404,
        "build_not_found",
        "424242",
    );

    let listed = server.get_json("/api/v1/builds");
    assert_eq!(
        listed["builds"],
        serde_json::json!([]),
        "a rejected request left a build"
    );
    let stored: Vec<_> = std::fs::read_dir(server.data_dir().join("builds"))
        .unwrap()
        .collect();
    assert!(
        stored.is_empty(),
        "a rejected request left files: {stored:?}"
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

fn assert_error(
    name: &str,
    response: reqwest::blocking::Response,
    status: u16,
    code: &str,
    mentions: &str,
) {
    assert_eq!(response.status().as_u16(), status, "{name}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/json", "{name}");
    let body: Value = response
        .json()
        .unwrap_or_else(|err| panic!("{name}: body is not JSON: {err}"));
    assert_eq!(body["error"]["code"], code, "{name}: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(mentions),
        "{name}: '{message}' does not mention '{mentions}'"
    );
}

#[test]
fn health() {
    let server = Server::in_process(&[]);
    assert_eq!(
        server.get_json("/healthz"),
        serde_json::json!({"status": "ok"})
    );
}
