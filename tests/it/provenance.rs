//! Provenance: every pushed image gets an in-toto statement (SLSA provenance
//! v1) in an attestation manifest of its tag's index, as buildx stores it;
//! signed with the configured key, checked here with OpenSSL, not dockpub.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{multipart::Form, multipart::Part, Client};
use serde_json::Value;

use crate::common::git::{git, server_with_env, write, GitDaemon};
use crate::common::{field, tar_of, unique, Server, TestEnv, PROVENANCE_VARIABLE};

const BUILD_TIME: Duration = Duration::from_secs(120);
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";

/// The base in the test registry (an index of two platforms, pushed by scripts/test).
fn registry_base() -> String {
    std::env::var("DOCKPUB_TEST_PLATFORM_BASE").expect("DOCKPUB_TEST_PLATFORM_BASE (scripts/test)")
}

type Login<'a> = Option<(&'a str, &'a str)>;

/// GET `/v2/PATH/KIND/REFERENCE` of the registry `repository` is on: the
/// digest it names and the bytes.
fn registry_get(repository: &str, kind: &str, reference: &str, login: Login) -> (String, Vec<u8>) {
    let (registry, path) = repository.split_once('/').unwrap();
    let mut request = Client::new()
        .get(format!("http://{registry}/v2/{path}/{kind}/{reference}"))
        .header("Accept", ACCEPT);
    if let Some((user, password)) = login {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().expect("ask the registry");
    assert!(
        response.status().is_success(),
        "{kind}/{reference}: {}",
        response.status()
    );
    let digest = response
        .headers()
        .get("Docker-Content-Digest")
        .map(|d| d.to_str().unwrap().to_string())
        .unwrap_or_default();
    (digest, response.bytes().unwrap().to_vec())
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// What the registry serves under `repository:tag`: the image manifest's
/// digest, and the statement its attestation manifest's layer holds.
fn served_provenance(repository: &str, tag: &str, login: Login) -> (String, Vec<u8>, Value) {
    let (_, index) = registry_get(repository, "manifests", tag, login);
    let index = json(&index);
    assert_eq!(index["mediaType"], INDEX, "{index}");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "an image and its attestation: {index}");
    let image = &entries[0];
    assert_eq!(image["platform"]["os"], "linux", "{index}");
    let attestation = &entries[1];
    assert_eq!(attestation["platform"]["os"], "unknown", "{index}");
    assert_eq!(
        attestation["platform"]["architecture"], "unknown",
        "{index}"
    );
    let annotations = &attestation["annotations"];
    assert_eq!(
        annotations["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(annotations["vnd.docker.reference.digest"], image["digest"]);
    let (_, manifest) = registry_get(
        repository,
        "manifests",
        attestation["digest"].as_str().unwrap(),
        login,
    );
    let manifest = json(&manifest);
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"], "application/vnd.in-toto+json",
        "{manifest}"
    );
    assert_eq!(
        layer["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );
    let (_, statement) = registry_get(
        repository,
        "blobs",
        layer["digest"].as_str().unwrap(),
        login,
    );
    let image_digest = image["digest"].as_str().unwrap().to_string();
    (image_digest, statement.clone(), json(&statement))
}

/// The registry's own digest of the base's tag.
fn base_digest() -> String {
    let base = registry_base();
    let (repository, tag) = base.rsplit_once(':').unwrap();
    registry_get(repository, "manifests", tag, None).0
}

fn dependency<'a>(statement: &'a Value, uri_part: &str) -> &'a Value {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uri"].as_str().unwrap().contains(uri_part))
        .unwrap_or_else(|| panic!("no dependency {uri_part}: {statement}"))
}

/// `openssl ARGS`, and whether it succeeded.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl")
        .status
        .success()
}

/// DSSE's pre-authentication encoding, written out here from the spec.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    message.extend_from_slice(payload);
    message
}

/// Whether OpenSSL verifies `sig` over `payload` with the PEM `public_key`.
fn openssl_verifies(
    dir: &Path,
    public_key: &str,
    payload: &[u8],
    sig: &[u8],
    ed25519: bool,
) -> bool {
    std::fs::write(dir.join("pub.pem"), public_key).unwrap();
    std::fs::write(
        dir.join("pae.bin"),
        pae("application/vnd.in-toto+json", payload),
    )
    .unwrap();
    std::fs::write(dir.join("sig.bin"), sig).unwrap();
    if ed25519 {
        openssl(
            dir,
            &[
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "pae.bin",
                "-sigfile", "sig.bin",
            ],
        )
    } else {
        openssl(
            dir,
            &[
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig.bin",
                "pae.bin",
            ],
        )
    }
}

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
