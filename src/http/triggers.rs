//! `/api/v1/triggers`: push events from git servers (signed, no bearer token),
//! runs by hand, and the list of triggers.

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, RouteErrors};
use super::form::{read_small_body, refuse_declared_over};
use super::views::{build_url, BuildView};
use super::{method_not_allowed, AppState};
use crate::builds::triggers::{EventHeaders, Received, TriggerError, TriggerSummary};
use crate::domain::Timestamp;

pub(super) const MAX_RUN_BYTES: usize = 4 * 1024;

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[
    RouteErrors {
        method: "get",
        path: "/api/v1/triggers",
        token: true,
        body: false,
        submits: false,
        errors: &[],
    },
    RouteErrors {
        method: "post",
        path: "/api/v1/triggers/{name}/events",
        token: false,
        body: true,
        submits: false,
        errors: &[
            ErrorCode::BadSignature,
            ErrorCode::InvalidPayload,
            ErrorCode::GitFetchFailed,
            ErrorCode::GitTimeout,
            ErrorCode::NoTags,
            ErrorCode::QueueFull,
            ErrorCode::InsufficientStorage,
        ],
    },
    RouteErrors {
        method: "post",
        path: "/api/v1/triggers/{name}/run",
        token: true,
        body: true,
        submits: false,
        errors: &[
            ErrorCode::MissingField,
            ErrorCode::InvalidField,
            ErrorCode::TriggerNotFound,
            ErrorCode::ForbiddenRepository,
            ErrorCode::GitFetchFailed,
            ErrorCode::GitTimeout,
            ErrorCode::NoTags,
            ErrorCode::QueueFull,
            ErrorCode::InsufficientStorage,
        ],
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/triggers")
            .route(web::get().to(list_triggers))
            .default_service(method_not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/triggers/{name}/events")
            .route(web::post().to(receive_event))
            .default_service(method_not_allowed("POST")),
    )
    .service(
        web::resource("/triggers/{name}/run")
            .route(web::post().to(run_trigger))
            .default_service(method_not_allowed("POST")),
    );
}

#[utoipa::path(post, path = "/api/v1/triggers/{name}/events", tag = "triggers",
    params(("name" = String, Path, description = "The trigger's name")),
    request_body(content = String, content_type = "application/json",
        description = "A push event as GitHub, Gitea/Forgejo or GitLab sends it"),
    responses(
        (status = 200, description = "A redelivery, or the same commit to the same tags: the build already made", body = BuildView),
        (status = 202, description = "Queued", body = BuildView, headers(("Location" = String))),
        (status = 204, description = "Ignored, the reason in X-Dockpub-Ignored: not a push, a deleted ref, a ref no pattern matches, or `stale: …` (the ref has moved on or does not exist)"),
    ))]
pub async fn receive_event(
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Refused before a byte of the body is read: a body declared too large
    // (first, so its answer is the same for every name), a name no trigger has
    // (answered as a wrong signature, not 404) and an event with no signature.
    refuse_declared_over(&req, state.max_trigger_event_bytes)?;
    if !state.triggers.exists(&name) {
        return Err(TriggerError::BadSignature.into());
    }
    let header = |name: &str| {
        let value = req.headers().get(name)?.to_str().ok()?;
        Some(value.to_string())
    };
    let headers = EventHeaders::read(&header)?;
    let body = read_small_body(
        &req,
        payload,
        state.max_trigger_event_bytes,
        &state.trigger_events,
    )
    .await?;
    let received = state.triggers.receive(&name, headers, &body).await?;
    Ok(match received {
        Received::Ignored(why) => {
            log::info!("trigger {name}: event ignored: {why}");
            HttpResponse::NoContent()
                .insert_header(("X-Dockpub-Ignored", header_text(&why)))
                .finish()
        }
        Received::Built(build) => HttpResponse::Accepted()
            .insert_header((LOCATION, build_url(build.id)))
            .json(BuildView::from(&build)),
        Received::AlreadyBuilt(build) => HttpResponse::Ok()
            .insert_header((LOCATION, build_url(build.id)))
            .json(BuildView::from(&build)),
    })
}

/// The body of `POST /api/v1/triggers/{name}/run`, as JSON or a form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RunRequest {
    /// A branch, tag, `refs/…` name or full commit SHA.
    #[serde(rename = "ref")]
    git_ref: String,
}

#[utoipa::path(post, path = "/api/v1/triggers/{name}/run", tag = "triggers",
    params(("name" = String, Path, description = "The trigger's name")),
    request_body(content = RunRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = BuildView, headers(("Location" = String))),
    ))]
pub async fn run_trigger(
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let body = read_small_body(&req, payload, MAX_RUN_BYTES, &state.upload.gate()).await?;
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request: RunRequest = match is_json {
        true => serde_json::from_slice(&body)
            .map_err(|err| ApiError::invalid_field("ref", err.to_string()))?,
        false => serde_urlencoded::from_bytes(&body).map_err(|_| ApiError::MissingField("ref"))?,
    };
    let build = state
        .triggers
        .run(&name, &request.git_ref, &caller.0)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, build_url(build.id)))
        .json(BuildView::from(&build)))
}

/// A trigger on the wire: its settings and last activity, never its secrets.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Trigger)]
pub struct TriggerView<'a> {
    name: &'a str,
    git: &'a str,
    refs: &'a [String],
    repository: &'a str,
    tags: &'a [String],
    events_url: String,
    last_delivery: Option<LastDelivery<'a>>,
    /// The trigger's newest build that still exists, delivered or run by hand.
    last_build: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LastDelivery<'a> {
    /// The git server's delivery id, when it sent one.
    delivery: Option<&'a str>,
    #[serde(rename = "ref")]
    git_ref: &'a str,
    commit: &'a str,
    /// `built` or `duplicate`.
    outcome: &'a str,
    build_id: Option<i64>,
    received_at: String,
}

impl<'a> From<&'a TriggerSummary> for TriggerView<'a> {
    fn from(t: &'a TriggerSummary) -> Self {
        TriggerView {
            name: &t.name,
            git: &t.git,
            refs: &t.refs,
            repository: &t.repository,
            tags: &t.tags,
            events_url: format!("/api/v1/triggers/{}/events", t.name),
            last_delivery: t.last_delivery.as_ref().map(|d| LastDelivery {
                delivery: d.delivery_id.as_deref(),
                git_ref: &d.git_ref,
                commit: &d.commit,
                outcome: &d.outcome,
                build_id: d.build_id,
                received_at: Timestamp::to_rfc3339(d.received_at),
            }),
            last_build: t.last_build,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerList<'a> {
    triggers: Vec<TriggerView<'a>>,
}

#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers",
    responses(
        (status = 200, description = "Every configured trigger", body = TriggerList),
    ))]
pub async fn list_triggers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let triggers = state.triggers.list().await?;
    Ok(HttpResponse::Ok().json(TriggerList {
        triggers: triggers.iter().map(TriggerView::from).collect(),
    }))
}

/// A reason as a header value: printable ASCII only.
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}
