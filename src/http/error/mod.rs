//! The one place errors become HTTP responses: every layer's error maps to one
//! (status, code) pair here ([`ApiError::kind`]), with the headers that go with
//! it. Handlers return errors, never statuses. The v1 API renders them as
//! `{"error":{"code","message"}}` (`v1.rs`); the seed-compatible API in the
//! Django service's `{"message": ...}` shape (`seed.rs`).

mod seed;
mod v1;

use actix_web::http::header::{HeaderName, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;

use crate::builds::Readiness;
pub use seed::SeedError;
pub use v1::ErrorBody;

use crate::builds::access::{AccessError, Scope};
use crate::builds::context::ContextError;
use crate::builds::git::GitError;
use crate::builds::triggers::TriggerError;
use crate::builds::BuildError;
use crate::domain::ReferenceError;
use crate::store::StoreError;
use crate::webhooks::callback::CallbackError;
use crate::webhooks::WebhookError;

/// What a client told "queue full" should wait before submitting again.
const QUEUE_FULL_RETRY_AFTER_SECS: u32 = 10;
/// And one told that too many uploads arrive at once.
const UPLOADS_BUSY_RETRY_AFTER_SECS: u32 = 2;
/// And one told that too many follow builds live.
const FOLLOWERS_BUSY_RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error("cannot read the request body: {0}")]
    BadBody(String),
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
    #[error(
        "the request body sent nothing for {secs} s (upload_idle_timeout_secs); it was dropped"
    )]
    UploadStalled { secs: u64 },
    #[error("too many uploads are arriving at once (max_concurrent_uploads); try again shortly")]
    TooManyUploads,
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
    #[error("token '{token}' lacks the '{needed}' scope this route needs")]
    MissingScope { token: String, needed: Scope },
    #[error("refused: this request comes from another site's page ({0})")]
    CrossSite(&'static str),
    #[error("this server does not answer to the host '{0}'; add it to allowed_hosts")]
    HostNotAllowed(String),
    #[error("missing query parameter '{0}'")]
    MissingQuery(&'static str),
    #[error("send both a registry username and its password")]
    MissingCredentials,
    #[error("not ready: {}", .0.reasons.join("; "))]
    NotReady(Readiness),
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

    /// The status and the code, decided together so they cannot drift apart.
    fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Build(err) => build_error_kind(err),
            ApiError::Webhook(err) => webhook_error_kind(err),
            ApiError::Trigger(err) => trigger_error_kind(err),
            ApiError::BadBody(_) => bad_request("invalid_body"),
            ApiError::NotMultipart(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooLarge { .. } | ApiError::ContextTooLarge { .. } => TOO_LARGE,
            ApiError::Staging(err) => io_error_kind(err),
            ApiError::BadMultipart(_) => bad_request("invalid_multipart"),
            ApiError::UploadStalled { .. } => (StatusCode::REQUEST_TIMEOUT, "upload_stalled"),
            ApiError::TooManyUploads => (StatusCode::SERVICE_UNAVAILABLE, "too_many_uploads"),
            ApiError::MissingField(_)
            | ApiError::MissingQuery(_)
            | ApiError::MissingCredentials => bad_request("missing_field"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::UnknownField(_) => bad_request("unknown_field"),
            ApiError::InvalidField { .. } => bad_request("invalid_field"),
            ApiError::InvalidId(_) => bad_request("invalid_id"),
            ApiError::InvalidQuery(_) => bad_request("invalid_query"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::MissingScope { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::CrossSite(_) => (StatusCode::FORBIDDEN, "cross_site_request"),
            ApiError::HostNotAllowed(_) => (StatusCode::MISDIRECTED_REQUEST, "host_not_allowed"),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
        }
    }

    /// Our own failure: the client learns only that it happened, and under
    /// which id the log has the detail (SQLite's words and file paths stay here).
    fn is_internal(&self) -> bool {
        self.kind().0 == StatusCode::INTERNAL_SERVER_ERROR
    }
}

const TOO_LARGE: (StatusCode, &str) = (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
const INTERNAL: (StatusCode, &str) = (StatusCode::INTERNAL_SERVER_ERROR, "internal");
const DISK_FULL: (StatusCode, &str) = (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage");

fn bad_request(code: &'static str) -> (StatusCode, &'static str) {
    (StatusCode::BAD_REQUEST, code)
}

fn io_error_kind(err: &std::io::Error) -> (StatusCode, &'static str) {
    if err.kind() == std::io::ErrorKind::StorageFull {
        DISK_FULL
    } else {
        INTERNAL
    }
}

fn store_error_kind(err: &StoreError) -> (StatusCode, &'static str) {
    if err.is_disk_full() {
        DISK_FULL
    } else {
        INTERNAL
    }
}

fn build_error_kind(err: &BuildError) -> (StatusCode, &'static str) {
    match err {
        BuildError::InvalidDockerfile(_) => bad_request("invalid_dockerfile"),
        BuildError::InvalidReference(ReferenceError::InvalidTag(_)) => bad_request("invalid_tag"),
        BuildError::InvalidReference(_) => bad_request("invalid_repository"),
        BuildError::InvalidOption(_) => bad_request("invalid_option"),
        BuildError::InvalidContext(ContextError::Io(err)) => io_error_kind(err),
        BuildError::InvalidContext(
            ContextError::TooLarge { .. } | ContextError::TooManyEntries { .. },
        ) => TOO_LARGE,
        BuildError::InvalidContext(_) => bad_request("invalid_context"),
        BuildError::InvalidCallback(CallbackError::Invalid(_)) => {
            bad_request("invalid_callback_url")
        }
        BuildError::InvalidCallback(CallbackError::HostNotAllowed { .. }) => {
            bad_request("callback_not_allowed")
        }
        BuildError::Git(GitError::Invalid { .. }) => bad_request("invalid_git"),
        BuildError::Git(GitError::Fetch { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "git_fetch_failed")
        }
        BuildError::Git(GitError::Timeout { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "git_timeout")
        }
        BuildError::Git(GitError::Io(err)) => io_error_kind(err),
        BuildError::NoDockerfile => bad_request("missing_field"),
        BuildError::NotFound(_) => (StatusCode::NOT_FOUND, "build_not_found"),
        BuildError::NotFinal { .. } | BuildError::EndNotStored { .. } => {
            (StatusCode::CONFLICT, "build_not_final")
        }
        BuildError::AlreadyFinal { .. } => (StatusCode::CONFLICT, "build_final"),
        BuildError::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
        BuildError::TooManyFollowers { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "too_many_followers")
        }
        BuildError::Forbidden(AccessError::ForbiddenRepository { .. }) => {
            (StatusCode::FORBIDDEN, "forbidden_repository")
        }
        BuildError::Forbidden(AccessError::NotOwnBuild { .. }) => {
            (StatusCode::FORBIDDEN, "forbidden")
        }
        BuildError::Store(err) => store_error_kind(err),
        BuildError::Docker(err) if err.is_unreachable() => {
            (StatusCode::SERVICE_UNAVAILABLE, "docker_unavailable")
        }
        BuildError::Docker(_) => (StatusCode::BAD_GATEWAY, "docker_error"),
    }
}

fn trigger_error_kind(err: &TriggerError) -> (StatusCode, &'static str) {
    match err {
        TriggerError::NotFound(_) => (StatusCode::NOT_FOUND, "trigger_not_found"),
        TriggerError::Unsigned | TriggerError::BadSignature => {
            (StatusCode::UNAUTHORIZED, "bad_signature")
        }
        TriggerError::InvalidPayload(_) => bad_request("invalid_payload"),
        TriggerError::InvalidRef(_) => bad_request("invalid_field"),
        TriggerError::NoTags { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "no_tags"),
        TriggerError::Build(err) => build_error_kind(err),
    }
}

fn webhook_error_kind(err: &WebhookError) -> (StatusCode, &'static str) {
    match err {
        WebhookError::NotFound(_) => (StatusCode::NOT_FOUND, "delivery_not_found"),
        WebhookError::StillPending(_) => (StatusCode::CONFLICT, "delivery_pending"),
        WebhookError::Store(err) => store_error_kind(err),
    }
}

impl ApiError {
    /// What a client may read: a full disk is said plainly, without its path.
    fn public_message(&self) -> String {
        match self.kind() {
            DISK_FULL => "the server's storage is full; try again later".to_string(),
            _ => self.to_string(),
        }
    }

    /// The headers that go with the status, in either API's shape.
    fn headers(&self) -> Vec<(HeaderName, String)> {
        match self {
            ApiError::Unauthorized => vec![(WWW_AUTHENTICATE, "Bearer".into())],
            ApiError::MethodNotAllowed { allow } => vec![(ALLOW, allow.to_string())],
            ApiError::Build(BuildError::QueueFull { .. }) => {
                vec![(RETRY_AFTER, QUEUE_FULL_RETRY_AFTER_SECS.to_string())]
            }
            ApiError::TooManyUploads => {
                vec![(RETRY_AFTER, UPLOADS_BUSY_RETRY_AFTER_SECS.to_string())]
            }
            ApiError::Build(BuildError::TooManyFollowers { .. }) => {
                vec![(RETRY_AFTER, FOLLOWERS_BUSY_RETRY_AFTER_SECS.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// Our own failure, logged under a fresh id the client is given instead of
    /// the detail.
    fn log_internal(&self) -> String {
        let request_id = uuid::Uuid::new_v4().to_string();
        log::error!("request {request_id}: {}: {self}", self.kind().0);
        request_id
    }
}
