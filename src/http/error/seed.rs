//! Errors in the seed-compatible API's shape, the Django service's
//! `{"message": ...}` (with `errors` for a bad file). The status and headers
//! are the one map's, but for the one status the old service chose otherwise;
//! the words are the old service's.

use actix_web::http::header::HeaderName;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use super::ApiError;
use crate::builds::BuildError;

/// An error of the seed-compatible API, made only from an [`ApiError`].
#[derive(Debug)]
pub struct SeedError {
    status: StatusCode,
    body: Value,
    headers: Vec<(HeaderName, String)>,
}

impl From<ApiError> for SeedError {
    fn from(err: ApiError) -> Self {
        let status = match err {
            // The old service answered a body that was not a form with 400.
            ApiError::NotMultipart(_) => StatusCode::BAD_REQUEST,
            _ => err.kind().status(),
        };
        SeedError {
            status,
            body: seed_body(&err),
            headers: err.headers(),
        }
    }
}

impl From<BuildError> for SeedError {
    fn from(err: BuildError) -> Self {
        ApiError::from(err).into()
    }
}

/// The old service's words for each error it knew; the v1 message otherwise.
fn seed_body(err: &ApiError) -> Value {
    let message = match err {
        ApiError::Build(BuildError::InvalidDockerfile(reason)) => return invalid_file(&reason.to_string()),
        ApiError::MissingField("file") => return invalid_file("No file was submitted."),
        ApiError::MissingField("docker_repo") => "Docker repository key 'docker_repo' is missing.".to_string(),
        ApiError::MissingCredentials => "Username key 'docker_username' and password 'docker_password' for docker connection is missing.".to_string(),
        ApiError::NotMultipart(content_type) => format!(
            "Content-Type is not valid. Expected binary data, actual header is {content_type}"
        ),
        ApiError::Build(BuildError::NotFound(id)) => {
            format!("Dockerfile build process with 'id = {id}' is not found.")
        }
        ApiError::Build(BuildError::NotFinal { id, status, .. }) => format!(
            "Dockerfile build process with 'id = {id}' is still running ({status}) and cannot be deleted."
        ),
        ApiError::Unauthorized => {
            "Authentication credentials were not provided or are not valid.".to_string()
        }
        ApiError::MethodNotAllowed { .. } => "Method not allowed.".to_string(),
        ApiError::InvalidQuery(detail) => format!("Query string is not valid: {detail}"),
        ApiError::InvalidId(text) => {
            format!("Query parameter 'dockerfile_build_id' must be an integer, got '{text}'.")
        }
        ApiError::MissingQuery(name) => format!("Query parameter '{name}' is required."),
        other if other.is_internal() => format!(
            "Internal error; the server log has the detail under request id {}.",
            other.log_internal()
        ),
        other => other.public_message(),
    };
    json!({ "message": message })
}

fn invalid_file(reason: &str) -> Value {
    json!({ "message": "File is not valid", "errors": { "file": [reason] } })
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.body)
    }
}

impl ResponseError for SeedError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            log::error!("{}: {}", self.status, self.body);
        }
        let mut response = HttpResponse::build(self.status);
        for header in &self.headers {
            response.insert_header(header.clone());
        }
        response.json(&self.body)
    }
}
