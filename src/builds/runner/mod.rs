//! Runs one claimed build on its builder: build, tag, push, confirm, and record
//! every step. Whatever happens (a failure, a cancel), the build ends in a final state.
//!
//! The files, in the order of a run: `output` (the log and progress it feeds),
//! `logins` and `build_step` (the image built under the build's own name),
//! `publish` (tags applied, pushed, confirmed), then `attempts` (a lost builder
//! sends the build back to the queue) or `cleanup` (after a cancel). `error`
//! says how a run can end otherwise. This file runs them in that order and
//! records the end.

mod attempts;
mod attest;
mod build_step;
mod by_digest;
mod cleanup;
mod error;
mod index;
mod logins;
mod output;
mod platforms;
mod publish;
mod tag_owners;

use std::sync::Arc;

use super::build_names;
use super::engine::Engine;
use super::logs::SecretMask;
use crate::docker::Slot;
use crate::domain::{Build, Status};
use crate::store::Changes;
use attempts::{judge_the_builder, lost_builder};
use build_step::build_image;
use cleanup::clean_up_cancelled;
use error::RunError;
use logins::push_login;
use output::{Outcome, Output};
use publish::{publish, record_maybe_pushed};

/// [`run`], and should it panic (a bug of ours), the build fails saying so
/// rather than stay `building` forever; the panic's own words go to the log.
pub async fn run_guarded(engine: Arc<Engine>, build: Build, slot: Slot) {
    let id = build.id;
    let running = tokio::spawn(run(engine.clone(), build, slot));
    let Err(err) = running.await else { return };
    if !err.is_panic() {
        return;
    }
    log::error!("build {id}: the run panicked ({err}); the build is failed");
    let changes = Changes {
        error: Some(
            "dockpub failed while running this build (an internal error; the server log \
             has the detail): submit it again"
                .into(),
        ),
        ..Changes::default()
    };
    if let Err(err) = engine.transition(id, Status::Failed, changes).await {
        log::error!("build {id}: cannot record that it failed: {err}");
    }
    engine.events.clear_progress(id);
    engine.cancels.remove(id);
    engine.silences.forget(id);
}

/// Runs `build` on the builder of `slot` until it ends (succeeded, failed,
/// cancelled, or back to the queue) and records that end.
async fn run(engine: Arc<Engine>, build: Build, slot: Slot) {
    let id = build.id;
    let cancel = engine.cancels.token(id);
    let output = match Output::start(&engine, id, slot.builder().name()).await {
        Ok(output) => output,
        Err(err) => return finish(&engine, &build, Err(err), &SecretMask::default()).await,
    };
    if build.attempts > 1 {
        output.log.line(format!(
            "dockpub: attempt {} (the previous one was interrupted)",
            build.attempts
        ));
        // An earlier attempt on this builder may have left its build name.
        let prefix = build_names::of_build(engine.store.instance(), id);
        let keep = Some(output.build_reference.as_str());
        for name in build_names::remove_stale(slot.builder(), &prefix, keep).await {
            output.log.line(format!(
                "dockpub: removed {name}, left by the interrupted attempt"
            ));
        }
    }
    let lost = slot.lost();
    let result = tokio::select! {
        result = execute(&engine, &build, &slot, &output) => result,
        () = cancel.cancelled() => Err(RunError::Cancelled),
        () = engine.interrupting.cancelled() => Err(RunError::ShuttingDown),
        () = lost.cancelled() => Err(lost_builder(slot.builder(), "the health check failed")),
    };
    let result = judge_the_builder(result, &slot, build.attempts).await;
    // Dropping the unfinished `execute` closed its daemon connection, which stops
    // the daemon's build; what it already tagged for this build is taken back.
    // A lost builder cannot be cleaned up: what it holds stays there.
    if matches!(result, Err(RunError::Cancelled | RunError::ShuttingDown)) {
        clean_up_cancelled(&engine, id, slot.builder(), &output).await;
    }
    if result.is_err() && build.push {
        record_maybe_pushed(&engine, &build, slot.builder(), &output).await;
    }
    match &result {
        Err(RunError::Cancelled) => output.log.line("dockpub: cancelled".into()),
        Err(err) if err.requeues() => output
            .log
            .line(format!("dockpub: back to the queue: {err}")),
        Err(err) => output.log.line(format!("dockpub: build failed: {err}")),
        Ok(_) => {}
    }
    output.progress.stop();
    engine.silences.forget(id);
    // The whole log is stored before the build is seen to end.
    let mask = output.log.finish().await;
    if !matches!(&result, Err(err) if err.requeues()) {
        slot.record_done();
    }
    finish(&engine, &build, result, &mask).await;
    drop(slot);
}

/// `mask`: the secret values the build's log masks, masked in its `error` too.
async fn finish(
    engine: &Arc<Engine>,
    build: &Build,
    result: Result<Outcome, RunError>,
    mask: &SecretMask,
) {
    let id = build.id;
    let first_tag = build.tags.first().cloned();
    let mut publish_locks = None;
    let (status, changes) = match result {
        Ok(outcome) => {
            publish_locks = Some(outcome.publish_locks);
            (
                Status::Succeeded,
                Changes {
                    image_id: Some(outcome.image_id),
                    // The first tag's, or (when it was left to a later build) any pushed one's: one image.
                    digest: first_tag
                        .and_then(|tag| outcome.digests.get(&tag))
                        .or_else(|| outcome.digests.values().next())
                        .cloned(),
                    digests: Some(outcome.digests),
                    error: None,
                    platforms: Some(outcome.platforms),
                    provenance: outcome.provenance,
                },
            )
        }
        Err(RunError::Cancelled) => (Status::Cancelled, Changes::default()),
        Err(err) if err.requeues() => (Status::Queued, Changes::default()),
        Err(err) => (
            Status::Failed,
            Changes {
                error: Some(super::hints::with_hint(mask.apply(err.to_string()))),
                ..Changes::default()
            },
        ),
    };
    if let Err(err) = engine.transition(id, status, changes.clone()).await {
        log::error!("build {id}: cannot record yet that it ended {status} ({err}); trying again until the store takes it");
        Engine::record_end_later(engine, build, status, changes, publish_locks.take());
    }
    drop(publish_locks);
    engine.events.clear_progress(id);
    engine.cancels.remove(id);
    if status == Status::Queued {
        // It runs again: in this process with its credentials, or after a restart without.
        engine.queue.wake();
    } else {
        engine.vault.remove(id);
        engine.secrets.remove(id);
    }
}

async fn execute(
    engine: &Engine,
    build: &Build,
    slot: &Slot,
    output: &Output,
) -> Result<Outcome, RunError> {
    let push_login = push_login(engine, build).await?;
    if build.options.is_multi_platform() {
        return platforms::build_and_publish(engine, build, slot, push_login.as_ref(), output)
            .await;
    }
    let builder = slot.builder();
    let image_id = build_image(engine, build, builder, push_login.as_ref(), output).await?;
    let published = publish(
        engine,
        build,
        builder,
        image_id,
        push_login.as_ref(),
        output,
    )
    .await;
    output.remove_build_reference(builder).await;
    published
}
