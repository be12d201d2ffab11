//! `GET /api/v1/openapi.json`: the v1 API described from the handlers' own
//! annotations and the views' types (utoipa), so it cannot drift from the code.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use super::schemas::{RetryForm, SubmitForm};
use super::{actions, builders, deliveries, error, live, method_not_allowed, triggers, v1, views};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dockpub",
        description = "Build uploaded Dockerfiles, push them, and keep an honest record."
    ),
    paths(
        v1::create_build,
        v1::list_builds,
        v1::get_build,
        v1::delete_build,
        live::build_logs,
        live::build_events,
        actions::cancel_build,
        actions::retry_build,
        deliveries::list_deliveries,
        deliveries::redeliver,
        builders::list_builders,
        triggers::list_triggers,
        triggers::receive_event,
        triggers::run_trigger,
    ),
    components(schemas(
        views::BuildView,
        views::BuildList,
        error::ErrorBody,
        SubmitForm,
        RetryForm,
        triggers::RunRequest,
        triggers::TriggerList
    ))
)]
struct ApiDoc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi_json))
            .default_service(method_not_allowed("GET, HEAD")),
    );
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
