//! Every error code the API answers with, and its status: the one list that the
//! map ([`super::ApiError::kind`]), the OpenAPI document's responses and the
//! README's Errors table are all made from or checked against.

use actix_web::http::StatusCode;
use strum::{EnumIter, IntoStaticStr};

/// A stable, machine-readable error code (`code` in the v1 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    InvalidBody,
    InvalidDockerfile,
    InvalidRepository,
    InvalidTag,
    InvalidContext,
    InvalidOption,
    InvalidGit,
    InvalidMultipart,
    FieldLimit,
    MissingField,
    UnknownField,
    InvalidField,
    InvalidCallbackUrl,
    CallbackNotAllowed,
    InvalidId,
    InvalidQuery,
    InvalidPayload,
    Unauthorized,
    BadSignature,
    Forbidden,
    ForbiddenRepository,
    CrossSiteRequest,
    BuildNotFound,
    DeliveryNotFound,
    TriggerNotFound,
    ProvenanceNotFound,
    NotFound,
    MethodNotAllowed,
    UploadStalled,
    BuildNotFinal,
    BuildFinal,
    DeliveryPending,
    PayloadTooLarge,
    UnsupportedMediaType,
    HostNotAllowed,
    GitFetchFailed,
    GitTimeout,
    NoTags,
    QueueFull,
    Internal,
    DockerError,
    DockerUnavailable,
    TooManyUploads,
    TooManyFollowers,
    Unavailable,
    InsufficientStorage,
}

impl ErrorCode {
    /// The code as clients match on it, e.g. `invalid_repository`.
    pub fn code(self) -> &'static str {
        self.into()
    }

    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidBody | InvalidDockerfile | InvalidRepository | InvalidTag | InvalidContext
            | InvalidOption | InvalidGit | InvalidMultipart | FieldLimit | MissingField
            | UnknownField | InvalidField | InvalidCallbackUrl | CallbackNotAllowed | InvalidId
            | InvalidQuery | InvalidPayload => StatusCode::BAD_REQUEST,
            Unauthorized | BadSignature => StatusCode::UNAUTHORIZED,
            Forbidden | ForbiddenRepository | CrossSiteRequest => StatusCode::FORBIDDEN,
            BuildNotFound | DeliveryNotFound | TriggerNotFound | ProvenanceNotFound | NotFound => {
                StatusCode::NOT_FOUND
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UploadStalled => StatusCode::REQUEST_TIMEOUT,
            BuildNotFinal | BuildFinal | DeliveryPending => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HostNotAllowed => StatusCode::MISDIRECTED_REQUEST,
            GitFetchFailed | GitTimeout | NoTags => StatusCode::UNPROCESSABLE_ENTITY,
            QueueFull => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            DockerError => StatusCode::BAD_GATEWAY,
            DockerUnavailable | TooManyUploads | TooManyFollowers | Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

/// What any v1 route may answer before its handler runs, or from any handler.
pub const EVERY_ROUTE: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::HostNotAllowed,
    ErrorCode::Internal,
];

/// What a route open without a token may answer before its handler runs.
pub const OPEN_ROUTE: &[ErrorCode] = &[ErrorCode::HostNotAllowed, ErrorCode::Internal];

/// What a route that changes something may also answer (the browser checks).
pub const CHANGING_ROUTE: &[ErrorCode] = &[ErrorCode::CrossSiteRequest];

/// What a route that reads a request body may also answer.
pub const BODY_ROUTE: &[ErrorCode] = &[
    ErrorCode::InvalidBody,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UploadStalled,
    ErrorCode::TooManyUploads,
];

/// What a route that submits a build may answer.
pub const SUBMITTING_ROUTE: &[ErrorCode] = &[
    ErrorCode::InvalidMultipart,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::MissingField,
    ErrorCode::UnknownField,
    ErrorCode::InvalidField,
    ErrorCode::FieldLimit,
    ErrorCode::InvalidDockerfile,
    ErrorCode::InvalidRepository,
    ErrorCode::InvalidTag,
    ErrorCode::InvalidContext,
    ErrorCode::InvalidOption,
    ErrorCode::InvalidCallbackUrl,
    ErrorCode::CallbackNotAllowed,
    ErrorCode::ForbiddenRepository,
    ErrorCode::QueueFull,
    ErrorCode::InsufficientStorage,
];

/// One route's place in the OpenAPI document and the errors its handler can
/// answer with; the shared ones above are added by what the route is.
pub struct RouteErrors {
    /// `get`, `post` or `delete`.
    pub method: &'static str,
    /// As in the document, e.g. `/api/v1/builds/{id}`.
    pub path: &'static str,
    /// Needs a bearer token when tokens are configured (all but push events).
    pub token: bool,
    /// Reads a request body.
    pub body: bool,
    /// Submits a build from a form (the form's own checks).
    pub submits: bool,
    pub errors: &'static [ErrorCode],
}

impl RouteErrors {
    /// Every code the route can answer with, in order, each once.
    pub fn all(&self) -> Vec<ErrorCode> {
        let shared: [&[ErrorCode]; 4] = [
            match self.token {
                true => EVERY_ROUTE,
                false => OPEN_ROUTE,
            },
            match self.method {
                "get" => &[],
                _ => CHANGING_ROUTE,
            },
            match self.body {
                true => BODY_ROUTE,
                false => &[],
            },
            match self.submits {
                true => SUBMITTING_ROUTE,
                false => &[],
            },
        ];
        let mut all: Vec<ErrorCode> = shared
            .into_iter()
            .flatten()
            .chain(self.errors)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
