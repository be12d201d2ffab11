//! What a webhook delivery is: the record the store keeps and the API shows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Status, Timestamp};

/// The build events a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    Started,
    Succeeded,
    Failed,
    Cancelled,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 4] = [
        WebhookEvent::Started,
        WebhookEvent::Succeeded,
        WebhookEvent::Failed,
        WebhookEvent::Cancelled,
    ];

    /// The event a move into `status` is, if any: `started` is the move to
    /// `building`; `queued` and `pushing` are no events.
    pub fn of(status: Status) -> Option<WebhookEvent> {
        match status {
            Status::Building => Some(WebhookEvent::Started),
            Status::Succeeded => Some(WebhookEvent::Succeeded),
            Status::Failed => Some(WebhookEvent::Failed),
            Status::Cancelled => Some(WebhookEvent::Cancelled),
            Status::Queued | Status::Pushing => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Started => "started",
            WebhookEvent::Succeeded => "succeeded",
            WebhookEvent::Failed => "failed",
            WebhookEvent::Cancelled => "cancelled",
        }
    }

    /// The build has ended: what a per-build `callback_url` is told.
    pub fn is_final(self) -> bool {
        self != WebhookEvent::Started
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| format!("unknown webhook event '{s}'"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet answered with a 2xx, and attempts are left.
    Pending,
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("unknown delivery state '{s}'"))
    }
}

/// One event for one URL, with its attempts so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    /// Sent as `X-Dockpub-Delivery`; the same on every attempt.
    pub delivery_id: String,
    pub build_id: i64,
    pub event: WebhookEvent,
    pub url: String,
    /// The name of the environment variable holding the signing secret, never the secret.
    pub secret_env: String,
    /// The exact JSON body: stored so every attempt sends (and signs) the same bytes.
    pub body: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The delivery this one sends again, for a redelivery.
    pub redelivery_of: Option<i64>,
}

/// A delivery about to be stored: due at once.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub build_id: i64,
    pub event: WebhookEvent,
    pub url: String,
    pub secret_env: String,
    pub body: String,
    pub created_at: Timestamp,
    pub redelivery_of: Option<i64>,
}

impl NewDelivery {
    /// A fresh delivery id: a random UUID, so receivers can tell deliveries apart.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// What one attempt ended as, to be stored.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub state: DeliveryState,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When the next attempt is due; None once the delivery has ended.
    pub next_attempt_at: Option<Timestamp>,
}
