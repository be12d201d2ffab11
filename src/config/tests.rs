use super::provenance::ProvenanceFlagTable;
use super::registries::RegistryLogin;
use super::*;
use crate::builds::access::Scope;

/// The file's layer alone, as `load` reads it (without its unknown-key check).
fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::extract(&Figment::from(Toml::string(text)))
}

#[test]
fn flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        "bind = \"0.0.0.0:9000\"\nmax_concurrent_builds = 5\nbuild_network = \"none\"\n",
    )
    .unwrap();
    let config = Config::load(ServeArgs {
        config: Some(file),
        builders: BuilderFlags {
            max_concurrent_builds: Some(3),
            ..BuilderFlags::default()
        },
        ..ServeArgs::default()
    })
    .unwrap();
    assert_eq!(config.server.bind, "0.0.0.0:9000");
    assert_eq!(config.builders.max_concurrent_builds, 3);
    assert_eq!(config.builds.build_network.as_deref(), Some("none"));
    assert_eq!(config.server.data_dir, PathBuf::from("./data"));
}

#[test]
fn empty_means_default_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "build_network = \"\"\n").unwrap();
    let config = Config::load(ServeArgs {
        config: Some(file.clone()),
        ..ServeArgs::default()
    })
    .unwrap();
    assert_eq!(config.builds.build_network, None);

    std::fs::write(&file, "bindd = \"x\"\n").unwrap();
    let err = Config::load(ServeArgs {
        config: Some(file),
        ..ServeArgs::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("bindd"), "{err}");
}

#[test]
fn tokens_need_one_secret_a_valid_name_and_a_scope() {
    let refused = |entry: &str, words: &str| {
        let config = parse(&format!("[[tokens]]\n{entry}")).unwrap();
        let err = config.tokens.api_tokens().unwrap_err().to_string();
        assert!(err.contains(words), "{entry}: {err}");
    };
    let digest = "a".repeat(64);
    refused(
        "name = \"a\"\nscopes = [\"read\"]",
        "one of token_env and token_sha256",
    );
    refused(
        &format!(
            "name = \"a\"\ntoken_sha256 = \"{digest}\"\ntoken_env = \"X\"\nscopes = [\"read\"]"
        ),
        "one of",
    );
    refused(
        "name = \"a\"\ntoken_sha256 = \"abc\"\nscopes = [\"read\"]",
        "64 hex digits",
    );
    refused(
        &format!("name = \"a b\"\ntoken_sha256 = \"{digest}\"\nscopes = [\"read\"]"),
        "name",
    );
    refused(
        &format!("name = \"a\"\ntoken_sha256 = \"{digest}\"\nscopes = []"),
        "scopes",
    );
    refused(
        "name = \"a\"\ntoken_env = \"DOCKPUB_TEST_UNSET_TOKEN_VAR\"\nscopes = [\"read\"]",
        "not set",
    );
    let config = parse(&format!(
        "[[tokens]]\nname = \"ci\"\ntoken_sha256 = \"{digest}\"\nscopes = [\"read\", \"build\"]\n\n[auth]\ntokens = [\"legacy\"]\n"
    ))
    .unwrap();
    let tokens = config.tokens.api_tokens().unwrap();
    assert_eq!(tokens[0].grant.scope, Scope::Build);
    assert_eq!(tokens[1].grant.name.as_deref(), Some("auth-token-1"));
    assert_eq!(tokens[1].grant.scope, Scope::Admin);
}

#[test]
fn the_shipped_config_toml_is_the_defaults() {
    let shipped = include_str!("../../config.toml");
    let parsed = parse(shipped).expect("config.toml parses");
    assert_eq!(parsed, Config::default());
    let example = shipped
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .skip_while(|line| !line.starts_with("[registries."))
        .filter(|line| line.starts_with('[') || is_example_key(line))
        .collect::<Vec<_>>()
        .join("\n");
    let example = parse(&example).expect("the registries example parses");
    assert_eq!(example.registries.logins["docker.io"].username, "alice");
    assert_eq!(
        example.builders.entries.len(),
        2,
        "the [[builders]] example parses"
    );
    assert_eq!(example.builders.entries[1].max_concurrent_builds, Some(4));
}

/// `key = value` of a commented example, as opposed to the prose around it.
fn is_example_key(line: &str) -> bool {
    line.split_once(" = ")
        .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

#[test]
fn build_limits_must_fit_the_build_api() {
    let limits = |memory, shares| BuildSection {
        build_memory_bytes: memory,
        build_cpu_shares: shares,
        ..BuildSection::default()
    };
    assert!(limits(0, 0).validate().is_ok());
    assert!(limits(64 << 20, 512).validate().is_ok());
    assert!(limits(i32::MAX as u64, 262_144).validate().is_ok());
    assert!(limits(i32::MAX as u64 + 1, 0).validate().is_err());
    assert!(limits(1024, 0).validate().is_err());
    assert!(limits(0, 1).validate().is_err());
}

#[test]
fn a_login_needs_exactly_one_password_source() {
    let login = |password: Option<&str>, password_env: Option<&str>| RegistrySection {
        logins: [(
            "r.example".to_string(),
            RegistryLogin {
                username: "u".into(),
                password: password.map(|p| Secret::new(p.into())),
                password_env: password_env.map(str::to_string),
            },
        )]
        .into(),
    };
    assert!(login(Some("p"), None).validate().is_ok());
    assert!(login(None, None).validate().is_err());
    assert!(login(Some("p"), Some("PATH")).validate().is_err());
    let shown = format!("{:?}", login(Some("hunter2"), None));
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn webhooks_need_known_events_http_urls_and_their_secrets() {
    let hook = |url: &str, rest: &str| format!("[[webhooks]]\nurl = \"{url}\"\n{rest}\n");
    assert!(parse(&hook(
        "http://x/",
        "events = [\"finished\"]\nsecret_env = \"PATH\""
    ))
    .is_err());
    let config = parse(&hook("http://x/", "secret_env = \"PATH\"")).unwrap();
    assert_eq!(
        config.webhooks.targets[0].events.len(),
        3,
        "the final events by default"
    );
    let settings = config.webhooks.webhook_settings().unwrap();
    assert!(!format!("{settings:?}").contains(&std::env::var("PATH").unwrap()));
    let unset = parse(&hook("http://x/", "secret_env = \"DOCKPUB_SURELY_UNSET\"")).unwrap();
    let err = unset.validate().unwrap_err().to_string();
    assert!(err.contains("DOCKPUB_SURELY_UNSET"), "{err}");
    let ftp = parse(&hook("ftp://x/", "secret_env = \"PATH\"")).unwrap();
    assert!(ftp.validate().is_err());
    let hosts_without_secret = WebhookSection {
        allowed_callback_hosts: vec!["hooks.example.com".into()],
        ..WebhookSection::default()
    };
    let err = hosts_without_secret.validate().unwrap_err().to_string();
    assert!(err.contains("callback_secret_env"), "{err}");
    let zero_wait = WebhookSection {
        webhook_retry_backoff_secs: vec![1, 0],
        ..WebhookSection::default()
    };
    assert!(zero_wait.validate().is_err());
}

#[test]
fn builders_are_checked_at_start() {
    let with = |entry: &str| -> Result<Config, String> {
        let config = parse(entry).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    };
    let ok = with(
        "[[builders]]\nname = \"a\"\nhost = \"unix:///x.sock\"\nplatforms = [\"linux/arm64/v8\"]\n",
    )
    .unwrap();
    assert_eq!(ok.builders.entries[0].max_concurrent_builds, None);
    let bad = [
        ("name = \"a b\"\nhost = \"unix:///x\"", "name"),
        ("name = \"a\"\nhost = \"http://x\"", "host"),
        ("name = \"a\"\nhost = \"unix:///x\"\ntls_ca = \"/x\"", "tcp://"),
        ("name = \"a\"\nhost = \"tcp://h:1\"\ntls_ca = \"/x\"", "tls_key"),
        ("name = \"a\"\nhost = \"tcp://h:1\"\ntls_ca = \"/no\"\ntls_cert = \"/no\"\ntls_key = \"/no\"", "/no"),
        ("name = \"a\"\nhost = \"unix:///x\"\nmax_concurrent_builds = 0", "at least 1"),
        ("name = \"a\"\nhost = \"unix:///x\"\nplatforms = [\"amd64\"]", "platform"),
        ("name = \"a\"\nhost = \"unix:///x\"\ntls = true", "unknown field"),
    ];
    for (entry, says) in bad {
        let err = with(&format!("[[builders]]\n{entry}\n")).unwrap_err();
        assert!(err.contains(says), "{entry}: {err}");
    }
    let twice = "[[builders]]\nname = \"a\"\nhost = \"unix:///x\"\n".repeat(2);
    assert!(with(&twice).unwrap_err().contains("twice"));
    let both = "docker_host = \"unix:///y\"\n[[builders]]\nname = \"a\"\nhost = \"unix:///x\"\n";
    assert!(with(both).unwrap_err().contains("docker_host"));
}

#[test]
fn zero_slots_is_refused() {
    let err = Config::load(ServeArgs {
        config: Some(PathBuf::from("/nonexistent/none.toml")),
        ..ServeArgs::default()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let config = BuilderSection {
        max_concurrent_builds: 0,
        ..BuilderSection::default()
    };
    assert!(config.validate().is_err());
}

#[test]
fn every_key_belongs_to_one_section_and_every_flag_sets_a_key() {
    let keys = Config::known_keys();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a key in two sections: {keys:?}");
    let serve = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    for flag in serve.get_arguments().map(|arg| arg.get_id().as_str()) {
        let key = match flag {
            "config" => continue,
            "api_tokens" => "auth",
            // The flags of `[provenance]` set keys of its table.
            "enabled" | "signing_key_file" | "builder_id" => "provenance",
            other => other,
        };
        assert!(keys.contains(&key), "--{flag} sets no key of the file");
    }
}

#[test]
fn flags_replace_the_files_lists_and_empty_ones_mean_none() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let text = "allowed_hosts = [\"a.example\"]\n[auth]\ntokens = [\"from-file\"]\n";
    std::fs::write(&file, text).unwrap();
    let load = |tokens: &[&str], hosts: &[&str]| {
        let list = |items: &[&str]| Some(items.iter().map(|s| s.to_string()).collect());
        Config::load(ServeArgs {
            config: Some(file.clone()),
            tokens: TokenFlags {
                api_tokens: list(tokens),
            },
            server: ServerFlags {
                allowed_hosts: list(hosts),
                ..ServerFlags::default()
            },
            ..ServeArgs::default()
        })
        .unwrap()
    };
    let config = load(&["t1", "t2"], &["b.example"]);
    assert_eq!(config.tokens.auth.tokens.len(), 2);
    assert_eq!(config.tokens.auth.tokens[0].expose(), "t1");
    assert_eq!(config.server.allowed_hosts, ["b.example"]);
    let config = load(&[""], &[""]);
    assert!(config.tokens.auth.tokens.is_empty());
    assert!(config.server.allowed_hosts.is_empty());
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[[builders]]\nname = \"a\"\nhost = 7\n").unwrap();
    let err = Config::load(ServeArgs {
        config: Some(file.clone()),
        ..ServeArgs::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("\"builders.0.host\""), "{err}");
    // figment names the file relative to the working directory when it can.
    let folder = dir.path().file_name().unwrap().to_string_lossy();
    assert!(err.contains(&format!("{folder}/config.toml")), "{err}");
}

#[test]
fn provenance_flags_set_the_table_and_leave_the_files_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let text = "[provenance]\nenabled = true\nbuilder_id = \"from-file\"\n";
    std::fs::write(&file, text).unwrap();
    let config = Config::load(ServeArgs {
        config: Some(file),
        provenance: ProvenanceFlags {
            table: ProvenanceFlagTable {
                enabled: Some(false),
                ..ProvenanceFlagTable::default()
            },
        },
        ..ServeArgs::default()
    })
    .unwrap();
    let settings = config.provenance.provenance_settings().unwrap();
    assert!(!settings.enabled);
    assert_eq!(settings.builder_id, "from-file");
    assert!(settings.key.is_none());
    let unknown = parse("[provenance]\nsigning_key = \"x\"\n");
    assert!(unknown.is_err(), "a misspelt key is refused");
    let missing = parse("[provenance]\nsigning_key_file = \"/nonexistent/key.pem\"\n").unwrap();
    let err = missing
        .provenance
        .provenance_settings()
        .unwrap_err()
        .to_string();
    assert!(err.contains("provenance.signing_key_file"), "{err}");
}
