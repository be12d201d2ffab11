//! Bearer tokens: when any are configured, every /api route wants one.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::builds::model::Secret;

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let guarded = req.path().starts_with("/api/") || req.path() == "/api";
    if guarded {
        let tokens = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.tokens.as_slice())
            .unwrap_or_default();
        let given = bearer_token(&req);
        if !tokens.is_empty() && !given.is_some_and(|given| accepts(tokens, given)) {
            return Err(ApiError::Unauthorized.into());
        }
    }
    next.call(req).await
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
    fn accepts_only_a_configured_token() {
        let tokens = vec![Secret::new("alpha".into()), Secret::new("beta".into())];
        assert!(accepts(&tokens, "alpha"));
        assert!(accepts(&tokens, "beta"));
        assert!(!accepts(&tokens, "alph"));
        assert!(!accepts(&tokens, "gamma"));
        assert!(!accepts(&tokens, ""));
    }
}
