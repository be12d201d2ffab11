//! Provenance: every pushed image gets an in-toto statement (SLSA provenance
//! v1) in an attestation manifest of its tag's index, as buildx stores it;
//! signed with the configured key, checked here with OpenSSL, not dockpub.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{multipart::Form, multipart::Part};
use serde_json::Value;

use crate::common::attestation::{
    base_digest, dependency, openssl, openssl_verifies, registry_base, served_provenance,
};
use crate::common::git::{git, server_with_env, write, GitDaemon};
use crate::common::{field, tar_of, unique, Server, TestEnv, PROVENANCE_VARIABLE};

const BUILD_TIME: Duration = Duration::from_secs(120);
/// The envelope the API serves for build `id`: its payload and its signature.
fn envelope_of(server: &Server, id: i64) -> (Vec<u8>, Vec<u8>) {
    let response = server.get(&format!("/api/v1/builds/{id}/provenance"));
    assert_eq!(response.status(), 200);
    let envelope: Value = response.json().unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let sig = b64
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    (payload, sig)
}

fn public_key(server: &Server) -> String {
    let response = server.get("/api/v1/provenance/public-key");
    assert_eq!(response.status(), 200);
    response.text().unwrap()
}

/// A server signing with a key `openssl ARGS` writes to key.pem.
fn signing_server(dir: &Path, keygen: &[&str]) -> (tempfile::TempDir, Server) {
    let mut args = keygen.to_vec();
    args.extend(["-out", "key.pem"]);
    assert!(openssl(dir, &args), "openssl {args:?}");
    let key = dir.join("key.pem");
    let config = format!("[provenance]\nsigning_key_file = \"{}\"\n", key.display());
    server_with_env(&config, &[(PROVENANCE_VARIABLE, "true")])
}

#[test]
fn a_git_build_pushes_a_signed_statement_of_its_commit_and_base_beside_its_image() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let (_config, server) = signing_server(dir.path(), &["genpkey", "-algorithm", "ed25519"]);
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("app.git");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let dockerfile = format!(
        "FROM {}\nRUN echo {}\n",
        registry_base(),
        unique("provenance-git")
    );
    write(&repo, "Dockerfile", &dockerfile);
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "-m",
            "one",
        ],
    );
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let daemon = GitDaemon::start(root.path());
    let repository = format!("{}/{}", env.registry, unique("provenance-git"));
    let form = field(
        field(Form::new(), "repository", &repository),
        "git",
        &daemon.url("app.git"),
    );
    let id = server.submit(field(form, "tag", "v1"));
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.logs(id));
    assert_eq!(build["provenance"]["signed"], true, "{build}");

    let (image, bytes, statement) = served_provenance(&repository, "v1", None);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"].as_str(),
        image.strip_prefix("sha256:")
    );
    assert_eq!(
        build["provenance"]["digest"],
        format!("sha256:{}", sha256_hex(&bytes))
    );
    assert_eq!(
        dependency(&statement, "git+")["digest"]["gitCommit"],
        commit.as_str()
    );
    let base = dependency(&statement, "base/busybox");
    assert_eq!(
        base["digest"]["sha256"].as_str(),
        base_digest().strip_prefix("sha256:"),
        "{statement}"
    );
    let metadata = &statement["predicate"]["runDetails"]["metadata"];
    assert_eq!(metadata["invocationId"], id.to_string());

    let (payload, sig) = envelope_of(&server, id);
    assert_eq!(payload, bytes, "the API serves what the registry holds");
    let key = public_key(&server);
    assert!(openssl_verifies(dir.path(), &key, &payload, &sig, true));
    let tampered = String::from_utf8(payload.clone())
        .unwrap()
        .replace(&commit, &"0".repeat(40));
    assert!(!openssl_verifies(
        dir.path(),
        &key,
        tampered.as_bytes(),
        &sig,
        true
    ));

    let cli = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dockpub"))
            .args(["provenance", &id.to_string()])
            .args(extra)
            .env("DOCKPUB_URL", &server.base)
            .output()
            .unwrap()
    };
    let shown = cli(&[]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&commit));
    assert!(String::from_utf8_lossy(&shown.stderr).contains("signature verified"));
    assert!(openssl(
        dir.path(),
        &["genpkey", "-algorithm", "ed25519", "-out", "other.pem"]
    ));
    assert!(openssl(
        dir.path(),
        &["pkey", "-in", "other.pem", "-pubout", "-out", "other.pub"]
    ));
    let other = dir.path().join("other.pub");
    let wrong = cli(&["--public-key", other.to_str().unwrap()]);
    assert!(!wrong.status.success(), "another key verified it");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn an_upload_with_a_secret_and_a_login_is_attested_without_either_and_an_ecdsa_signature_verifies()
{
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let (_config, server) = signing_server(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
    );
    let secret_value = unique("secret-value");
    let dockerfile = format!(
        "FROM {}\nARG VERSION\nRUN --mount=type=secret,id=token test -s /run/secrets/token && echo {}\n",
        registry_base(),
        unique("provenance-upload")
    );
    let archive = tar_of(&[("Dockerfile", dockerfile.as_bytes()), ("app.txt", b"app")]);
    let repository = format!("{}/{}", env.auth_registry, unique("provenance-upload"));
    let form = Form::new().part(
        "context",
        Part::bytes(archive.clone()).file_name("context.tar"),
    );
    let form = field(
        field(form, "repository", &repository),
        "build_arg",
        "VERSION=1.0",
    );
    let form = field(form, "secret", &format!("token={secret_value}"));
    let form = field(
        field(form, "username", &env.auth_user),
        "password",
        &env.auth_password,
    );
    let id = server.submit(form);
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.logs(id));

    let login = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    let (image, bytes, statement) = served_provenance(&repository, "latest", login);
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"].as_str(),
        image.strip_prefix("sha256:")
    );
    let upload = dependency(&statement, "upload");
    assert_eq!(
        upload["digest"]["sha256"],
        sha256_hex(&archive),
        "{statement}"
    );
    let parameters = &statement["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(parameters["buildArgs"]["VERSION"], "1.0");
    assert_eq!(parameters["secrets"], serde_json::json!(["token"]));
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains(&secret_value), "the secret's value: {text}");
    assert!(!text.contains(&env.auth_password), "the password: {text}");
    let document = server
        .get(&format!("/api/v1/builds/{id}/provenance"))
        .text()
        .unwrap();
    assert!(!document.contains(&secret_value) && !document.contains(&env.auth_password));

    let (payload, sig) = envelope_of(&server, id);
    let key = public_key(&server);
    assert!(openssl_verifies(dir.path(), &key, &payload, &sig, false));
    let tampered = text.replace("1.0", "6.6");
    assert!(!openssl_verifies(
        dir.path(),
        &key,
        tampered.as_bytes(),
        &sig,
        false
    ));

    // A build that pushes nothing has none.
    let form = field(
        field(with_dockerfile(&dockerfile), "repository", &repository),
        "push",
        "false",
    );
    let unpushed = server.wait_final(server.submit(field(form, "secret", "token=x")), BUILD_TIME);
    assert_eq!(unpushed["status"], "succeeded", "{unpushed}");
    assert_eq!(unpushed["provenance"], Value::Null);
    let id = unpushed["id"].as_i64().unwrap();
    let none = server.get(&format!("/api/v1/builds/{id}/provenance"));
    assert_eq!(none.status(), 404);
    assert_eq!(
        none.json::<Value>().unwrap()["error"]["code"],
        "provenance_not_found"
    );
}

fn with_dockerfile(dockerfile: &str) -> Form {
    crate::common::with_file(dockerfile.to_string())
}

#[test]
fn without_a_key_there_is_no_public_key_and_bad_ids_are_refused() {
    let server = Server::in_process(&[]);
    let key = server.get("/api/v1/provenance/public-key");
    assert_eq!(key.status(), 404);
    assert_eq!(
        key.json::<Value>().unwrap()["error"]["code"],
        "provenance_not_found"
    );
    let bad = server.get("/api/v1/builds/x/provenance");
    assert_eq!(bad.status(), 400);
    let missing = server.get("/api/v1/builds/999/provenance");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().unwrap()["error"]["code"],
        "build_not_found"
    );
}

#[test]
fn a_legacy_build_without_a_key_is_attested_unsigned_and_lists_its_base_without_a_digest() {
    let env = TestEnv::get();
    let server = Server::start_with_env(&[], &[(PROVENANCE_VARIABLE, "true")]);
    let repository = format!("{}/{}", env.registry, unique("provenance-legacy"));
    let dockerfile = env.dockerfile(&format!("echo {}", unique("legacy")));
    let form = field(with_dockerfile(&dockerfile), "repository", &repository);
    let id = server.submit(field(form, "buildkit", "false"));
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}\n{}", server.logs(id));
    assert_eq!(build["provenance"]["signed"], false, "{build}");

    let (image, bytes, statement) = served_provenance(&repository, "latest", None);
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"].as_str(),
        image.strip_prefix("sha256:")
    );
    let internal = &statement["predicate"]["buildDefinition"]["internalParameters"];
    assert_eq!(internal["buildkit"], false, "{statement}");
    // The legacy builder reports no digest: none is guessed.
    let base = dependency(&statement, &env.base_image);
    assert!(base.get("digest").is_none(), "{base}");
    assert!(base["annotations"]["note"]
        .as_str()
        .unwrap()
        .contains("not observed"));
    let served = server.get(&format!("/api/v1/builds/{id}/provenance"));
    assert_eq!(
        served.headers()["content-type"],
        "application/vnd.in-toto+json"
    );
    assert_eq!(served.bytes().unwrap().to_vec(), bytes);
    let shown = Command::new(env!("CARGO_BIN_EXE_dockpub"))
        .args(["provenance", &id.to_string()])
        .env("DOCKPUB_URL", &server.base)
        .output()
        .unwrap();
    assert!(shown.status.success());
    assert!(String::from_utf8_lossy(&shown.stderr).contains("unsigned"));
}

#[test]
fn a_tag_named_as_the_platform_push_fails_the_build_rather_than_wait_on_its_own_lock() {
    let env = TestEnv::get();
    let server = Server::start_with_env(&[], &[(PROVENANCE_VARIABLE, "true")]);
    let repository = format!("{}/{}", env.registry, unique("provenance-own-tag"));
    let form = field(
        with_dockerfile(&env.dockerfile("true")),
        "repository",
        &repository,
    );
    let id = server.submit(field(form, "tag", "dockpub-platform-linux-amd64"));
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "failed", "{build}");
    let error = build["error"].as_str().unwrap();
    assert!(error.contains("use another tag"), "{error}");
    assert_eq!(build["tags_pushed"], serde_json::json!([]), "{build}");
}
