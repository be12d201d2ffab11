//! Bearer tokens: when any are configured, every route wants one except the few
//! that are open by design (the page, health, readiness and metrics). Deny by
//! default: a route added later is protected without anyone remembering to.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest};

use super::error::{ApiError, SeedError};
use super::{AppState, SEED_API};
use crate::builds::access::{find_token, Grant, Scope};

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let path = routed_path(&req).to_string();
    let tokens = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.tokens.as_slice())
        .unwrap_or_default();
    let pattern = req.resource_map().match_pattern(&path);
    // A push event's signature is its auth, checked by the trigger.
    let signed_event = *req.method() == Method::POST && pattern.as_deref() == Some(TRIGGER_EVENTS);
    if is_open(&path) || signed_event || tokens.is_empty() {
        return next.call(req).await;
    }
    let Some(grant) = bearer_token(&req).and_then(|given| find_token(tokens, given)) else {
        return Err(in_shape_of(&path, ApiError::Unauthorized));
    };
    let needed = required_scope(req.method(), pattern.as_deref());
    if !grant.has(needed) {
        let missing = ApiError::MissingScope {
            token: grant.name.clone().unwrap_or_default(),
            needed,
        };
        return Err(in_shape_of(&path, missing));
    }
    let grant = grant.clone();
    req.extensions_mut().insert(grant);
    next.call(req).await
}

/// The scope a route needs, by the pattern the router matched. Anything not
/// listed, an unknown path included, is the admin's.
fn required_scope(method: &Method, pattern: Option<&str>) -> Scope {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match (pattern, *method == Method::POST) {
        (Some("/api/v1/builds" | "/api/dockerfile-build/" | "/api/dockerfile-build"), true) => {
            Scope::Build
        }
        (
            Some(
                "/api/v1/builds/{id}/cancel"
                | "/api/v1/builds/{id}/retry"
                | "/api/v1/triggers/{name}/run",
            ),
            true,
        ) => Scope::Build,
        (Some(pattern), false) if reads && !pattern.contains("deliver") => Scope::Read,
        _ => Scope::Admin,
    }
}

/// Who is calling, as the token check found them; the open grant when no
/// tokens are configured.
pub struct Caller(pub Arc<Grant>);

impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Caller, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req.extensions().get::<Arc<Grant>>().cloned();
        let tokens_off = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| state.tokens.is_empty());
        ready(match found {
            Some(grant) => Ok(Caller(grant)),
            None if tokens_off => Ok(Caller(Arc::new(Grant::open()))),
            // Tokens are on and no check ran: refuse rather than guess.
            None => Err(ApiError::Unauthorized.into()),
        })
    }
}

/// The path as the router matches it (percent-decoded), not the raw request
/// line: `/%61pi/v1/builds` reaches the same handler as `/api/v1/builds`, so it
/// must meet the same check.
fn routed_path(req: &ServiceRequest) -> &str {
    req.match_info().as_str()
}

/// An error of a check made before routing, in the shape of the API the path
/// belongs to: the seed-compatible API answers `{"message": …}`.
pub(super) fn in_shape_of(path: &str, err: ApiError) -> Error {
    if path.starts_with(SEED_API) {
        SeedError::from(err).into()
    } else {
        err.into()
    }
}

/// Routes anyone may reach, even when tokens are configured.
/// The route git servers post push events to.
const TRIGGER_EVENTS: &str = "/api/v1/triggers/{name}/events";

fn is_open(path: &str) -> bool {
    match path {
        "/" | "/healthz" | "/readyz" | "/metrics" => true,
        _ => path
            .strip_prefix("/assets/")
            .is_some_and(|name| !name.is_empty() && !name.contains(['/', '%'])),
    }
}

fn bearer_token(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_scope_of_what_they_do() {
        let cases = [
            (Method::GET, Some("/api/v1/builds/{id}"), Scope::Read),
            (
                Method::GET,
                Some("/api/v1/builds/{id}/provenance"),
                Scope::Read,
            ),
            (
                Method::GET,
                Some("/api/v1/provenance/public-key"),
                Scope::Read,
            ),
            (Method::HEAD, Some("/api/v1/builds/{id}/logs"), Scope::Read),
            (Method::POST, Some("/api/v1/builds"), Scope::Build),
            (Method::POST, Some("/api/dockerfile-build/"), Scope::Build),
            (
                Method::POST,
                Some("/api/v1/builds/{id}/retry"),
                Scope::Build,
            ),
            (Method::DELETE, Some("/api/v1/builds/{id}"), Scope::Admin),
            (Method::DELETE, Some("/api/dockerfile-build/"), Scope::Admin),
            (
                Method::GET,
                Some("/api/v1/builds/{id}/deliveries"),
                Scope::Admin,
            ),
            (
                Method::POST,
                Some("/api/v1/deliveries/{id}/redeliver"),
                Scope::Admin,
            ),
            (Method::GET, None, Scope::Admin),
            (Method::PUT, Some("/api/v1/builds"), Scope::Admin),
        ];
        for (method, pattern, scope) in cases {
            assert_eq!(
                required_scope(&method, pattern),
                scope,
                "{method} {pattern:?}"
            );
        }
    }

    #[test]
    fn only_the_page_health_and_metrics_are_open() {
        for open in ["/", "/healthz", "/readyz", "/metrics", "/assets/app.js"] {
            assert!(is_open(open), "{open}");
        }
        for guarded in [
            "/api/v1/builds",
            "/api",
            "/anything",
            "/healthz/",
            "//healthz",
            "/assets/",
            "/assets/a/b",
            "/assets/..%2Fapi",
        ] {
            assert!(!is_open(guarded), "{guarded}");
        }
    }
}
