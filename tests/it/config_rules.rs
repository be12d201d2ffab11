//! Each configuration rule the README documents, checked on the real binary: a
//! configuration that breaks it stops `dockpub serve` at start with exit code 2 and
//! a message naming the setting. None of these needs Docker.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a start ended: the exit code, or None when it was still serving (then killed).
struct Start {
    code: Option<i32>,
    log: String,
}

/// `dockpub serve` on a free port in a fresh folder, with `config` as its file.
fn start(args: &[&str], config: &str, env: &[(&str, &str)]) -> Start {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .arg("serve")
        .args(args)
        .current_dir(dir.path())
        // Through the variables, so a test's own flag wins over them.
        .env("DOCKPUB_CONFIG", "config.toml")
        .env("DOCKPUB_BIND", "127.0.0.1:0")
        .env("DOCKPUB_ADDRESS_FILE", "address")
        .env_remove("DOCKER_HOST")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start dockpub");
    let code = wait_or_listening(&mut child, &dir.path().join("address"));
    Start {
        code,
        log: std::fs::read_to_string(&log_path).unwrap(),
    }
}

/// The exit code, or None once the server has written its address file (it is
/// then stopped with SIGTERM, and must exit 0 within a few seconds and remove
/// the file).
fn wait_or_listening(child: &mut Child, address_file: &Path) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("dockpub status") {
            return Some(status.code().expect("an exit code, not a signal"));
        }
        let listening = std::fs::read_to_string(address_file)
            .is_ok_and(|address| address.starts_with("http://"));
        assert!(
            Instant::now() < deadline,
            "dockpub neither exited nor listened"
        );
        if listening {
            stop_cleanly(child);
            assert!(
                !address_file.exists(),
                "a clean stop removes the address file"
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// SIGTERM; a server that started exits 0.
fn stop_cleanly(child: &mut Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("dockpub status") {
            break status;
        }
        assert!(Instant::now() < deadline, "dockpub did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
}

/// Asserts the start was refused with exit code 2 and a message containing `says`.
fn refused(args: &[&str], config: &str, env: &[(&str, &str)], says: &str) {
    let start = start(args, config, env);
    assert_eq!(
        start.code,
        Some(2),
        "{args:?} / {config:?} was not refused with 2:\n{}",
        start.log
    );
    assert!(
        start.log.contains(says),
        "{args:?} / {config:?}: the message does not say '{says}':\n{}",
        start.log
    );
}

#[test]
fn an_unknown_key_in_the_file_exits_2() {
    refused(&[], "bindd = \"127.0.0.1:1\"\n", &[], "bindd");
}

#[test]
fn a_named_config_file_that_is_missing_exits_2() {
    refused(
        &["--config", "/nonexistent/dockpub.toml"],
        "",
        &[],
        "/nonexistent/dockpub.toml",
    );
}

#[test]
fn numbers_must_be_at_least_1() {
    for flag in [
        "--max-concurrent-builds",
        "--max-upload-bytes",
        "--max-dockerfile-bytes",
        "--max-context-bytes",
        "--max-context-entries",
        "--build-timeout-secs",
        "--max-queued-builds",
        "--retention-interval-secs",
        "--max-followers-per-build",
        "--max-followers",
    ] {
        let key = flag.trim_start_matches("--").replace('-', "_");
        refused(&[flag, "0"], "", &[], &format!("{key} must be at least 1"));
    }
    refused(
        &["--webhook-retry-backoff-secs", "1,0"],
        "",
        &[],
        "webhook_retry_backoff_secs",
    );
}

#[test]
fn shutdown_grace_0_is_allowed_and_a_fresh_data_dir_logs_no_error() {
    let start = start(&["--shutdown-grace-secs", "0"], "", &[]);
    assert_eq!(start.code, None, "did not start:\n{}", start.log);
    assert!(!start.log.contains("ERROR"), "{}", start.log);
}

#[test]
fn a_bind_that_is_not_host_port_or_is_taken_exits_2() {
    refused(&["--bind", "nonsense"], "", &[], "bind 'nonsense'");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    refused(&["--bind", &address], "", &[], "cannot listen");
}

#[test]
fn an_unusable_data_dir_exits_2() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    refused(&["--data-dir", path], "", &[], path);
    // A folder whose inside cannot be used: its `builds` is a file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("builds"), "not a folder").unwrap();
    let path = dir.path().to_str().unwrap();
    refused(&["--data-dir", path], "", &[], &format!("data_dir {path}"));
}

#[test]
fn docker_host_builder_hosts_and_docker_host_variable_share_one_rule() {
    let rule = "must be unix:///path or tcp://HOST:PORT";
    for bad in ["foo", "ssh://x", "http://foo", "tcp://nohost", "unix://"] {
        refused(
            &["--docker-host", bad],
            "",
            &[],
            &format!("docker_host '{bad}' {rule}"),
        );
        let builder = format!("[[builders]]\nname = \"a\"\nhost = \"{bad}\"\n");
        refused(&[], &builder, &[], &format!("host '{bad}' {rule}"));
    }
    refused(
        &[],
        "",
        &[("DOCKER_HOST", "ssh://x")],
        "DOCKER_HOST 'ssh://x'",
    );
}

#[test]
fn docker_host_and_builders_do_not_go_together() {
    let both =
        "docker_host = \"unix:///a.sock\"\n[[builders]]\nname = \"a\"\nhost = \"unix:///b.sock\"\n";
    refused(&[], both, &[], "docker_host and [[builders]]");
}

#[test]
fn platforms_are_os_arch() {
    let builder =
        "[[builders]]\nname = \"a\"\nhost = \"unix:///a.sock\"\nplatforms = [\"linux\"]\n";
    refused(&[], builder, &[], "platform 'linux'");
}

#[test]
fn build_limits_must_fit_docker() {
    refused(
        &["--build-memory-bytes", "1024"],
        "",
        &[],
        "build_memory_bytes",
    );
    refused(&["--build-cpu-shares", "1"], "", &[], "build_cpu_shares");
}

#[test]
fn an_empty_token_exits_2() {
    refused(&[], "[auth]\ntokens = [\"\"]\n", &[], "auth.tokens");
    refused(&["--api-tokens", "tok,"], "", &[], "auth.tokens");
    let unset = start(&[], "", &[("DOCKPUB_API_TOKENS", "")]);
    assert_eq!(
        unset.code, None,
        "an empty variable means none:\n{}",
        unset.log
    );
}

#[test]
fn callback_hosts_are_hosts_and_need_their_secret() {
    let secret = [("DOCKPUB_TEST_CALLBACK_SECRET", "s3cret")];
    let secret_flag = ["--callback-secret-env", "DOCKPUB_TEST_CALLBACK_SECRET"];
    for bad in ["http://x", "x:8080", "x/path"] {
        let args = [&["--allowed-callback-hosts", bad][..], &secret_flag[..]].concat();
        refused(
            &args,
            "",
            &secret,
            &format!("allowed_callback_hosts: '{bad}'"),
        );
    }
    refused(
        &["--allowed-callback-hosts", "hooks.example.com"],
        "",
        &[],
        "callback_secret_env",
    );
}

#[test]
fn variables_named_for_secrets_must_be_set() {
    let unset = "DOCKPUB_TEST_SURELY_UNSET";
    let login =
        format!("[registries.\"r.example\"]\nusername = \"u\"\npassword_env = \"{unset}\"\n");
    refused(&[], &login, &[], unset);
    let hook = format!("[[webhooks]]\nurl = \"http://127.0.0.1:9/\"\nsecret_env = \"{unset}\"\n");
    refused(&[], &hook, &[], unset);
    refused(&["--callback-secret-env", unset], "", &[], unset);
}

#[test]
fn a_login_needs_exactly_one_password_source() {
    let both =
        "[registries.\"r.example\"]\nusername = \"u\"\npassword = \"p\"\npassword_env = \"PATH\"\n";
    refused(&[], both, &[], "exactly one of password and password_env");
}

/// Every flag and variable of the README's configuration table is in `serve --help`.
#[test]
fn serve_help_lists_every_documented_flag_with_its_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(["serve", "--help"])
        .output()
        .expect("dockpub serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .filter(|line| line.starts_with("| `") && line.contains("`DOCKPUB_"))
        .map(|line| line.split('|').map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 20, "the configuration table was not found");
    for row in rows {
        let (variable, flag) = (row[2], row[3]);
        let flag = flag.trim_matches('`');
        let variable = variable
            .split('`')
            .nth(1)
            .expect("a variable in backquotes");
        assert!(help.contains(flag), "`serve --help` lacks {flag}:\n{help}");
        assert!(
            help.contains(&format!("[env: {variable}")),
            "`serve --help` does not name {variable}:\n{help}"
        );
    }
}

#[test]
fn triggers_and_git_logins_are_checked_at_start() {
    let trigger = |name: &str, refs: &str, tags: &str| {
        format!(
            "[[triggers]]\nname = \"{name}\"\ngit = \"https://git.example.com/a.git\"\n\
             refs = {refs}\nrepository = \"127.0.0.1:5000/a\"\ntags = {tags}\n\
             secret_env = \"DOCKPUB_TEST_HOOK\"\n"
        )
    };
    let env = [("DOCKPUB_TEST_HOOK", "s")];
    let good = trigger("app", r#"["refs/heads/main"]"#, r#"["{branch}"]"#);
    let cases = [
        (
            trigger("app", r#"["main"]"#, r#"["{branch}"]"#),
            "refs/heads/main",
        ),
        (
            trigger("app", r#"["refs/heads/main"]"#, r#"["{brnch}"]"#),
            "{brnch}",
        ),
        (
            trigger("a/b", r#"["refs/heads/main"]"#, r#"["x"]"#),
            "name must be",
        ),
        (format!("{good}{good}"), "used twice"),
        (
            good.replace("https://git.example.com/a.git", "https://u:p@h/a.git"),
            "git_password",
        ),
        (
            "[git.\"h\"]\nusername = \"u\"\npassword_env = \"DOCKPUB_TEST_UNSET_GIT\"\n".into(),
            "DOCKPUB_TEST_UNSET_GIT",
        ),
        (
            "[git.\"h\"]\nusername = \"u\"\n".into(),
            "username needs password_env",
        ),
        (
            "[git.\"h\"]\nssh_key = \"/nonexistent/key\"\n".into(),
            "/nonexistent/key",
        ),
        (
            "max_concurrent_git_fetches = 0\n".into(),
            "max_concurrent_git_fetches",
        ),
        (
            format!(
                "max_tags_per_build = 1\n{}",
                trigger("app", r#"["refs/heads/main"]"#, r#"["{branch}", "latest"]"#)
            ),
            "at most 1 (max_tags_per_build)",
        ),
        (
            format!(
                "{good}build_args = [{}]\n",
                (0..65)
                    .map(|n| format!("\"A{n}=x\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "at most 64 (build args)",
        ),
        ("max_tags_per_build = 257\n".into(), "max_tags_per_build"),
    ];
    for (config, says) in &cases {
        refused(&[], config, &env, says);
    }
    refused(&[], &good, &[], "DOCKPUB_TEST_HOOK");
    assert_eq!(start(&[], &good, &env).code, None, "a good trigger starts");
}

/// `ssh-keygen` makes a key of `kind` (with `passphrase`) at `path`.
fn ssh_keygen(path: &Path, kind: &[&str], passphrase: &str) {
    let made = Command::new("ssh-keygen")
        .args(["-q", "-C", "test", "-N", passphrase, "-f"])
        .arg(path)
        .args(kind)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
}

#[test]
fn ssh_keys_and_a_triggers_ssh_ids_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str, kind: &[&str], passphrase: &str| {
        let path = dir.path().join(name);
        ssh_keygen(&path, kind, passphrase);
        path.display().to_string()
    };
    let good = key("good", &["-t", "ed25519"], "");
    let ecdsa = key("ecdsa", &["-t", "ecdsa", "-b", "256"], "");
    let rsa = key("rsa", &["-t", "rsa", "-b", "2048"], "");
    let p521 = key("p521", &["-t", "ecdsa", "-b", "521"], "");
    let encrypted = key("encrypted", &["-t", "ed25519"], "a passphrase");
    let ssh = |id: &str, file: &str| format!("[ssh.{id}]\nfile = \"{file}\"\n");
    let trigger = |ids: &str| {
        format!(
            "{}[[triggers]]\nname = \"app\"\ngit = \"https://git.example.com/a.git\"\n\
             refs = [\"refs/heads/main\"]\nrepository = \"127.0.0.1:5000/a\"\n\
             secret_env = \"DOCKPUB_TEST_HOOK\"\nssh = {ids}\n",
            ssh("default", &good)
        )
    };
    let env = [("DOCKPUB_TEST_HOOK", "s")];
    let cases = [
        (ssh("default", "/nonexistent/key"), "/nonexistent/key"),
        (
            ssh("default", &format!("{good}.pub")),
            "not an OpenSSH private key",
        ),
        (ssh("default", &rsa), "ssh-rsa key"),
        (ssh("default", &ecdsa), "ecdsa-sha2-nistp256 key"),
        (ssh("default", &p521), "ecdsa-sha2-nistp521 key"),
        (ssh("default", &encrypted), "encrypted"),
        (ssh("\"a b\"", &good), "ssh.a b"),
        (trigger(r#"["deploy"]"#), "'deploy'"),
        (trigger(r#"["default", "default"]"#), "more than once"),
    ];
    for (config, says) in &cases {
        refused(&[], config, &env, says);
    }
    let other = key("other", &["-t", "ed25519"], "");
    let all = format!("{}{}", ssh("default", &good), ssh("deploy", &other));
    assert_eq!(start(&[], &all, &[]).code, None, "good keys start");
    assert_eq!(
        start(&[], &trigger(r#"["default"]"#), &env).code,
        None,
        "a trigger with a known id starts"
    );
}
