//! `/api/v1`: the JSON API.

use actix_web::http::header::{ContentType, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::Caller;
use super::cache::{Answer, Key};
use super::error::{ApiError, ErrorCode, RouteErrors};
use super::form::{credentials, parse_flag, read_form, FieldKinds, Form};
use super::schemas::SubmitForm;
use super::views::{build_url, BuildList, BuildView};
use super::{method_not_allowed, parse_id, AppState};
use crate::builds::access::is_token_name;
use crate::builds::git::GitRequest;
use crate::builds::options::OptionsRequest;
use crate::builds::SubmitRequest;
use crate::domain::{Secret, Status, TagPlan};
use crate::store::ListFilter;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// A page's JSON stays under this (bar a single build larger than it, from
/// before the per-build limits): past it the page ends early, with a `next`.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The errors each route here answers with (the OpenAPI document lists them).
pub(super) const ROUTE_ERRORS: &[RouteErrors] = &[
    RouteErrors {
        method: "post",
        path: "/api/v1/builds",
        token: true,
        body: true,
        submits: true,
        errors: &[
            ErrorCode::InvalidGit,
            ErrorCode::GitFetchFailed,
            ErrorCode::GitTimeout,
        ],
    },
    RouteErrors {
        method: "get",
        path: "/api/v1/builds",
        token: true,
        body: false,
        submits: false,
        errors: &[ErrorCode::InvalidQuery, ErrorCode::InvalidId],
    },
    RouteErrors {
        method: "get",
        path: "/api/v1/builds/{id}",
        token: true,
        body: false,
        submits: false,
        errors: &[ErrorCode::InvalidId, ErrorCode::BuildNotFound],
    },
    RouteErrors {
        method: "delete",
        path: "/api/v1/builds/{id}",
        token: true,
        body: false,
        submits: false,
        errors: &[
            ErrorCode::InvalidId,
            ErrorCode::InvalidQuery,
            ErrorCode::BuildNotFound,
            ErrorCode::BuildNotFinal,
            ErrorCode::DockerError,
            ErrorCode::DockerUnavailable,
        ],
    },
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/builds")
            .route(web::post().to(create_build))
            .route(web::get().to(list_builds))
            .default_service(method_not_allowed("GET, HEAD, POST")),
    )
    .service(
        web::resource("/builds/{id}")
            .route(web::get().to(get_build))
            .route(web::delete().to(delete_build))
            .default_service(method_not_allowed("GET, HEAD, DELETE")),
    );
}

#[utoipa::path(post, path = "/api/v1/builds", tag = "builds",
    request_body(content = SubmitForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Queued", body = BuildView, headers(("Location" = String))),
    ))]
async fn create_build(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let kinds = FieldKinds {
        // Secrets are up to 64 KiB, more than a text field takes.
        files: &["file", "secret"],
        archives: &["context"],
    };
    let form = read_form(&req, payload, &state.upload, kinds).await?;
    let request = submit_request(form)?;
    let build = state.builds.submit(request, &caller.0).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, build_url(build.id)))
        .json(BuildView::from(&build)))
}

fn submit_request(mut form: Form) -> Result<SubmitRequest, ApiError> {
    let dockerfile = form.bytes("file")?;
    let context = form.upload("context");
    let repository = form.text("repository")?;
    let mut tags = form.texts("tag")?;
    let push = form.flag("push")?.unwrap_or(true);
    let username = form.text("username")?;
    let password = form.text("password")?;
    let callback_url = form.text("callback_url")?;
    let options = options_request(&mut form)?;
    let git = git_request(&mut form)?;
    let secrets = form.named_values("secret");
    form.reject_unknown()?;

    let repository = repository.ok_or(ApiError::MissingField("repository"))?;
    if tags.is_empty() {
        tags.push("latest".into());
    }
    Ok(SubmitRequest {
        dockerfile,
        context,
        repository,
        tags: TagPlan::Listed(tags),
        push,
        credentials: credentials(username, password)?,
        options,
        secrets,
        callback_url,
        git,
    })
}

/// The `git*` fields; None without `git`, which the others need.
fn git_request(form: &mut Form) -> Result<Option<GitRequest>, ApiError> {
    let request = GitRequest {
        url: form.text("git")?.unwrap_or_default(),
        git_ref: form.text("git_ref")?,
        subdir: form.text("git_subdir")?,
        submodules: form.flag("git_submodules")?.unwrap_or(false),
        username: form.text("git_username")?.filter(|u| !u.is_empty()),
        password: form.text("git_password")?.map(Secret::new),
        ..GitRequest::default()
    };
    let others = request.git_ref.is_some()
        || request.subdir.is_some()
        || request.submodules
        || request.username.is_some()
        || request.password.is_some();
    match (request.url.is_empty(), others) {
        (false, _) => Ok(Some(request)),
        (true, false) => Ok(None),
        (true, true) => Err(ApiError::MissingField("git")),
    }
}

fn options_request(form: &mut Form) -> Result<OptionsRequest, ApiError> {
    Ok(OptionsRequest {
        dockerfile: form.text("dockerfile")?,
        build_args: form.texts("build_arg")?,
        labels: form.texts("label")?,
        target: form.text("target")?,
        platform: form.text("platform")?,
        no_cache: form.flag("no_cache")?.unwrap_or(false),
        pull: form.flag("pull")?.unwrap_or(false),
        network: form.text("network")?,
        buildkit: form.flag("buildkit")?,
        cache_from: form.texts("cache_from")?,
        ssh: form.texts("ssh")?,
    })
}

/// Query values arrive as text so a bad one gets a message naming it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// queued, building, pushing, succeeded, failed or cancelled
    status: Option<String>,
    /// 1 to 500, default 50; a page also ends before its JSON passes 4 MiB (then `next` goes on)
    limit: Option<String>,
    /// Only builds with a lower id (the next page)
    before: Option<String>,
    /// Only builds submitted with the API token of this name
    submitted_by: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> Result<ListFilter, ApiError> {
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<Status>()
                    .map_err(|err| ApiError::InvalidQuery(format!("status: {err}")))?,
            ),
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE).contains(limit))
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "limit: '{text}' is not a number from 1 to {MAX_PAGE}"
                    ))
                })?,
        };
        let before = self.before.as_deref().map(parse_id).transpose()?;
        let submitted_by = match self.submitted_by.as_deref() {
            None | Some("") => None,
            Some(name) if is_token_name(name) => Some(name.to_string()),
            Some(name) => {
                return Err(ApiError::InvalidQuery(format!(
                    "submitted_by: '{name}' is not a token name ([A-Za-z0-9._-], 1 to 64)"
                )))
            }
        };
        Ok(ListFilter {
            status,
            before,
            submitted_by,
            limit,
            max_bytes: Some(MAX_PAGE_BYTES),
        })
    }
}

#[utoipa::path(get, path = "/api/v1/builds", tag = "builds", params(ListQuery),
    responses(
        (status = 200, description = "Newest first", body = BuildList),
    ))]
async fn list_builds(
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let key = Key::Page(filter.clone());
    let load = || {
        // One more than asked tells whether there is a next page.
        let one_more = ListFilter {
            limit: filter.limit + 1,
            ..filter.clone()
        };
        state.builds.list_then(one_more, move |listed| {
            let mut builds = listed.builds;
            let has_more = listed.cut_short || builds.len() > filter.limit;
            builds.truncate(filter.limit);
            let next = match builds.last() {
                Some(last) if has_more => Some(next_page(&filter, last.id)),
                _ => None,
            };
            Answer::page(builds, next)
        })
    };
    let body = state.reads.answer(&state.builds, key, load).await?;
    Ok(json_response(body))
}

fn next_page(filter: &ListFilter, last_id: i64) -> String {
    let status = filter
        .status
        .map(|s| format!("&status={s}"))
        .unwrap_or_default();
    // Token names are [A-Za-z0-9._-]: nothing to escape in a query string.
    let submitted_by = filter
        .submitted_by
        .as_ref()
        .map(|name| format!("&submitted_by={name}"))
        .unwrap_or_default();
    format!(
        "/api/v1/builds?limit={}&before={last_id}{status}{submitted_by}",
        filter.limit
    )
}

#[utoipa::path(get, path = "/api/v1/builds/{id}", tag = "builds", params(("id" = i64, Path)),
    responses(
        (status = 200, body = BuildView),
    ))]
async fn get_build(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let load = || state.builds.get_then(id, Answer::build);
    let body = state
        .reads
        .answer(&state.builds, Key::Build(id), load)
        .await?;
    Ok(json_response(body))
}

fn json_response(body: bytes::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// true: cancel an unfinished build first
    force: Option<String>,
}

/// 204; `force=true` cancels an unfinished build first. When the builder that
/// built the image is down, the record still goes, and the answer is 200 with a
/// body saying the image was left on that builder.
#[utoipa::path(delete, path = "/api/v1/builds/{id}", tag = "builds", params(("id" = i64, Path), DeleteQuery),
    responses(
        (status = 204, description = "Deleted with its local tags, log and files"),
        (status = 200, description = "Deleted; the image was left on a builder that is down", body = Object),
    ))]
async fn delete_build(
    id: web::Path<String>,
    query: web::Query<DeleteQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let force = query
        .force
        .as_deref()
        .map(|v| parse_flag("force", v))
        .transpose()?;
    let id = parse_id(&id)?;
    let deleted = state.builds.delete(id, force.unwrap_or(false)).await?;
    Ok(match deleted.image_left_on {
        None => HttpResponse::NoContent().finish(),
        Some(builder) => HttpResponse::Ok().json(serde_json::json!({
            "id": id,
            "deleted": true,
            "image_left_on": builder,
            "message": format!(
                "build {id} deleted; builder '{builder}' is down, so its image and local tags were left on it"
            ),
        })),
    })
}
