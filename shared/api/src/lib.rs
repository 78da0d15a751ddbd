//! pushgate's Twilio-compatible HTTP API: one axum router that serves the local process and
//! (through `lambda_http`) every HTTP Lambda function, and the one place errors become HTTP
//! ([`error`]). The contract it serves is `openapi.json` beside this crate.
//!
//! May import: the core and axum/http. Never an adapter: handlers reach stores, queues and
//! providers only through the core's use cases and ports.

mod admin;
pub mod dto;
pub mod error;
pub mod guard;
mod handlers;
pub mod idempotency;
mod limits;
pub mod query;
pub mod requests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use error::ApiError;
use pushgate_core::app::Deps;

/// The API contract, `openapi.json` beside this crate: what the one-process server answers at
/// `GET /openapi.json`, byte for byte.
pub const OPENAPI_DOCUMENT: &str = include_str!("../openapi.json");

/// Default request body limit: 8 MiB — 10,000 recipients with about 600 bytes of variables
/// each; a send with more per recipient is split by the client (or the limit raised).
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
    /// `PUSHGATE_ADMIN_TOKEN` (its hash): turns on the one-process server's admin routes.
    pub admin_token: Option<pushgate_core::domain::TokenHash>,
    /// What `GET /metrics` answers (the one-process server's Prometheus text); no route without.
    pub metrics: Option<MetricsText>,
}

/// Renders the process's metrics as Prometheus text (the exporter is the process's choice).
#[derive(Clone)]
pub struct MetricsText(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsText")
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            admin_token: None,
            metrics: None,
        }
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
    /// API requests per second per account, in this process.
    requests: Arc<limits::RequestLimits>,
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

/// The API router over `deps` (the local process): every route, health, the contract
/// (`GET /openapi.json`) and (with an admin token) the admin routes.
pub fn router(deps: Deps, config: ApiConfig) -> Router {
    let routes = Function::ALL.iter().fold(Router::new(), |all, f| all.merge(functions::routes_of(*f)));
    let routes = routes.merge(health_routes()).merge(document_route()).merge(admin::routes());
    let routes = match config.metrics.clone() {
        Some(MetricsText(render)) => routes.route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()) }
            }),
        ),
        None => routes,
    };
    finish(routes, deps, config)
}

/// `GET /health` (liveness: the process answers) and `GET /health/ready` (readiness: its stores
/// answer), without credentials and without data. Served by the one-process router only: on
/// AWS, API Gateway and Lambda report health themselves.
fn health_routes() -> Router<ApiState> {
    use axum::routing::get;
    Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/health/ready", get(handlers::ready))
}

/// `GET /openapi.json`: the contract ([`OPENAPI_DOCUMENT`]) for tools and clients, without
/// credentials. Served by the one-process router only, like health. Not itself in the document
/// (nor in [`ROUTES`]): it is not part of the Twilio API.
fn document_route() -> Router<ApiState> {
    use axum::http::header::CONTENT_TYPE;
    Router::new().route(
        "/openapi.json",
        axum::routing::get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI_DOCUMENT) }),
    )
}

/// The router of one function (`Some`): only that function's routes; any other path is 404 and
/// any other method 405, in Twilio's error shape. `None` serves every route. This chooses at run
/// time, so it links every handler; a Lambda binary uses its own function in [`functions`].
pub fn router_for(deps: Deps, config: ApiConfig, only: Option<Function>) -> Router {
    match only {
        Some(function) => finish(functions::routes_of(function), deps, config),
        None => router(deps, config),
    }
}

/// One router per HTTP function, chosen at compile time: a binary that calls one of these links
/// only that function's handlers and the use cases they call (the fetch function links no
/// template engine, no send and no credential code). Every request passes [`guard`] first (URI
/// and header limits, path encoding), and every error answer leaves in Twilio's error shape.
pub mod functions {
    use super::*;

    macro_rules! function_routers {
        ($($name:ident: $variant:ident,)*) => {
            $(
                #[doc = concat!("The router of the `", stringify!($name), "` function.")]
                pub fn $name(deps: Deps, config: ApiConfig) -> Router {
                    finish(routes::$name(), deps, config)
                }
            )*

            /// The routes of `function`, chosen at run time.
            pub(super) fn routes_of(function: Function) -> Router<ApiState> {
                match function {
                    $(Function::$variant => routes::$name(),)*
                }
            }
        };
    }

    function_routers! {
        send: Send,
        fetch: Fetch,
        list: List,
        operations: Operations,
        credentials: Credentials,
        apps: Apps,
        device_registrations: DeviceRegistrations,
        users: Users,
        cancel: Cancel,
    }
}

/// The routes of each function: the handlers of its entries in [`ROUTES`] (a test checks that
/// each function serves exactly those).
mod routes {
    use axum::Router;
    use axum::routing::{get, patch, post};

    use super::ApiState;
    use super::handlers::*;

    pub(super) fn send() -> Router<ApiState> {
        Router::new().route("/v1/PushNotifications", post(send_notifications))
    }

    pub(super) fn fetch() -> Router<ApiState> {
        Router::new().route("/v1/PushNotifications/{pushNotificationId}", get(fetch_notification))
    }

    pub(super) fn list() -> Router<ApiState> {
        Router::new().route("/v1/PushNotifications", get(list_notifications))
    }

    pub(super) fn operations() -> Router<ApiState> {
        Router::new()
            .route("/v1/PushNotifications/Operations", get(list_operations))
            .route("/v1/PushNotifications/Operations/{operationId}", get(fetch_operation))
            .route("/v1/PushNotifications/Operations/{operationId}/Errors", get(list_operation_errors))
    }

    pub(super) fn cancel() -> Router<ApiState> {
        Router::new()
            .route("/v1/PushNotifications/{pushNotificationId}", patch(cancel_notification))
            .route("/v1/PushNotifications/Operations/{operationId}", patch(cancel_operation))
    }

    pub(super) fn credentials() -> Router<ApiState> {
        Router::new().route("/v1/PushNotifications/Credentials", post(create_credential).get(list_credentials)).route(
            "/v1/PushNotifications/Credentials/{credentialId}",
            get(fetch_credential).patch(patch_credential).delete(delete_credential),
        )
    }

    pub(super) fn apps() -> Router<ApiState> {
        Router::new()
            .route("/v1/PushNotifications/Apps", get(list_apps))
            .route("/v1/PushNotifications/Apps/{appName}", get(fetch_app).patch(patch_app))
    }

    pub(super) fn device_registrations() -> Router<ApiState> {
        Router::new()
            .route("/v1/PushNotifications/DeviceRegistrations", post(register_device).get(list_registrations))
            .route(
                "/v1/PushNotifications/DeviceRegistrations/{deviceRegistrationId}",
                get(fetch_registration).delete(delete_registration),
            )
    }

    pub(super) fn users() -> Router<ApiState> {
        Router::new()
            .route("/v1/PushNotifications/Users", get(list_users))
            .route("/v1/PushNotifications/Users/{userId}", get(fetch_user).delete(delete_user))
    }
}

/// `routes` with the fallbacks, the guard and the request log, over `deps`.
fn finish(routes: Router<ApiState>, deps: Deps, config: ApiConfig) -> Router {
    let state = ApiState { deps: Arc::new(deps), config: Arc::new(config), requests: Arc::default() };
    routes
        .route_layer(axum::middleware::from_fn(mark_route))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::idempotent))
        .layer(axum::middleware::from_fn(guard::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// The route template that answered (`/v1/PushNotifications/{pushNotificationId}`), carried on
/// the answer to the request log and the metrics (never the path itself: ids would make every
/// request its own series).
#[derive(Clone)]
struct RouteName(Arc<str>);

async fn mark_route(
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteName(Arc::from(matched.as_str())));
    }
    response
}

/// The response header naming the request, as Twilio's API names it.
pub const REQUEST_ID_HEADER: &str = "twilio-request-id";

/// A request's id: `RQ` + 32 lowercase hex digits (a ULID), Twilio's shape.
fn request_id(state: &ApiState) -> String {
    format!("RQ{:032x}", state.deps.ids.ulid(state.deps.clock.now()).0)
}

/// Names the request (the `Twilio-Request-Id` header of its answer, and a `request_id` field on
/// every log line written while it runs), then logs one line: method, route path (no query
/// string, no body), status, latency.
async fn log_request(
    axum::extract::State(state): axum::extract::State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let id = request_id(&state);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = async {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let took = started.elapsed();
        let millis = log_millis(took);
        let route = response.extensions().get::<RouteName>().map_or("unmatched", |r| &r.0);
        pushgate_core::app::metrics::request(route, method.as_str(), status, took);
        if status >= 500 {
            tracing::warn!(%method, %path, status, millis, "request");
        } else {
            tracing::info!(%method, %path, status, millis, "request");
        }
        response
    }
    .instrument(span)
    .await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A duration as the request log shows it: milliseconds with two decimals (`5.36`, never the
/// float noise `5.355020000000001`).
fn log_millis(took: std::time::Duration) -> f64 {
    (took.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod log_tests {
    use super::log_millis;
    use std::time::Duration;

    #[test]
    fn the_request_log_shows_milliseconds_with_at_most_two_decimals() {
        assert_eq!(log_millis(Duration::from_nanos(5_355_020)).to_string(), "5.36");
        assert_eq!(log_millis(Duration::from_nanos(69_889_333)).to_string(), "69.89");
        assert_eq!(log_millis(Duration::from_secs(2)).to_string(), "2000");
    }
}
