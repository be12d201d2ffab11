//! The CLI client against a real server: `dockpub submit DIR --follow` and friends.

mod common;

use std::process::{Command, Output};

use common::{pushed_digest, unique, Server, TestEnv};
use serde_json::Value;

fn dockpub(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .env("DOCKPUB_URL", &server.base)
        .output()
        .expect("run the dockpub client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn submit_follow_builds_and_pushes_a_directory_and_exits_0() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let marker = unique("from-the-context");
    std::fs::write(dir.path().join("hello.txt"), format!("{marker}\n")).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "never sent\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nARG GREETING\nCOPY . /ctx\nRUN cat /ctx/hello.txt && test ! -e /ctx/secret.txt && echo \"$GREETING\"\n",
            env.base_image
        ),
    )
    .unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli"));
    let path = dir.path().to_str().unwrap();
    let out = dockpub(
        &server,
        &[
            "submit",
            path,
            "-r",
            &repository,
            "-t",
            "v1",
            "--build-arg",
            "GREETING=hi-from-cli",
            "--follow",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}: {stdout}{}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains(&marker), "{stdout}");
    assert!(stdout.contains("hi-from-cli"), "{stdout}");
    assert!(stdout.contains("succeeded"), "{stdout}");

    let listed = dockpub(&server, &["list", "--output", "json"]);
    let builds: Value = serde_json::from_slice(&listed.stdout).expect("list --output json is JSON");
    let id = builds["builds"][0]["id"].as_i64().unwrap();
    let status = dockpub(&server, &["status", &id.to_string(), "--output", "json"]);
    let build: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(build["status"], "succeeded");
    let digest = pushed_digest(&repository, "v1", None);
    assert_eq!(digest.as_deref(), build["digest"].as_str());
}

#[test]
fn a_failing_build_makes_submit_follow_exit_non_zero() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, env.dockerfile("false")).unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli-false"));
    let out = dockpub(
        &server,
        &[
            "submit",
            dockerfile.to_str().unwrap(),
            "-r",
            &repository,
            "--follow",
        ],
    );
    assert!(
        !out.status.success(),
        "a failed build exited 0: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("exit code: 1"),
        "{}",
        text(&out.stdout)
    );

    let refused = dockpub(
        &server,
        &["submit", dockerfile.to_str().unwrap(), "-r", "Not/Valid"],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("400"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn submit_sends_secrets_in_docker_syntax_and_picks_the_builder() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file_secret = dir.path().join("token.txt");
    std::fs::write(&file_secret, "from-a-file").unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {}\nARG RUN_ID={}\nRUN --mount=type=secret,id=from_file --mount=type=secret,id=from_env \
             test \"$(cat /run/secrets/from_file)\" = from-a-file && test \"$(cat /run/secrets/from_env)\" = from-the-env\n",
            env.base_image,
            unique("run")
        ),
    )
    .unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli-secret"));
    let submit = |extra: &[&str]| {
        let mut args = vec![
            "submit",
            dockerfile.to_str().unwrap(),
            "-r",
            &repository,
            "--no-push",
        ];
        args.extend_from_slice(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_dockpub"));
        command
            .args(&args)
            .env("DOCKPUB_URL", &server.base)
            .env("CLI_TEST_SECRET", "from-the-env");
        command.output().expect("run the dockpub client")
    };
    let secrets = format!("id=from_file,src={}", file_secret.display());
    let out = submit(&[
        "--secret",
        &secrets,
        "--secret",
        "id=from_env,env=CLI_TEST_SECRET",
        "--follow",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let refused = submit(&["--secret", &secrets, "--no-buildkit"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("400"),
        "{}",
        text(&refused.stderr)
    );
}
