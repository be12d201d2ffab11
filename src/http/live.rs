//! Watching a build: its log (whole, or followed as it grows) and its events as
//! Server-Sent Events.

use std::convert::Infallible;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::error::{ApiError, ErrorCode, RouteErrors};
use super::form::parse_flag;
use super::views::BuildView;
use super::{method_not_allowed, parse_id, AppState};
use crate::builds::Followed;
use crate::store::LogRange;

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[
    RouteErrors {
        method: "get",
        path: "/api/v1/builds/{id}/logs",
        token: true,
        body: false,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::InvalidQuery,
            ErrorCode::BuildNotFound,
            ErrorCode::TooManyFollowers,
        ],
    },
    RouteErrors {
        method: "get",
        path: "/api/v1/builds/{id}/events",
        token: true,
        body: false,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::InvalidField,
            ErrorCode::InvalidQuery,
            ErrorCode::BuildNotFound,
            ErrorCode::TooManyFollowers,
        ],
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builds/{id}/logs")
            .route(web::get().to(build_logs))
            .default_service(method_not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/builds/{id}/events")
            .route(web::get().to(build_events))
            .default_service(method_not_allowed("GET, HEAD")),
    );
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// true: keep the response open and write each new line until the build ends
    follow: Option<String>,
    /// Only the lines after line N (lines count from 1: a reader that has N lines passes N)
    #[param(value_type = Option<i64>, minimum = 0)]
    since: Option<String>,
    /// Only the last N lines (of those after `since`); with `follow`, then every new one
    #[param(value_type = Option<i64>, minimum = 0)]
    tail: Option<String>,
}

impl LogsQuery {
    fn range(&self) -> Result<LogRange, ApiError> {
        Ok(LogRange {
            since: line_count("since", self.since.as_deref())?,
            tail: line_count("tail", self.tail.as_deref())?,
        })
    }
}

/// A count of lines from a query: a whole number from 0 up.
fn line_count(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(count) if count >= 0 => Ok(Some(count)),
        _ => Err(ApiError::InvalidQuery(format!(
            "{name}: '{text}' is not a number of lines (0 or more)"
        ))),
    }
}

/// The log as text/plain, read from the store a page at a time as it is sent;
/// `since` and `tail` choose a part of it. With `follow=true`, kept open and
/// written to as lines arrive, ending when the build does.
#[utoipa::path(get, path = "/api/v1/builds/{id}/logs", tag = "live", params(("id" = i64, Path), LogsQuery),
    responses(
        (status = 200, description = "The log, one line per line", body = String, content_type = "text/plain"),
    ))]
async fn build_logs(
    id: web::Path<String>,
    query: web::Query<LogsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let follow = query
        .follow
        .as_deref()
        .map(|v| parse_flag("follow", v))
        .transpose()?;
    let after = state.builds.log_start(id, query.range()?).await?;
    let mut response = HttpResponse::Ok();
    response.content_type(ContentType::plaintext());
    if follow != Some(true) {
        return Ok(response.streaming(state.builds.log_pages(id, after, plain_line)));
    }
    let lines = state
        .builds
        .follow(id, after, plain_line)
        .await?
        .filter_map(|item| async move {
            match item {
                Followed::Lines(lines) => Some(Ok::<_, Infallible>(lines)),
                _ => None,
            }
        });
    Ok(response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(lines))
}

/// A line as text/plain: it ends with a newline.
fn plain_line(text: &mut String, _seq: i64, line: &str) {
    text.push_str(line);
    text.push('\n');
}

/// A line as an SSE `log` event, its line number as the event id.
fn sse_line(text: &mut String, seq: i64, line: &str) {
    push_frame(text, "log", Some(seq), line);
}

/// `status`, `log` (with the line's number as the event id, so `Last-Event-ID`
/// resumes after it), `progress`, and finally `done` with the final build.
#[utoipa::path(get, path = "/api/v1/builds/{id}/events", tag = "live",
    params(("id" = i64, Path), ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this log line")),
    responses(
        (status = 200, description = "Server-Sent Events: status, log, progress, done", body = String, content_type = "text/event-stream"),
    ))]
async fn build_events(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let after = last_event_id(&req)?;
    let events = state
        .builds
        .follow(id, after, sse_line)
        .await?
        .map(|item| Ok::<_, Infallible>(sse_event(&item)));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(events))
}

fn last_event_id(req: &HttpRequest) -> Result<i64, ApiError> {
    let Some(value) = req.headers().get("Last-Event-ID") else {
        return Ok(0);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse().map_err(|_| {
        ApiError::invalid_field(
            "Last-Event-ID",
            format!("'{text}' is not a log line number"),
        )
    })
}

fn sse_event(item: &Followed) -> Bytes {
    match item {
        Followed::Status(build) => frame("status", None, &json(&BuildView::from(build))),
        Followed::Lines(lines) => lines.clone(),
        Followed::Progress(progress) => frame("progress", None, &json(progress)),
        Followed::Done(build) => frame("done", None, &json(&BuildView::from(build))),
    }
}

/// Compact JSON, which never holds a newline.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("views always serialize")
}

/// One SSE event; every line of `data` (split at CR or LF, as SSE reads them) gets its own `data:` field.
fn frame(event: &str, id: Option<i64>, data: &str) -> Bytes {
    let mut text = String::new();
    push_frame(&mut text, event, id, data);
    Bytes::from(text)
}

fn push_frame(text: &mut String, event: &str, id: Option<i64>, data: &str) {
    text.push_str("event: ");
    text.push_str(event);
    text.push('\n');
    if let Some(id) = id {
        text.push_str(&format!("id: {id}\n"));
    }
    for line in data.split(['\n', '\r']) {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_sse_format() {
        assert_eq!(
            frame("log", Some(7), "hello"),
            Bytes::from("event: log\nid: 7\ndata: hello\n\n")
        );
        assert_eq!(
            frame("status", None, "a\r\nb"),
            Bytes::from("event: status\ndata: a\ndata: \ndata: b\n\n")
        );
    }
}
