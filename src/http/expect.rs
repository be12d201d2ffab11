//! `Expect: 100-continue`: a client asks whether to send its body at all.
//! actix-http answers `100 Continue` as soon as its expect service says yes,
//! before the request reaches the app; the default says yes to everything. This
//! one first runs the checks a request meets before its body is read, the same
//! middleware the app runs (tokens and scopes, hosts and origins) on a copy of
//! the head, plus the declared length against what the route accepts: a request
//! they refuse gets its final 401, 403, 413 (…) and never a `100 Continue`.

use std::rc::Rc;

use actix_http::Request;
use actix_service::{fn_factory, fn_service, IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, Error, HttpResponse};

use super::auth::in_shape_of;
use super::{auth, configure_routes, origin, triggers, ApiError, AppState};

/// The expect service of a worker: its own copy of the app's routes and checks.
pub(super) fn gate(
    state: web::Data<AppState>,
    config: AppConfig,
) -> impl ServiceFactory<Request, Config = (), Response = Request, Error = Error, InitError = ()> {
    fn_factory(move || {
        let (state, config) = (state.clone(), config.clone());
        async move {
            let checks = App::new()
                .app_data(state)
                .wrap(from_fn(body_fits))
                .wrap(from_fn(auth::require_token))
                .wrap(from_fn(origin::check_origin))
                .configure(configure_routes)
                .into_factory()
                .new_service(config)
                .await?;
            let checks = Rc::new(checks);
            Ok(fn_service(move |req: Request| {
                let checks = checks.clone();
                async move { continue_or_answer(checks.as_ref(), req).await }
            }))
        }
    })
}

/// The request back (actix-http then sends `100 Continue` and serves it), or
/// the error response the checks gave, as the final answer.
async fn continue_or_answer<S, B>(checks: &S, req: Request) -> Result<Request, Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    let mut head_only = Request::new();
    *head_only.head_mut() = req.head().clone();
    let checked = checks.call(head_only).await?;
    if checked.status() == StatusCode::CONTINUE {
        return Ok(req);
    }
    let response = checked.into_parts().1.map_into_boxed_body();
    Err(InternalError::from_response("refused before its body", response).into())
}

/// The innermost check: the declared length against what the route takes;
/// past it, `100` (the checks passed) without running the route's handler.
async fn body_fits(
    req: ServiceRequest,
    _handler: Next<impl MessageBody>,
) -> Result<ServiceResponse, Error> {
    let path = req.match_info().as_str().to_string();
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let pattern = req.resource_map().match_pattern(&path);
        let (limit, too_large) = body_limit(req.method(), pattern.as_deref(), state);
        if declared_length(&req).is_some_and(|length| length > limit) {
            return Err(in_shape_of(&path, too_large));
        }
    }
    Ok(req.into_response(HttpResponse::new(StatusCode::CONTINUE)))
}

/// The most a route reads, and the error it answers past it.
fn body_limit(method: &Method, pattern: Option<&str>, state: &AppState) -> (u64, ApiError) {
    let upload = &state.upload;
    let plain = |limit: usize| {
        (
            limit as u64,
            ApiError::TooLarge {
                limit,
                context_limit: None,
            },
        )
    };
    match (method, pattern) {
        (&Method::POST, Some("/api/v1/builds")) => (
            upload.max_upload_bytes as u64 + upload.max_context_bytes,
            ApiError::TooLarge {
                limit: upload.max_upload_bytes,
                context_limit: Some(upload.max_context_bytes),
            },
        ),
        (&Method::POST, Some("/api/v1/triggers/{name}/events")) => {
            plain(state.max_trigger_event_bytes)
        }
        (&Method::POST, Some("/api/v1/triggers/{name}/run")) => plain(triggers::MAX_RUN_BYTES),
        _ => plain(upload.max_upload_bytes),
    }
}

fn declared_length(req: &ServiceRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
