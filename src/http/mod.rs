//! HTTP: routing, thin handlers, and the one place errors become JSON.

mod actions;
mod auth;
mod builders;
mod cache;
mod deliveries;
mod error;
mod expect;
mod form;
mod live;
mod metrics;
mod openapi;
mod origin;
mod page;
mod provenance;
mod schemas;
mod seed;
mod triggers;
mod v1;
mod views;

use std::net::TcpListener;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_service::map_config;
use actix_web::dev::AppConfig;
use actix_web::{web, App, Error, HttpResponse};
use serde_json::json;

use crate::builds::access::ApiToken;
use crate::builds::triggers::TriggerService;
use crate::builds::BuildService;
use crate::config::Config;
pub use error::ApiError;
pub use form::{BodyGate, UploadLimits};
pub use views::build_json;

/// Where the seed-compatible API lives; its errors have their own shape.
pub const SEED_API: &str = "/api/dockerfile-build";

/// What every handler can reach.
pub struct AppState {
    pub builds: BuildService,
    pub upload: UploadLimits,
    pub tokens: Vec<ApiToken>,
    pub hosts: origin::HostPolicy,
    /// Answers of the build and list routes (see `cache`).
    pub reads: cache::ReadCache,
    pub triggers: TriggerService,
    /// Push event bodies: their own slots, so the open route cannot take the uploads'.
    pub trigger_events: BodyGate,
    pub max_trigger_event_bytes: usize,
}

/// Every route, for the server and for tests alike.
pub fn configure_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(query_errors())
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .configure(metrics::routes)
        .service(
            web::scope("/api/v1")
                .configure(builders::routes)
                .configure(triggers::routes)
                .configure(v1::routes)
                .configure(provenance::routes)
                .configure(live::routes)
                .configure(actions::routes)
                .configure(deliveries::routes)
                .configure(openapi::routes),
        )
        .configure(seed::routes)
        .configure(page::routes)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::NoRoute)
        }));
}

pub fn server(
    builds: BuildService,
    triggers: TriggerService,
    config: &Config,
    tokens: Vec<ApiToken>,
    listener: TcpListener,
) -> std::io::Result<Server> {
    let staging_dir = builds.store().files().staging_dir().to_path_buf();
    let idle_timeout = std::time::Duration::from_secs(config.uploads.upload_idle_timeout_secs);
    let hosts = origin::HostPolicy {
        bind: listener.local_addr()?,
        allowed: config.server.allowed_hosts.clone(),
    };
    let state = web::Data::new(AppState {
        builds,
        upload: UploadLimits {
            max_upload_bytes: config.uploads.max_upload_bytes,
            max_dockerfile_bytes: config.uploads.max_dockerfile_bytes,
            max_context_bytes: config.uploads.max_context_bytes,
            staging_dir,
            idle_timeout,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.uploads.max_concurrent_uploads,
            )),
            max_parts: crate::builds::limits::max_form_parts(config.builds.max_tags_per_build),
        },
        tokens,
        hosts,
        reads: cache::ReadCache::default(),
        triggers,
        trigger_events: BodyGate {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.uploads.max_concurrent_trigger_events,
            )),
            idle_timeout,
            slots_setting: "max_concurrent_trigger_events",
        },
        max_trigger_event_bytes: config.uploads.max_trigger_event_bytes,
    });
    let address = listener.local_addr()?;
    // What actix-web's HttpServer does with a listener, with its defaults, plus
    // the expect service. dockpub handles SIGTERM/SIGINT itself, to drain
    // builds (see `crate::serve`).
    let builder = actix_server::Server::build().disable_signals();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .listen("dockpub", listener, move || {
            let shutdown = shutdown.clone();
            // The host name actix-web uses for a request without `Host`.
            let config = AppConfig::__priv_test_new(false, address.to_string(), address);
            let app = App::new()
                .app_data(state.clone())
                .wrap(from_fn(head_as_get))
                .wrap(from_fn(auth::require_token))
                .wrap(from_fn(origin::check_origin))
                .wrap(from_fn(metrics::count_requests))
                .configure(configure_routes);
            HttpService::build()
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(address)
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .expect(expect::gate(state.clone(), config.clone()))
                .finish(map_config(app, move |_| config.clone()))
                .tcp()
        })?
        .run();
    Ok(server)
}

/// `HEAD` is answered wherever `GET` is: routed as a `GET`, whose body actix-http
/// then leaves out (keeping its length). A streamed body (a followed log, events)
/// is swapped for one that ends at once, so a `HEAD` never waits for a build to
/// end, yet still says `transfer-encoding: chunked` as the `GET` does.
async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let head = req.method() == Method::HEAD;
    if head {
        req.head_mut().method = Method::GET;
    }
    let response = next.call(req).await?.map_into_boxed_body();
    if head && matches!(response.response().body().size(), BodySize::Stream) {
        return Ok(response.map_body(|_, _| BoxBody::new(EndedStream)));
    }
    Ok(response)
}

/// A streamed body with nothing in it: its size is "a stream" (so the headers are
/// those of the `GET`), and it ends the moment it is read.
struct EndedStream;

impl MessageBody for EndedStream {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<bytes::Bytes, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when the store and at least one builder answer, 503 otherwise; the same
/// body either way: the builders that are down by name, and why.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let readiness = state.builds.readiness().await;
    if !readiness.ready {
        return Err(ApiError::NotReady(readiness));
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "builders_down": readiness.builders_down,
        "reasons": readiness.reasons,
    })))
}

/// The answer to a method a route does not take, naming those it does (`Allow`).
fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}

fn query_errors() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| ApiError::InvalidQuery(err.to_string()).into())
}

/// Build and delivery ids in paths and queries, one rule everywhere: a positive
/// decimal written plainly (no sign, no leading zero, fits an i64). Anything else
/// is a 400, not a 404: `0`, `-1`, `+5` and `05` name no build and never will.
fn parse_id(text: &str) -> Result<i64, ApiError> {
    let plain = text.starts_with(|c: char| ('1'..='9').contains(&c))
        && text.bytes().all(|b| b.is_ascii_digit());
    plain
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::InvalidId(text.to_string()))
}
