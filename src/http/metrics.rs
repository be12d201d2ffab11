//! `GET /metrics`, and the middleware that counts and times every request by route.

use std::future::Future;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};

use super::error::ApiError;
use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.builds.metrics_text().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// Counts and times every request, and records the longest single poll of its
/// handler (the time it held an async thread without yielding).
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // The route's pattern, not its path: ids must not become labels.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let mut handling = std::pin::pin!(next.call(req));
    let mut longest_poll = Duration::ZERO;
    let result = std::future::poll_fn(|cx| {
        let poll_started = thread_cpu_time();
        let poll = handling.as_mut().poll(cx);
        longest_poll = longest_poll.max(thread_cpu_time().saturating_sub(poll_started));
        poll
    })
    .await;
    if let Some(state) = state {
        let status = match &result {
            Ok(response) => response.status(),
            Err(err) => err.as_response_error().status_code(),
        };
        let metrics = state.builds.metrics();
        metrics
            .http_requests_total
            .with_label_values(&[route.as_str(), method, status.as_str()])
            .inc();
        metrics
            .http_request_seconds
            .with_label_values(&[route.as_str(), method])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .http_longest_poll_seconds
            .with_label_values(&[route.as_str(), method])
            .observe(longest_poll.as_secs_f64());
    }
    result
}

/// CPU time this thread has used: unlike the wall clock, it does not count the
/// time the kernel gave the core to another process mid-poll.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to, and this clock always exists on Linux.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The method as a label: a client can send any token as a method, and each
/// would be a new series, so only the standard ones are named.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", |standard| standard.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_become_labels() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"M1").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
