//! Values that must never show: registry passwords, tokens, build secrets. Held in
//! memory only; their Debug output hides them.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::names::{is_plain_name, PLAIN_NAME_RULE};

/// The username credential helpers give with an identity token instead of a password.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Registry credentials for one build's push. Held in memory only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The registry username ([`IDENTITY_TOKEN_USER`] with an identity token).
    pub username: String,
    /// The password or identity token.
    pub password: Secret,
}

/// A string that never shows itself in Debug or Display output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Hides `value` from here on.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value itself, for where it must go (a login, a comparison); never
    /// for a log or a response.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Config files hold passwords too; they are read into a Secret at once.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// The largest build secret value accepted: secrets are tokens and keys, held
/// in memory for as long as their build waits.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// One secret. Its value never shows in Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct BuildSecret {
    /// The id a Dockerfile mounts it by: `RUN --mount=type=secret,id=…`.
    pub id: String,
    value: Arc<[u8]>,
}

impl BuildSecret {
    /// A secret with a valid id and at most [`MAX_SECRET_BYTES`]; the error
    /// says which rule `id` or `value` breaks.
    pub fn new(id: &str, value: Vec<u8>) -> Result<Self, String> {
        // BuildKit's `--mount=type=secret,id=…` and the docker CLI take these.
        if !is_plain_name(id) {
            return Err(format!("id '{id}' must be {PLAIN_NAME_RULE}"));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "the value of '{id}' is larger than {MAX_SECRET_BYTES} bytes"
            ));
        }
        Ok(BuildSecret {
            id: id.to_string(),
            value: value.into(),
        })
    }

    /// The secret's bytes, for the build that mounts it.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for BuildSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildSecret({}: ***)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let credentials = Credentials {
            username: "alice".into(),
            password: Secret::new("hunter2".into()),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"));
        let secret = BuildSecret::new("token", b"hunter2".to_vec()).unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
