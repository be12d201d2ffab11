//! DSSE (Dead Simple Signing Envelope) over the statement, signed with an
//! ed25519 or ECDSA P-256 key: the signature is over the pre-authentication
//! encoding `DSSEv1 <len type> <type> <len body> <body>`; an ECDSA signature is
//! DER, as OpenSSL and cosign write them.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ProvenanceError;

/// The envelope's media type, as a layer beside the statement.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the payload's bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The sha256 of the public key's DER (SubjectPublicKeyInfo), hex.
    pub keyid: String,
    /// Base64 of the signature.
    pub sig: String,
}

/// The `[provenance] signing_key_file` key.
#[derive(Clone)]
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        write!(f, "SigningKey({})", self.public_key_pem().trim())
    }
}

impl SigningKey {
    /// Reads a PEM private key: PKCS#8 (ed25519 or P-256) or SEC1 (P-256).
    pub fn from_file(path: &Path) -> Result<SigningKey, ProvenanceError> {
        let shown = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|err| ProvenanceError::KeyUnreadable {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
        SigningKey::from_pem(&pem).ok_or(ProvenanceError::KeyUnsupported { path: shown })
    }

    fn from_pem(pem: &str) -> Option<SigningKey> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Some(SigningKey::Ed25519(key));
        }
        let secret = p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .ok()?;
        Some(SigningKey::P256(secret.into()))
    }

    /// The public key, PEM (SubjectPublicKeyInfo), as OpenSSL reads it.
    pub fn public_key_pem(&self) -> String {
        let pem = match self {
            SigningKey::Ed25519(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            SigningKey::P256(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
        };
        pem.expect("a valid public key always encodes")
    }

    /// `payload` of `payload_type` in a signed envelope.
    pub fn sign(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let message = pae(payload_type, payload);
        let sig = match self {
            SigningKey::Ed25519(key) => key.sign(&message).to_bytes().to_vec(),
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(&message);
                signature.to_der().as_bytes().to_vec()
            }
        };
        Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: key_id(&self.public_key_pem()),
                sig: STANDARD.encode(sig),
            }],
        }
    }
}

/// The pre-authentication encoding DSSE signs.
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

fn key_id(public_pem: &str) -> String {
    hex::encode(Sha256::digest(public_pem.trim().as_bytes()))
}

/// Checks that some signature of `envelope` verifies with `public_pem`;
/// returns the payload's bytes.
pub fn verify(envelope: &Envelope, public_pem: &str) -> Result<Vec<u8>, ProvenanceError> {
    let unreadable = |what: &str| ProvenanceError::EnvelopeUnreadable(what.to_string());
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|_| unreadable("the payload is not base64"))?;
    let message = pae(&envelope.payload_type, &payload);
    let ed25519 = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem);
    let p256 = p256::ecdsa::VerifyingKey::from_public_key_pem(public_pem);
    if ed25519.is_err() && p256.is_err() {
        return Err(ProvenanceError::PublicKeyUnsupported);
    }
    let verifies = |sig: &[u8]| match (&ed25519, &p256) {
        (Ok(key), _) => ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|sig| key.verify_strict(&message, &sig).is_ok()),
        (_, Ok(key)) => p256::ecdsa::DerSignature::from_bytes(sig)
            .is_ok_and(|sig| key.verify(&message, &sig).is_ok()),
        _ => false,
    };
    let any = envelope
        .signatures
        .iter()
        .filter_map(|s| STANDARD.decode(&s.sig).ok())
        .any(|sig| verifies(&sig));
    if any {
        Ok(payload)
    } else {
        Err(ProvenanceError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl genpkey -algorithm ed25519` and
    // `openssl ecparam -name prime256v1 -genkey -noout` (SEC1).
    const ED25519: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIL0+R4FRgeSGRmgNidfAR0zG0PaY6EteSdchVw+CHuGt\n\
        -----END PRIVATE KEY-----\n";
    const P256_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----\n\
        MHcCAQEEIHzGrjTYbmRMRGCMx4eaNVrdrgFuxvo4+qI/GzDT7kyvoAoGCCqGSM49\n\
        AwEHoUQDQgAEyv19tT2lUyZ8DI0LVEX9DF9j7bFOQo9lg5otHu1rIHbvDUYcVJ+C\n\
        hUlMsKe0S2QLk/GcQ+EgsiWVzaDKgAOAgQ==\n\
        -----END EC PRIVATE KEY-----\n";

    #[test]
    fn the_encoding_is_dsse_v1s() {
        assert_eq!(pae("t", b"body"), b"DSSEv1 1 t 4 body".to_vec());
    }

    #[test]
    fn both_kinds_of_key_sign_and_a_changed_payload_fails() {
        for pem in [ED25519, P256_SEC1] {
            let key = SigningKey::from_pem(pem).unwrap();
            let envelope = key.sign("application/vnd.in-toto+json", b"{\"a\":1}");
            let public = key.public_key_pem();
            assert_eq!(verify(&envelope, &public).unwrap(), b"{\"a\":1}".to_vec());
            let tampered = Envelope {
                payload: STANDARD.encode(b"{\"a\":2}"),
                ..envelope
            };
            assert!(matches!(
                verify(&tampered, &public),
                Err(ProvenanceError::BadSignature)
            ));
        }
    }

    #[test]
    fn anything_else_is_refused_as_a_key() {
        assert!(SigningKey::from_pem("not a key").is_none());
        let rsa_like = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem(rsa_like).is_none());
    }
}
