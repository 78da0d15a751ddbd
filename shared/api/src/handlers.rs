//! Route handlers: each takes what it needs through the extractors below (the caller, a
//! resource id from the path, the JSON body, the query pairs), calls one use case and answers
//! with a [`dto`] type. Every extractor fails with an [`ApiError`], so a bad request leaves in
//! Twilio's error shape whichever part of it is wrong.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::Value;

use super::query::{ListQuery, Paging};
use super::requests::{Cancel, CancelBody, CredentialBody, MakeDefault, MakeDefaultBody, RegistrationBody, SendBody};
use super::{ApiError, ApiState, PublicBase, dto};
use pushgate_core::app::auth::Principal;
use pushgate_core::app::credentials::{AppFilter, CredentialFilter, NewCredential};
use pushgate_core::app::directory::RegisterDevice;
use pushgate_core::app::ports::{NotificationFilter, OperationFilter};
use pushgate_core::app::{AppError, Limits, auth, cancel, credentials, directory, queries, send as send_uc};
use pushgate_core::domain::{
    AccountId, AppName, AuthToken, CredentialId, CredentialType, DeviceRegistrationId, FieldError, NotificationId,
    NotificationStatus, OperationId, OperationStatus, Provider, SendRequest, UserId,
};

type ApiResult = Result<Response, ApiError>;

// ---- extractors ----

/// The account a request authenticates as (HTTP Basic: account id and auth token, or API key
/// sid and secret) and its limits; a missing or wrong one is a 401, a request past the
/// account's requests-per-second a 429.
pub(super) struct Caller {
    pub account: AccountId,
    pub limits: Limits,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let principal = match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(principal)) => principal.clone(),
            None => principal(state, &parts.headers).await?,
        };
        Ok(Caller { account: principal.account, limits: principal.limits })
    }
}

/// The principal a layer before the handler already authenticated and counted (the idempotency
/// layer does, to scope the key): the handler asks the store and the bucket nothing again.
#[derive(Clone)]
pub(super) struct Authenticated(pub Principal);

/// Authenticates the request and takes one request from its account's bucket.
pub(super) async fn principal(state: &ApiState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or(AppError::Unauthorized)?;
    let (user, token) = basic.split_once(':').ok_or(AppError::Unauthorized)?;
    let principal = auth::authenticate(&state.deps, user, &AuthToken::new(token), state.deps.clock.now()).await?;
    state.requests.check(&principal.account, &principal.limits)?;
    Ok(principal)
}

/// A JSON request body: 415 unless JSON, 413 over the limit, 408 when it does not arrive within
/// the request timeout, 400 if malformed. What it holds is checked field by field by the use
/// case's parser, which reports every problem at once with its path (`to[3].token`).
pub(super) struct JsonBody(pub Value);

impl FromRequest<ApiState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = bounded_body(state, &parts.headers, body).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AppError::field("", format!("malformed JSON: {e}")).into())
    }
}

/// The whole body within the limits: 413 when it declares or reaches more than the body limit,
/// 408 when it does not arrive within the request timeout. The body must arrive in time (a
/// client trickling it would otherwise hold this request, its connection and its memory for as
/// long as it likes). Only the read is bounded: once the body is in, the use case runs to its
/// end, since stopping it half way could leave an Operation stored with only part of its chunks
/// queued (promise 1).
pub(super) async fn bounded_body(
    state: &ApiState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.config.max_body_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let timeout = state.config.request_timeout;
    match tokio::time::timeout(timeout, read_body(body, limit, declared)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::Timeout(timeout)),
    }
}

/// The whole body: 413 past `limit` bytes, 400 when it cannot be read (a broken chunked
/// encoding, a connection closed half way).
pub(super) async fn read_body(
    body: axum::body::Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt as _;
    let mut frames = body.into_data_stream();
    // Not the declared length: a client could declare megabytes and send nothing.
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(64 * 1024));
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|_| ApiError::Malformed("the request body could not be read"))?;
        if bytes.len() + frame.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        bytes.extend_from_slice(&frame);
    }
    Ok(bytes)
}

/// The id of the resource a route names (its one path parameter), parsed: one that does not
/// match its pattern → 400 naming the parameter, as the same id is as a filter or in a body; a
/// well-formed id that does not exist → 404 (from the use case).
pub(super) struct Id<T>(pub T);

/// An id type a route takes from its path.
pub(super) trait PathId: Sized {
    /// The path parameter's name in the contract.
    const NAME: &'static str;
    /// Parses the raw segment.
    fn from_path(raw: &str) -> Result<Self, ApiError>;
}

impl<T: PathId> FromRequestParts<ApiState> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Malformed("the request path could not be decoded"))?;
        T::from_path(&raw).map(Id)
    }
}

fn malformed(name: &str, pattern: &str) -> ApiError {
    AppError::field(name, format!("must match {pattern}")).into()
}

macro_rules! path_ids {
    ($($id:ty: $name:literal,)*) => {$(
        impl PathId for $id {
            const NAME: &'static str = $name;
            fn from_path(raw: &str) -> Result<Self, ApiError> {
                <$id>::parse(raw).map_err(|_| malformed(Self::NAME, <$id>::PATTERN))
            }
        }
    )*};
}

path_ids! {
    CredentialId: "credentialId",
    DeviceRegistrationId: "deviceRegistrationId",
    AppName: "appName",
    OperationId: "operationId",
    NotificationId: "pushNotificationId",
    UserId: "userId",
}

/// The query string as name/value pairs, parsed leniently (bad percent-encoding cannot produce
/// a non-Twilio error body); [`ListQuery`] then checks them.
pub(super) struct Params(Vec<(String, String)>);

impl FromRequestParts<ApiState> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Self, Self::Rejection> {
        let pairs = parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect());
        Ok(Params(pairs.unwrap_or_default()))
    }
}

/// The base of this request's absolute links: `PUSHGATE_PUBLIC_URL`, else the [`PublicBase`]
/// the server that received it set, else none (the links are then relative, which HTTP allows
/// in `Location`). The request's own `Host` is never used: the client chooses it.
pub(super) struct Links(String);

impl FromRequestParts<ApiState> for Links {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let base = match &state.config.public_url {
            Some(url) => url.trim_end_matches('/'),
            None => parts.extensions.get::<PublicBase>().map_or("", PublicBase::as_str),
        };
        Ok(Links(base.to_owned()))
    }
}

// ---- answers ----

fn located(status: StatusCode, location: &str, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `{resourceId, resourceLocation}` with a `Location` header.
fn resource(links: &Links, status: StatusCode, path: String, id: String) -> Response {
    let location = format!("{}{path}", links.0);
    located(status, &location.clone(), dto::ResourceRef { resource_id: id, resource_location: location })
}

/// A list answer: `{"<collection>": items, "pagination": {next, self}}`.
fn page<T: Serialize>(
    state: &ApiState,
    account: &AccountId,
    collection: &'static str,
    items: Vec<T>,
    paging: Paging,
    next: Option<&str>,
) -> Response {
    let pagination = paging.pagination(&state.deps.pages, account, next);
    Json(dto::ListPage { collection, items, pagination }).into_response()
}

/// A request body read into its command: every problem at once, as one 400.
fn command<B, C: TryFrom<B, Error = Vec<FieldError>>>(body: B) -> Result<C, ApiError> {
    C::try_from(body).map_err(|errors| AppError::Validation(errors).into())
}

fn one(body: impl Serialize) -> ApiResult {
    Ok(Json(body).into_response())
}

// ---- PushNotifications ----

pub(super) async fn send_notifications(
    State(state): State<ApiState>,
    Caller { account, limits }: Caller,
    links: Links,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let request: SendRequest = command(SendBody { json: body, received_at: state.deps.clock.now() })?;
    let id = send_uc::send(&state.deps, &account, &limits, request).await?;
    let location = format!("{}/v1/PushNotifications/Operations/{id}", links.0);
    let accepted = dto::OperationRef { operation_id: id, operation_location: location.clone() };
    Ok(located(StatusCode::ACCEPTED, &location, accepted))
}

pub(super) async fn fetch_notification(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Id(id): Id<NotificationId>,
) -> ApiResult {
    let n = queries::fetch_notification(&state.deps, &account, id).await?;
    one(dto::NotificationBody::from(&n))
}

pub(super) async fn cancel_notification(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<NotificationId>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let Cancel = command(CancelBody(body))?;
    cancel::cancel_notification(&state.deps, &account, id).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/{id}"), id.to_string()))
}

pub(super) async fn cancel_operation(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<OperationId>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let Cancel = command(CancelBody(body))?;
    cancel::cancel_operation(&state.deps, &account, id).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Operations/{id}"), id.to_string()))
}

pub(super) async fn list_notifications(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Params(params): Params,
) -> ApiResult {
    let allowed = ["operationId", "status", "tags", "startDate", "endDate", "user", "provider"];
    let mut q = ListQuery::new("notifications", params, &allowed);
    let filter = NotificationFilter {
        operation_id: q
            .parsed("operationId", &format!("must match {}", OperationId::PATTERN), |s| OperationId::parse(s).ok()),
        status: q.parsed(
            "status",
            "must be one of SCHEDULED, QUEUED, SENT, FAILED, CANCELED",
            NotificationStatus::parse,
        ),
        tags: q.tags(),
        start: q.date("startDate"),
        end: q.date("endDate"),
        user: q.parsed("user", &format!("must match {}", UserId::PATTERN), |s| UserId::parse(s).ok()),
        provider: q.parsed("provider", "must be one of APN, FCM", Provider::parse),
    };
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let found = queries::list_notifications(&state.deps, &account, &filter, &request).await?;
    let items = found.items.iter().map(dto::NotificationMetadata::from).collect();
    Ok(page(&state, &account, "pushNotifications", items, paging, found.next.as_deref()))
}

// ---- Operations ----

pub(super) async fn fetch_operation(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<OperationId>,
) -> ApiResult {
    let op = queries::fetch_operation(&state.deps, &account, id).await?;
    one(dto::OperationBody::new(&op, &links.0))
}

pub(super) async fn list_operations(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Params(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new("operations", params, &["status", "startDate", "endDate"]);
    let filter = OperationFilter {
        status: q.parsed("status", "must be one of SCHEDULED, PROCESSING, COMPLETED, CANCELED", OperationStatus::parse),
        start: q.date("startDate"),
        end: q.date("endDate"),
    };
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let found = queries::list_operations(&state.deps, &account, &filter, &request).await?;
    let items = found.items.iter().map(|op| dto::OperationBody::new(op, &links.0)).collect();
    Ok(page(&state, &account, "operations", items, paging, found.next.as_deref()))
}

pub(super) async fn list_operation_errors(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Id(id): Id<OperationId>,
    Params(params): Params,
) -> ApiResult {
    let q = ListQuery::new(&format!("operation-errors/{id}"), params, &[]);
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let found = queries::list_operation_errors(&state.deps, &account, id, &request).await?;
    let items = found.items.iter().map(dto::OperationErrorBody::from).collect();
    Ok(page(&state, &account, "errors", items, paging, found.next.as_deref()))
}

// ---- Credentials ----

fn credential_location(id: &CredentialId) -> String {
    format!("/v1/PushNotifications/Credentials/{id}")
}

pub(super) async fn create_credential(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let request: NewCredential = command(CredentialBody(body))?;
    let c = credentials::create_credential(&state.deps, &account, request).await?;
    Ok(resource(&links, StatusCode::ACCEPTED, credential_location(&c.id), c.id.to_string()))
}

pub(super) async fn list_credentials(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Params(params): Params,
) -> ApiResult {
    let mut q =
        ListQuery::new("credentials", params, &["appName", "credentialType", "isDefault", "startDate", "endDate"]);
    let filter = CredentialFilter {
        app_name: q.parsed("appName", &format!("must match {}", AppName::PATTERN), |s| AppName::parse(s).ok()),
        credential_type: q.parsed("credentialType", "must be one of APN, APN_SANDBOX, FCM", CredentialType::parse),
        is_default: q.boolean("isDefault"),
        start: q.date("startDate"),
        end: q.date("endDate"),
    };
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let found = credentials::list_credentials(&state.deps, &account, &filter, &request).await?;
    let items = found.items.iter().map(dto::CredentialBody::from).collect();
    Ok(page(&state, &account, "credentials", items, paging, found.next.as_deref()))
}

pub(super) async fn fetch_credential(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Id(id): Id<CredentialId>,
) -> ApiResult {
    let c = credentials::fetch_credential(&state.deps, &account, id).await?;
    one(dto::CredentialBody::from(&c))
}

pub(super) async fn patch_credential(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<CredentialId>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let MakeDefault = command(MakeDefaultBody(body))?;
    let c = credentials::patch_credential(&state.deps, &account, id).await?;
    Ok(resource(&links, StatusCode::OK, credential_location(&c.id), c.id.to_string()))
}

pub(super) async fn delete_credential(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<CredentialId>,
) -> ApiResult {
    let c = credentials::delete_credential(&state.deps, &account, id).await?;
    Ok(resource(&links, StatusCode::OK, credential_location(&c.id), c.id.to_string()))
}

// ---- Apps ----

pub(super) async fn list_apps(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Params(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new("apps", params, &["isDefault", "startDate", "endDate"]);
    let filter = AppFilter { is_default: q.boolean("isDefault"), start: q.date("startDate"), end: q.date("endDate") };
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let found = credentials::list_apps(&state.deps, &account, &filter, &request).await?;
    let items = found.items.iter().map(dto::AppBody::from).collect();
    Ok(page(&state, &account, "apps", items, paging, found.next.as_deref()))
}

pub(super) async fn fetch_app(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Id(name): Id<AppName>,
) -> ApiResult {
    let app = credentials::fetch_app(&state.deps, &account, &name).await?;
    one(dto::AppBody::from(&app))
}

pub(super) async fn patch_app(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(name): Id<AppName>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let MakeDefault = command(MakeDefaultBody(body))?;
    let app = credentials::patch_app(&state.deps, &account, &name).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Apps/{}", app.name), app.name.to_string()))
}

// ---- DeviceRegistrations ----

fn registration_location(id: &DeviceRegistrationId) -> String {
    format!("/v1/PushNotifications/DeviceRegistrations/{id}")
}

pub(super) async fn register_device(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let request: RegisterDevice = command(RegistrationBody(body))?;
    let r = directory::register(&state.deps, &account, request).await?;
    Ok(resource(&links, StatusCode::ACCEPTED, registration_location(&r.id), r.id.to_string()))
}

pub(super) async fn list_registrations(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Params(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new("device-registrations", params, &["userId", "appName"]);
    q.require("userId");
    let user = q.parsed("userId", &format!("must match {}", UserId::PATTERN), |s| UserId::parse(s).ok());
    let app = q.parsed("appName", &format!("must match {}", AppName::PATTERN), |s| AppName::parse(s).ok());
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let Some(user) = user else { return Err(AppError::field("userId", "is required").into()) };
    let found = directory::list_registrations(&state.deps, &account, user, app.as_ref(), &request).await?;
    let items = found.items.iter().map(dto::DeviceRegistrationBody::from).collect();
    Ok(page(&state, &account, "deviceRegistrations", items, paging, found.next.as_deref()))
}

pub(super) async fn fetch_registration(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Id(id): Id<DeviceRegistrationId>,
) -> ApiResult {
    let r = directory::fetch_registration(&state.deps, &account, &id).await?;
    one(dto::DeviceRegistrationBody::from(&r))
}

pub(super) async fn delete_registration(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<DeviceRegistrationId>,
) -> ApiResult {
    let r = directory::delete_registration(&state.deps, &account, &id).await?;
    Ok(resource(&links, StatusCode::OK, registration_location(&r.id), r.id.to_string()))
}

// ---- Users ----

pub(super) async fn list_users(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Params(params): Params,
) -> ApiResult {
    let q = ListQuery::new("users", params, &[]);
    let (request, paging) = q.finish(&state.deps.pages, &account)?;
    let found = directory::list_users(&state.deps, &account, &request).await?;
    let items = found.items.iter().map(dto::UserBody::from).collect();
    Ok(page(&state, &account, "users", items, paging, found.next.as_deref()))
}

pub(super) async fn fetch_user(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    Id(id): Id<UserId>,
) -> ApiResult {
    let u = directory::fetch_user(&state.deps, &account, id).await?;
    one(dto::UserBody::from(&u))
}

pub(super) async fn delete_user(
    State(state): State<ApiState>,
    Caller { account, .. }: Caller,
    links: Links,
    Id(id): Id<UserId>,
) -> ApiResult {
    let u = directory::delete_user(&state.deps, &account, id).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Users/{}", u.id), u.id.to_string()))
}

// ---- fallbacks ----

pub(super) async fn no_route() -> ApiError {
    ApiError::NoRoute
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `GET /health/ready`: `{"status": "ready"}`, or `503` when a store does not answer.
pub(crate) async fn ready(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    pushgate_core::app::health::ready(&state.deps).await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}
