//! A build's log is bounded (`max_log_lines`, `max_log_bytes`) for both
//! builders, and known secret values a step prints are stored as `***`
//! (issue 25.7 and 25.8), on the real daemon.

use std::time::Duration;

use serde_json::Value;

use crate::common::{field, output_text, unique, with_file, Server, TestEnv};

const BUILD_TIME: Duration = Duration::from_secs(180);

fn build_only(server: &Server, env: &TestEnv, dockerfile: String, buildkit: bool) -> Value {
    let form = field(
        with_file(dockerfile),
        "repository",
        &format!("{}/{}", env.registry, unique("logs")),
    );
    let form = field(
        field(form, "push", "false"),
        "buildkit",
        &buildkit.to_string(),
    );
    server.wait_final(server.submit(form), BUILD_TIME)
}

fn id_of(build: &Value) -> i64 {
    build["id"].as_i64().unwrap()
}

#[test]
fn a_legacy_build_printing_300000_lines_keeps_max_log_lines_and_goes_on() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-log-lines", "1000"]);
    let dockerfile = env.dockerfile("yes 0123456789abcdef | head -n 300000 && echo step-done");
    let build = build_only(&server, &env, dockerfile, false);
    assert_eq!(build["status"], "succeeded", "{build}");
    let logs = server.logs(id_of(&build));
    let lines: Vec<&str> = logs.lines().collect();
    let dropped = lines
        .iter()
        .position(|line| line.contains("the log reached max_log_lines (1000 lines)"))
        .unwrap_or_else(|| panic!("no line says the rest was dropped: {:?}", &lines[..20]));
    assert_eq!(dropped, 1000, "the builder's first 1000 lines are kept");
    assert!(
        lines
            .iter()
            .filter(|line| line.contains("max_log_lines"))
            .count()
            == 1,
        "one line says so"
    );
    assert!(
        !lines.contains(&"step-done"),
        "the output after it is dropped"
    );
    let after: Vec<&str> = lines[dropped + 1..].to_vec();
    assert!(
        after.iter().any(|line| line.starts_with("dockpub: built ")),
        "the build went on and its end is recorded: {after:?}"
    );
    assert!(lines.len() < 1010, "{} lines stored", lines.len());
}

#[test]
fn a_buildkit_build_past_max_log_bytes_keeps_the_limit_and_goes_on() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--max-log-bytes", "20000"]);
    let dockerfile = env.dockerfile("seq 1 50000 && echo step-done");
    let build = build_only(&server, &env, dockerfile, true);
    assert_eq!(build["status"], "succeeded", "{build}");
    let logs = server.logs(id_of(&build));
    let dropped = logs
        .lines()
        .position(|line| line.contains("the log reached max_log_bytes (20000 bytes)"))
        .unwrap_or_else(|| panic!("no line says the rest was dropped: {logs}"));
    let kept: usize = logs.lines().take(dropped).map(str::len).sum();
    assert!(kept <= 20000, "{kept} bytes before the notice");
    assert!(
        kept > 15000,
        "the log was filled up to its limit: {kept} bytes"
    );
    assert!(!logs.lines().any(|line| output_text(line) == "step-done"));
    assert!(
        logs.lines()
            .skip(dropped)
            .any(|line| line.starts_with("dockpub: built ")),
        "the build went on: {logs}"
    );

    // A step that fails after the limit: its error and the end are still recorded.
    let dockerfile = env.dockerfile("seq 1 50000 && false");
    let failed = build_only(&server, &env, dockerfile, true);
    assert_eq!(failed["status"], "failed", "{failed}");
    let logs = server.logs(id_of(&failed));
    let dropped = logs
        .lines()
        .position(|line| line.contains("max_log_bytes"))
        .unwrap_or_else(|| panic!("no line says the rest was dropped: {logs}"));
    let after: Vec<&str> = logs.lines().skip(dropped + 1).collect();
    assert!(
        after.iter().any(|line| line.contains(" ERROR: ")),
        "the step's error: {after:?}"
    );
    assert!(
        after
            .iter()
            .any(|line| line.starts_with("dockpub: build failed")),
        "the end: {after:?}"
    );
}

/// Neither the stored log nor its event stream shows `value`; both show `***`.
fn assert_masked(server: &Server, id: i64, values: &[&str]) {
    let logs = server.logs(id);
    let events = server
        .get(&format!("/api/v1/builds/{id}/events"))
        .text()
        .unwrap();
    for value in values {
        assert!(!logs.contains(value), "{value} in the log: {logs}");
        assert!(!events.contains(value), "{value} in the events: {events}");
    }
    assert!(logs.contains("***"), "no mask in the log: {logs}");
    assert!(events.contains("***"), "no mask in the events: {events}");
}

#[test]
fn a_secret_a_buildkit_step_prints_is_masked_in_the_log_and_its_events() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[secrets.server_x]\nenv = \"DOCKPUB_TEST_MASKED\"\n",
    )
    .unwrap();
    let server_value = unique("server-value");
    let server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[("DOCKPUB_TEST_MASKED", &server_value)],
    );
    let request_value = unique("request-value");
    let dockerfile = format!(
        "FROM {}\nARG RUN_ID={}\n\
         RUN --mount=type=secret,id=x --mount=type=secret,id=server_x \
             cat /run/secrets/x && echo && cat /run/secrets/server_x && echo\n",
        env.base_image,
        unique("run")
    );
    let form = field(
        with_file(dockerfile),
        "repository",
        &format!("{}/{}", env.registry, unique("masked")),
    );
    let form = field(
        field(form, "push", "false"),
        "secret",
        &format!("x={request_value}"),
    );
    let build = server.wait_final(server.submit(form), BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    let id = id_of(&build);
    let printed: Vec<String> = server
        .logs(id)
        .lines()
        .map(|line| output_text(line).to_string())
        .filter(|text| text == "***")
        .collect();
    assert_eq!(printed.len(), 2, "both values printed, as ***");
    assert_masked(&server, id, &[&request_value, &server_value]);
}

#[test]
fn a_config_password_a_legacy_step_echoes_is_masked() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let password = unique("registry-password");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[registries.\"registry.invalid\"]\nusername = \"u\"\npassword = \"{password}\"\n"),
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let dockerfile = env.dockerfile(&format!("echo before-{password}-after"));
    let build = build_only(&server, &env, dockerfile, false);
    assert_eq!(build["status"], "succeeded", "{build}");
    let id = id_of(&build);
    assert!(
        server
            .logs(id)
            .lines()
            .any(|line| line == "before-***-after"),
        "{}",
        server.logs(id)
    );
    assert_masked(&server, id, &[&password]);

    // A failed step's command, in the build's error, is masked too.
    let dockerfile = env.dockerfile(&format!("echo {password} && false"));
    let failed = build_only(&server, &env, dockerfile, false);
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("***") && !error.contains(&password),
        "{error}"
    );
    assert_masked(&server, id_of(&failed), &[&password]);
}
