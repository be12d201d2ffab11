//! The delivery task: sends due deliveries, each attempt in a task of its own,
//! and stores how each attempt went. Nothing here runs on a build's path.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::callback::AllowedHosts;
use super::sign;
use crate::domain::{AttemptRecord, Delivery, DeliveryState, Secret, Timestamp};
use crate::error_chain::with_causes;
use crate::store::Store;

/// How long one attempt may take, connection and answer included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed delivery is not due again before this: long enough for the attempt
/// to end, short enough that one a crash interrupted is retried soon after a restart.
const CLAIM_LEASE: Duration = Duration::from_secs(15);
/// Attempts in flight at once; more due deliveries wait for a free one.
const MAX_IN_FLIGHT: usize = 16;
/// Even with nothing due, the store is looked at this often.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// Who may be sent deliveries: the config's `[[webhooks]]` URLs, and any URL whose
/// host `allowed_callback_hosts` allows at the time of the attempt.
pub struct Receivers {
    pub configured: HashSet<String>,
    pub callback_hosts: AllowedHosts,
}

struct Sender {
    store: Store,
    client: reqwest::Client,
    receivers: Receivers,
    secrets: HashMap<String, Secret>,
    backoff: Vec<Duration>,
    wakeup: Arc<Notify>,
    slots: Arc<Semaphore>,
}

pub fn spawn(
    store: Store,
    receivers: Receivers,
    secrets: HashMap<String, Secret>,
    backoff: Vec<Duration>,
    wakeup: Arc<Notify>,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .expect("an HTTP client with rustls and no redirects always builds");
    let sender = Arc::new(Sender {
        store,
        client,
        receivers,
        secrets,
        backoff,
        wakeup,
        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    });
    tokio::spawn(run(sender));
}

async fn run(sender: Arc<Sender>) {
    loop {
        if let Err(err) = sender.start_due().await {
            log::warn!("webhooks: cannot read due deliveries: {err}");
        }
        let wait = sender.until_next_due().await;
        tokio::select! {
            _ = sender.wakeup.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Sender {
    /// Claims as many due deliveries as there are free slots and starts an attempt for each.
    async fn start_due(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(());
        }
        let now = Timestamp::now();
        let lease_end = later(now, CLAIM_LEASE);
        for delivery in self
            .store
            .claim_due_deliveries(now, lease_end, free)
            .await?
        {
            let permit = self.slots.clone().acquire_owned().await;
            let permit = permit.expect("the semaphore is never closed");
            tokio::spawn(self.clone().attempt(delivery, permit));
        }
        Ok(())
    }

    /// How long to sleep unless woken: until the next delivery is due, but never
    /// in a tight loop while every slot is busy (a finished attempt wakes us).
    async fn until_next_due(&self) -> Duration {
        if self.slots.available_permits() == 0 {
            return IDLE_RECHECK;
        }
        match self.store.next_delivery_due().await {
            Ok(Some(due)) => (due.0 - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE_RECHECK),
            Ok(None) => IDLE_RECHECK,
            Err(err) => {
                log::warn!("webhooks: cannot read the next due delivery: {err}");
                IDLE_RECHECK
            }
        }
    }

    async fn attempt(self: Arc<Self>, delivery: Delivery, _slot: OwnedSemaphorePermit) {
        let answer = self.send(&delivery).await;
        let record = self.record_for(&delivery, answer);
        log_attempt(&delivery, &record);
        if let Err(err) = self.store.record_attempt(delivery.id, record).await {
            // The lease runs out and the delivery is tried again.
            log::warn!("delivery {}: cannot store the attempt: {err}", delivery.id);
        }
        self.wakeup.notify_one();
    }

    /// The receiver's status code, or why there was none.
    async fn send(&self, delivery: &Delivery) -> Result<u16, String> {
        // Every attempt, a redelivery's too: the host may have been taken off
        // the list since the delivery was stored.
        if !self.receivers.configured.contains(&delivery.url) {
            self.receivers
                .callback_hosts
                .check(&delivery.url)
                .map_err(|err| format!("not sent: {err}"))?;
        }
        let secret = self.secrets.get(&delivery.secret_env).ok_or_else(|| {
            format!(
                "the signing secret's variable {} is no longer configured",
                delivery.secret_env
            )
        })?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign::signature(
            secret.expose().as_bytes(),
            timestamp,
            &delivery.delivery_id,
            delivery.body.as_bytes(),
        );
        let response = self
            .client
            .post(&delivery.url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("dockpub/", env!("CARGO_PKG_VERSION")))
            .header("X-Dockpub-Event", delivery.event.as_str())
            .header("X-Dockpub-Delivery", &delivery.delivery_id)
            .header("X-Dockpub-Timestamp", timestamp.to_string())
            .header("X-Dockpub-Signature-256", signature)
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(describe)?;
        Ok(response.status().as_u16())
    }

    /// Delivered on a 2xx; otherwise due again after the next backoff step, or
    /// failed when the steps are used up.
    fn record_for(&self, delivery: &Delivery, answer: Result<u16, String>) -> AttemptRecord {
        let (last_status, last_error) = match answer {
            Ok(status) => (Some(status), None),
            Err(error) => (None, Some(error)),
        };
        if last_status.is_some_and(|status| (200..300).contains(&status)) {
            return AttemptRecord {
                state: DeliveryState::Delivered,
                last_status,
                last_error,
                next_attempt_at: None,
            };
        }
        let step = (delivery.attempts as usize).checked_sub(1);
        match step.and_then(|step| self.backoff.get(step)) {
            Some(&wait) => AttemptRecord {
                state: DeliveryState::Pending,
                last_status,
                last_error,
                next_attempt_at: Some(later(Timestamp::now(), wait)),
            },
            None => AttemptRecord {
                state: DeliveryState::Failed,
                last_status,
                last_error,
                next_attempt_at: None,
            },
        }
    }
}

fn later(from: Timestamp, wait: Duration) -> Timestamp {
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    Timestamp(from.0.checked_add_signed(wait).unwrap_or(from.0))
}

/// reqwest's own message says little ("error sending request"); its sources say why.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs());
    }
    // The URL is in the delivery already; the message need not repeat it.
    with_causes(&err.without_url())
}

fn log_attempt(delivery: &Delivery, record: &AttemptRecord) {
    let what = format!(
        "delivery {} ({} of build {}) to {}",
        delivery.id, delivery.event, delivery.build_id, delivery.url
    );
    let answer = match (&record.last_status, &record.last_error) {
        (Some(status), _) => format!("answered {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".into(),
    };
    let attempt = delivery.attempts;
    match record.state {
        DeliveryState::Delivered => log::info!("{what}: delivered, attempt {attempt}: {answer}"),
        DeliveryState::Pending => {
            log::info!("{what}: attempt {attempt} failed ({answer}); will retry")
        }
        DeliveryState::Failed => log::warn!("{what}: failed after {attempt} attempts ({answer})"),
    }
}
