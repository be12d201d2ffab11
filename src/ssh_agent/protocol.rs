//! The agent protocol on one connection: length-prefixed requests in, answers
//! out. Only listing the keys and signing with them are answered; every other
//! request (adding or removing keys, locking, extensions) fails, as BuildKit's
//! own agent refuses them.

use signature::Signer;
use ssh_encoding::{Decode, Encode, Reader};

use super::{AgentError, AgentKey};

/// The longest request taken: a sign request carries the data to sign, which
/// for ssh is a session hash and a little more (OpenSSH's agent allows 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;

/// One client of the agent: the keys it may use, and what it sent that does
/// not make a whole request yet.
pub struct AgentConnection {
    keys: Vec<AgentKey>,
    pending: Vec<u8>,
}

impl AgentConnection {
    pub fn new(keys: Vec<AgentKey>) -> Self {
        AgentConnection {
            keys,
            pending: Vec::new(),
        }
    }

    /// Takes the next bytes from the client; returns the answers to every
    /// request they complete (nothing while a request is still partial). A
    /// request too long ends the connection.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<u8>, AgentError> {
        self.pending.extend_from_slice(bytes);
        let mut answers = Vec::new();
        while let Some(length) = self.pending.get(..4) {
            let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
            if length > MAX_MESSAGE_BYTES {
                return Err(AgentError::TooLong(length));
            }
            if self.pending.len() < 4 + length {
                break;
            }
            let request: Vec<u8> = self.pending.drain(..4 + length).skip(4).collect();
            framed(&self.answer(&request), &mut answers);
        }
        Ok(answers)
    }

    /// The answer to one request (type byte and body), unframed.
    fn answer(&self, request: &[u8]) -> Vec<u8> {
        match request.split_first() {
            Some((&REQUEST_IDENTITIES, _)) => self.identities(),
            Some((&SIGN_REQUEST, body)) => self.sign(body).unwrap_or_else(|| vec![FAILURE]),
            _ => vec![FAILURE],
        }
    }

    fn identities(&self) -> Vec<u8> {
        let mut answer = vec![IDENTITIES_ANSWER];
        let listed: Vec<(Vec<u8>, &str)> = self
            .keys
            .iter()
            .filter_map(|key| Some((key_blob(key)?, key.id.as_str())))
            .collect();
        // Writing to a Vec cannot fail; a count past u32 cannot happen (one key per id).
        let _ = (listed.len() as u32).encode(&mut answer);
        for (blob, comment) in listed {
            let _ = blob.encode(&mut answer);
            let _ = comment.encode(&mut answer);
        }
        answer
    }

    /// `string key blob, string data, uint32 flags`: the signature by the key
    /// whose public blob matches, or None (a key not held, bad encoding).
    fn sign(&self, mut body: &[u8]) -> Option<Vec<u8>> {
        let reader = &mut body;
        let blob = Vec::<u8>::decode(reader).ok()?;
        let data = Vec::<u8>::decode(reader).ok()?;
        // The flags ask RSA keys for SHA-2; no RSA key is held.
        let _flags = u32::decode(reader).ok()?;
        if !reader.is_finished() {
            return None;
        }
        let key = self
            .keys
            .iter()
            .find(|key| key_blob(key).as_ref() == Some(&blob))?;
        let signature: ssh_key::Signature = key.private().try_sign(&data).ok()?;
        let mut answer = vec![SIGN_RESPONSE];
        signature.encode_prefixed(&mut answer).ok()?;
        Some(answer)
    }
}

/// The public key as the wire encodes it (algorithm name and key).
fn key_blob(key: &AgentKey) -> Option<Vec<u8>> {
    let mut blob = Vec::new();
    key.private()
        .public_key()
        .key_data()
        .encode(&mut blob)
        .ok()?;
    Some(blob)
}

fn framed(message: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::test_key_text;
    use super::*;
    use signature::Verifier;

    fn agent() -> (AgentConnection, AgentKey) {
        let key = AgentKey::from_openssh("default", test_key_text(7).as_bytes(), "k").unwrap();
        (AgentConnection::new(vec![key.clone()]), key)
    }

    fn request(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        framed(message, &mut out);
        out
    }

    /// The messages in `answers`, unframed.
    fn messages(mut answers: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !answers.is_empty() {
            let length = u32::from_be_bytes(answers[..4].try_into().unwrap()) as usize;
            out.push(answers[4..4 + length].to_vec());
            answers = &answers[4 + length..];
        }
        out
    }

    fn sign_request(blob: &[u8], data: &[u8]) -> Vec<u8> {
        let mut body = vec![SIGN_REQUEST];
        blob.encode(&mut body).unwrap();
        data.encode(&mut body).unwrap();
        0u32.encode(&mut body).unwrap();
        request(&body)
    }

    #[test]
    fn lists_its_key_and_signs_with_it() {
        let (mut agent, key) = agent();
        let answers = agent.receive(&request(&[REQUEST_IDENTITIES])).unwrap();
        let listed = &messages(&answers)[0];
        let mut body = &listed[1..];
        assert_eq!(listed[0], IDENTITIES_ANSWER);
        assert_eq!(u32::decode(&mut body).unwrap(), 1);
        let blob = Vec::<u8>::decode(&mut body).unwrap();
        assert_eq!(String::decode(&mut body).unwrap(), "default");

        let signed = agent.receive(&sign_request(&blob, b"session")).unwrap();
        let signed = &messages(&signed)[0];
        assert_eq!(signed[0], SIGN_RESPONSE);
        let mut body = &signed[1..];
        let encoded = Vec::<u8>::decode(&mut body).unwrap();
        let signature = ssh_key::Signature::decode(&mut encoded.as_slice()).unwrap();
        let public = key.private().public_key();
        assert!(Verifier::verify(public, b"session", &signature).is_ok());
        assert!(Verifier::verify(public, b"other", &signature).is_err());
    }

    /// The signature the agent answers for `data` with `key`, checked against
    /// the key's public half.
    fn signs_verifiably(key: AgentKey) {
        let mut agent = AgentConnection::new(vec![key.clone()]);
        let blob = key_blob(&key).unwrap();
        let signed = messages(&agent.receive(&sign_request(&blob, b"data")).unwrap()).remove(0);
        assert_eq!(signed[0], SIGN_RESPONSE, "{key:?}");
        let encoded = Vec::<u8>::decode(&mut &signed[1..]).unwrap();
        let signature = ssh_key::Signature::decode(&mut encoded.as_slice()).unwrap();
        assert!(Verifier::verify(key.private().public_key(), b"data", &signature).is_ok());
    }

    #[test]
    fn keys_from_ssh_keygen_sign_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..20 {
            let path = dir.path().join(n.to_string());
            let made = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(made.success());
            signs_verifiably(AgentKey::load("default", &path).unwrap());
        }
    }

    #[test]
    fn requests_arrive_in_any_pieces() {
        let (mut agent, _) = agent();
        let mut bytes = request(&[REQUEST_IDENTITIES]);
        bytes.extend(request(&[REQUEST_IDENTITIES]));
        let (first, rest) = bytes.split_at(3);
        assert!(agent.receive(first).unwrap().is_empty());
        assert_eq!(messages(&agent.receive(rest).unwrap()).len(), 2);
    }

    #[test]
    fn anything_else_fails_and_too_long_ends_the_connection() {
        let (mut agent, _) = agent();
        // Add identity (17), lock (22), an unknown key to sign with, a bad body.
        for message in [
            request(&[17, 0, 0]),
            request(&[22]),
            sign_request(b"not a key", b"data"),
            request(&[SIGN_REQUEST, 1]),
            request(&[]),
        ] {
            assert_eq!(messages(&agent.receive(&message).unwrap()), [vec![FAILURE]]);
        }
        let too_long = ((MAX_MESSAGE_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            agent.receive(&too_long),
            Err(AgentError::TooLong(_))
        ));
    }
}
