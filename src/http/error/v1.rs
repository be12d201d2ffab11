//! Errors in the v1 API's shape: `{"error": {"code", "message"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::ApiError;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().status()
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = (self.kind().status(), self.kind().code());
        let mut response = HttpResponse::build(status);
        for header in self.headers() {
            response.insert_header(header);
        }
        match self {
            // The client may still be sending; it is told, and the connection closed.
            ApiError::UploadStalled { .. } => {
                response.force_close();
            }
            // /readyz answers in its own shape, the same as when ready.
            ApiError::NotReady(readiness) => {
                return response.json(json!({
                    "status": code,
                    "builders_down": readiness.builders_down,
                    "reasons": readiness.reasons,
                }));
            }
            _ => {}
        }
        if self.is_internal() {
            let request_id = self.log_internal();
            return response.json(json!({
                "error": {
                    "code": code,
                    "message": format!("internal error; the server log has the detail under request id {request_id}"),
                    "request_id": request_id,
                }
            }));
        }
        if status.is_server_error() {
            log::error!("{status}: {self}");
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code,
                message: self.public_message(),
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
