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
