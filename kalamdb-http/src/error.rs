//! The one error body and the one place where failures become status codes.

use kalamdb_engine::{EngineError, ErrorKind};
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::api::SqlResult;

/// What went wrong.
#[derive(Debug, Clone, Object)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `INVALID_SQL`, `NOT_FOUND`, `UNAUTHORIZED`.
    pub code: String,
    /// Human-readable message naming the problem.
    pub message: String,
    /// The statement that failed, when the error belongs to one.
    #[oai(skip_serializing_if_is_none)]
    pub statement: Option<String>,
}

/// Body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ErrorResponse {
    /// Always `error`.
    pub status: String,
    // No doc comment: poem-openapi would wrap the `$ref` in an `allOf` and
    // SDK generators would then make a second, anonymous error type.
    pub error: ErrorDetail,
    /// Results of the statements that succeeded before the failure.
    pub results: Vec<SqlResult>,
    /// Time spent on the request, in milliseconds.
    pub execution_time_ms: f64,
}

impl poem_openapi::types::Example for ErrorResponse {
    fn example() -> Self {
        ErrorResponse::new(
            "NOT_FOUND",
            "namespace app does not exist; create it with CREATE NAMESPACE app",
        )
    }
}

impl ErrorResponse {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            status: "error".into(),
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                statement: None,
            },
            results: Vec::new(),
            execution_time_ms: 0.0,
        }
    }
}

/// Error responses shared by every operation.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Invalid SQL, unknown object, constraint violation or malformed request. Codes:
    /// `INVALID_SQL`, `QUERY_ERROR`, `NOT_FOUND`, `ALREADY_EXISTS`, `INVALID_INPUT`,
    /// `CONSTRAINT_VIOLATION`, `UNSUPPORTED`, `INVALID_REQUEST`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorResponse>),
    /// Missing, invalid or expired token, or wrong credentials. Code: `UNAUTHORIZED`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorResponse>),
    /// The caller's role does not allow this. Code: `PERMISSION_DENIED`.
    #[oai(status = 403)]
    Forbidden(Json<ErrorResponse>),
    /// The request body is larger than the configured limit. Code: `PAYLOAD_TOO_LARGE`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorResponse>),
    /// The request has no `Content-Type` or one other than `application/json`.
    /// Code: `UNSUPPORTED_MEDIA_TYPE`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorResponse>),
    /// A server fault; the server logs it. Code: `INTERNAL_ERROR`.
    #[oai(status = 500)]
    Internal(Json<ErrorResponse>),
}

impl ApiError {
    /// The response for `status` with `body`.
    pub fn with_status(status: StatusCode, body: ErrorResponse) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(Json(body)),
            StatusCode::FORBIDDEN => ApiError::Forbidden(Json(body)),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(Json(body)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(Json(body)),
            s if s.is_server_error() => ApiError::Internal(Json(body)),
            _ => ApiError::BadRequest(Json(body)),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::Unauthorized(Json(ErrorResponse::new("UNAUTHORIZED", message)))
    }
}

/// HTTP status of an engine error.
pub fn status_of(error: &EngineError) -> StatusCode {
    match error.kind() {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        if error.kind() == ErrorKind::Internal {
            tracing::error!("server fault: {error}");
        }
        ApiError::with_status(
            status_of(&error),
            ErrorResponse::new(error.code(), error.to_string()),
        )
    }
}

/// Code for errors raised by the HTTP framework itself (bad JSON, unknown
/// path, missing token, body too large).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        s if s.is_server_error() => "INTERNAL_ERROR",
        _ => "INVALID_REQUEST",
    }
}
