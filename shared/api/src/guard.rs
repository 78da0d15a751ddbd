//! The outermost middleware of the router: refuses requests that are too big or unreadable
//! before any route runs, and makes sure every error answer that leaves the router is in the
//! Twilio error shape, including the framework's own rejections.
//!
//! The limits sit below the HTTP server's (hyper's buffer of about 400 KiB, 200 header fields,
//! URIs up to 64 KiB), so a request between the two is answered here, Twilio-shaped, rather
//! than by hyper's bare status line.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Longest accepted request target (path and query, and authority if the client sent one).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of request header fields (names, values and separators, as sent on HTTP/1.1).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most request header fields.
pub const MAX_HEADERS: usize = 100;

/// Refuses over-long URIs (`414`), over-large headers (`431`) and paths that are not
/// percent-encoded UTF-8 (`400`); re-shapes any non-JSON error answer of the inner router.
pub(super) async fn guard(request: Request, next: Next) -> Response {
    if let Err(refused) = check(&request) {
        return refused.into_response();
    }
    twilio_shaped(next.run(request).await)
}

fn check(request: &Request) -> Result<(), ApiError> {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(uri.path().len(), |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong(MAX_URI_BYTES));
    }
    let headers = request.headers();
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge);
    }
    if !percent_decodes_to_utf8(uri.path()) {
        return Err(ApiError::Malformed("the path is not percent-encoded UTF-8"));
    }
    Ok(())
}

/// Whether `path` percent-decodes to UTF-8, decoding as the router's path extractor does
/// (`%XX` with two hex digits is a byte; any other `%` stays as it is).
pub(super) fn percent_decodes_to_utf8(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) => hex(high).zip(hex(low)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Every error answer of the API is JSON made by [`ApiError`]; anything else with a 4xx/5xx
/// status came from the framework (an extractor's rejection, plain text) and is replaced by the
/// same status in the Twilio shape.
fn twilio_shaped(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return response;
    }
    tracing::debug!(%status, "re-shaped a framework error answer");
    ApiError::Status(status).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn paths_that_decode_to_utf8_pass_and_others_do_not() {
        for (path, ok) in [
            ("/v1/PushNotifications", true),
            ("/v1/PushNotifications/Apps/caf%C3%A9", true),
            ("/v1/100%", true),
            ("/v1/%zz", true),
            ("/v1/%4", true),
            ("/v1/PushNotifications/%FF", false),
            ("/v1/%C3%28", false),
            ("/v1/%80abc", false),
        ] {
            assert_eq!(percent_decodes_to_utf8(path), ok, "{path}");
        }
    }

    #[test]
    fn a_plain_text_error_answer_becomes_twilio_shaped_with_its_status() {
        let response = twilio_shaped((StatusCode::BAD_REQUEST, "Invalid URL").into_response());
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
}
