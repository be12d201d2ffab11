//! One task per builder pings its daemon every few seconds and marks it up or
//! down in the pool: one log line when it goes away, one when it is back.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::pool::{BuilderPool, Change, Member};
use super::DockerError;
use crate::error_chain::with_causes;

/// Time between pings of a builder.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// A ping that takes longer counts as not answered.
const PING_LIMIT: Duration = Duration::from_secs(5);
/// Unanswered pings in a row before a builder that is busy rather than gone is
/// marked down (and its running builds requeued). A refused connection or a
/// missing socket marks it down at once.
const SLOW_PINGS_TOLERATED: u32 = 3;

/// Runs until `until` is cancelled.
pub fn spawn_health_checks(pool: Arc<BuilderPool>, until: CancellationToken) {
    for member in pool.members() {
        let member = member.clone();
        let pool = pool.clone();
        let until = until.clone();
        tokio::spawn(async move {
            let mut slow_pings = 0;
            loop {
                check(&pool, &member, &mut slow_pings).await;
                tokio::select! {
                    () = tokio::time::sleep(CHECK_INTERVAL) => {}
                    () = until.cancelled() => return,
                }
            }
        });
    }
}

async fn check(pool: &BuilderPool, member: &Member, slow_pings: &mut u32) {
    let builder = &member.builder;
    let answered = builder.ping_within(PING_LIMIT).await;
    if matches!(answered, Err(DockerError::NoAnswer { .. })) {
        *slow_pings += 1;
        if *slow_pings < SLOW_PINGS_TOLERATED {
            return;
        }
    } else {
        *slow_pings = 0;
    }
    let platforms = match &answered {
        Ok(()) if !member.knows_platforms() => daemon_platforms(member).await,
        _ => None,
    };
    match answered {
        Ok(()) => match member.mark_up(platforms) {
            Change::Unchanged => {}
            Change::First => {
                log::info!("builder '{}': up at {}", builder.name(), builder.host());
                pool.notify_changed();
            }
            Change::Flipped => {
                log::info!(
                    "builder '{}': the Docker daemon is back; queued builds start again",
                    builder.name()
                );
                pool.notify_changed();
            }
        },
        Err(err) => member.report_down(with_causes(&err)),
    }
}

/// The daemon's own platform; None (asked again next time) when it cannot say.
async fn daemon_platforms(member: &Member) -> Option<Vec<String>> {
    let builder = &member.builder;
    match tokio::time::timeout(PING_LIMIT, builder.daemon_platform()).await {
        Ok(Ok(platform)) => Some(vec![platform]),
        Ok(Err(err)) => {
            log::warn!(
                "builder '{}': cannot read its platform: {err}",
                builder.name()
            );
            None
        }
        Err(_) => None,
    }
}
