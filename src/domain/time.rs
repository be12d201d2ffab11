//! When things happen, as the API and the store write it.

use chrono::{DateTime, SecondsFormat, Utc};

/// A UTC instant, shown as RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current instant.
    pub fn now() -> Self {
        Timestamp(Utc::now())
    }

    /// As the API and the store write it, e.g. `2024-05-01T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Reads any RFC 3339 instant back; None when `text` is not one.
    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.with_timezone(&Utc)))
    }

    /// The seed service's tag format.
    pub fn compact(self) -> String {
        self.0.format("%Y%m%d%H%M%S").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let now = Timestamp::now();
        let text = now.to_rfc3339();
        assert!(text.ends_with('Z'));
        let parsed = Timestamp::parse(&text).unwrap();
        assert_eq!(parsed.to_rfc3339(), text);
        assert_eq!(now.compact().len(), 14);
    }
}
