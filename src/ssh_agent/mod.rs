//! The SSH agent dockpub offers a build's `RUN --mount=type=ssh` steps: the
//! `[ssh.ID]` private keys, held in memory, answering the agent protocol's two
//! questions a client asks (which keys? sign this) and nothing else. The key
//! never leaves the process: a step gets signatures, as from `ssh-agent`.
//!
//! `keys` reads and checks a key file; `protocol` answers the agent protocol
//! (draft-miller-ssh-agent) on a byte stream, whatever carries it (BuildKit's
//! session, in `docker`).

mod keys;
mod protocol;

pub use keys::{AgentKey, DEFAULT_ID};
pub use protocol::AgentConnection;

use keys::MAX_KEY_FILE_BYTES;
use protocol::MAX_MESSAGE_BYTES;

/// Why a key cannot be served, or an agent connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is larger than {MAX_KEY_FILE_BYTES} bytes: not a private key")]
    TooLarge(String),
    // ssh-key's message says what it found; it never quotes the key.
    #[error("{path} is not an OpenSSH private key ({reason})")]
    NotAKey { path: String, reason: String },
    #[error("{0} is encrypted: give a key without a passphrase (it is held in memory only)")]
    Encrypted(String),
    #[error(
        "{path} is an {algorithm} key: dockpub's agent signs with Ed25519 keys only \
         (ssh-keygen -t ed25519; see README, \"SSH mounts\")"
    )]
    Unsupported { path: String, algorithm: String },
    #[error("an SSH agent request of {0} bytes is longer than {MAX_MESSAGE_BYTES}")]
    TooLong(usize),
}
