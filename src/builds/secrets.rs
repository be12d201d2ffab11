//! Build secrets: values a `RUN --mount=type=secret` step reads, which never reach
//! the image, SQLite, the log or a response. A request's secrets are kept in
//! memory beside its credentials; the server's own come from `[secrets.ID]`.

use super::limits::{self, MAX_SECRETS};
use super::options::{OptionError, OptionsError};
use crate::domain::BuildSecret;

/// A request's `secret` field: a file part named by its id, or text `ID=VALUE`.
pub fn request_secrets(
    parts: Vec<(Option<String>, Vec<u8>)>,
) -> Result<Vec<BuildSecret>, OptionsError> {
    limits::check_count("secret", parts.len(), MAX_SECRETS, "secrets")?;
    let invalid = |message: String| OptionError {
        field: "secret",
        message,
    };
    let mut secrets: Vec<BuildSecret> = Vec::new();
    for (filename, value) in parts {
        let secret = match filename {
            Some(id) => BuildSecret::new(&id, value),
            None => {
                let (id, value) = split_text(value).ok_or_else(|| {
                    invalid("send ID=VALUE, or a file part whose filename is the id".into())
                })?;
                BuildSecret::new(&id, value)
            }
        }
        .map_err(invalid)?;
        if secrets.iter().any(|known| known.id == secret.id) {
            return Err(invalid(format!("'{}' is given more than once", secret.id)).into());
        }
        secrets.push(secret);
    }
    Ok(secrets)
}

fn split_text(mut text: Vec<u8>) -> Option<(String, Vec<u8>)> {
    let equals = text.iter().position(|&b| b == b'=')?;
    let value = text.split_off(equals + 1);
    text.pop();
    Some((String::from_utf8(text).ok()?, value))
}

/// The secrets a build gets: the server's, with the request's over any of the same id.
pub fn for_build(server: &[BuildSecret], request: &[BuildSecret]) -> Vec<BuildSecret> {
    let mut secrets: Vec<BuildSecret> = server
        .iter()
        .filter(|own| !request.iter().any(|asked| asked.id == own.id))
        .cloned()
        .collect();
    secrets.extend(request.iter().cloned());
    secrets
}

/// Whether the Dockerfile mounts a secret at all: only then does a build go the
/// way that can serve secrets.
pub fn mounts_secrets(dockerfile: &str) -> bool {
    dockerfile.contains("type=secret")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MAX_SECRET_BYTES;

    #[test]
    fn secrets_come_as_files_or_text_and_never_print() {
        let secrets = request_secrets(vec![
            (Some("npm.token".into()), b"file value".to_vec()),
            (None, b"API_KEY=a=b".to_vec()),
        ])
        .unwrap();
        assert_eq!(secrets[0].value(), b"file value");
        assert_eq!(
            (secrets[1].id.as_str(), secrets[1].value()),
            ("API_KEY", &b"a=b"[..])
        );
        assert!(!format!("{secrets:?}").contains("value"));
    }

    #[test]
    fn bad_secrets_name_the_field() {
        let cases = vec![
            vec![(None, b"NOEQUALS".to_vec())],
            vec![(Some("bad id".into()), b"x".to_vec())],
            vec![(Some("x".repeat(65)), b"x".to_vec())],
            vec![(Some("big".into()), vec![b'x'; MAX_SECRET_BYTES + 1])],
            vec![(None, b"A=1".to_vec()), (Some("A".into()), b"2".to_vec())],
        ];
        for parts in cases {
            assert_eq!(request_secrets(parts).unwrap_err().field(), "secret");
        }
        assert!(request_secrets(vec![(Some("max".into()), vec![0; MAX_SECRET_BYTES])]).is_ok());
        let many = (0..=MAX_SECRETS)
            .map(|n| (Some(format!("s{n}")), b"x".to_vec()))
            .collect();
        assert!(matches!(
            request_secrets(many),
            Err(OptionsError::OverLimit(_))
        ));
    }

    #[test]
    fn the_request_wins_over_the_server() {
        let server = [BuildSecret::new("a", b"server".to_vec()).unwrap()];
        let request = [BuildSecret::new("a", b"request".to_vec()).unwrap()];
        let both = for_build(&server, &request);
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].value(), b"request");
    }
}
