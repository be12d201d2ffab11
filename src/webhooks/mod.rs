//! Completion webhooks: build events sent, signed, to configured URLs and to a
//! build's own `callback_url`. A status change only stores delivery rows; a
//! separate task (see [`delivery`]) sends them, so a slow or dead receiver never
//! holds up a build, and a pending delivery survives a restart.
//!
//! The build object in the payload is rendered by the HTTP layer's view, handed
//! in as a function at start: the payload is exactly what the API shows, and this
//! module does not depend on `http`.

pub mod callback;
mod delivery;
pub mod sign;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::domain::{Build, Delivery, DeliveryState, NewDelivery, Secret, Timestamp, WebhookEvent};
use crate::store::{Store, StoreError};
use callback::{AllowedHosts, CallbackError};

/// Renders a build as the API's build object.
pub type RenderBuild = fn(&Build) -> Value;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("delivery {0} not found")]
    NotFound(i64),
    #[error("delivery {0} is still pending: it will be sent without being asked")]
    StillPending(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A `[[webhooks]]` entry from the config.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub secret_env: String,
}

/// Everything the config says about webhooks, secrets already read.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    pub targets: Vec<WebhookTarget>,
    pub allowed_callback_hosts: AllowedHosts,
    /// Signs per-build callbacks; set whenever callbacks are allowed.
    pub callback_secret_env: Option<String>,
    /// Signing secrets by the name of the variable they were read from.
    pub secrets: HashMap<String, Secret>,
    /// The waits before the 2nd, 3rd, … attempt; after the last, a delivery fails.
    pub backoff: Vec<Duration>,
}

pub struct Webhooks {
    store: Store,
    targets: Vec<WebhookTarget>,
    allowed_callback_hosts: AllowedHosts,
    callback_secret_env: Option<String>,
    render: RenderBuild,
    /// Tells the delivery task that something is due now.
    wakeup: Arc<Notify>,
}

impl Webhooks {
    /// Starts the delivery task, which first sends whatever a previous run left pending.
    pub fn start(store: Store, settings: WebhookSettings, render: RenderBuild) -> Arc<Webhooks> {
        let wakeup = Arc::new(Notify::new());
        let receivers = delivery::Receivers {
            configured: settings.targets.iter().map(|t| t.url.clone()).collect(),
            callback_hosts: settings.allowed_callback_hosts.clone(),
        };
        delivery::spawn(
            store.clone(),
            receivers,
            settings.secrets,
            settings.backoff,
            wakeup.clone(),
        );
        Arc::new(Webhooks {
            store,
            targets: settings.targets,
            allowed_callback_hosts: settings.allowed_callback_hosts,
            callback_secret_env: settings.callback_secret_env,
            render,
            wakeup,
        })
    }

    /// A request's `callback_url`, checked against `allowed_callback_hosts`.
    pub fn check_callback_url(&self, url: &str) -> Result<String, CallbackError> {
        self.allowed_callback_hosts.check(url)
    }

    /// Stores a delivery for every receiver of the event `build` just reached and
    /// wakes the delivery task. Never fails the caller: the build has moved either way.
    pub async fn notify(&self, build: &Build) {
        let Some(event) = WebhookEvent::of(build.status) else {
            return;
        };
        let receivers = self.receivers(build, event);
        if receivers.is_empty() {
            return;
        }
        let body = json!({ "event": event, "build": (self.render)(build) }).to_string();
        let now = Timestamp::now();
        let deliveries = receivers
            .into_iter()
            .map(|(url, secret_env)| NewDelivery {
                delivery_id: NewDelivery::new_id(),
                build_id: build.id,
                event,
                url,
                secret_env,
                body: body.clone(),
                created_at: now,
                redelivery_of: None,
            })
            .collect();
        match self.store.insert_deliveries(deliveries).await {
            Ok(_) => self.wakeup.notify_one(),
            Err(err) => log::error!(
                "build {}: cannot store its {event} webhooks: {err}",
                build.id
            ),
        }
    }

    /// (url, secret variable) of every receiver of `event` for `build`.
    fn receivers(&self, build: &Build, event: WebhookEvent) -> Vec<(String, String)> {
        let mut receivers: Vec<(String, String)> = self
            .targets
            .iter()
            .filter(|target| target.events.contains(&event))
            .map(|target| (target.url.clone(), target.secret_env.clone()))
            .collect();
        if let (Some(url), true) = (&build.callback_url, event.is_final()) {
            // Checked again: the operator may have taken the host off the list since.
            match (self.check_callback_url(url), &self.callback_secret_env) {
                (Ok(url), Some(secret_env)) => receivers.push((url, secret_env.clone())),
                (Err(err), _) => log::warn!("build {}: callback not sent: {err}", build.id),
                (Ok(_), None) => log::warn!(
                    "build {}: callback not sent: callback_secret_env is not set",
                    build.id
                ),
            }
        }
        receivers
    }

    /// A build's deliveries, oldest first.
    pub async fn deliveries(&self, build_id: i64) -> Result<Vec<Delivery>, WebhookError> {
        Ok(self.store.list_deliveries(build_id).await?)
    }

    /// Sends an ended delivery again, as a new delivery (new id, same body and
    /// receiver), so the first one's record stays as it was.
    pub async fn redeliver(&self, id: i64) -> Result<Delivery, WebhookError> {
        let original = self
            .store
            .get_delivery(id)
            .await?
            .ok_or(WebhookError::NotFound(id))?;
        if original.state == DeliveryState::Pending {
            return Err(WebhookError::StillPending(id));
        }
        let again = NewDelivery {
            delivery_id: NewDelivery::new_id(),
            build_id: original.build_id,
            event: original.event,
            url: original.url,
            secret_env: original.secret_env,
            body: original.body,
            created_at: Timestamp::now(),
            redelivery_of: Some(id),
        };
        let ids = self.store.insert_deliveries(vec![again]).await?;
        self.wakeup.notify_one();
        let new_id = ids[0];
        log::info!("delivery {new_id}: redelivery of delivery {id}");
        self.store
            .get_delivery(new_id)
            .await?
            .ok_or(WebhookError::NotFound(new_id))
    }
}
