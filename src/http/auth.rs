//! Bearer tokens: when any are configured, every route wants one except the few
//! that are open by design (the page, health, readiness and metrics). Deny by
//! default: a route added later is protected without anyone remembering to.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use subtle::ConstantTimeEq;

use super::error::{ApiError, SeedError};
use super::seed::SEED_API;
use super::AppState;
use crate::builds::model::Secret;

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if !is_open(routed_path(&req)) {
        let tokens = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.tokens.as_slice())
            .unwrap_or_default();
        let given = bearer_token(&req);
        if !tokens.is_empty() && !given.is_some_and(|given| accepts(tokens, given)) {
            return Err(unauthorized(routed_path(&req)));
        }
    }
    next.call(req).await
}

/// The path as the router matches it (percent-decoded), not the raw request
/// line: `/%61pi/v1/builds` reaches the same handler as `/api/v1/builds`, so it
/// must meet the same check.
fn routed_path(req: &ServiceRequest) -> &str {
    req.match_info().as_str()
}

/// A 401 in the shape of the API the path belongs to.
fn unauthorized(path: &str) -> Error {
    if path.starts_with(SEED_API) {
        SeedError::unauthorized().into()
    } else {
        ApiError::Unauthorized.into()
    }
}

/// Routes anyone may reach, even when tokens are configured.
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

/// Compares against every token, in constant time for tokens of the same length.
fn accepts(tokens: &[Secret], given: &str) -> bool {
    tokens.iter().fold(0u8, |found, token| {
        found
            | token
                .expose()
                .as_bytes()
                .ct_eq(given.as_bytes())
                .unwrap_u8()
    }) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn accepts_only_a_configured_token() {
        let tokens = vec![Secret::new("alpha".into()), Secret::new("beta".into())];
        assert!(accepts(&tokens, "alpha"));
        assert!(accepts(&tokens, "beta"));
        assert!(!accepts(&tokens, "alph"));
        assert!(!accepts(&tokens, "gamma"));
        assert!(!accepts(&tokens, ""));
    }
}
