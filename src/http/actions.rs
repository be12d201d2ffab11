//! Acting on a build: cancel it, or run it again.

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, RouteErrors};
use super::form::{credentials, non_multipart_content_type, read_form, FieldKinds};
use super::schemas::RetryForm;
use super::views::{build_url, BuildView};
use super::{method_not_allowed, parse_id, AppState};
use crate::domain::Credentials;

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[
    RouteErrors {
        method: "post",
        path: "/api/v1/builds/{id}/cancel",
        token: true,
        body: false,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::BuildNotFound,
            ErrorCode::BuildFinal,
        ],
    },
    RouteErrors {
        method: "post",
        path: "/api/v1/builds/{id}/retry",
        token: true,
        body: true,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::BuildNotFound,
            ErrorCode::BuildNotFinal,
            ErrorCode::InvalidMultipart,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::MissingField,
            ErrorCode::UnknownField,
            ErrorCode::InvalidField,
            ErrorCode::FieldLimit,
            ErrorCode::ForbiddenRepository,
            ErrorCode::QueueFull,
            ErrorCode::InsufficientStorage,
        ],
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builds/{id}/cancel")
            .route(web::post().to(cancel_build))
            .default_service(method_not_allowed("POST")),
    )
    .service(
        web::resource("/builds/{id}/retry")
            .route(web::post().to(retry_build))
            .default_service(method_not_allowed("POST")),
    );
}

/// 200 with the cancelled build; 202 if the daemon has not let go of it yet.
#[utoipa::path(post, path = "/api/v1/builds/{id}/cancel", tag = "builds", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Cancelled", body = BuildView),
        (status = 202, description = "Still stopping", body = BuildView),
    ))]
async fn cancel_build(
    id: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let build = state.builds.cancel(parse_id(&id)?, &caller.0).await?;
    let mut response = if build.status.is_final() {
        HttpResponse::Ok()
    } else {
        HttpResponse::Accepted()
    };
    Ok(response.json(BuildView::from(&build)))
}

/// A new build from the stored Dockerfile; registry credentials, if the push needs
/// them, come again as multipart `username` and `password`.
#[utoipa::path(post, path = "/api/v1/builds/{id}/retry", tag = "builds", params(("id" = i64, Path)),
    request_body(content = Option<RetryForm>, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "The new build, with retry_of", body = BuildView, headers(("Location" = String))),
    ))]
async fn retry_build(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let (credentials, secrets) = retry_fields(&req, payload, &state).await?;
    let build = state
        .builds
        .retry(id, credentials, &caller.0, secrets)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, build_url(build.id)))
        .json(BuildView::from(&build)))
}

/// The retry's login and secrets: never kept, so they come again.
async fn retry_fields(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(Option<Credentials>, Vec<(Option<String>, Vec<u8>)>), ApiError> {
    let has_body = req
        .headers()
        .contains_key(actix_web::http::header::CONTENT_TYPE);
    if !has_body {
        return Ok((None, Vec::new()));
    }
    if let Some(content_type) = non_multipart_content_type(req) {
        return Err(ApiError::NotMultipart(content_type));
    }
    let mut form = read_form(
        req,
        payload,
        &state.upload,
        FieldKinds {
            files: &["secret"],
            archives: &[],
        },
    )
    .await?;
    let username = form.text("username")?;
    let password = form.text("password")?;
    let secrets = form.named_values("secret");
    form.reject_unknown()?;
    Ok((credentials(username, password)?, secrets))
}
