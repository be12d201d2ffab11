//! `/api/v1/triggers`: push events from git servers (signed, no bearer token),
//! runs by hand, and the list of triggers.

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::views::{build_url, BuildView};
use super::{method_not_allowed, AppState};
use crate::builds::triggers::{Received, TriggerSummary};
use crate::domain::Timestamp;

/// GitHub sends payloads of up to 25 MB; a push of many commits is well below this.
pub(super) const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;
pub(super) const MAX_RUN_BYTES: usize = 4 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/triggers")
            .route(web::get().to(list_triggers))
            .default_service(method_not_allowed("GET")),
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
        (status = 204, description = "Ignored: not a push, a deleted ref, or a ref no pattern matches"),
        (status = 400, description = "Not a push event's JSON", body = ErrorBody),
        (status = 401, description = "Unsigned, or the signature does not match", body = ErrorBody),
        (status = 404, description = "No such trigger", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "The commit could not be fetched, or no tag template applies", body = ErrorBody),
        (status = 429, description = "The queue is full", body = ErrorBody),
    ))]
pub async fn receive_event(
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, MAX_EVENT_BYTES).await?;
    let header = |name: &str| {
        let value = req.headers().get(name)?.to_str().ok()?;
        Some(value.to_string())
    };
    let received = state.triggers.receive(&name, &header, &body).await?;
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
        (status = 400, description = "No ref, or not one", body = ErrorBody),
        (status = 401, description = "A token is configured and missing or wrong", body = ErrorBody),
        (status = 403, description = "The token may not build this trigger's repository", body = ErrorBody),
        (status = 404, description = "No such trigger", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "The ref could not be found or fetched", body = ErrorBody),
        (status = 429, description = "The queue is full", body = ErrorBody),
    ))]
pub async fn run_trigger(
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, MAX_RUN_BYTES).await?;
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
        (status = 401, description = "A token is configured and missing or wrong", body = ErrorBody),
    ))]
pub async fn list_triggers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let triggers = state.triggers.list().await?;
    Ok(HttpResponse::Ok().json(TriggerList {
        triggers: triggers.iter().map(TriggerView::from).collect(),
    }))
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| ApiError::BadBody(err.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge {
                limit,
                context_limit: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
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
