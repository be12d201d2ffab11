//! `GET /api/v1/builders`: every builder, its health and its load.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::RouteErrors;
use super::{method_not_allowed, AppState};
use crate::builds::SilentBuild;
use crate::docker::BuilderStatus;

/// A builder on the wire: its address but never its TLS files.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Builder)]
pub struct BuilderView<'a> {
    name: &'a str,
    host: &'a str,
    tls: bool,
    up: bool,
    running: usize,
    slots: usize,
    platforms: &'a [String],
    last_error: Option<&'a str>,
    builds_done: u64,
    /// Its running builds that have sent no output and no progress for over a
    /// minute, and since when; empty while every build is heard from.
    silent_builds: Vec<SilentBuildView>,
}

/// A running build that has been silent for over a minute.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SilentBuild)]
struct SilentBuildView {
    id: i64,
    /// When it was last heard from.
    silent_since: String,
}

impl<'a> BuilderView<'a> {
    fn of(status: &'a BuilderStatus, silent: &[SilentBuild]) -> Self {
        BuilderView {
            name: &status.name,
            host: &status.host,
            tls: status.tls,
            up: status.up,
            running: status.running,
            slots: status.slots,
            platforms: &status.platforms,
            last_error: status.last_error.as_deref(),
            builds_done: status.builds_done,
            silent_builds: silent
                .iter()
                .filter(|build| build.builder == status.name)
                .map(|build| SilentBuildView {
                    id: build.id,
                    silent_since: build.since.to_rfc3339(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BuilderList<'a> {
    builders: Vec<BuilderView<'a>>,
}

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[RouteErrors {
    method: "get",
    path: "/api/v1/builders",
    token: true,
    body: false,
    submits: false,
    errors: &[],
}];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builders")
            .route(web::get().to(list_builders))
            .default_service(method_not_allowed("GET, HEAD")),
    );
}

/// Name, host (never TLS material), up, running, slots, platforms, last error,
/// builds done since start and running builds silent for over a minute, in
/// configuration order.
#[utoipa::path(get, path = "/api/v1/builders", tag = "builders",
    responses(
        (status = 200, body = BuilderList),
    ))]
async fn list_builders(state: web::Data<AppState>) -> HttpResponse {
    let statuses = state.builds.builders();
    let silent = state.builds.silent_builds();
    let builders = statuses
        .iter()
        .map(|status| BuilderView::of(status, &silent))
        .collect();
    HttpResponse::Ok().json(BuilderList { builders })
}
