//! The one seam between the runner and whatever builds an image. The runner's
//! build step (builds/runner/build_step.rs) asks for an image through this trait
//! only; [`Builder`] implements it with the daemon's three paths (BuildKit over
//! HTTP, BuildKit's gRPC API for secrets, the legacy builder). Another kind of
//! builder (a standalone BuildKit, a remote buildx node) joins by implementing it.

use std::future::Future;
use std::pin::Pin;

use super::{BuildEvent, BuildSpec, Builder, DockerError};

/// An image being built: resolves to its id.
pub type Building<'a> = Pin<Box<dyn Future<Output = Result<String, DockerError>> + Send + 'a>>;

/// Builds one image for one platform (the spec's), handing every event over as
/// it happens; returns the image id.
pub trait ImageBuilder: Send + Sync {
    fn build_image<'a>(
        &'a self,
        spec: BuildSpec<'a>,
        on_event: &'a mut (dyn FnMut(BuildEvent) + Send),
    ) -> Building<'a>;
}

impl ImageBuilder for Builder {
    fn build_image<'a>(
        &'a self,
        spec: BuildSpec<'a>,
        on_event: &'a mut (dyn FnMut(BuildEvent) + Send),
    ) -> Building<'a> {
        Box::pin(self.build(spec, on_event))
    }
}
