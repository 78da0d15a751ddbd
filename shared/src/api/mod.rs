//! The Twilio-compatible HTTP API: one axum router that serves the local process and (through
//! `lambda_http`) every HTTP Lambda function.

pub mod dto;
pub mod error;
mod handlers;
pub mod query;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::app::Deps;
pub use error::ApiError;

/// Default request body limit: 8 MiB (10,000 recipients with variables fit comfortably).
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `PUSHGATE_PUBLIC_URL`: base of absolute `Location` URLs; falls back to the `Host` header.
    pub public_url: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { public_url: None, max_body_bytes: DEFAULT_MAX_BODY_BYTES }
    }
}

#[derive(Clone)]
pub(crate) struct ApiState {
    deps: Arc<Deps>,
    config: Arc<ApiConfig>,
}

/// Every route the router serves, as (method, path template). The OpenAPI document and the SAM
/// template are checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/PushNotifications"),
    ("GET", "/v1/PushNotifications"),
    ("GET", "/v1/PushNotifications/{pushNotificationId}"),
    ("GET", "/v1/PushNotifications/Operations"),
    ("GET", "/v1/PushNotifications/Operations/{operationId}"),
    ("GET", "/v1/PushNotifications/Operations/{operationId}/Errors"),
    ("POST", "/v1/PushNotifications/Credentials"),
    ("GET", "/v1/PushNotifications/Credentials"),
    ("GET", "/v1/PushNotifications/Credentials/{credentialId}"),
    ("PATCH", "/v1/PushNotifications/Credentials/{credentialId}"),
    ("DELETE", "/v1/PushNotifications/Credentials/{credentialId}"),
    ("GET", "/v1/PushNotifications/Apps"),
    ("GET", "/v1/PushNotifications/Apps/{appName}"),
    ("PATCH", "/v1/PushNotifications/Apps/{appName}"),
];

/// The API router over `deps`.
pub fn router(deps: Deps, config: ApiConfig) -> Router {
    use handlers::*;
    let state = ApiState { deps: Arc::new(deps), config: Arc::new(config) };
    Router::new()
        .route("/v1/PushNotifications", post(send).get(list_notifications))
        .route("/v1/PushNotifications/Operations", get(list_operations))
        .route("/v1/PushNotifications/Operations/{operationId}", get(fetch_operation))
        .route("/v1/PushNotifications/Operations/{operationId}/Errors", get(list_operation_errors))
        .route("/v1/PushNotifications/Credentials", post(create_credential).get(list_credentials))
        .route(
            "/v1/PushNotifications/Credentials/{credentialId}",
            get(fetch_credential).patch(patch_credential).delete(delete_credential),
        )
        .route("/v1/PushNotifications/Apps", get(list_apps))
        .route("/v1/PushNotifications/Apps/{appName}", get(fetch_app).patch(patch_app))
        .route("/v1/PushNotifications/{pushNotificationId}", get(fetch_notification))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// One log line per request: method, route path (no query string, no body), status, latency.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, millis, "request");
    } else {
        tracing::info!(%method, %path, status, millis, "request");
    }
    response
}
