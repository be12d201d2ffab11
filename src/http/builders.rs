//! `GET /api/v1/builders`: every builder, its health and its load.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{method_not_allowed, AppState};

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
    HttpResponse::Ok().json(json!({ "builders": state.builds.builders() }))
}
