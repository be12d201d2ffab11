//! The CLI keeps docker's habits and never panics, through the real binary
//! against a real server: `-f` is the Dockerfile, `--build-arg KEY` reads the
//! environment, errors say what to do, a closed pipe ends it quietly, and every
//! API route a user needs has its flag or subcommand.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::git::{git, make_repo, SmartHttp};
use crate::common::{field, text, unique, with_file, Server, TestEnv};

const BUILD_TIME: Duration = Duration::from_secs(120);

/// `dockpub ARGS` against `server`, with `env` set and `stdin` as standard input.
fn run(server: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .env("DOCKPUB_URL", server)
        .env_remove("DOCKPUB_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the dockpub client");
    let mut input = child.stdin.take().unwrap();
    // The client may stop reading (and close its end) before all of it is written.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

fn dockpub(server: &Server, args: &[&str]) -> Output {
    run(&server.base, args, &[], "")
}

/// The JSON a successful command printed.
fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {}: {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", text(&out.stdout)))
}

/// A failed command's standard error, checked to say each of `words`.
fn refused(out: &Output, words: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}{}", text(&out.stdout));
    assert!(!stderr.contains("panicked"), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "'{word}' not in: {stderr}");
    }
    stderr
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let server = Server::start_with(&["--api-tokens", "cli-habits-token"]);
    let token = [("DOCKPUB_TOKEN", "cli-habits-token")];

    let no_scheme = run("127.0.0.1:18437", &["list"], &token, "");
    refused(&no_scheme, &["127.0.0.1:18437", "http://127.0.0.1:18437"]);

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = run(&nobody, &["list"], &token, "");
    let said = refused(&unreachable, &[&nobody, "--server"]);
    assert!(said.to_lowercase().contains("refused"), "{said}");

    let no_token = dockpub(&server, &["list"]);
    refused(&no_token, &["401", "--token", "DOCKPUB_TOKEN"]);
    assert!(json_of(&run(
        &server.base,
        &["list", "--output", "json"],
        &token,
        ""
    ))["builds"]
        .is_array());

    let missing = format!("/tmp/{}", unique("no-such-context"));
    let submit = |args: &[&str]| {
        let mut all = vec!["submit", "-r", "127.0.0.1:5000/x"];
        all.extend_from_slice(args);
        run(&server.base, &all, &token, "")
    };
    refused(&submit(&[&missing]), &[&missing, "no such file"]);
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().to_str().unwrap();
    refused(&submit(&["-f", &missing, context]), &[&missing]);
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM scratch\n").unwrap();
    let file = dockerfile.to_str().unwrap();
    refused(&submit(&["-f", file, file]), &["context directory"]);
    // A password from standard input is a password, not whatever was piped in.
    let git_login = [
        "--git",
        "https://git.example.com/a.git",
        "--git-username",
        "u",
        "--git-password-stdin",
    ];
    let piped = run(
        &server.base,
        &[&["submit", "-r", "127.0.0.1:5000/x"][..], &git_login].concat(),
        &token,
        &"x".repeat(100_000),
    );
    refused(&piped, &["--git-password-stdin", "8192 bytes"]);
    let listed = json_of(&run(
        &server.base,
        &["list", "--output", "json"],
        &token,
        "",
    ));
    assert_eq!(
        listed["builds"],
        serde_json::json!([]),
        "nothing was submitted"
    );
}

/// `dockpub ARGS` with its standard output a pipe whose reader has already gone.
fn into_a_closed_pipe(server: &Server, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(args)
        .env("DOCKPUB_URL", &server.base)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run the dockpub client")
}

#[test]
fn f_is_the_dockerfile_build_args_come_from_the_environment_and_a_closed_pipe_is_quiet() {
    let env = TestEnv::get();
    let server = Server::start();
    let context = tempfile::tempdir().unwrap();
    let marker = unique("ctx");
    std::fs::write(context.path().join("hello.txt"), format!("{marker}\n")).unwrap();
    // A Dockerfile in the context that must not be the one used.
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nRUN false\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("Dockerfile.ci");
    std::fs::write(
        &outside,
        format!(
            "FROM {}\nCOPY hello.txt /hello\nRUN cat /hello && echo outside-dockerfile\n",
            env.base_image
        ),
    )
    .unwrap();
    std::fs::create_dir(context.path().join("docker")).unwrap();
    std::fs::write(
        context.path().join("docker/app.dockerfile"),
        format!(
            "FROM {}\nARG FROM_ENV\nRUN echo \"inside-$FROM_ENV\"\n",
            env.base_image
        ),
    )
    .unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli-habits"));
    let dir = context.path().to_str().unwrap();

    let outside_file = outside.to_str().unwrap();
    #[rustfmt::skip]
    let out = dockpub(&server, &[
        "submit", "-f", outside_file, dir, "-r", &repository, "--no-push", "--follow",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(&marker), "the context went: {stdout}");
    assert!(
        stdout.contains("outside-dockerfile"),
        "the Dockerfile outside it was used: {stdout}"
    );

    let inside = context.path().join("docker/app.dockerfile");
    // A value of its own, so BuildKit cannot answer the step from its cache.
    let from_env = unique("the-environment");
    #[rustfmt::skip]
    let out = run(&server.base, &[
        "submit", "--file", inside.to_str().unwrap(), dir, "-r", &repository, "--no-push",
        "--build-arg", "FROM_ENV", "--build-arg", "CLI_HABITS_UNSET", "--build-arg", "PLAIN=1",
        "--output", "json",
    ], &[("FROM_ENV", &from_env)], "");
    let queued = json_of(&out);
    let options = &queued["options"];
    assert_eq!(options["dockerfile"], "docker/app.dockerfile", "{queued}");
    assert_eq!(
        options["build_args"]["FROM_ENV"],
        from_env.as_str(),
        "{queued}"
    );
    assert_eq!(options["build_args"]["PLAIN"], "1", "{queued}");
    assert!(
        options["build_args"].get("CLI_HABITS_UNSET").is_none(),
        "an unset variable is left out: {queued}"
    );
    let id = queued["id"].as_i64().unwrap();
    let built = server.wait_final(id, BUILD_TIME);
    assert_eq!(built["status"], "succeeded", "{built}");
    assert!(server.logs(id).contains(&format!("inside-{from_env}")));

    let id = id.to_string();
    for args in [
        &["list"][..],
        &["list", "--output", "json"],
        &["status", &id],
        &["logs", &id],
        &["logs", &id, "--output", "json"],
        &["builders"],
        &["deliveries", &id],
        &["triggers", "--output", "json"],
        &["--help"],
    ] {
        let out = into_a_closed_pipe(&server, args);
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert!(stderr.is_empty(), "{args:?} was not quiet: {stderr}");
    }
}

#[test]
fn list_logs_and_retry_take_the_apis_options() {
    let env = TestEnv::get();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {}\nRUN --mount=type=secret,id=habit \
             for i in 1 2 3 4 5; do echo line-$i; done && test \"$(cat /run/secrets/habit)\" = from-env\n",
            env.base_image
        ),
    )
    .unwrap();
    let file = dockerfile.to_str().unwrap();
    let repository = format!("{}/{}", env.registry, unique("cli-list"));
    let secret = [("CLI_HABIT_SECRET", "from-env")];
    #[rustfmt::skip]
    let first = json_of(&run(&server.base, &[
        "submit", file, "-r", &repository, "--no-push", "--no-cache",
        "--secret", "id=habit,env=CLI_HABIT_SECRET", "--output", "json",
    ], &secret, ""));
    let first = first["id"].as_i64().unwrap();
    assert_eq!(server.wait_final(first, BUILD_TIME)["status"], "succeeded");
    let first_text = first.to_string();

    // A retry needs the secret again; without it, the step fails.
    let retried = |with_secret: bool| {
        let mut args = vec!["retry", first_text.as_str(), "--output", "json"];
        if with_secret {
            args.extend(["--secret", "id=habit,env=CLI_HABIT_SECRET"]);
        }
        let id = json_of(&run(&server.base, &args, &secret, ""))["id"]
            .as_i64()
            .unwrap();
        (id, server.wait_final(id, BUILD_TIME))
    };
    let (with, build) = retried(true);
    assert_eq!(build["status"], "succeeded", "{build}");
    let (without, build) = retried(false);
    assert_eq!(build["status"], "failed", "{build}");

    // list --status/--limit/--before/--submitted-by become the query.
    let ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["list", "--output", "json"];
        all.extend_from_slice(args);
        json_of(&dockpub(&server, &all))["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|build| build["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), vec![without, with, first]);
    assert_eq!(ids(&["--limit", "1"]), vec![without]);
    assert_eq!(ids(&["--status", "failed"]), vec![without]);
    assert_eq!(ids(&["--before", &without.to_string()]), vec![with, first]);
    assert_eq!(ids(&["--submitted-by", "nobody"]), Vec::<i64>::new());
    refused(
        &dockpub(&server, &["list", "--limit", "0"]),
        &["400", "limit"],
    );
    let text_list = text(&dockpub(&server, &["list", "--status", "succeeded"]).stdout);
    assert_eq!(text_list.lines().count(), 2, "{text_list}");

    // logs --tail/--since pick lines, and --output json prints JSON.
    let whole = server.logs(first);
    let lines: Vec<&str> = whole.lines().collect();
    assert!(lines.len() > 4 && whole.contains("line-5"), "{whole}");
    let logs = |args: &[&str]| {
        let mut all = vec!["logs", first_text.as_str()];
        all.extend_from_slice(args);
        let out = dockpub(&server, &all);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(
        logs(&["--tail", "2"]),
        format!("{}\n", lines[lines.len() - 2..].join("\n"))
    );
    assert_eq!(
        logs(&["--since", "3"]),
        format!("{}\n", lines[3..].join("\n"))
    );
    let as_json: Value = serde_json::from_str(&logs(&["--output", "json"])).unwrap();
    assert_eq!(as_json["id"], first);
    assert_eq!(as_json["lines"], serde_json::json!(lines));
    // Following a finished build with --tail: the last line, then its end.
    let followed = logs(&["--follow", "--tail", "1"]);
    let last = lines[lines.len() - 1];
    assert!(followed.starts_with(&format!("{last}\n")), "{followed}");
    assert!(!followed.contains(lines[0]), "{followed}");
    assert!(followed.contains("succeeded"), "{followed}");
}

#[test]
fn builders_deliveries_and_redeliver_are_subcommands() {
    let env = TestEnv::get();
    // A webhook receiver that answers 204 to everything.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", receiver.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in receiver.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 65536];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    let server = Server::start_with_env(
        &[
            "--allowed-callback-hosts",
            "127.0.0.1",
            "--callback-secret-env",
            "CLI_HABITS_CALLBACK",
        ],
        &[("CLI_HABITS_CALLBACK", "s3cret")],
    );

    let builders = json_of(&dockpub(&server, &["builders", "--output", "json"]));
    assert_eq!(builders["builders"][0]["name"], "local", "{builders}");
    let listed = text(&dockpub(&server, &["builders"]).stdout);
    assert!(
        listed.starts_with("local") && listed.contains(" up "),
        "{listed}"
    );

    let repository = format!("{}/{}", env.registry, unique("cli-hook"));
    let form = field(with_file(env.dockerfile("true")), "repository", &repository);
    let form = field(field(form, "push", "false"), "callback_url", &hook);
    let id = server.submit(form);
    assert_eq!(server.wait_final(id, BUILD_TIME)["status"], "succeeded");
    let id = id.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let deliveries = json_of(&dockpub(&server, &["deliveries", &id, "--output", "json"]));
        let first = deliveries["deliveries"][0].clone();
        if first["state"] == "delivered" {
            break first;
        }
        assert!(Instant::now() < deadline, "{deliveries}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let listed = text(&dockpub(&server, &["deliveries", &id]).stdout);
    assert!(
        listed.contains("delivered") && listed.contains(&hook),
        "{listed}"
    );

    let original = delivery["id"].as_i64().unwrap().to_string();
    let again = json_of(&dockpub(
        &server,
        &["redeliver", &original, "--output", "json"],
    ));
    assert_eq!(again["redelivery_of"].to_string(), original, "{again}");
    let said = text(&dockpub(&server, &["redeliver", &original]).stdout);
    assert!(said.contains(&format!("(again of {original})")), "{said}");
    refused(&dockpub(&server, &["redeliver", "999999"]), &["404"]);
}

#[test]
fn git_flags_send_a_login_from_stdin_and_ask_for_submodules() {
    let env = TestEnv::get();
    let root = tempfile::tempdir().unwrap();
    let repo = make_repo(root.path(), &env);
    let password = "cli-git-pass-41ac";
    let http = SmartHttp::start(root.path(), "alice", password);
    let url = http.url("app.git");
    let server = Server::start();
    let repository = format!("{}/{}", env.registry, unique("cli-git"));
    let submit = |extra: &[&str], stdin: &str| {
        #[rustfmt::skip]
        let mut args = vec![
            "submit", "--git", &url, "--subdir", "app", "-r", &repository, "--no-push",
            "--output", "json",
        ];
        args.extend_from_slice(extra);
        run(&server.base, &args, &[], stdin)
    };
    refused(&submit(&[], ""), &["422"]);
    let login = ["--git-username", "alice", "--git-password-stdin"];
    let queued = json_of(&submit(&login, &format!("{password}\n")));
    assert_eq!(queued["source"]["commit"], repo.tip.as_str(), "{queued}");
    assert!(!server.log().contains(password));
    let both = submit(
        &[&login[..], &["-u", "bob", "--password-stdin"]].concat(),
        "x\n",
    );
    assert_eq!(
        both.status.code(),
        Some(2),
        "one standard input: {}",
        text(&both.stderr)
    );

    // A submodule whose URL the server refuses: only fetched, so only refused, when asked.
    let submodule = [
        ("submodule.app/lib.path", "app/lib"),
        ("submodule.app/lib.url", "http://198.51.100.7/lib.git"),
    ];
    for (key, value) in submodule {
        git(&repo.path, &["config", "-f", ".gitmodules", key, value]);
    }
    let gitlink = format!("160000,{},app/lib", repo.tip);
    git(
        &repo.path,
        &["update-index", "--add", "--cacheinfo", &gitlink],
    );
    git(&repo.path, &["add", ".gitmodules"]);
    git(&repo.path, &["commit", "-q", "-m", "a submodule elsewhere"]);
    let stdin = format!("{password}\n");
    assert!(submit(&login, &stdin).status.success());
    let asked = submit(&[&login[..], &["--git-submodules"]].concat(), &stdin);
    refused(&asked, &["400", "submodule"]);
}
