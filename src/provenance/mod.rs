//! Provenance: an in-toto statement with an SLSA provenance v1 predicate saying
//! what dockpub built, from what, on which builder and when, written only from
//! what dockpub observed; optionally signed as a DSSE envelope; and the OCI
//! objects buildx uses to store it beside the image (an attestation manifest in
//! the tag's image index). The registry exchange itself is `registry`'s.

mod attestation;
mod bases;
mod dsse;
mod statement;

pub use attestation::{index_annotations, Attestation};
pub use bases::{bases_of, observed_base, BaseImage};
pub use dsse::{verify, Envelope, SigningKey};
pub use statement::{statement, Observed, Source, Subject};

/// The statement's own media type, as buildx writes it.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// dockpub's build type: what `externalParameters` mean.
pub const BUILD_TYPE: &str = "https://github.com/dockpub/dockpub/provenance/build/v1";

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("cannot read the signing key {path}: {reason}")]
    KeyUnreadable { path: String, reason: String },
    #[error(
        "the signing key {path} is neither an ed25519 nor an ECDSA P-256 private key in PEM \
         (PKCS#8 `PRIVATE KEY`, or SEC1 `EC PRIVATE KEY`)"
    )]
    KeyUnsupported { path: String },
    #[error("the public key is neither an ed25519 nor an ECDSA P-256 public key in PEM")]
    PublicKeyUnsupported,
    #[error("the envelope does not parse: {0}")]
    EnvelopeUnreadable(String),
    #[error("the signature does not verify with the public key")]
    BadSignature,
}
