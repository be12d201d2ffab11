//! A lost builder: the build goes back to the queue, to run again on a builder
//! that answers, up to [`MAX_ATTEMPTS`] times.

use std::time::Duration;

use super::error::RunError;
use super::output::Outcome;
use crate::docker::{Builder, DockerError, Slot};

/// Runs of one build that may end with its builder lost before it fails.
pub(super) const MAX_ATTEMPTS: u32 = 3;
/// After a daemon error, how long the builder gets to show it is still there.
const STILL_THERE_LIMIT: Duration = Duration::from_secs(3);

/// The error of a run whose builder stopped answering, for `reason`.
pub(super) fn lost_builder(builder: &Builder, reason: impl Into<String>) -> RunError {
    RunError::BuilderLost {
        builder: builder.name().to_string(),
        reason: reason.into(),
    }
}

/// What a run's end says about its builder: a builder that vanished is blamed
/// (and reported to the pool), and a build that lost its builder on its last
/// allowed attempt fails.
pub(super) async fn judge_the_builder(
    result: Result<Outcome, RunError>,
    slot: &Slot,
    attempts: u32,
) -> Result<Outcome, RunError> {
    let result = blame_a_vanished_builder(result, slot.builder()).await;
    if let Err(err) = &result {
        // A platform of several may have run on another builder: its own
        // health check tells the pool.
        if err.lost_builder() && !matches!(err, RunError::Platform { .. }) {
            slot.report_lost(err.to_string());
        }
    }
    limit_attempts(result, attempts)
}

/// A daemon that is being stopped may end a build with an ordinary-looking error
/// just before it goes away. When the builder cannot be reached right after the
/// error (refused, no socket), the builder was lost: the build goes back to the
/// queue, not to `failed`. A ping that is merely slow keeps the build's own error:
/// a busy daemon is no reason to run a failing build again.
async fn blame_a_vanished_builder(
    result: Result<Outcome, RunError>,
    builder: &Builder,
) -> Result<Outcome, RunError> {
    match result {
        Err(RunError::Docker(err)) if !err.is_unreachable() => {
            match builder.ping_within(STILL_THERE_LIMIT).await {
                Err(gone) if !matches!(gone, DockerError::NoAnswer { .. }) => {
                    Err(lost_builder(builder, format!("{err} ({gone})")))
                }
                _ => Err(RunError::Docker(err)),
            }
        }
        other => other,
    }
}

/// A build whose builder was lost on its last allowed attempt fails.
fn limit_attempts(result: Result<Outcome, RunError>, attempts: u32) -> Result<Outcome, RunError> {
    match result {
        Err(err) if err.lost_builder() && attempts >= MAX_ATTEMPTS => {
            Err(RunError::TooManyAttempts {
                attempts,
                last: Box::new(err),
            })
        }
        other => other,
    }
}
