//! `/api/dockerfile-build/`: the Django service's API, kept so its scripts work
//! unchanged. Same builds table as v1; its own response and error shapes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiError, SeedError};
use super::form::{non_multipart_content_type, read_form, FieldKinds, Form};
use super::v1::MAX_PAGE_BYTES;
use super::views::SeedBuildView;
use super::{AppState, SEED_API};
use crate::builds::options::OptionsRequest;
use crate::builds::SubmitRequest;
use crate::domain::{Credentials, Secret, TagPlan};
use crate::store::ListFilter;

/// The old service listed every build; this keeps the answer bounded.
const MAX_LISTED: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let query_errors = web::QueryConfig::default()
        .error_handler(|err, _| SeedError::from(ApiError::InvalidQuery(err.to_string())).into());
    cfg.service(
        web::resource(["/api/dockerfile-build/", SEED_API])
            .app_data(query_errors)
            .route(web::post().to(create_build))
            .route(web::get().to(get_builds))
            .route(web::delete().to(delete_build))
            .default_service(web::to(|| async {
                // The seed API's own header, kept as its clients know it.
                let allow = "GET, POST, DELETE";
                Err::<HttpResponse, _>(SeedError::from(ApiError::MethodNotAllowed { allow }))
            })),
    );
}

async fn create_build(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, SeedError> {
    if let Some(content_type) = non_multipart_content_type(&req) {
        return Err(ApiError::NotMultipart(content_type).into());
    }
    let kinds = FieldKinds {
        files: &["file"],
        archives: &[],
    };
    let form = read_form(&req, payload, &state.upload, kinds).await?;
    let request = submit_request(form)?;
    let build = state.builds.submit(request, &caller.0).await?;
    Ok(HttpResponse::Accepted().json(json!({ "data": SeedBuildView::from(&build) })))
}

fn submit_request(mut form: Form) -> Result<SubmitRequest, SeedError> {
    let username = first_of(&mut form, &["docker_username", "username"])?;
    let password = first_of(&mut form, &["docker_password", "password"])?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::MissingCredentials.into());
    };
    let dockerfile = form.bytes("file")?.ok_or(ApiError::MissingField("file"))?;
    let repository = form
        .text("docker_repo")?
        .ok_or(ApiError::MissingField("docker_repo"))?;
    Ok(SubmitRequest {
        dockerfile: Some(dockerfile),
        context: None,
        repository,
        tags: TagPlan::TimestampAndId,
        push: true,
        credentials: Some(Credentials {
            username,
            password: Secret::new(password),
        }),
        options: OptionsRequest::default(),
        secrets: Vec::new(),
        callback_url: None,
        git: None,
    })
}

/// The first non-empty value among fields that mean the same thing.
fn first_of(form: &mut Form, names: &[&str]) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for name in names {
        let value = form.text(name)?.filter(|v| !v.is_empty());
        found = found.or(value);
    }
    Ok(found)
}

#[derive(Deserialize)]
struct IdQuery {
    dockerfile_build_id: Option<String>,
}

impl IdQuery {
    fn id(&self) -> Result<Option<i64>, SeedError> {
        match self.dockerfile_build_id.as_deref() {
            None => Ok(None),
            // The seed API's own contract: any integer, an unknown one is its 404.
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| SeedError::from(ApiError::InvalidId(text.to_string()))),
        }
    }
}

async fn get_builds(
    query: web::Query<IdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SeedError> {
    if let Some(id) = query.id()? {
        let build = state.builds.get(id).await?;
        return Ok(HttpResponse::Ok().json(json!({ "data": SeedBuildView::from(&build) })));
    }
    Ok(HttpResponse::Ok().json(json!({ "data": seed_list(&state).await? })))
}

/// Up to [`MAX_LISTED`] builds, newest first, as the seed showed them: read a
/// v1 page at a time (bounded in bytes, see `v1::MAX_PAGE_BYTES`), so the whole
/// rows of a thousand builds are never held at once; the seed's view is small.
async fn seed_list(state: &AppState) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut data = Vec::new();
    let mut before = None;
    while data.len() < MAX_LISTED {
        let builds = state
            .builds
            .list(ListFilter {
                before,
                limit: MAX_LISTED - data.len(),
                max_bytes: Some(MAX_PAGE_BYTES),
                ..ListFilter::default()
            })
            .await?;
        let Some(last) = builds.last() else { break };
        before = Some(last.id);
        data.extend(builds.iter().map(|build| json!(SeedBuildView::from(build))));
    }
    Ok(data)
}

async fn delete_build(
    query: web::Query<IdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SeedError> {
    let id = query
        .id()?
        .ok_or(ApiError::MissingQuery("dockerfile_build_id"))?;
    state.builds.delete(id, false).await?;
    Ok(HttpResponse::Ok().json(json!({
        "message": format!("Dockerfile build process with 'id = {id}' is deleted.")
    })))
}
