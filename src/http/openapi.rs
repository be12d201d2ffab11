//! `GET /api/v1/openapi.json`: the v1 API described from the handlers' own
//! annotations and the views' types (utoipa), so it cannot drift from the code.
//! Each route's error responses come from the codes its module declares
//! (`ROUTE_ERRORS`) and the one map's status for each code.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::OpenApi;

use super::error::{ErrorCode, RouteErrors};
use super::schemas::{RetryForm, SubmitForm};
use super::{
    actions, builders, deliveries, error, live, method_not_allowed, provenance, triggers, v1, views,
};

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
        provenance::build_provenance,
        provenance::public_key,
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
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(document);
    HttpResponse::Ok().json(&*DOCUMENT)
}

/// Every route's declared errors, module by module.
const ROUTE_ERRORS: [&[RouteErrors]; 7] = [
    v1::ROUTE_ERRORS,
    provenance::ROUTE_ERRORS,
    live::ROUTE_ERRORS,
    actions::ROUTE_ERRORS,
    deliveries::ROUTE_ERRORS,
    builders::ROUTE_ERRORS,
    triggers::ROUTE_ERRORS,
];

/// The document, with each route's error responses: one per status, naming the
/// codes behind it.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for route in ROUTE_ERRORS.into_iter().flatten() {
        let item = doc.paths.paths.get_mut(route.path);
        let operation = item.and_then(|item| match route.method {
            "get" => item.get.as_mut(),
            "post" => item.post.as_mut(),
            "delete" => item.delete.as_mut(),
            _ => None,
        });
        let Some(operation) = operation else {
            panic!(
                "ROUTE_ERRORS names {} {}, which the document lacks",
                route.method, route.path
            );
        };
        for (status, codes) in by_status(&route.all()) {
            let listed = codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>();
            let response = ResponseBuilder::new()
                .description(listed.join(", "))
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build();
            operation
                .responses
                .responses
                .insert(status.to_string(), response.into());
        }
    }
    doc
}

/// The codes grouped by their status, in order.
fn by_status(codes: &[ErrorCode]) -> BTreeMap<u16, Vec<&'static str>> {
    let mut grouped: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in codes {
        grouped
            .entry(code.status().as_u16())
            .or_default()
            .push(code.code());
    }
    grouped
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_operation_lists_the_errors_its_route_declares() {
        let doc = document();
        let declared: Vec<(&str, &str)> = ROUTE_ERRORS
            .into_iter()
            .flatten()
            .map(|route| (route.method, route.path))
            .collect();
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("get", &item.get),
                ("post", &item.post),
                ("delete", &item.delete),
            ];
            for (method, operation) in methods {
                let Some(operation) = operation else { continue };
                assert!(
                    declared.contains(&(method, path.as_str())),
                    "{method} {path}"
                );
                assert!(
                    operation.responses.responses.contains_key("401"),
                    "{method} {path} lists no 401"
                );
            }
        }
    }

    #[test]
    fn the_readme_errors_table_names_every_code_with_its_status() {
        let readme = include_str!("../../README.md");
        for code in ErrorCode::iter() {
            let row = format!("| `{}` | {} |", code.code(), code.status().as_u16());
            assert!(
                readme.contains(&row),
                "the README's Errors table lacks {row}"
            );
        }
    }

    #[test]
    fn every_code_is_answered_by_some_route() {
        let answered: Vec<ErrorCode> = ROUTE_ERRORS
            .into_iter()
            .flatten()
            .flat_map(RouteErrors::all)
            .collect();
        // Answered outside the v1 routes: an unknown path, a wrong method, /readyz.
        let elsewhere = [
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Unavailable,
        ];
        for code in ErrorCode::iter().filter(|code| !elsewhere.contains(code)) {
            assert!(answered.contains(&code), "no route declares {code:?}");
        }
    }
}
