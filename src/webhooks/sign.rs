//! The `X-Dockpub-Signature-256` header: GitHub's HMAC-SHA256 format, over the
//! timestamp and the delivery id as well as the body, so that a captured
//! delivery cannot be replayed later, or under another id, with a valid signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `sha256=<hex HMAC-SHA256 with secret of "TIMESTAMP.DELIVERY_ID.BODY">`, where
/// TIMESTAMP is the `X-Dockpub-Timestamp` header (Unix seconds) and DELIVERY_ID
/// the `X-Dockpub-Delivery` header.
pub fn signature(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(format!("{timestamp}.{delivery_id}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_githubs_hmac_over_timestamp_id_and_body() {
        // GitHub's documented example, with "1.x." put before the body by hand.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"It's a Secret to Everybody").unwrap();
        mac.update(b"1.x.Hello, World!");
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            signature(b"It's a Secret to Everybody", 1, "x", b"Hello, World!"),
            expected
        );
    }

    #[test]
    fn depends_on_every_part() {
        let body = b"{\"event\":\"failed\"}";
        let base = signature(b"secret", 100, "id", body);
        assert_ne!(
            base,
            signature(b"secret", 100, "id", b"{\"event\":\"failed\"} ")
        );
        assert_ne!(base, signature(b"secreT", 100, "id", body));
        assert_ne!(base, signature(b"secret", 101, "id", body));
        assert_ne!(base, signature(b"secret", 100, "id2", body));
        assert_eq!(base.len(), "sha256=".len() + 64);
    }
}
