//! The one place where errors become HTTP responses, in the contract's error body (`openapi.json`):
//! `{code, status, message, moreInfo, errors?}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use pushgate_core::app::AppError;
use pushgate_core::domain::FieldError;

/// Documentation base for `moreInfo`.
pub const MORE_INFO: &str = "https://github.com/pushgate/pushgate/blob/main/README.md#errors";

/// An HTTP-level failure.
#[derive(Debug)]
pub enum ApiError {
    /// A use case failed.
    App(AppError),
    /// The body is larger than the configured limit.
    TooLarge(usize),
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// No such route.
    NoRoute,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request body did not arrive within the request timeout.
    Timeout(std::time::Duration),
    /// The request target is longer than the limit (bytes).
    UriTooLong(usize),
    /// The request headers are larger or more numerous than the limits.
    HeadersTooLarge,
    /// The request cannot be read (e.g. its path is not percent-encoded UTF-8).
    Malformed(&'static str),
    /// An error answer the framework made (an extractor's rejection), re-shaped: its status
    /// with code `20000 + status`.
    Status(StatusCode),
    /// The `Idempotency-Key` was used for a different request (method, path or body).
    IdempotencyMismatch,
    /// A request with the same `Idempotency-Key` is still running.
    IdempotencyInProgress,
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        Self::App(e)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    code: u32,
    status: u16,
    message: String,
    more_info: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldBody>,
}

#[derive(Serialize)]
struct FieldBody {
    field: String,
    message: String,
}

impl From<FieldError> for FieldBody {
    fn from(e: FieldError) -> Self {
        Self { field: e.field, message: e.message }
    }
}

/// Builds an error response.
fn respond(status: StatusCode, code: u32, message: String, errors: Vec<FieldError>) -> Response {
    let body = Body {
        code,
        status: status.as_u16(),
        message,
        more_info: MORE_INFO.to_owned(),
        errors: errors.into_iter().map(FieldBody::from).collect(),
    };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::App(AppError::Validation(errors)) => {
                respond(StatusCode::BAD_REQUEST, 20001, "Request validation failed".into(), errors)
            }
            ApiError::App(AppError::Unauthorized) => {
                let mut r = respond(
                    StatusCode::UNAUTHORIZED,
                    20003,
                    "Authentication required: use HTTP Basic with your account id and auth token".into(),
                    vec![],
                );
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"pushgate\""));
                r
            }
            ApiError::App(AppError::NotFound(what)) => {
                respond(StatusCode::NOT_FOUND, 20404, format!("The requested {what} was not found"), vec![])
            }
            ApiError::App(AppError::NotAllowed { code, message }) => {
                respond(StatusCode::BAD_REQUEST, code, message, vec![])
            }
            ApiError::App(AppError::Unavailable { retry_after }) => {
                let mut r = respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    20503,
                    "Service temporarily unavailable; nothing was changed. Retry later".into(),
                    vec![],
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
            ApiError::App(AppError::Limit { message, retry_after }) => {
                let mut r = respond(StatusCode::TOO_MANY_REQUESTS, 20429, message, vec![]);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
            ApiError::App(AppError::Unexpected(detail)) => {
                error!(detail = %detail, "unexpected failure");
                respond(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal server error".into(), vec![])
            }
            ApiError::TooLarge(limit) => respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                20413,
                format!("Request body is larger than {limit} bytes"),
                vec![],
            ),
            ApiError::UnsupportedMediaType => respond(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                20415,
                "Request body must be JSON (Content-Type: application/json)".into(),
                vec![],
            ),
            ApiError::NoRoute => respond(StatusCode::NOT_FOUND, 20404, "No such resource".into(), vec![]),
            ApiError::MethodNotAllowed => {
                respond(StatusCode::METHOD_NOT_ALLOWED, 20405, "Method not allowed on this resource".into(), vec![])
            }
            ApiError::Timeout(limit) => {
                let mut r = respond(
                    StatusCode::REQUEST_TIMEOUT,
                    20408,
                    format!("The request body did not arrive within {} s; nothing was changed", limit.as_secs()),
                    vec![],
                );
                // The rest of the body may still be on its way: this connection is done.
                r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            ApiError::UriTooLong(limit) => {
                respond(StatusCode::URI_TOO_LONG, 20414, format!("Request URI is longer than {limit} bytes"), vec![])
            }
            ApiError::HeadersTooLarge => respond(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                20431,
                format!(
                    "Request headers are larger than {} bytes or more than {} fields",
                    super::guard::MAX_HEADER_BYTES,
                    super::guard::MAX_HEADERS
                ),
                vec![],
            ),
            ApiError::Malformed(what) => {
                respond(StatusCode::BAD_REQUEST, 20400, format!("Malformed request: {what}"), vec![])
            }
            ApiError::IdempotencyMismatch => respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                20422,
                "This Idempotency-Key was used with a different request (method, path or body) in the last 24 hours; \
                 use a new key for a new request"
                    .into(),
                vec![],
            ),
            ApiError::IdempotencyInProgress => {
                let mut r = respond(
                    StatusCode::CONFLICT,
                    20409,
                    "A request with this Idempotency-Key is still in progress; retry later to get its answer".into(),
                    vec![],
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
                r
            }
            ApiError::Status(status) => {
                let code = 20_000 + u32::from(status.as_u16());
                let message = status.canonical_reason().unwrap_or("Request failed").to_owned();
                respond(status, code, message, vec![])
            }
        }
    }
}
