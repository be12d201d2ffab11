//! A private key file of `[ssh.ID]`, read and checked at start.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ssh_key::{Algorithm, PrivateKey};

use super::AgentError;

/// The id BuildKit asks for when a mount names none (`--mount=type=ssh`).
pub const DEFAULT_ID: &str = "default";
/// A key file larger than this is no OpenSSH private key of the kinds taken
/// (BuildKit's own agent reads at most 100 KiB).
pub const MAX_KEY_FILE_BYTES: u64 = 100 * 1024;

/// One `[ssh.ID]` key: its id and the private key, which never prints.
#[derive(Clone)]
pub struct AgentKey {
    /// The id a Dockerfile mounts it by (`--mount=type=ssh,id=…`).
    pub id: String,
    key: Arc<PrivateKey>,
}

impl AgentKey {
    /// Reads an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn load(id: &str, path: &Path) -> Result<Self, AgentError> {
        let shown = path.display().to_string();
        let unreadable = |source| AgentError::Unreadable {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut text = Vec::new();
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(AgentError::TooLarge(shown));
        }
        Self::from_openssh(id, &text, &shown)
    }

    /// The key in `text`, named `shown` in errors. Its cipher and type are read
    /// from the file's container first: ssh-key 0.6 misreads some ECDSA keys
    /// (about one P-256 key in a hundred, one P-521 key in five), so only
    /// Ed25519 keys are handed to it, and the others are refused by name.
    pub fn from_openssh(id: &str, text: &[u8], shown: &str) -> Result<Self, AgentError> {
        let unsupported = |algorithm: String| AgentError::Unsupported {
            path: shown.to_string(),
            algorithm,
        };
        if let Some((cipher, key_type)) = container_fields(text) {
            if cipher != "none" {
                return Err(AgentError::Encrypted(shown.to_string()));
            }
            if key_type != ED25519 {
                return Err(unsupported(key_type));
            }
        }
        let key = PrivateKey::from_openssh(text).map_err(|err| AgentError::NotAKey {
            path: shown.to_string(),
            reason: err.to_string(),
        })?;
        if key.is_encrypted() {
            return Err(AgentError::Encrypted(shown.to_string()));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(unsupported(key.algorithm().to_string()));
        }
        Ok(AgentKey {
            id: id.to_string(),
            key: Arc::new(key),
        })
    }

    /// The public half as `authorized_keys` writes it (`ssh-ed25519 AAAA…`).
    #[cfg(test)]
    pub fn public_openssh(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| String::from("(cannot encode the public key)"))
    }

    pub(super) fn private(&self) -> &PrivateKey {
        &self.key
    }
}

/// The one key type served.
const ED25519: &str = "ssh-ed25519";

/// The cipher (`none` when unencrypted) and the key type an OpenSSH private key
/// file names in its container, without decoding the key; None for anything else.
fn container_fields(text: &[u8]) -> Option<(String, String)> {
    use base64::Engine;
    use ssh_encoding::Decode;
    let body: String = std::str::from_utf8(text)
        .ok()?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let mut reader = bytes.strip_prefix(b"openssh-key-v1\0")?;
    let cipher = String::decode(&mut reader).ok()?;
    let _kdf = Vec::<u8>::decode(&mut reader).ok()?;
    let _kdf_options = Vec::<u8>::decode(&mut reader).ok()?;
    let _keys = u32::decode(&mut reader).ok()?;
    let public = Vec::<u8>::decode(&mut reader).ok()?;
    let key_type = String::decode(&mut public.as_slice()).ok()?;
    Some((cipher, key_type))
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentKey({}: {})", self.id, self.key.algorithm())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use ssh_key::private::{Ed25519Keypair, KeypairData};
    use ssh_key::LineEnding;

    /// An Ed25519 key from a fixed seed, as OpenSSH writes it.
    pub fn test_key_text(seed: u8) -> String {
        let pair = Ed25519Keypair::from_seed(&[seed; 32]);
        let key = PrivateKey::new(KeypairData::Ed25519(pair), "test").unwrap();
        key.to_openssh(LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn an_ed25519_key_loads_and_never_prints() {
        let text = test_key_text(1);
        let key = AgentKey::from_openssh("default", text.as_bytes(), "k").unwrap();
        assert!(key.public_openssh().starts_with("ssh-ed25519 "));
        let shown = format!("{key:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("default"));
    }

    /// ssh-keygen's key of `kind` with `passphrase`, as text.
    fn keygen(kind: &[&str], passphrase: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", passphrase, "-f"])
            .arg(&path)
            .args(kind)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn ecdsa_rsa_and_encrypted_keys_are_refused_by_name() {
        for (kind, says) in [
            (&["-t", "ecdsa", "-b", "256"][..], "ecdsa-sha2-nistp256"),
            (&["-t", "ecdsa", "-b", "521"][..], "ecdsa-sha2-nistp521"),
            (&["-t", "rsa", "-b", "2048"][..], "ssh-rsa"),
        ] {
            let err = AgentKey::from_openssh("a", &keygen(kind, ""), "k").unwrap_err();
            assert!(matches!(err, AgentError::Unsupported { .. }), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let encrypted = keygen(&["-t", "ed25519"], "a passphrase");
        let err = AgentKey::from_openssh("a", &encrypted, "k").unwrap_err();
        assert!(matches!(err, AgentError::Encrypted(_)), "{err}");
    }

    #[test]
    fn other_files_are_refused_saying_why() {
        let not_key = AgentKey::from_openssh("a", b"hello", "f").unwrap_err();
        assert!(matches!(not_key, AgentError::NotAKey { .. }), "{not_key}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![b'x'; MAX_KEY_FILE_BYTES as usize + 1]).unwrap();
        let large = AgentKey::load("a", file.path()).unwrap_err();
        assert!(matches!(large, AgentError::TooLarge(_)), "{large}");
        let missing = AgentKey::load("a", Path::new("/no/such/key")).unwrap_err();
        assert!(missing.to_string().contains("/no/such/key"), "{missing}");
    }
}
