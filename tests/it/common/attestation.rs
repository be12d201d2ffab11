//! What a registry serves of a provenance attestation, read with its own HTTP
//! API, and DSSE signatures checked with OpenSSL: for tests/it/provenance.rs,
//! independent of dockpub's code.

use std::path::Path;
use std::process::Command;

use reqwest::blocking::Client;
use serde_json::Value;

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";

/// The base in the test registry (an index of two platforms, pushed by scripts/test).
pub fn registry_base() -> String {
    std::env::var("DOCKPUB_TEST_PLATFORM_BASE").expect("DOCKPUB_TEST_PLATFORM_BASE (scripts/test)")
}

pub type Login<'a> = Option<(&'a str, &'a str)>;

/// GET `/v2/PATH/KIND/REFERENCE` of the registry `repository` is on: the
/// digest it names and the bytes.
pub fn registry_get(
    repository: &str,
    kind: &str,
    reference: &str,
    login: Login,
) -> (String, Vec<u8>) {
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

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// What the registry serves under `repository:tag`: the image manifest's
/// digest, and the statement its attestation manifest's layer holds.
pub fn served_provenance(repository: &str, tag: &str, login: Login) -> (String, Vec<u8>, Value) {
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
pub fn base_digest() -> String {
    let base = registry_base();
    let (repository, tag) = base.rsplit_once(':').unwrap();
    registry_get(repository, "manifests", tag, None).0
}

pub fn dependency<'a>(statement: &'a Value, uri_part: &str) -> &'a Value {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uri"].as_str().unwrap().contains(uri_part))
        .unwrap_or_else(|| panic!("no dependency {uri_part}: {statement}"))
}

/// `openssl ARGS`, and whether it succeeded.
pub fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl")
        .status
        .success()
}

/// DSSE's pre-authentication encoding, written out here from the spec.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
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
pub fn openssl_verifies(
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
