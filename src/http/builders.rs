//! `GET /api/v1/builders`: every builder, its health and its load.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::{method_not_allowed, AppState};
use crate::docker::BuilderStatus;

/// A builder on the wire: its address but never its TLS files.
#[derive(Serialize)]
struct BuilderView<'a> {
    name: &'a str,
    host: &'a str,
    tls: bool,
    up: bool,
    running: usize,
    slots: usize,
    platforms: &'a [String],
    last_error: Option<&'a str>,
    builds_done: u64,
}

impl<'a> From<&'a BuilderStatus> for BuilderView<'a> {
    fn from(status: &'a BuilderStatus) -> Self {
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
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builders")
            .route(web::get().to(list_builders))
            .default_service(web::to(method_not_allowed)),
    );
}

/// Name, host (never TLS material), up, running, slots, platforms, last error
/// and builds done since start, in configuration order.
async fn list_builders(state: web::Data<AppState>) -> HttpResponse {
    let statuses = state.builds.builders();
    let views: Vec<BuilderView> = statuses.iter().map(BuilderView::from).collect();
    HttpResponse::Ok().json(json!({ "builders": views }))
}
