//! The one place errors become HTTP responses: every layer's error maps to one
//! (status, code) pair here ([`ApiError::kind`]), with the headers that go with
//! it. Handlers return errors, never statuses. The v1 API renders them as
//! `{"error":{"code","message"}}` (`v1.rs`); the seed-compatible API in the
//! Django service's `{"message": ...}` shape (`seed.rs`).

mod codes;
mod seed;
mod v1;

use actix_web::http::header::{HeaderName, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};

use crate::builds::Readiness;
pub use codes::{ErrorCode, RouteErrors};
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
    /// The setting whose slots are all taken.
    #[error("too many uploads are arriving at once ({0}); try again shortly")]
    TooManyUploads(&'static str),
    #[error("malformed multipart body: {0}")]
    BadMultipart(String),
    #[error("the form has more than {limit} fields, more than a build takes (max_tags_per_build and the limits of the README's \"Limits\")")]
    TooManyParts { limit: usize },
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

    /// The code, which decides the status, so the two cannot drift apart.
    fn kind(&self) -> ErrorCode {
        match self {
            ApiError::Build(err) => build_error_kind(err),
            ApiError::Webhook(err) => webhook_error_kind(err),
            ApiError::Trigger(err) => trigger_error_kind(err),
            ApiError::BadBody(_) => ErrorCode::InvalidBody,
            ApiError::NotMultipart(_) => ErrorCode::UnsupportedMediaType,
            ApiError::TooLarge { .. } | ApiError::ContextTooLarge { .. } => TOO_LARGE,
            ApiError::Staging(err) => io_error_kind(err),
            ApiError::BadMultipart(_) => ErrorCode::InvalidMultipart,
            ApiError::TooManyParts { .. } => ErrorCode::FieldLimit,
            ApiError::UploadStalled { .. } => ErrorCode::UploadStalled,
            ApiError::TooManyUploads(_) => ErrorCode::TooManyUploads,
            ApiError::MissingField(_)
            | ApiError::MissingQuery(_)
            | ApiError::MissingCredentials => ErrorCode::MissingField,
            ApiError::NotReady(_) => ErrorCode::Unavailable,
            ApiError::UnknownField(_) => ErrorCode::UnknownField,
            ApiError::InvalidField { .. } => ErrorCode::InvalidField,
            ApiError::InvalidId(_) => ErrorCode::InvalidId,
            ApiError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::MissingScope { .. } => ErrorCode::Forbidden,
            ApiError::CrossSite(_) => ErrorCode::CrossSiteRequest,
            ApiError::HostNotAllowed(_) => ErrorCode::HostNotAllowed,
            ApiError::NoRoute => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
        }
    }

    /// Our own failure: the client learns only that it happened, and under
    /// which id the log has the detail (SQLite's words and file paths stay here).
    fn is_internal(&self) -> bool {
        self.kind() == ErrorCode::Internal
    }
}

const TOO_LARGE: ErrorCode = ErrorCode::PayloadTooLarge;
const INTERNAL: ErrorCode = ErrorCode::Internal;
const DISK_FULL: ErrorCode = ErrorCode::InsufficientStorage;

fn io_error_kind(err: &std::io::Error) -> ErrorCode {
    if err.kind() == std::io::ErrorKind::StorageFull {
        DISK_FULL
    } else {
        INTERNAL
    }
}

fn store_error_kind(err: &StoreError) -> ErrorCode {
    if err.is_disk_full() {
        DISK_FULL
    } else {
        INTERNAL
    }
}

fn build_error_kind(err: &BuildError) -> ErrorCode {
    match err {
        BuildError::InvalidDockerfile(_) => ErrorCode::InvalidDockerfile,
        BuildError::InvalidReference(ReferenceError::InvalidTag(_)) => ErrorCode::InvalidTag,
        BuildError::InvalidReference(_) => ErrorCode::InvalidRepository,
        BuildError::InvalidOption(_) => ErrorCode::InvalidOption,
        BuildError::OverLimit(_) => ErrorCode::FieldLimit,
        BuildError::InvalidContext(err) | BuildError::Git(GitError::Context(err)) => {
            context_error_kind(err)
        }
        BuildError::InvalidCallback(CallbackError::Invalid(_)) => ErrorCode::InvalidCallbackUrl,
        BuildError::InvalidCallback(CallbackError::HostNotAllowed { .. }) => {
            ErrorCode::CallbackNotAllowed
        }
        BuildError::Git(GitError::Invalid { .. }) => ErrorCode::InvalidGit,
        BuildError::Git(GitError::Fetch { .. }) => ErrorCode::GitFetchFailed,
        BuildError::Git(GitError::Timeout { .. } | GitError::Idle { .. }) => ErrorCode::GitTimeout,
        BuildError::Git(GitError::TooLarge { .. }) => TOO_LARGE,
        BuildError::Git(GitError::Io(err)) => io_error_kind(err),
        BuildError::NoDockerfile => ErrorCode::MissingField,
        BuildError::NotFound(_) => ErrorCode::BuildNotFound,
        BuildError::NoProvenance(_) | BuildError::NoSigningKey => ErrorCode::ProvenanceNotFound,
        BuildError::NotFinal { .. } | BuildError::EndNotStored { .. } => ErrorCode::BuildNotFinal,
        BuildError::AlreadyFinal { .. } => ErrorCode::BuildFinal,
        BuildError::QueueFull { .. } => ErrorCode::QueueFull,
        BuildError::TooManyFollowers { .. } => ErrorCode::TooManyFollowers,
        BuildError::Forbidden(AccessError::ForbiddenRepository { .. }) => {
            ErrorCode::ForbiddenRepository
        }
        BuildError::Forbidden(AccessError::NotOwnBuild { .. }) => ErrorCode::Forbidden,
        BuildError::Store(err) => store_error_kind(err),
        BuildError::Docker(err) if err.is_unreachable() => ErrorCode::DockerUnavailable,
        BuildError::Docker(_) => ErrorCode::DockerError,
    }
}

fn context_error_kind(err: &ContextError) -> ErrorCode {
    match err {
        ContextError::Io(err) => io_error_kind(err),
        ContextError::TooLarge { .. } | ContextError::TooManyEntries { .. } => TOO_LARGE,
        _ => ErrorCode::InvalidContext,
    }
}

fn trigger_error_kind(err: &TriggerError) -> ErrorCode {
    match err {
        TriggerError::NotFound(_) => ErrorCode::TriggerNotFound,
        TriggerError::Unsigned | TriggerError::BadSignature => ErrorCode::BadSignature,
        TriggerError::InvalidPayload(_) => ErrorCode::InvalidPayload,
        TriggerError::InvalidRef(_) => ErrorCode::InvalidField,
        TriggerError::NoTags { .. } => ErrorCode::NoTags,
        TriggerError::RefNotAllowed { .. } => ErrorCode::Forbidden,
        TriggerError::Build(err) => build_error_kind(err),
    }
}

fn webhook_error_kind(err: &WebhookError) -> ErrorCode {
    match err {
        WebhookError::NotFound(_) => ErrorCode::DeliveryNotFound,
        WebhookError::StillPending(_) => ErrorCode::DeliveryPending,
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
            ApiError::TooManyUploads(_) => {
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
        log::error!("request {request_id}: {}: {self}", self.kind().status());
        request_id
    }
}
