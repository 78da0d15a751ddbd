//! pushgate's Twilio-compatible HTTP API: one axum router that serves the local process and
//! (through `lambda_http`) every HTTP Lambda function, and the one place errors become HTTP
//! ([`error`]). The contract it serves is `openapi.json` beside this crate.
//!
//! May import: the core and axum/http. Never an adapter: handlers reach stores, queues and
//! providers only through the core's use cases and ports.

pub mod dto;
pub mod error;
pub mod guard;
mod handlers;
pub mod query;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
use pushgate_core::app::Deps;

/// Default request body limit: 8 MiB (10,000 recipients with variables fit comfortably).
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Default time allowed for a request body to arrive: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `PUSHGATE_PUBLIC_URL`: base of absolute `Location` URLs; without it, the [`PublicBase`]
    /// the server that received the request set (never the request's `Host`).
    pub public_url: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `PUSHGATE_REQUEST_TIMEOUT_SECS`: how long a handler waits for the request body.
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { public_url: None, max_body_bytes: DEFAULT_MAX_BODY_BYTES, request_timeout: DEFAULT_REQUEST_TIMEOUT }
    }
}

/// The base of absolute links (`Location`, `operationLocation`, `resourceLocation`) for the
/// requests one server received, set by that server as a request extension: the address
/// `pushgate-local` listens on, or the domain (and stage) API Gateway reports in a Lambda
/// event's request context. Never taken from the request's own headers, which the client
/// chooses. `PUSHGATE_PUBLIC_URL`, when set, wins over it; with neither, links are relative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase(Arc<str>);

impl PublicBase {
    /// A base such as `http://127.0.0.1:3000` (a trailing `/` is dropped).
    pub fn new(base: &str) -> Self {
        Self(Arc::from(base.trim_end_matches('/')))
    }

    /// The base, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone)]
pub(crate) struct ApiState {
    deps: Arc<Deps>,
    config: Arc<ApiConfig>,
}

/// The HTTP Lambda function that serves a route on AWS: one folder in `functions/` each, and
/// one function resource in `template.yaml` (a test checks the template against [`ROUTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `functions/send`: `POST /v1/PushNotifications`.
    Send,
    /// `functions/fetch`: one notification.
    Fetch,
    /// `functions/list`: notifications with filters.
    List,
    /// `functions/operations`: operations and their errors.
    Operations,
    /// `functions/credentials`: Credentials.
    Credentials,
    /// `functions/apps`: Apps.
    Apps,
    /// `functions/device-registrations`: DeviceRegistrations.
    DeviceRegistrations,
    /// `functions/users`: Users.
    Users,
    /// `functions/cancel`: canceling notifications and operations.
    Cancel,
}

impl Function {
    /// Every HTTP function.
    pub const ALL: [Function; 9] = [
        Function::Send,
        Function::Fetch,
        Function::List,
        Function::Operations,
        Function::Credentials,
        Function::Apps,
        Function::DeviceRegistrations,
        Function::Users,
        Function::Cancel,
    ];

    /// Its folder (and binary) name under `functions/`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Send => "send",
            Function::Fetch => "fetch",
            Function::List => "list",
            Function::Operations => "operations",
            Function::Credentials => "credentials",
            Function::Apps => "apps",
            Function::DeviceRegistrations => "device-registrations",
            Function::Users => "users",
            Function::Cancel => "cancel",
        }
    }
}

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template (`{name}` for parameters).
    pub path: &'static str,
    /// The function serving it on AWS.
    pub function: Function,
}

const fn route(method: &'static str, path: &'static str, function: Function) -> Route {
    Route { method, path, function }
}

/// Every route the router serves. The OpenAPI document and the SAM template are checked against
/// this list.
pub const ROUTES: &[Route] = &[
    route("POST", "/v1/PushNotifications", Function::Send),
    route("GET", "/v1/PushNotifications", Function::List),
    route("GET", "/v1/PushNotifications/{pushNotificationId}", Function::Fetch),
    route("PATCH", "/v1/PushNotifications/{pushNotificationId}", Function::Cancel),
    route("GET", "/v1/PushNotifications/Operations", Function::Operations),
    route("GET", "/v1/PushNotifications/Operations/{operationId}", Function::Operations),
    route("PATCH", "/v1/PushNotifications/Operations/{operationId}", Function::Cancel),
    route("GET", "/v1/PushNotifications/Operations/{operationId}/Errors", Function::Operations),
    route("POST", "/v1/PushNotifications/Credentials", Function::Credentials),
    route("GET", "/v1/PushNotifications/Credentials", Function::Credentials),
    route("GET", "/v1/PushNotifications/Credentials/{credentialId}", Function::Credentials),
    route("PATCH", "/v1/PushNotifications/Credentials/{credentialId}", Function::Credentials),
    route("DELETE", "/v1/PushNotifications/Credentials/{credentialId}", Function::Credentials),
    route("GET", "/v1/PushNotifications/Apps", Function::Apps),
    route("GET", "/v1/PushNotifications/Apps/{appName}", Function::Apps),
    route("PATCH", "/v1/PushNotifications/Apps/{appName}", Function::Apps),
    route("POST", "/v1/PushNotifications/DeviceRegistrations", Function::DeviceRegistrations),
    route("GET", "/v1/PushNotifications/DeviceRegistrations", Function::DeviceRegistrations),
    route("GET", "/v1/PushNotifications/DeviceRegistrations/{deviceRegistrationId}", Function::DeviceRegistrations),
    route("DELETE", "/v1/PushNotifications/DeviceRegistrations/{deviceRegistrationId}", Function::DeviceRegistrations),
    route("GET", "/v1/PushNotifications/Users", Function::Users),
    route("GET", "/v1/PushNotifications/Users/{userId}", Function::Users),
    route("DELETE", "/v1/PushNotifications/Users/{userId}", Function::Users),
];

/// The API router over `deps`: every route (the local process).
pub fn router(deps: Deps, config: ApiConfig) -> Router {
    router_for(deps, config, None)
}

/// The router of one Lambda function (`Some`): only that function's routes; any other path is
/// 404 and any other method 405, in Twilio's error shape. `None` serves every route. Every
/// request passes [`guard`] first (URI and header limits, path encoding), and every error
/// answer leaves in Twilio's error shape.
pub fn router_for(deps: Deps, config: ApiConfig, only: Option<Function>) -> Router {
    use axum::routing::{MethodRouter, delete, patch};
    use handlers::*;
    let state = ApiState { deps: Arc::new(deps), config: Arc::new(config) };
    let mut router = Router::new();
    for r in ROUTES.iter().filter(|r| only.is_none_or(|f| f == r.function)) {
        let method: MethodRouter<ApiState> = match (r.method, r.path) {
            ("POST", "/v1/PushNotifications") => post(send),
            ("GET", "/v1/PushNotifications") => get(list_notifications),
            ("GET", "/v1/PushNotifications/{pushNotificationId}") => get(fetch_notification),
            ("PATCH", "/v1/PushNotifications/{pushNotificationId}") => patch(cancel_notification),
            ("GET", "/v1/PushNotifications/Operations") => get(list_operations),
            ("GET", "/v1/PushNotifications/Operations/{operationId}") => get(fetch_operation),
            ("PATCH", "/v1/PushNotifications/Operations/{operationId}") => patch(cancel_operation),
            ("GET", "/v1/PushNotifications/Operations/{operationId}/Errors") => get(list_operation_errors),
            ("POST", "/v1/PushNotifications/Credentials") => post(create_credential),
            ("GET", "/v1/PushNotifications/Credentials") => get(list_credentials),
            ("GET", "/v1/PushNotifications/Credentials/{credentialId}") => get(fetch_credential),
            ("PATCH", "/v1/PushNotifications/Credentials/{credentialId}") => patch(patch_credential),
            ("DELETE", "/v1/PushNotifications/Credentials/{credentialId}") => delete(delete_credential),
            ("GET", "/v1/PushNotifications/Apps") => get(list_apps),
            ("GET", "/v1/PushNotifications/Apps/{appName}") => get(fetch_app),
            ("PATCH", "/v1/PushNotifications/Apps/{appName}") => patch(patch_app),
            ("POST", "/v1/PushNotifications/DeviceRegistrations") => post(register_device),
            ("GET", "/v1/PushNotifications/DeviceRegistrations") => get(list_registrations),
            ("GET", "/v1/PushNotifications/DeviceRegistrations/{deviceRegistrationId}") => get(fetch_registration),
            ("DELETE", "/v1/PushNotifications/DeviceRegistrations/{deviceRegistrationId}") => {
                delete(delete_registration)
            }
            ("GET", "/v1/PushNotifications/Users") => get(list_users),
            ("GET", "/v1/PushNotifications/Users/{userId}") => get(fetch_user),
            ("DELETE", "/v1/PushNotifications/Users/{userId}") => delete(delete_user),
            (method, path) => unreachable!("ROUTES lists {method} {path} without a handler"),
        };
        router = router.route(r.path, method);
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(guard::guard))
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
