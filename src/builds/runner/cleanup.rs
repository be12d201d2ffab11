//! What a cancelled (or interrupted) run leaves on its builder is taken back.

use super::output::Output;
use crate::builds::engine::Engine;
use crate::builds::local_tags;
use crate::docker::Builder;
use crate::sync::Locked;

/// A cancelled build leaves no step container, no name of its own and no tag
/// that only it needs behind.
pub(super) async fn clean_up_cancelled(
    engine: &Engine,
    id: i64,
    builder: &Builder,
    output: &Output,
) {
    let container = output.step_container.locked().take();
    if let Some(container) = container {
        if let Err(err) = builder.remove_step_container(&container).await {
            output.log.line(format!(
                "dockpub: could not remove step container {container}: {err}"
            ));
        }
    }
    output.remove_build_reference(builder).await;
    super::platforms::remove_platform_references(output).await;
    remove_own_tags(engine, id, builder, output).await;
}

async fn remove_own_tags(engine: &Engine, id: i64, builder: &Builder, output: &Output) {
    let Some(image_id) = output.image_id.get() else {
        return;
    };
    let build = match engine.store.get_build(id).await {
        Ok(Some(build)) => build,
        Ok(None) => return,
        Err(err) => {
            return log::error!("build {id}: cannot read it to clean up after cancel: {err}")
        }
    };
    let _tag_locks = local_tags::lock(engine, &build).await;
    match local_tags::release(engine, builder, &build, image_id).await {
        Ok(released) => {
            for release in released {
                output.log.line(format!("dockpub: {release}"));
            }
        }
        Err(err) => output
            .log
            .line(format!("dockpub: could not remove local tags: {err}")),
    }
}
