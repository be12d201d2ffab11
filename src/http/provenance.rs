//! `GET /api/v1/builds/{id}/provenance` and `GET /api/v1/provenance/public-key`:
//! what a build's attestation says, and the key its signature verifies with.

use actix_web::{web, HttpResponse};

use super::error::{ApiError, ErrorCode, RouteErrors};
use super::{method_not_allowed, parse_id, AppState};

/// A signed statement's media type, as DSSE names it.
const ENVELOPE_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// An unsigned statement's.
const STATEMENT_TYPE: &str = "application/vnd.in-toto+json";

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[
    RouteErrors {
        method: "get",
        path: "/api/v1/builds/{id}/provenance",
        token: true,
        body: false,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::BuildNotFound,
            ErrorCode::ProvenanceNotFound,
        ],
    },
    RouteErrors {
        method: "get",
        path: "/api/v1/provenance/public-key",
        token: true,
        body: false,
        submits: false,
        errors: &[ErrorCode::ProvenanceNotFound],
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builds/{id}/provenance")
            .route(web::get().to(build_provenance))
            .default_service(method_not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/provenance/public-key")
            .route(web::get().to(public_key))
            .default_service(method_not_allowed("GET, HEAD")),
    );
}

/// The provenance pushed with the build's image, exactly as pushed: a DSSE
/// envelope (`application/vnd.dsse.envelope.v1+json`) when the server signs,
/// else the in-toto statement (`application/vnd.in-toto+json`).
#[utoipa::path(get, path = "/api/v1/builds/{id}/provenance", tag = "builds", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The DSSE envelope, or the unsigned statement", body = Object),
    ))]
async fn build_provenance(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let (document, signed) = state.builds.provenance(id).await?;
    let media_type = if signed {
        ENVELOPE_TYPE
    } else {
        STATEMENT_TYPE
    };
    Ok(HttpResponse::Ok().content_type(media_type).body(document))
}

/// The PEM public key (SubjectPublicKeyInfo) provenance signatures verify with.
#[utoipa::path(get, path = "/api/v1/provenance/public-key", tag = "builds",
    responses(
        (status = 200, description = "The public key, PEM", content_type = "application/x-pem-file", body = String),
    ))]
async fn public_key(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pem = state.builds.provenance_public_key()?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(pem))
}
