//! The `Idempotency-Key` layer of POST requests (the rules are the core's:
//! `pushgate_core::app::idempotency`). A POST with the header is authenticated here (the key is
//! the account's), its body read once (same limits and timeout as any body), and either run —
//! its answer then kept — or answered from the record: the first answer again, with
//! `Idempotent-Replayed: true`; 422 when the key was used for another request; 409 with
//! `Retry-After` when the first is still running after a wait.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use pushgate_core::app::idempotency::{self, HEADER};
use pushgate_core::app::ports::{Begin, Replay};

use super::handlers::{Authenticated, bounded_body, principal};
use super::{ApiError, ApiState};

/// The answer header that marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The largest answer kept for replay (every POST answer is a small JSON object).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The layer: POSTs with an `Idempotency-Key` go through [`keyed`]; anything else passes.
pub(super) async fn idempotent(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(HEADER) {
        return next.run(request).await;
    }
    keyed(state, request, next).await.unwrap_or_else(IntoResponse::into_response)
}

async fn keyed(state: ApiState, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let key = parts.headers.get(HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    idempotency::validate_key(&key)?;
    let principal = principal(&state, &parts.headers).await?;
    let caller = principal.account.clone();
    let bytes = bounded_body(&state, &parts.headers, body).await?;
    let fingerprint = idempotency::fingerprint(parts.method.as_str(), parts.uri.path(), &bytes);
    let (begun, _held) = idempotency::begin(&state.deps, &caller, &key, fingerprint).await?;
    match begun {
        Begin::Replay(answer) => Ok(replayed(answer)),
        Begin::InProgress => Err(ApiError::IdempotencyInProgress),
        Begin::Mismatch => Err(ApiError::IdempotencyMismatch),
        Begin::Started => {
            parts.extensions.insert(Authenticated(principal));
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let (answer_parts, answer_body) = response.into_parts();
            let status = answer_parts.status.as_u16();
            let answer = match axum::body::to_bytes(answer_body, MAX_ANSWER_BYTES).await {
                Ok(answer) => answer,
                Err(_) => {
                    // Not kept (too large to replay): the key is released, the answer given.
                    let _ = state.deps.idempotency.abandon(&caller, &key, fingerprint).await;
                    return Ok(Response::from_parts(answer_parts, Body::empty()));
                }
            };
            let location = answer_parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let replay = Replay { status, location, body: String::from_utf8_lossy(&answer).into_owned() };
            idempotency::settle(&state.deps, &caller, &key, fingerprint, replay).await;
            Ok(Response::from_parts(answer_parts, Body::from(answer)))
        }
    }
}

/// The kept answer, given again.
fn replayed(answer: Replay) -> Response {
    let status = axum::http::StatusCode::from_u16(answer.status).unwrap_or(axum::http::StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}
