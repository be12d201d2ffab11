//! What a webhook delivery is: the record the store keeps and the API shows.

use serde::{Deserialize, Serialize};

use super::{Status, Timestamp};

/// The build events a webhook can be told about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[strum(parse_err_ty = String, parse_err_fn = unknown_event)]
pub enum WebhookEvent {
    /// A builder began building it.
    Started,
    /// It was built, and pushed when asked to.
    Succeeded,
    /// It ended with an error.
    Failed,
    /// It was cancelled before it ended.
    Cancelled,
}

impl WebhookEvent {
    /// Every event, in the order a build meets them.
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

    /// The event's name, as JSON, SQLite and the config write it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The build has ended: what a per-build `callback_url` is told.
    pub fn is_final(self) -> bool {
        self != WebhookEvent::Started
    }
}

fn unknown_event(text: &str) -> String {
    format!("unknown webhook event '{text}'")
}

/// Where a webhook delivery stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[strum(parse_err_ty = String, parse_err_fn = unknown_state)]
pub enum DeliveryState {
    /// Not yet answered with a 2xx, and attempts are left.
    Pending,
    /// An attempt was answered with a 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryState {
    /// Every state, for parsing and listing.
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ];

    /// The state's name, as JSON and SQLite write it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn unknown_state(text: &str) -> String {
    format!("unknown delivery state '{text}'")
}

/// One event for one URL, with its attempts so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Its number in the store, counting up from 1.
    pub id: i64,
    /// Sent as `X-Dockpub-Delivery`; the same on every attempt.
    pub delivery_id: String,
    /// The build it is about.
    pub build_id: i64,
    /// What happened to the build.
    pub event: WebhookEvent,
    /// Where it is sent.
    pub url: String,
    /// The name of the environment variable holding the signing secret, never the secret.
    pub secret_env: String,
    /// The exact JSON body: stored so every attempt sends (and signs) the same bytes.
    pub body: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: u32,
    /// The HTTP status that answered the last attempt; None when none did.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When the next attempt is due; None once it has ended.
    pub next_attempt_at: Option<Timestamp>,
    /// When it was stored.
    pub created_at: Timestamp,
    /// When it was delivered or gave up.
    pub finished_at: Option<Timestamp>,
    /// The delivery this one sends again, for a redelivery.
    pub redelivery_of: Option<i64>,
}

/// A delivery about to be stored: due at once.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// See [`Delivery::delivery_id`]; a fresh one from [`NewDelivery::new_id`].
    pub delivery_id: String,
    /// See [`Delivery::build_id`].
    pub build_id: i64,
    /// See [`Delivery::event`].
    pub event: WebhookEvent,
    /// See [`Delivery::url`].
    pub url: String,
    /// See [`Delivery::secret_env`].
    pub secret_env: String,
    /// See [`Delivery::body`].
    pub body: String,
    /// When it is stored, and so first due.
    pub created_at: Timestamp,
    /// See [`Delivery::redelivery_of`].
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
    /// Where the delivery stands after the attempt.
    pub state: DeliveryState,
    /// The HTTP status that answered it; None when none did.
    pub last_status: Option<u16>,
    /// Why it failed, when it did.
    pub last_error: Option<String>,
    /// When the next attempt is due; None once the delivery has ended.
    pub next_attempt_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::super::names::assert_serde_agrees;
    use super::*;

    #[test]
    fn names_parse_back_and_match_the_json() {
        for event in WebhookEvent::ALL {
            assert_eq!(event.as_str().parse::<WebhookEvent>(), Ok(event));
        }
        for state in DeliveryState::ALL {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(state));
        }
        assert_eq!(
            "done".parse::<WebhookEvent>(),
            Err("unknown webhook event 'done'".to_string())
        );
        assert_serde_agrees(&WebhookEvent::ALL);
        assert_serde_agrees(&DeliveryState::ALL);
    }
}
