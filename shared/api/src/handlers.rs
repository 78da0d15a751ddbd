//! Route handlers: authenticate, decode the wire, call one use case, encode the answer.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::query::ListQuery;
use super::{ApiError, ApiState, PublicBase, dto};
use pushgate_core::app::credentials::{AppFilter, CredentialFilter};
use pushgate_core::app::ports::{NotificationFilter, OperationFilter};
use pushgate_core::app::{AppError, auth, cancel, credentials, directory, queries, send as send_uc};
use pushgate_core::domain::{
    AccountId, AppName, AuthToken, CredentialId, CredentialType, DeviceRegistrationId, NotificationId,
    NotificationStatus, OperationId, OperationStatus, Provider, UserId,
};

/// The raw query string; parsed leniently (bad percent-encoding cannot produce a non-Twilio
/// error body) into name/value pairs by [`pairs`].
type Params = RawQuery;

fn pairs(query: Option<String>) -> Vec<(String, String)> {
    query.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}
type ApiResult = Result<Response, ApiError>;

/// The account a request authenticates as (HTTP Basic: account id and auth token), extracted
/// before the handler runs; a missing or wrong one is a 401.
pub(super) struct Caller(pub AccountId);

impl axum::extract::FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &ApiState) -> Result<Self, ApiError> {
        account(state, &parts.headers).await.map(Caller)
    }
}

async fn account(state: &ApiState, headers: &HeaderMap) -> Result<AccountId, ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or(AppError::Unauthorized)?;
    let (user, token) = basic.split_once(':').ok_or(AppError::Unauthorized)?;
    Ok(auth::authenticate(&state.deps, user, &AuthToken::new(token)).await?)
}

/// Reads a JSON body: 415 unless JSON, 413 over the limit, 408 when it does not arrive within
/// the request timeout, 400 if malformed.
async fn json_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let is_json =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
            |m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            },
        );
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = state.config.max_body_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    // The body must arrive within the request timeout (a client trickling it would otherwise
    // hold this request, its connection and its memory for as long as it likes). Only the read
    // is bounded: once the body is in, the use case runs to its end, since stopping it half way
    // could leave an Operation stored with only part of its chunks queued (promise 1).
    let timeout = state.config.request_timeout;
    let bytes = match tokio::time::timeout(timeout, read_body(body, limit, declared)).await {
        Ok(read) => read?,
        Err(_) => return Err(ApiError::Timeout(timeout)),
    };
    serde_json::from_slice(&bytes).map_err(|e| AppError::field("", format!("malformed JSON: {e}")).into())
}

/// The whole body: 413 past `limit` bytes, 400 when it cannot be read (a broken chunked
/// encoding, a connection closed half way).
async fn read_body(body: Body, limit: usize, declared: Option<usize>) -> Result<Vec<u8>, ApiError> {
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

/// The base of this request's absolute links: `PUSHGATE_PUBLIC_URL`, else the [`PublicBase`]
/// the server that received it set, else none (the links are then relative, which HTTP allows
/// in `Location`). The request's own `Host` is never used: the client chooses it.
pub(super) struct Links(String);

impl axum::extract::FromRequestParts<ApiState> for Links {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let base = match &state.config.public_url {
            Some(url) => url.trim_end_matches('/'),
            None => parts.extensions.get::<PublicBase>().map_or("", PublicBase::as_str),
        };
        Ok(Links(base.to_owned()))
    }
}

fn located(status: StatusCode, location: String, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn resource(links: &Links, status: StatusCode, path: String, id: String) -> Response {
    let location = format!("{}{path}", links.0);
    located(status, location.clone(), json!({ "resourceId": id, "resourceLocation": location }))
}

fn path_id<T, E>(raw: &str, name: &str, pattern: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, ApiError> {
    parse(raw).map_err(|_| AppError::field(name, format!("must match {pattern}")).into())
}

/// A time-ordered id from the path: malformed → 400; well-formed but not one pushgate could have
/// issued → 404, like any unknown id.
fn ulid_path_id<T, E>(
    raw: &str,
    name: &str,
    pattern: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    well_formed: impl Fn(&str) -> bool,
    resource: &'static str,
) -> Result<T, ApiError> {
    match parse(raw) {
        Ok(id) => Ok(id),
        Err(_) if well_formed(raw) => Err(AppError::NotFound(resource).into()),
        Err(_) => Err(AppError::field(name, format!("must match {pattern}")).into()),
    }
}

fn operation_id(raw: &str) -> Result<OperationId, ApiError> {
    ulid_path_id(raw, "operationId", OperationId::PATTERN, OperationId::parse, OperationId::is_well_formed, "Operation")
}

fn notification_id(raw: &str) -> Result<NotificationId, ApiError> {
    ulid_path_id(
        raw,
        "pushNotificationId",
        NotificationId::PATTERN,
        NotificationId::parse,
        NotificationId::is_well_formed,
        "PushNotification",
    )
}

fn credential_id(raw: &str) -> Result<CredentialId, ApiError> {
    path_id(raw, "credentialId", CredentialId::PATTERN, CredentialId::parse)
}

fn registration_id(raw: &str) -> Result<DeviceRegistrationId, ApiError> {
    path_id(raw, "deviceRegistrationId", DeviceRegistrationId::PATTERN, DeviceRegistrationId::parse)
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    ulid_path_id(raw, "userId", UserId::PATTERN, UserId::parse, UserId::is_well_formed, "User")
}

fn app_name(raw: &str) -> Result<AppName, ApiError> {
    path_id(raw, "appName", AppName::PATTERN, AppName::parse)
}

/// A list answer: `{"<collection>": items, "pagination": {next, self}}`.
fn list_response<T>(
    state: &ApiState,
    account: &AccountId,
    collection: &str,
    items: &[T],
    to_json: impl Fn(&T) -> Value,
    paging: &super::query::Paging,
    next: Option<&str>,
) -> Response {
    let items: Vec<Value> = items.iter().map(to_json).collect();
    let pagination = paging.json(&state.deps.pages, account, next);
    Json(json!({ collection: items, "pagination": pagination })).into_response()
}

// ---- PushNotifications ----

pub(super) async fn send_notifications(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = json_body(&state, &headers, body).await?;
    let id = send_uc::send(&state.deps, &account, body).await?;
    let location = format!("{}/v1/PushNotifications/Operations/{id}", links.0);
    Ok(located(StatusCode::ACCEPTED, location.clone(), json!({ "operationId": id, "operationLocation": location })))
}

pub(super) async fn fetch_notification(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let id = notification_id(&id)?;
    let n = queries::fetch_notification(&state.deps, &account, id).await?;
    Ok(Json(dto::notification(&n)).into_response())
}

pub(super) async fn cancel_notification(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Body,
) -> ApiResult {
    let id = notification_id(&raw)?;
    let body = json_body(&state, &headers, body).await?;
    cancel::cancel_notification(&state.deps, &account, id, &body).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/{id}"), id.to_string()))
}

pub(super) async fn cancel_operation(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Body,
) -> ApiResult {
    let id = operation_id(&raw)?;
    let body = json_body(&state, &headers, body).await?;
    cancel::cancel_operation(&state.deps, &account, id, &body).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Operations/{id}"), id.to_string()))
}

pub(super) async fn list_notifications(
    State(state): State<ApiState>,
    Caller(account): Caller,
    RawQuery(params): Params,
) -> ApiResult {
    let allowed = ["operationId", "status", "tags", "startDate", "endDate", "user", "provider"];
    let mut q = ListQuery::new("notifications", pairs(params), &allowed);
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
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let result = queries::list_notifications(&state.deps, &account, &filter, &page).await?;
    Ok(list_response(
        &state,
        &account,
        "pushNotifications",
        &result.items,
        dto::notification_metadata,
        &paging,
        result.next.as_deref(),
    ))
}

// ---- Operations ----

pub(super) async fn fetch_operation(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let id = operation_id(&id)?;
    let op = queries::fetch_operation(&state.deps, &account, id).await?;
    Ok(Json(dto::operation(&op)).into_response())
}

pub(super) async fn list_operations(
    State(state): State<ApiState>,
    Caller(account): Caller,
    RawQuery(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new("operations", pairs(params), &["status", "startDate", "endDate"]);
    let filter = OperationFilter {
        status: q.parsed("status", "must be one of SCHEDULED, PROCESSING, COMPLETED, CANCELED", OperationStatus::parse),
        start: q.date("startDate"),
        end: q.date("endDate"),
    };
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let result = queries::list_operations(&state.deps, &account, &filter, &page).await?;
    Ok(list_response(&state, &account, "operations", &result.items, dto::operation, &paging, result.next.as_deref()))
}

pub(super) async fn list_operation_errors(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
    RawQuery(params): Params,
) -> ApiResult {
    let id = operation_id(&id)?;
    let q = ListQuery::new(&format!("operation-errors/{id}"), pairs(params), &[]);
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let result = queries::list_operation_errors(&state.deps, &account, id, &page).await?;
    Ok(list_response(&state, &account, "errors", &result.items, dto::operation_error, &paging, result.next.as_deref()))
}

// ---- Credentials ----

pub(super) async fn create_credential(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = json_body(&state, &headers, body).await?;
    let c = credentials::create_credential(&state.deps, &account, &body).await?;
    Ok(resource(&links, StatusCode::ACCEPTED, format!("/v1/PushNotifications/Credentials/{}", c.id), c.id.to_string()))
}

pub(super) async fn list_credentials(
    State(state): State<ApiState>,
    Caller(account): Caller,
    RawQuery(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new(
        "credentials",
        pairs(params),
        &["appName", "credentialType", "isDefault", "startDate", "endDate"],
    );
    let filter = CredentialFilter {
        app_name: q.parsed("appName", &format!("must match {}", AppName::PATTERN), |s| AppName::parse(s).ok()),
        credential_type: q.parsed("credentialType", "must be one of APN, APN_SANDBOX, FCM", CredentialType::parse),
        is_default: q.boolean("isDefault"),
        start: q.date("startDate"),
        end: q.date("endDate"),
    };
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let result = credentials::list_credentials(&state.deps, &account, &filter, &page).await?;
    Ok(list_response(&state, &account, "credentials", &result.items, dto::credential, &paging, result.next.as_deref()))
}

pub(super) async fn fetch_credential(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let id = credential_id(&id)?;
    let c = credentials::fetch_credential(&state.deps, &account, id).await?;
    Ok(Json(dto::credential(&c)).into_response())
}

pub(super) async fn patch_credential(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let id = credential_id(&id)?;
    let body = json_body(&state, &headers, body).await?;
    let c = credentials::patch_credential(&state.deps, &account, id, &body).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Credentials/{}", c.id), c.id.to_string()))
}

pub(super) async fn delete_credential(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    Path(id): Path<String>,
) -> ApiResult {
    let id = credential_id(&id)?;
    let c = credentials::delete_credential(&state.deps, &account, id).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Credentials/{}", c.id), c.id.to_string()))
}

// ---- Apps ----

pub(super) async fn list_apps(
    State(state): State<ApiState>,
    Caller(account): Caller,
    RawQuery(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new("apps", pairs(params), &["isDefault", "startDate", "endDate"]);
    let filter = AppFilter { is_default: q.boolean("isDefault"), start: q.date("startDate"), end: q.date("endDate") };
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let result = credentials::list_apps(&state.deps, &account, &filter, &page).await?;
    Ok(list_response(&state, &account, "apps", &result.items, dto::app, &paging, result.next.as_deref()))
}

pub(super) async fn fetch_app(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let name = app_name(&name)?;
    let app = credentials::fetch_app(&state.deps, &account, &name).await?;
    Ok(Json(dto::app(&app)).into_response())
}

pub(super) async fn patch_app(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let name = app_name(&name)?;
    let body = json_body(&state, &headers, body).await?;
    let app = credentials::patch_app(&state.deps, &account, &name, &body).await?;
    Ok(resource(&links, StatusCode::OK, format!("/v1/PushNotifications/Apps/{}", app.name), app.name.to_string()))
}

// ---- DeviceRegistrations ----

fn registration_location(id: &DeviceRegistrationId) -> String {
    format!("/v1/PushNotifications/DeviceRegistrations/{id}")
}

pub(super) async fn register_device(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let body = json_body(&state, &headers, body).await?;
    let r = directory::register(&state.deps, &account, &body).await?;
    Ok(resource(&links, StatusCode::ACCEPTED, registration_location(&r.id), r.id.to_string()))
}

pub(super) async fn list_registrations(
    State(state): State<ApiState>,
    Caller(account): Caller,
    RawQuery(params): Params,
) -> ApiResult {
    let mut q = ListQuery::new("device-registrations", pairs(params), &["userId", "appName"]);
    q.require("userId");
    let user = q.parsed("userId", &format!("must match {}", UserId::PATTERN), |s| UserId::parse(s).ok());
    let app = q.parsed("appName", &format!("must match {}", AppName::PATTERN), |s| AppName::parse(s).ok());
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let Some(user) = user else { return Err(AppError::field("userId", "is required").into()) };
    let result = directory::list_registrations(&state.deps, &account, user, app.as_ref(), &page).await?;
    Ok(list_response(
        &state,
        &account,
        "deviceRegistrations",
        &result.items,
        dto::device_registration,
        &paging,
        result.next.as_deref(),
    ))
}

pub(super) async fn fetch_registration(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let id = registration_id(&id)?;
    let r = directory::fetch_registration(&state.deps, &account, &id).await?;
    Ok(Json(dto::device_registration(&r)).into_response())
}

pub(super) async fn delete_registration(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    Path(id): Path<String>,
) -> ApiResult {
    let id = registration_id(&id)?;
    let r = directory::delete_registration(&state.deps, &account, &id).await?;
    Ok(resource(&links, StatusCode::OK, registration_location(&r.id), r.id.to_string()))
}

// ---- Users ----

pub(super) async fn list_users(
    State(state): State<ApiState>,
    Caller(account): Caller,
    RawQuery(params): Params,
) -> ApiResult {
    let q = ListQuery::new("users", pairs(params), &[]);
    let (page, paging) = q.finish(&state.deps.pages, &account)?;
    let result = directory::list_users(&state.deps, &account, &page).await?;
    Ok(list_response(&state, &account, "users", &result.items, dto::user, &paging, result.next.as_deref()))
}

pub(super) async fn fetch_user(
    State(state): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let id = user_id(&id)?;
    let u = directory::fetch_user(&state.deps, &account, id).await?;
    Ok(Json(dto::user(&u)).into_response())
}

pub(super) async fn delete_user(
    State(state): State<ApiState>,
    Caller(account): Caller,
    links: Links,
    Path(id): Path<String>,
) -> ApiResult {
    let id = user_id(&id)?;
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
