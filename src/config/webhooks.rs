//! `[[webhooks]]`, and the per-build callbacks a request may ask for.

use clap::Args;
use serde::{Deserialize, Serialize, Serializer};

use super::{empty_is_none, read_secret, ConfigError, Section};
use crate::domain::WebhookEvent;
use crate::webhooks::callback::AllowedHosts;
use crate::webhooks::{WebhookSettings, WebhookTarget};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct WebhookSection {
    /// `[[webhooks]]`: URLs told of build events.
    #[serde(rename = "webhooks")]
    pub targets: Vec<WebhookConfig>,
    /// Hosts a build's `callback_url` may name: exact, or `*.suffix`. Empty: no callbacks.
    pub allowed_callback_hosts: Vec<String>,
    /// The environment variable holding the secret that signs per-build callbacks.
    #[serde(deserialize_with = "empty_is_none")]
    pub callback_secret_env: Option<String>,
    /// Seconds before each retry of a failed webhook delivery; then it fails.
    pub webhook_retry_backoff_secs: Vec<u64>,
}

impl Default for WebhookSection {
    fn default() -> Self {
        WebhookSection {
            targets: Vec::new(),
            allowed_callback_hosts: Vec::new(),
            callback_secret_env: None,
            webhook_retry_backoff_secs: vec![1, 2, 4, 8, 16],
        }
    }
}

/// `[[webhooks]]`: where to send which build events, signed with the secret in
/// the variable `secret_env`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "final_events")]
    pub events: Vec<WebhookEvent>,
    pub secret_env: String,
}

/// A webhook that names no events is told when builds end.
fn final_events() -> Vec<WebhookEvent> {
    WebhookEvent::ALL
        .into_iter()
        .filter(|e| e.is_final())
        .collect()
}

/// The flags (and variables) of [`WebhookSection`].
#[derive(Debug, Default, Args, Serialize)]
pub struct WebhookFlags {
    /// Hosts a build's callback_url may name (exact or *.suffix), comma-separated [default: none]
    #[arg(long, env = "DOCKPUB_ALLOWED_CALLBACK_HOSTS", value_delimiter = ',')]
    #[serde(serialize_with = "without_blanks")]
    pub allowed_callback_hosts: Option<Vec<String>>,
    /// Environment variable holding the secret that signs per-build callbacks
    #[arg(long, env = "DOCKPUB_CALLBACK_SECRET_ENV")]
    pub callback_secret_env: Option<String>,
    /// Seconds before each webhook retry, comma-separated [default: 1,2,4,8,16]
    #[arg(
        long,
        env = "DOCKPUB_WEBHOOK_RETRY_BACKOFF_SECS",
        value_delimiter = ','
    )]
    pub webhook_retry_backoff_secs: Option<Vec<u64>>,
}

/// `DOCKPUB_ALLOWED_CALLBACK_HOSTS=` means none (in the file, "" is refused as a host).
fn without_blanks<S: Serializer>(hosts: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
    let hosts = hosts.as_ref().map(|hosts| {
        let given = hosts.iter().filter(|host| !host.trim().is_empty());
        given.collect::<Vec<_>>()
    });
    hosts.serialize(s)
}

impl Section for WebhookSection {
    fn validate(&self) -> Result<(), ConfigError> {
        self.webhook_settings().map(|_| ())
    }
}

impl WebhookSection {
    /// The webhook settings, with every signing secret read from its variable now,
    /// so a missing variable stops the start rather than a delivery later.
    pub(crate) fn webhook_settings(&self) -> Result<WebhookSettings, ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid(what));
        if self.webhook_retry_backoff_secs.contains(&0) {
            return invalid("webhook_retry_backoff_secs: every wait must be at least 1".into());
        }
        if let Some(bad) = self
            .allowed_callback_hosts
            .iter()
            .find(|host| !is_callback_host_pattern(host))
        {
            return invalid(format!(
                "allowed_callback_hosts: '{bad}' is not a host name, an address or *.suffix \
                 (no scheme, port or path)"
            ));
        }
        let mut secrets = std::collections::HashMap::new();
        for (index, webhook) in self.targets.iter().enumerate() {
            let key = format!("webhooks[{index}]");
            if let Err(why) = http_url(&webhook.url) {
                return invalid(format!("{key}.url: {why}"));
            }
            if webhook.events.is_empty() {
                return invalid(format!("{key}.events: name at least one event"));
            }
            let secret = read_secret(&webhook.secret_env, &format!("{key}.secret_env"))?;
            secrets.insert(webhook.secret_env.clone(), secret);
        }
        match (
            &self.callback_secret_env,
            self.allowed_callback_hosts.is_empty(),
        ) {
            (Some(name), _) => {
                secrets.insert(name.clone(), read_secret(name, "callback_secret_env")?);
            }
            (None, false) => {
                return invalid(
                    "allowed_callback_hosts is set, so callback_secret_env must name the variable \
                     holding the secret that signs callbacks"
                        .into(),
                )
            }
            (None, true) => {}
        }
        Ok(WebhookSettings {
            targets: self.targets.iter().map(WebhookConfig::target).collect(),
            allowed_callback_hosts: AllowedHosts::new(&self.allowed_callback_hosts),
            callback_secret_env: self.callback_secret_env.clone(),
            secrets,
            backoff: self
                .webhook_retry_backoff_secs
                .iter()
                .map(|&secs| std::time::Duration::from_secs(secs))
                .collect(),
        })
    }
}

impl WebhookConfig {
    fn target(&self) -> WebhookTarget {
        WebhookTarget {
            url: self.url.clone(),
            events: self.events.clone(),
            secret_env: self.secret_env.clone(),
        }
    }
}

/// A host as a URL names it (`hooks.example.com`, `10.0.0.7`, `[::1]`), or
/// `*.suffix`: no scheme, port or path, which would never match.
fn is_callback_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let parsed = reqwest::Url::parse(&format!("http://{name}/"));
    parsed.is_ok_and(|url| url.host_str() == Some(name.to_ascii_lowercase().as_str()))
}

fn http_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!("scheme '{other}': only http and https")),
    }
}
