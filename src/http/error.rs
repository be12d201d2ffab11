//! The one place errors become HTTP responses: every layer's error maps to a status
//! and a stable code here. The v1 API answers `{"error":{"code","message"}}`; the
//! seed-compatible API answers in the Django service's `{"message": ...}` shape.

use actix_web::http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::builds::context::ContextError;
use crate::builds::reference::ReferenceError;
use crate::builds::BuildError;
use crate::docker::DockerError;
use crate::webhooks::callback::CallbackError;
use crate::webhooks::WebhookError;

/// What a client told "queue full" should wait before submitting again.
const QUEUE_FULL_RETRY_AFTER_SECS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("expected a multipart/form-data body, got Content-Type '{0}'")]
    NotMultipart(String),
    #[error("the request body is larger than the limit of {limit} bytes{}", context_limit.map(|c| format!(" (plus {c} for the context archive)")).unwrap_or_default())]
    TooLarge {
        limit: usize,
        context_limit: Option<u64>,
    },
    #[error("the context archive is larger than the limit of {limit} bytes")]
    ContextTooLarge { limit: u64 },
    /// Our disk, not the request: a 500.
    #[error("cannot store the upload: {0}")]
    Staging(std::io::Error),
    #[error("malformed multipart body: {0}")]
    BadMultipart(String),
    #[error("missing field '{0}'")]
    MissingField(&'static str),
    #[error("unknown field '{0}'")]
    UnknownField(String),
    #[error("field '{field}': {message}")]
    InvalidField { field: String, message: String },
    #[error("'{0}' is not an id: build and delivery ids are positive integers")]
    InvalidId(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("this API wants 'Authorization: Bearer <token>' with a configured token")]
    Unauthorized,
    #[error("refused: this request comes from another site's page ({0})")]
    CrossSite(&'static str),
    #[error("this server does not answer to the host '{0}'; add it to allowed_hosts")]
    HostNotAllowed(String),
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed on this route; it takes {allow}")]
    MethodNotAllowed { allow: &'static str },
}

impl ApiError {
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The stable, machine-readable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Build(err) => build_error_code(err),
            ApiError::Webhook(err) => webhook_error_code(err),
            ApiError::NotMultipart(_) => "unsupported_media_type",
            ApiError::TooLarge { .. } | ApiError::ContextTooLarge { .. } => "payload_too_large",
            ApiError::Staging(_) => "storage_error",
            ApiError::BadMultipart(_) => "invalid_multipart",
            ApiError::MissingField(_) => "missing_field",
            ApiError::UnknownField(_) => "unknown_field",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::Unauthorized => "unauthorized",
            ApiError::CrossSite(_) => "cross_site_request",
            ApiError::HostNotAllowed(_) => "host_not_allowed",
            ApiError::NoRoute => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }
}

fn build_error_code(err: &BuildError) -> &'static str {
    match err {
        BuildError::InvalidDockerfile(_) => "invalid_dockerfile",
        BuildError::InvalidReference(ReferenceError::InvalidTag(_)) => "invalid_tag",
        BuildError::InvalidReference(_) => "invalid_repository",
        BuildError::InvalidOption(_) => "invalid_option",
        BuildError::InvalidContext(ContextError::Io(_)) => "storage_error",
        BuildError::InvalidContext(
            ContextError::TooLarge { .. } | ContextError::TooManyEntries { .. },
        ) => "payload_too_large",
        BuildError::InvalidContext(_) => "invalid_context",
        BuildError::InvalidCallback(CallbackError::Invalid(_)) => "invalid_callback_url",
        BuildError::InvalidCallback(CallbackError::HostNotAllowed { .. }) => "callback_not_allowed",
        BuildError::NoDockerfile => "missing_field",
        BuildError::NotFound(_) => "build_not_found",
        BuildError::NotFinal { .. } => "build_not_final",
        BuildError::AlreadyFinal { .. } => "build_final",
        BuildError::QueueFull { .. } => "queue_full",
        BuildError::Store(_) => "store_error",
        BuildError::Docker(DockerError::Unreachable { .. }) => "docker_unavailable",
        BuildError::Docker(_) => "docker_error",
    }
}

fn build_error_status(err: &BuildError) -> StatusCode {
    match err {
        BuildError::InvalidContext(ContextError::Io(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        BuildError::InvalidContext(
            ContextError::TooLarge { .. } | ContextError::TooManyEntries { .. },
        ) => StatusCode::PAYLOAD_TOO_LARGE,
        BuildError::InvalidDockerfile(_)
        | BuildError::InvalidReference(_)
        | BuildError::InvalidOption(_)
        | BuildError::InvalidContext(_)
        | BuildError::InvalidCallback(_)
        | BuildError::NoDockerfile => StatusCode::BAD_REQUEST,
        BuildError::NotFound(_) => StatusCode::NOT_FOUND,
        BuildError::NotFinal { .. } | BuildError::AlreadyFinal { .. } => StatusCode::CONFLICT,
        BuildError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        BuildError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        BuildError::Docker(DockerError::Unreachable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        BuildError::Docker(_) => StatusCode::BAD_GATEWAY,
    }
}

fn webhook_error_code(err: &WebhookError) -> &'static str {
    match err {
        WebhookError::NotFound(_) => "delivery_not_found",
        WebhookError::StillPending(_) => "delivery_pending",
        WebhookError::Store(_) => "store_error",
    }
}

fn webhook_error_status(err: &WebhookError) -> StatusCode {
    match err {
        WebhookError::NotFound(_) => StatusCode::NOT_FOUND,
        WebhookError::StillPending(_) => StatusCode::CONFLICT,
        WebhookError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Build(err) => build_error_status(err),
            ApiError::Webhook(err) => webhook_error_status(err),
            ApiError::NotMultipart(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } | ApiError::ContextTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Staging(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadMultipart(_)
            | ApiError::MissingField(_)
            | ApiError::UnknownField(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidId(_)
            | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
            ApiError::HostNotAllowed(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("{status}: {self}");
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Unauthorized => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((ALLOW, *allow));
            }
            ApiError::Build(BuildError::QueueFull { .. }) => {
                response.insert_header((RETRY_AFTER, QUEUE_FULL_RETRY_AFTER_SECS.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

/// Every v1 error: `{"error": {"code", "message"}}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_repository`.
    code: &'static str,
    /// For people.
    message: String,
}

/// An error of the seed-compatible API, in the Django service's shape.
#[derive(Debug)]
pub struct SeedError {
    status: StatusCode,
    body: Value,
    /// Methods the route takes, for a 405's `Allow` header.
    allow: Option<&'static str>,
}

impl SeedError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        SeedError {
            status,
            body: json!({ "message": message.into() }),
            allow: None,
        }
    }

    pub fn missing_credentials() -> Self {
        SeedError::new(
            StatusCode::BAD_REQUEST,
            "Username key 'docker_username' and password 'docker_password' for docker connection is missing.",
        )
    }

    pub fn invalid_file(reason: impl Into<String>) -> Self {
        SeedError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "message": "File is not valid", "errors": { "file": [reason.into()] } }),
            allow: None,
        }
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        SeedError {
            allow: Some(allow),
            ..SeedError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
        }
    }

    pub fn not_found(id: i64) -> Self {
        SeedError::new(
            StatusCode::NOT_FOUND,
            format!("Dockerfile build process with 'id = {id}' is not found."),
        )
    }
}

impl From<ApiError> for SeedError {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::NotMultipart(content_type) => SeedError::new(
                StatusCode::BAD_REQUEST,
                format!("Content-Type is not valid. Expected binary data, actual header is {content_type}"),
            ),
            ApiError::Build(BuildError::InvalidDockerfile(reason)) => SeedError::invalid_file(reason.to_string()),
            ApiError::Build(BuildError::NotFound(id)) => SeedError::not_found(id),
            other => SeedError::new(other.status_code(), other.to_string()),
        }
    }
}

impl From<BuildError> for SeedError {
    fn from(err: BuildError) -> Self {
        ApiError::from(err).into()
    }
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
        if let Some(allow) = self.allow {
            response.insert_header((ALLOW, allow));
        }
        response.json(&self.body)
    }
}
