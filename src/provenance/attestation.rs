//! The objects buildx stores provenance in: per image manifest, an attestation
//! manifest (an OCI image manifest whose layer is the statement) that the
//! image index lists as platform `unknown/unknown` with
//! `vnd.docker.reference.type: attestation-manifest` and
//! `vnd.docker.reference.digest: <the image manifest>`.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::dsse::{Envelope, DSSE_MEDIA_TYPE};
use super::{IN_TOTO_MEDIA_TYPE, SLSA_PROVENANCE_V1};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

/// Bytes to push, with their media type and digest.
#[derive(Debug, Clone)]
pub struct AttestationBlob {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl AttestationBlob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> AttestationBlob {
        AttestationBlob {
            media_type,
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            bytes,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
            "annotations": { PREDICATE_TYPE: SLSA_PROVENANCE_V1 },
        })
    }
}

/// The statement (and its envelope, when signed) and one attestation manifest
/// per image manifest.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The statement, as its layer holds it.
    pub statement: AttestationBlob,
    /// The signed envelope, a second layer, when a key signs.
    pub envelope: Option<AttestationBlob>,
    /// The config every attestation manifest names.
    pub config: AttestationBlob,
    /// `(image manifest digest, its attestation manifest)`.
    pub manifests: Vec<(String, AttestationBlob)>,
}

/// The annotations of an attestation manifest's index entry.
pub fn index_annotations(image_digest: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "vnd.docker.reference.type",
            "attestation-manifest".to_string(),
        ),
        ("vnd.docker.reference.digest", image_digest.to_string()),
    ]
}

impl Attestation {
    /// The objects for `statement` (its exact bytes) about `image_digests`.
    pub fn new(
        statement: Vec<u8>,
        envelope: Option<&Envelope>,
        image_digests: &[String],
    ) -> Attestation {
        let statement = AttestationBlob::new(IN_TOTO_MEDIA_TYPE, statement);
        let envelope = envelope.map(|envelope| {
            let bytes = serde_json::to_vec(envelope).expect("an envelope always serializes");
            AttestationBlob::new(DSSE_MEDIA_TYPE, bytes)
        });
        let layers: Vec<&AttestationBlob> = std::iter::once(&statement).chain(&envelope).collect();
        let config = json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            },
        });
        let config = AttestationBlob::new(
            OCI_CONFIG,
            serde_json::to_vec(&config).expect("a config always serializes"),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config.media_type,
                "digest": config.digest,
                "size": config.bytes.len(),
            },
            "layers": layers.iter().map(|l| l.descriptor()).collect::<Vec<_>>(),
        });
        // One manifest serves every image: each index entry says which image it is for.
        let manifest = AttestationBlob::new(
            OCI_MANIFEST,
            serde_json::to_vec(&manifest).expect("a manifest always serializes"),
        );
        let manifests = image_digests
            .iter()
            .map(|digest| (digest.clone(), manifest.clone()))
            .collect();
        Attestation {
            statement,
            envelope,
            config,
            manifests,
        }
    }

    /// The blobs to push before the manifests.
    pub fn blobs(&self) -> impl Iterator<Item = &AttestationBlob> {
        std::iter::once(&self.statement)
            .chain(&self.envelope)
            .chain(std::iter::once(&self.config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_image_gets_an_attestation_manifest_whose_layer_is_the_statement() {
        let images = vec!["sha256:aa".to_string(), "sha256:bb".to_string()];
        let attestation = Attestation::new(b"{}".to_vec(), None, &images);
        assert_eq!(attestation.manifests.len(), 2);
        let (image, manifest) = &attestation.manifests[1];
        assert_eq!(image, "sha256:bb");
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], IN_TOTO_MEDIA_TYPE);
        assert_eq!(layer["digest"], attestation.statement.digest);
        assert_eq!(layer["annotations"][PREDICATE_TYPE], SLSA_PROVENANCE_V1);
        assert_eq!(attestation.blobs().count(), 2);
    }
}
