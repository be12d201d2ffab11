//! Which per-build `callback_url`s are accepted: only hosts an operator listed in
//! `allowed_callback_hosts`, so a build request cannot make dockpub call into
//! whatever network it sits in.

use reqwest::Url;

/// The longest callback URL accepted.
const MAX_URL_LEN: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("field 'callback_url': {0}")]
    Invalid(String),
    #[error("field 'callback_url': host '{host}' is not in allowed_callback_hosts{}", if *.none_allowed { " (empty: per-build callbacks are off)" } else { "" })]
    HostNotAllowed { host: String, none_allowed: bool },
}

/// `allowed_callback_hosts`: exact host names, or `*.suffix` for any host under suffix.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    pub fn new(patterns: &[String]) -> Self {
        AllowedHosts(
            patterns
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Exact match, or `*.example.com` matching `a.example.com` and
    /// `a.b.example.com` but not `example.com` itself. Case-insensitive.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.0
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
                None => *pattern == host,
            })
    }

    /// The URL, checked: http or https, no credentials in it, an allowed host.
    pub fn check(&self, text: &str) -> Result<String, CallbackError> {
        let invalid = |why: &str| CallbackError::Invalid(why.to_string());
        if text.len() > MAX_URL_LEN {
            return Err(invalid(&format!("longer than {MAX_URL_LEN} characters")));
        }
        let url =
            Url::parse(text).map_err(|err| CallbackError::Invalid(format!("not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must be an http or https URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // It would be stored and shown with the deliveries.
            return Err(invalid("must not carry a username or password"));
        }
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        if !self.allows(host) {
            return Err(CallbackError::HostNotAllowed {
                host: host.to_string(),
                none_allowed: self.is_empty(),
            });
        }
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_hosts_match_exactly_and_ignore_case() {
        let allowed = hosts(&["hooks.example.com", "127.0.0.1"]);
        assert!(allowed.allows("hooks.example.com"));
        assert!(allowed.allows("HOOKS.Example.com"));
        assert!(allowed.allows("127.0.0.1"));
        assert!(!allowed.allows("evil-hooks.example.com"));
        assert!(!allowed.allows("hooks.example.com.evil.org"));
        assert!(!allowed.allows("127.0.0.2"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let allowed = hosts(&["*.internal.example"]);
        assert!(allowed.allows("ci.internal.example"));
        assert!(allowed.allows("a.b.internal.example"));
        assert!(!allowed.allows("internal.example"));
        assert!(!allowed.allows("notinternal.example"));
        assert!(!allowed.allows(".internal.example"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let err = AllowedHosts::default()
            .check("http://127.0.0.1:9/hook")
            .unwrap_err();
        assert!(err.to_string().contains("allowed_callback_hosts"), "{err}");
    }

    #[test]
    fn checks_scheme_credentials_and_host() {
        let allowed = hosts(&["hooks.example.com"]);
        assert_eq!(
            allowed.check("https://hooks.example.com/a?b=c").unwrap(),
            "https://hooks.example.com/a?b=c"
        );
        for bad in [
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "not a url",
            "https://other.example.com/",
            "https://hooks.example.com@other.example.com/",
        ] {
            assert!(allowed.check(bad).is_err(), "{bad}");
        }
    }
}
