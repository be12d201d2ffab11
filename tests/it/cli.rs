//! The CLI client against a real server: `dockpub submit DIR --follow` and friends.

use std::process::{Command, Output};

use crate::common::{dockpub_client as dockpub, pushed_digest, text, unique, Server, TestEnv};
use serde_json::Value;

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
fn submit_packs_with_the_dockerfiles_own_ignore_file_unless_no_buildkit() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("build")).unwrap();
    let files = [
        (
            "build/app.Dockerfile",
            format!("FROM {}\nCOPY . /ctx\n", env.base_image),
        ),
        ("build/app.Dockerfile.dockerignore", "secrets.txt\n".into()),
        (".dockerignore", "other.txt\n".into()),
        ("secrets.txt", "s3cr3t\n".into()),
        ("other.txt", "other\n".into()),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().to_str().unwrap();
    for (builder_flag, kept) in [
        (None, "other.txt\n"),
        (Some("--no-buildkit"), "secrets.txt\n"),
    ] {
        let repository = format!("{}/{}", env.registry, unique("cli-own-ignore"));
        let mut args = vec![
            "submit",
            path,
            "-r",
            &repository,
            "--dockerfile",
            "build/app.Dockerfile",
            "--no-push",
            "--follow",
        ];
        args.extend(builder_flag);
        let out = dockpub(&server, &args);
        assert!(
            out.status.success(),
            "{builder_flag:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let listing = crate::common::run_in(
            &format!("{repository}:latest"),
            "cd /ctx && ls other.txt secrets.txt 2>/dev/null; true",
        );
        assert_eq!(listing, kept, "{builder_flag:?}");
    }
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

/// `dockpub` with `stdin` on its standard input.
fn dockpub_with_stdin(server: &Server, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .env("DOCKPUB_URL", &server.base)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the dockpub client");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn submit_sends_the_build_options_and_a_login_read_from_stdin() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docker")).unwrap();
    let marker = unique("stage");
    std::fs::write(
        dir.path().join("docker/app.dockerfile"),
        format!(
            "FROM {} AS base\nRUN echo {marker}\nFROM base AS final\nRUN false\n",
            env.base_image
        ),
    )
    .unwrap();
    let repository = format!("{}/{}", env.auth_registry, unique("cli-login"));
    let path = dir.path().to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "submit", path, "-r", &repository, "--dockerfile", "docker/app.dockerfile",
        "--target", "base", "--label", "org.example.team=web", "--no-cache",
        "--network", "none", "-u", &env.auth_user, "--password-stdin", "--follow",
    ];
    let out = dockpub_with_stdin(&server, &args, &format!("{}\n", env.auth_password));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(&marker), "{stdout}");

    let listed = dockpub(&server, &["list", "--output", "json"]);
    let builds: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let build = &builds["builds"][0];
    let options = &build["options"];
    assert_eq!(options["dockerfile"], "docker/app.dockerfile", "{build}");
    assert_eq!(options["target"], "base", "{build}");
    assert_eq!(options["labels"]["org.example.team"], "web", "{build}");
    assert_eq!(options["no_cache"], true, "{build}");
    assert_eq!(options["network"], "none", "{build}");
    let login = (env.auth_user.as_str(), env.auth_password.as_str());
    let digest = pushed_digest(&repository, "latest", Some(login));
    assert_eq!(digest.as_deref(), build["digest"].as_str());
    assert!(!server.log().contains(&env.auth_password));

    // The platform and pull flags reach the build (no pull can succeed here).
    let dockerfile = dir.path().join("docker/app.dockerfile");
    let file = dockerfile.to_str().unwrap();
    #[rustfmt::skip]
    let sent = dockpub(&server, &[
        "submit", file, "-r", &repository, "--platform", "linux/amd64", "--pull",
        "--build-arg", "A=1", "--output", "json",
    ]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let sent: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(sent["options"]["platform"], "linux/amd64", "{sent}");
    assert_eq!(sent["options"]["pull"], true, "{sent}");
    assert_eq!(sent["options"]["build_args"]["A"], "1", "{sent}");
}

#[test]
fn submit_refuses_what_the_server_would_and_never_takes_a_password_argument() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, env.dockerfile("true")).unwrap();
    let file = dockerfile.to_str().unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli-refused"));

    let callback = dockpub(
        &server,
        &[
            "submit",
            file,
            "-r",
            &repository,
            "--callback-url",
            "http://127.0.0.1:9/hook",
        ],
    );
    assert_eq!(callback.status.code(), Some(1));
    assert!(text(&callback.stderr).contains("allowed_callback_hosts"));

    let dockerfile_of_a_file = dockpub(
        &server,
        &["submit", file, "-r", &repository, "--dockerfile", "x"],
    );
    assert_eq!(dockerfile_of_a_file.status.code(), Some(1));
    assert!(text(&dockerfile_of_a_file.stderr).contains("--dockerfile"));

    let no_stdin = dockpub(&server, &["submit", file, "-r", &repository, "-u", "alice"]);
    assert_eq!(no_stdin.status.code(), Some(2), "clap's usage error");
    assert!(text(&no_stdin.stderr).contains("--password-stdin"));
    let password_flag = dockpub(
        &server,
        &["submit", file, "-r", &repository, "--password", "x"],
    );
    assert_eq!(
        password_flag.status.code(),
        Some(2),
        "there is no --password"
    );

    let empty = dockpub_with_stdin(
        &server,
        &[
            "submit",
            file,
            "-r",
            &repository,
            "-u",
            "alice",
            "--password-stdin",
        ],
        "\n",
    );
    assert_eq!(empty.status.code(), Some(1));
    assert!(text(&empty.stderr).contains("no password"));
    let listed = dockpub(&server, &["list", "--output", "json"]);
    let builds: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        builds["builds"].as_array().map(Vec::len),
        Some(0),
        "{builds}"
    );
}

/// Every flag of the README's `submit` table is in `dockpub submit --help`, and the
/// client's variables are named there.
#[test]
fn submit_help_lists_every_documented_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(["submit", "--help"])
        .output()
        .expect("dockpub submit --help");
    let help = text(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let start = readme
        .find("| flag | field |")
        .expect("the submit flag table");
    let flags: Vec<&str> = readme[start..]
        .lines()
        .take_while(|line| line.starts_with('|'))
        .flat_map(|line| line.split('`'))
        .filter(|word| word.starts_with('-'))
        .map(|word| word.split(' ').next().unwrap())
        .collect();
    assert!(flags.len() >= 15, "{flags:?}");
    for flag in flags
        .iter()
        .chain(&["[env: DOCKPUB_URL", "[env: DOCKPUB_TOKEN"])
    {
        assert!(help.contains(flag), "`submit --help` lacks {flag}:\n{help}");
    }
}

/// A stand-in for the server's event stream, because the real one cannot be made
/// to cut a character in two: it sends a log event whose `é` is split across
/// two writes, then a `done` event.
fn split_event_server() -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        let event = "event: log\ndata: caf\u{e9} au lait\n\n".as_bytes();
        let cut = event.iter().position(|&b| b == 0xc3).unwrap() + 1;
        for part in [head.as_bytes(), &event[..cut], &event[cut..]] {
            stream.write_all(part).unwrap();
            stream.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let done = "event: done\ndata: {\"id\":1,\"status\":\"succeeded\"}\n\n";
        stream.write_all(done.as_bytes()).unwrap();
    });
    (url, serve)
}

#[test]
fn logs_follow_keeps_a_character_split_across_chunks_whole() {
    let (url, serve) = split_event_server();
    let out = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(["logs", "1", "--follow"])
        .env("DOCKPUB_URL", &url)
        .output()
        .expect("run the dockpub client");
    serve.join().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("café au lait"), "{stdout:?}");
    assert!(!stdout.contains('\u{fffd}'), "{stdout:?}");
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

/// `dockpub ARGS` run by `script` on a pseudo-terminal of its own (stdout and
/// stderr both a terminal), and everything the terminal was sent.
fn dockpub_on_a_terminal(server: &Server, args: &[&str]) -> Vec<u8> {
    let command = std::iter::once(env!("CARGO_BIN_EXE_dockpub"))
        .chain(args.iter().copied())
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("DOCKPUB_URL", &server.base)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    out.stdout
}

#[test]
fn strings_from_the_server_reach_a_terminal_escaped_on_every_command_and_stream() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    // Retitles the window and clears the screen, in the log and in the error.
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    std::fs::write(
        &dockerfile,
        env.dockerfile(&format!("echo \"{hostile}fake succeeded\" && false")),
    )
    .unwrap();
    let dockerfile = dockerfile.to_str().unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli-escape"));
    let shown_as_text = "\\x1b]0;pwned\\x07\\x1b[2J";

    let followed = dockpub_on_a_terminal(
        &server,
        &["submit", dockerfile, "-r", &repository, "--follow"],
    );
    let listed: Value =
        serde_json::from_slice(&dockpub(&server, &["list", "--output", "json"]).stdout).unwrap();
    let build = &listed["builds"][0];
    assert_eq!(build["status"], "failed", "{build}");
    assert!(
        build["error"].as_str().unwrap().contains(hostile),
        "the error does not carry the sequences, so this tests nothing: {build}"
    );
    let id = build["id"].to_string();

    let as_json = dockpub_on_a_terminal(
        &server,
        &[
            "submit",
            dockerfile,
            "-r",
            &repository,
            "--follow",
            "--output",
            "json",
        ],
    );
    for (what, shown) in [
        ("submit --follow", followed),
        ("submit --follow --output json", as_json),
        ("status", dockpub_on_a_terminal(&server, &["status", &id])),
        (
            "status --output json",
            dockpub_on_a_terminal(&server, &["status", &id, "--output", "json"]),
        ),
        ("list", dockpub_on_a_terminal(&server, &["list"])),
        ("logs", dockpub_on_a_terminal(&server, &["logs", &id])),
    ] {
        let text = String::from_utf8_lossy(&shown);
        assert!(
            !shown.contains(&0x1b),
            "{what} sent the terminal an ESC: {text:?}"
        );
        assert!(
            !shown.contains(&0x07),
            "{what} sent the terminal a BEL: {text:?}"
        );
        assert!(
            text.contains("pwned"),
            "{what} showed nothing of it: {text:?}"
        );
        if !what.contains("json") {
            assert!(text.contains(shown_as_text), "{what}: {text:?}");
        }
    }
}
