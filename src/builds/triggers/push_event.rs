//! Push events as GitHub, Gitea/Forgejo and GitLab send them: which sender it
//! is, whether its signature is right, and what was pushed.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::TriggerError;

/// Who sent the event, told by its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// `X-Hub-Signature-256: sha256=HEX`, an HMAC-SHA256 of the body.
    GitHub,
    /// `X-Gitea-Signature` / `X-Forgejo-Signature: HEX`, the same HMAC.
    Gitea,
    /// `X-Gitlab-Token`: the secret itself.
    GitLab,
}

/// The headers that matter, read before the body is trusted.
#[derive(Debug)]
pub struct EventHeaders {
    pub sender: Sender,
    signature: String,
    /// The sender's event name: `push`, `Push Hook`, `ping`…
    pub event: String,
    /// The sender's id for this delivery, the same when it redelivers.
    pub delivery: Option<String>,
}

/// A header's value by its (case-insensitive) name.
pub type HeaderLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl EventHeaders {
    pub fn read(header: HeaderLookup<'_>) -> Result<EventHeaders, TriggerError> {
        let first = |names: &[&str]| names.iter().find_map(|name| header(name));
        let (sender, signature, event, delivery) = if let Some(token) = header("x-gitlab-token") {
            let delivery = first(&["idempotency-key", "x-gitlab-event-uuid"]);
            (Sender::GitLab, token, first(&["x-gitlab-event"]), delivery)
        } else if let Some(signature) = first(&["x-gitea-signature", "x-forgejo-signature"]) {
            let event = first(&["x-gitea-event", "x-forgejo-event"]);
            let delivery = first(&["x-gitea-delivery", "x-forgejo-delivery"]);
            (Sender::Gitea, signature, event, delivery)
        } else if let Some(signature) = header("x-hub-signature-256") {
            let delivery = header("x-github-delivery");
            (
                Sender::GitHub,
                signature,
                header("x-github-event"),
                delivery,
            )
        } else {
            return Err(TriggerError::Unsigned);
        };
        Ok(EventHeaders {
            sender,
            signature: signature.trim().to_string(),
            event: event.unwrap_or_default(),
            delivery: delivery.filter(|d| !d.is_empty()),
        })
    }

    /// Checks the signature (or GitLab's token) against the trigger's secret in
    /// constant time.
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> Result<(), TriggerError> {
        let right = match self.sender {
            Sender::GitLab => {
                let given = Sha256::digest(self.signature.as_bytes());
                bool::from(given.ct_eq(&Sha256::digest(secret)))
            }
            Sender::GitHub | Sender::Gitea => {
                let hex_text = match self.sender {
                    Sender::GitHub => self.signature.strip_prefix("sha256=").unwrap_or(""),
                    _ => self.signature.as_str(),
                };
                let Ok(given) = hex::decode(hex_text) else {
                    return Err(TriggerError::BadSignature);
                };
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
                mac.update(body);
                mac.verify_slice(&given).is_ok()
            }
        };
        right.then_some(()).ok_or(TriggerError::BadSignature)
    }

    /// Whether the event announces pushed commits at all (a ping does not).
    pub fn is_push(&self) -> bool {
        match self.sender {
            Sender::GitHub | Sender::Gitea => self.event.eq_ignore_ascii_case("push"),
            Sender::GitLab => matches!(self.event.as_str(), "Push Hook" | "Tag Push Hook"),
        }
    }
}

/// What a push event says was pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The full ref: `refs/heads/main`, `refs/tags/v1`.
    pub git_ref: String,
    /// The commit the ref names now; None when the push deleted the ref.
    pub commit: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    /// GitLab: the commit a pushed tag points to.
    checkout_sha: Option<String>,
    /// GitHub: true when the ref was deleted.
    #[serde(default)]
    deleted: bool,
}

impl Pushed {
    pub fn parse(body: &[u8]) -> Result<Pushed, TriggerError> {
        let payload: Payload = serde_json::from_slice(body)
            .map_err(|err| TriggerError::InvalidPayload(err.to_string()))?;
        let commit = payload
            .checkout_sha
            .filter(|sha| !sha.is_empty())
            .or(payload.after)
            .filter(|sha| !payload.deleted && !sha.bytes().all(|b| b == b'0'));
        if let Some(sha) = &commit {
            let hex = sha.bytes().all(|b| b.is_ascii_hexdigit());
            if !matches!(sha.len(), 40 | 64) || !hex {
                return Err(TriggerError::InvalidPayload(format!(
                    "'{sha}' is not a full commit SHA"
                )));
            }
        }
        Ok(Pushed {
            git_ref: payload.git_ref,
            commit: commit.map(|sha| sha.to_ascii_lowercase()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Result<EventHeaders, TriggerError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        EventHeaders::read(&|name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn hmac_hex(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn each_sender_is_checked_its_own_way() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let signed = format!("sha256={}", hmac_hex("s3cret", body));
        let github =
            headers(&[("X-Hub-Signature-256", &signed), ("X-GitHub-Event", "push")]).unwrap();
        assert_eq!(github.sender, Sender::GitHub);
        assert!(github.verify(b"s3cret", body).is_ok());
        assert!(github.verify(b"other", body).is_err());
        assert!(github.verify(b"s3cret", b"{}").is_err());
        let forgejo = headers(&[("X-Forgejo-Signature", &hmac_hex("s3cret", body))]).unwrap();
        assert_eq!(forgejo.sender, Sender::Gitea);
        assert!(forgejo.verify(b"s3cret", body).is_ok());
        let gitea = headers(&[("X-Gitea-Signature", &hmac_hex("s3cret", body))]).unwrap();
        assert_eq!(gitea.sender, Sender::Gitea);
        assert!(gitea.verify(b"s3cret", body).is_ok());
        let bare = headers(&[("X-Hub-Signature-256", &hmac_hex("s3cret", body))]).unwrap();
        assert!(
            bare.verify(b"s3cret", body).is_err(),
            "GitHub's needs its prefix"
        );
        let gitlab = headers(&[
            ("X-Gitlab-Token", "s3cret"),
            ("X-Gitlab-Event", "Push Hook"),
        ])
        .unwrap();
        assert!(gitlab.verify(b"s3cret", body).is_ok());
        assert!(gitlab.verify(b"s3cre", body).is_err());
        assert!(gitlab.is_push());
        assert!(matches!(
            headers(&[("X-GitHub-Event", "push")]),
            Err(TriggerError::Unsigned)
        ));
    }

    #[test]
    fn deleted_refs_have_no_commit_and_bad_shas_are_refused() {
        let sha = "a".repeat(40);
        let pushed =
            Pushed::parse(format!(r#"{{"ref":"refs/heads/x","after":"{sha}"}}"#).as_bytes())
                .unwrap();
        assert_eq!(pushed.commit.as_deref(), Some(sha.as_str()));
        let zeros = "0".repeat(40);
        let deleted =
            Pushed::parse(format!(r#"{{"ref":"refs/heads/x","after":"{zeros}"}}"#).as_bytes())
                .unwrap();
        assert_eq!(deleted.commit, None);
        let flagged = format!(r#"{{"ref":"refs/heads/x","after":"{sha}","deleted":true}}"#);
        assert_eq!(Pushed::parse(flagged.as_bytes()).unwrap().commit, None);
        assert!(Pushed::parse(br#"{"ref":"refs/heads/x","after":"--upload-pack=x"}"#).is_err());
        assert!(Pushed::parse(b"not json").is_err());
    }
}
