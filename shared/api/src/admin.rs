//! The operator's routes of the one-process server (`/admin/v1/…`): what `pushgate-admin`
//! calls when it manages a running `pushgate-local` (on AWS the admin command writes DynamoDB
//! itself; no function serves these). Off unless `PUSHGATE_ADMIN_TOKEN` is set; each request
//! carries it as `Authorization: Bearer <token>`, compared by hash in constant time.
//!
//! The answers are the core's admin results as JSON, the same the admin command prints when it
//! runs them against DynamoDB.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use pushgate_core::app::{AppError, admin};
use pushgate_core::domain::{AccountId, AccountLimits, ApiKeySid, AuthToken};

use super::handlers::JsonBody;
use super::{ApiError, ApiState};

/// The admin routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/admin/v1/Accounts", post(create_account))
        .route("/admin/v1/Accounts/{accountSid}", delete(delete_account).get(fetch_account))
        .route("/admin/v1/Accounts/{accountSid}/AuthToken/Rotate", post(rotate_token))
        .route("/admin/v1/Accounts/{accountSid}/Limits", put(set_limits))
        .route("/admin/v1/Accounts/{accountSid}/Keys", post(create_key).get(list_keys))
        .route("/admin/v1/Accounts/{accountSid}/Keys/{keySid}", delete(revoke_key))
}

type AdminResult = Result<Response, ApiError>;

/// 401 unless the request carries the admin token (404 for every admin route when none is set).
fn operator(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.admin_token else { return Err(ApiError::NoRoute) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized)?;
    if expected.matches(&AuthToken::new(presented.trim())) { Ok(()) } else { Err(AppError::Unauthorized.into()) }
}

fn account_sid(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|e| AppError::field("accountSid", e.to_string()).into())
}

fn body<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| AppError::field("", e.to_string()).into())
}

async fn create_account(State(state): State<ApiState>, headers: HeaderMap) -> AdminResult {
    operator(&state, &headers)?;
    let created = admin::create_account(state.deps.accounts.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn fetch_account(State(state): State<ApiState>, headers: HeaderMap, Path(sid): Path<String>) -> AdminResult {
    operator(&state, &headers)?;
    let info = admin::fetch_account(state.deps.accounts.as_ref(), &account_sid(&sid)?, state.deps.clock.now()).await?;
    Ok(Json(info).into_response())
}

async fn delete_account(State(state): State<ApiState>, headers: HeaderMap, Path(sid): Path<String>) -> AdminResult {
    operator(&state, &headers)?;
    let deps = &state.deps;
    admin::delete_account(deps.accounts.as_ref(), deps.credentials.as_ref(), &account_sid(&sid)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    grace_seconds: u32,
}

async fn rotate_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    JsonBody(json): JsonBody,
) -> AdminResult {
    operator(&state, &headers)?;
    let rotate: Rotate = body(json)?;
    let grace = chrono::Duration::seconds(i64::from(rotate.grace_seconds));
    let rotated =
        admin::rotate_token(state.deps.accounts.as_ref(), &account_sid(&sid)?, grace, state.deps.clock.now()).await?;
    Ok(Json(rotated).into_response())
}

async fn set_limits(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    JsonBody(json): JsonBody,
) -> AdminResult {
    operator(&state, &headers)?;
    let limits: AccountLimits = body(json)?;
    let limits = admin::set_limits(state.deps.accounts.as_ref(), &account_sid(&sid)?, limits).await?;
    Ok(Json(limits).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    friendly_name: String,
}

async fn create_key(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    JsonBody(json): JsonBody,
) -> AdminResult {
    operator(&state, &headers)?;
    let new: NewKey = body(json)?;
    let account = account_sid(&sid)?;
    let created =
        admin::create_api_key(state.deps.accounts.as_ref(), &account, &new.friendly_name, state.deps.clock.now())
            .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_keys(State(state): State<ApiState>, headers: HeaderMap, Path(sid): Path<String>) -> AdminResult {
    operator(&state, &headers)?;
    let keys = admin::list_api_keys(state.deps.accounts.as_ref(), &account_sid(&sid)?).await?;
    Ok(Json(serde_json::json!({ "keys": keys })).into_response())
}

async fn revoke_key(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((sid, key)): Path<(String, String)>,
) -> AdminResult {
    operator(&state, &headers)?;
    let key = ApiKeySid::parse(&key).map_err(|e| ApiError::from(AppError::field("keySid", e.to_string())))?;
    admin::revoke_api_key(state.deps.accounts.as_ref(), &account_sid(&sid)?, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
