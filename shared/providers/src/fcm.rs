//! Firebase Cloud Messaging HTTP v1: a pure message builder and a sender with the OAuth2
//! service-account flow (RS256 assertion to the account's `token_uri`, access token cached until
//! shortly before it expires, one token fetch at a time per credential).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use tracing::debug;

use super::apns::{merge, redact, transport_reason};
use super::http::{HttpSettings, MAX_REPLY_BYTES, client_builder, read_capped, retry_after, trusting};
use pushgate_core::app::ports::{Delivery, DeliveryOutcome};
use pushgate_core::domain::credential::is_project_id;
use pushgate_core::domain::device_token::is_fcm_token;
use pushgate_core::domain::send::FCM_RESERVED_FIELDS;
use pushgate_core::domain::{Content, CredentialId, CredentialSecret, ErrorCode, Priority};

/// FCM's limit on a message.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Google's FCM host.
pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";
/// The OAuth token endpoints service accounts may name when the operator lists none: Google's,
/// and the legacy one older key files carry.
pub const DEFAULT_TOKEN_URIS: [&str; 2] =
    ["https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token"];
/// The OAuth scope FCM needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// FCM asks senders to back off at least this long after QUOTA_EXCEEDED.
pub const QUOTA_BACKOFF: Duration = Duration::from_secs(60);
/// Refresh an access token this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// Builds the `{"message": …}` body for one notification.
pub fn build_message(content: &Content, priority: Priority, sound: Option<&str>, token: &str) -> Result<String, usize> {
    let mut message = Map::new();
    let mut notification = Map::new();
    for (key, value) in [("title", &content.title), ("body", &content.body), ("image", &content.image)] {
        if let Some(v) = value {
            notification.insert(key.into(), Value::String(v.clone()));
        }
    }
    if !notification.is_empty() {
        message.insert("notification".into(), Value::Object(notification));
    }
    if let Some(data) = &content.data {
        message.insert("data".into(), json!(data));
    }
    let mut android = Map::new();
    android.insert("priority".into(), json!(if priority == Priority::High { "HIGH" } else { "NORMAL" }));
    if let Some(ttl) = content.ttl {
        android.insert("ttl".into(), json!(format!("{ttl}s")));
    }
    if let Some(key) = &content.collapse_key {
        android.insert("collapse_key".into(), json!(key));
    }
    if let Some(sound) = sound {
        android.insert("notification".into(), json!({ "sound": sound }));
    }
    message.insert("android".into(), Value::Object(android));
    let mut aps = Map::new();
    if let Some(sound) = sound {
        aps.insert("sound".into(), json!(sound));
    }
    if let Some(badge) = content.badge {
        aps.insert("badge".into(), json!(badge));
    }
    if content.content_available == Some(true) {
        aps.insert("content-available".into(), json!(1));
    }
    if content.mutable_content == Some(true) {
        aps.insert("mutable-content".into(), json!(1));
    }
    let mut headers = Map::new();
    headers.insert("apns-priority".into(), json!(if priority == Priority::High { "10" } else { "5" }));
    if let Some(key) = &content.collapse_key {
        headers.insert("apns-collapse-id".into(), json!(key));
    }
    message.insert("apns".into(), json!({ "headers": headers, "payload": { "aps": aps } }));
    if let Some(extra) = &content.fcm {
        merge(&mut message, extra);
    }
    // The recorded token, set last: nothing merged may send this message anywhere else (the send
    // refuses such a `content.fcm`; this holds for whatever was queued before).
    for key in FCM_RESERVED_FIELDS {
        message.remove(key);
    }
    message.insert("token".into(), Value::String(token.to_owned()));
    let body = json!({ "message": message }).to_string();
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(body.len());
    }
    Ok(body)
}

/// FCM's documented `errorCode` values (`FcmError.ErrorCode`).
pub const ERROR_CODES: [&str; 8] = [
    "UNSPECIFIED_ERROR",
    "INVALID_ARGUMENT",
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
];
/// Google's canonical error `status` values (`google.rpc.Code`).
pub const STATUSES: [&str; 16] = [
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
/// The error codes of an OAuth 2.0 token endpoint (RFC 6749, section 5.2).
pub const OAUTH_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// `value` if it is one of `known`.
fn known(value: Option<&str>, known: &[&'static str]) -> Option<&'static str> {
    value.and_then(|v| known.iter().copied().find(|k| *k == v))
}

/// Classifies an FCM answer. The reason is a documented `errorCode`, else a canonical `status`,
/// else `HTTP <status>`: no other text of the reply is kept (its `message` is read only to tell
/// an invalid token from another invalid argument).
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> DeliveryOutcome {
    if status == 200 {
        return DeliveryOutcome::Sent;
    }
    let error = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("error").cloned()).unwrap_or(Value::Null);
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
    let code = error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|d| d.iter().find_map(|d| d.get("errorCode").and_then(Value::as_str)));
    let reason = known(code, &ERROR_CODES)
        .or_else(|| known(error.get("status").and_then(Value::as_str), &STATUSES))
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    let about_token = message.to_ascii_lowercase().contains("token");
    match (status, code) {
        (_, Some("UNREGISTERED")) => DeliveryOutcome::InvalidToken { reason },
        (400, Some("INVALID_ARGUMENT")) | (400, None) if about_token => DeliveryOutcome::InvalidToken { reason },
        (429, _) | (_, Some("QUOTA_EXCEEDED")) => DeliveryOutcome::Retryable {
            after: Some(retry_after.map_or(QUOTA_BACKOFF, |a| a.max(QUOTA_BACKOFF))),
            reason,
        },
        (500 | 502 | 503 | 504, _) | (_, Some("UNAVAILABLE" | "INTERNAL")) => {
            DeliveryOutcome::Retryable { after: retry_after, reason }
        }
        (401, _) => DeliveryOutcome::Retryable { after: None, reason },
        _ => DeliveryOutcome::Permanent {
            code: ErrorCode::ProviderRejected,
            message: format!("FCM refused the message (HTTP {status})"),
            reason: Some(reason),
        },
    }
}

#[derive(Clone)]
struct AccessToken {
    token: Arc<str>,
    refresh_at: Instant,
}

/// The OAuth token endpoints service accounts may name: `configured`, or Google's when empty.
pub(crate) fn allowed_token_uris(configured: &[String]) -> Vec<String> {
    if configured.is_empty() {
        DEFAULT_TOKEN_URIS.iter().map(|u| (*u).to_owned()).collect()
    } else {
        configured.to_vec()
    }
}

/// Sends to FCM over one reused HTTP/2 client.
pub struct FcmSender {
    endpoint: String,
    client: reqwest::Client,
    oauth: reqwest::Client,
    token_uris: Vec<String>,
    tokens: Mutex<HashMap<CredentialId, Arc<tokio::sync::Mutex<Option<AccessToken>>>>>,
}

impl FcmSender {
    /// Uses `endpoint` (tests, proxies) or Google's host, and exchanges assertions only at the
    /// OAuth endpoints in `token_uris` (empty: [`DEFAULT_TOKEN_URIS`]).
    pub fn new(endpoint: Option<&str>, token_uris: &[String], settings: HttpSettings) -> Result<Self, reqwest::Error> {
        let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/').to_owned();
        let client = client_builder(&endpoint, &settings)?.build()?;
        // The token endpoint is another host that may only speak HTTP/1.1: negotiate. Like every
        // provider client, it follows no redirect.
        let oauth = trusting(
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(settings.timeout),
            settings.extra_ca_pem.as_deref(),
        )?;
        let token_uris = allowed_token_uris(token_uris);
        Ok(Self { endpoint, client, oauth: oauth.build()?, token_uris, tokens: Mutex::default() })
    }

    /// Is `token_uri` one of the OAuth endpoints this sender talks to (exact match)?
    pub fn allows(&self, token_uri: &str) -> bool {
        self.token_uris.iter().any(|u| u == token_uri)
    }

    fn slot(&self, id: &CredentialId) -> Result<Arc<tokio::sync::Mutex<Option<AccessToken>>>, String> {
        let mut tokens = self.tokens.lock().map_err(|_| "token cache poisoned".to_owned())?;
        Ok(tokens.entry(id.clone()).or_default().clone())
    }

    async fn access_token(
        &self,
        id: &CredentialId,
        client_email: &str,
        pem: &str,
        token_uri: &str,
    ) -> Result<Arc<str>, DeliveryOutcome> {
        // Checked before every use, not only at create: a credential stored earlier (or before
        // the operator changed the list) makes no request to an endpoint off the list.
        if !self.allows(token_uri) {
            return Err(unusable(
                "the service account's token_uri is not an allowed OAuth token endpoint; nothing was sent".into(),
            ));
        }
        let slot = self.slot(id).map_err(unusable)?;
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.token.clone());
        }
        let assertion = assertion(client_email, pem, token_uri, Utc::now().timestamp()).map_err(unusable)?;
        let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let response = self
            .oauth
            .post(token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                debug!(error = %redact(&e), "FCM OAuth request failed");
                super::http::warn_unreachable("fcm-oauth", &e);
                DeliveryOutcome::Retryable { after: None, reason: format!("oauth {}", transport_reason(&e)) }
            })?;
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&read_capped(response, MAX_REPLY_BYTES).await).unwrap_or(Value::Null);
        if status != 200 {
            // Only an RFC 6749 error code reaches the tenant, never the endpoint's own text.
            let reason = known(body.get("error").and_then(Value::as_str), &OAUTH_ERRORS)
                .map_or_else(|| format!("HTTP {status}"), str::to_owned);
            return Err(if status >= 500 || status == 429 {
                DeliveryOutcome::Retryable { after: None, reason }
            } else {
                DeliveryOutcome::Permanent {
                    code: ErrorCode::NoCredential,
                    message: format!("the FCM token endpoint refused the service account (HTTP {status})"),
                    reason: Some(reason),
                }
            });
        }
        let token: Arc<str> = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| DeliveryOutcome::Retryable {
                after: None,
                reason: "oauth answer without access_token".into(),
            })?
            .into();
        let lifetime = Duration::from_secs(body.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        *cached = Some(AccessToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        Ok(token)
    }

    async fn forget_token(&self, id: &CredentialId) {
        if let Ok(slot) = self.slot(id) {
            *slot.lock().await = None;
        }
    }

    /// Sends one message and classifies the answer.
    pub async fn send(&self, d: &Delivery<'_>) -> DeliveryOutcome {
        let CredentialSecret::Fcm { project_id, client_email, private_key_pem, token_uri } = d.secret.as_ref() else {
            return unusable("an APN credential cannot send to FCM".into());
        };
        // The project id goes into the URL path: one stored before it was checked must not shape it.
        if !is_project_id(project_id) {
            return unusable("the service account's project_id is not a valid Google Cloud project id".into());
        }
        if !is_fcm_token(d.token) {
            return DeliveryOutcome::Permanent {
                code: ErrorCode::InvalidToken,
                message: "the device token is not an FCM registration token; nothing was sent".into(),
                reason: None,
            };
        }
        let body = match build_message(d.content, d.priority, d.sound, d.token) {
            Ok(b) => b,
            Err(n) => {
                return DeliveryOutcome::Permanent {
                    code: ErrorCode::PayloadTooLarge,
                    message: format!("the FCM message is {n} bytes; the limit is {MAX_MESSAGE_BYTES}"),
                    reason: None,
                };
            }
        };
        let token = match self.access_token(&d.credential_id, client_email, private_key_pem, token_uri).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let response = self
            .client
            .post(format!("{}/v1/projects/{project_id}/messages:send", self.endpoint))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %redact(&e), "FCM request failed");
                super::http::warn_unreachable("fcm", &e);
                return DeliveryOutcome::Retryable { after: None, reason: transport_reason(&e) };
            }
        };
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let bytes = read_capped(response, MAX_REPLY_BYTES).await;
        if status == 401 {
            self.forget_token(&d.credential_id).await;
        }
        classify(status, &bytes, after)
    }
}

/// The RS256-signed JWT a service account exchanges for an access token at `token_uri`.
pub(crate) fn assertion(client_email: &str, pem: &str, token_uri: &str, iat: i64) -> Result<String, String> {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| "the FCM service-account private key is not a valid RSA key".to_owned())?;
    let claims = json!({ "iss": client_email, "scope": SCOPE, "aud": token_uri, "iat": iat, "exp": iat + 3600 });
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|_| "could not sign the FCM OAuth assertion".to_owned())
}

fn unusable(message: String) -> DeliveryOutcome {
    DeliveryOutcome::Permanent { code: ErrorCode::NoCredential, message, reason: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_notification_data_and_android_and_apns_blocks() {
        let content = Content {
            title: Some("T".into()),
            body: Some("B".into()),
            image: Some("https://x.test/i.png".into()),
            data: Some([("k".to_owned(), "v".to_owned())].into()),
            ttl: Some(60),
            collapse_key: Some("c".into()),
            ..Content::default()
        };
        let body: Value =
            serde_json::from_str(&build_message(&content, Priority::Low, Some("ring"), "tok").expect("fits"))
                .expect("json");
        let m = &body["message"];
        assert_eq!(m["token"], "tok");
        assert_eq!(m["notification"]["title"], "T");
        assert_eq!(m["notification"]["image"], "https://x.test/i.png");
        assert_eq!(m["data"]["k"], "v");
        assert_eq!(m["android"]["priority"], "NORMAL");
        assert_eq!(m["android"]["ttl"], "60s");
        assert_eq!(m["android"]["collapse_key"], "c");
        assert_eq!(m["android"]["notification"]["sound"], "ring");
        assert_eq!(m["apns"]["payload"]["aps"]["sound"], "ring");
        assert_eq!(m["apns"]["headers"]["apns-priority"], "5");
    }

    #[test]
    fn the_fcm_object_is_merged_into_the_message() {
        let content = Content {
            body: Some("B".into()),
            fcm: Some(
                json!({"android": {"priority": "NORMAL"}, "webpush": {"x": 1}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            ..Content::default()
        };
        let body: Value =
            serde_json::from_str(&build_message(&content, Priority::High, None, "t").expect("fits")).expect("json");
        assert_eq!(body["message"]["android"]["priority"], "NORMAL");
        assert_eq!(body["message"]["webpush"]["x"], 1);
    }

    #[test]
    fn an_oversized_message_is_refused() {
        let content = Content { body: Some("x".repeat(4100)), ..Content::default() };
        assert!(build_message(&content, Priority::High, None, "t").is_err());
    }

    fn error(status: &str, code: &str, message: &str) -> Vec<u8> {
        json!({"error": {"status": status, "message": message, "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn answers_are_classified_like_google_documents_them() {
        assert_eq!(classify(200, b"{}", None), DeliveryOutcome::Sent);
        assert!(matches!(
            classify(404, &error("NOT_FOUND", "UNREGISTERED", "gone"), None),
            DeliveryOutcome::InvalidToken { .. }
        ));
        assert!(matches!(
            classify(
                400,
                &error(
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token"
                ),
                None
            ),
            DeliveryOutcome::InvalidToken { .. }
        ));
        assert!(matches!(
            classify(400, &error("INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad ttl"), None),
            DeliveryOutcome::Permanent { .. }
        ));
        assert_eq!(
            classify(429, &error("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down"), Some(Duration::from_secs(5))),
            DeliveryOutcome::Retryable { after: Some(QUOTA_BACKOFF), reason: "QUOTA_EXCEEDED".into() }
        );
        assert!(matches!(
            classify(503, &error("UNAVAILABLE", "UNAVAILABLE", "later"), None),
            DeliveryOutcome::Retryable { after: None, .. }
        ));
    }

    #[test]
    fn the_recorded_token_is_the_one_fcm_receives_whatever_content_fcm_says() {
        let content = Content {
            body: Some("B".into()),
            fcm: json!({"token": "someone-else", "topic": "everyone", "condition": "'a' in topics", "android": {"priority": "NORMAL"}})
                .as_object()
                .cloned(),
            ..Content::default()
        };
        let body: Value =
            serde_json::from_str(&build_message(&content, Priority::High, None, "recorded").expect("fits"))
                .expect("json");
        let m = &body["message"];
        assert_eq!(m["token"], "recorded");
        assert!(m.get("topic").is_none() && m.get("condition").is_none(), "{m}");
        assert_eq!(m["android"]["priority"], "NORMAL");
    }

    #[test]
    fn remote_text_never_becomes_a_reason_or_message() {
        let hostile = "<script>HOSTILE</script>";
        for (status, body) in [
            (400, error(hostile, hostile, hostile)),
            (403, error("PERMISSION_DENIED", hostile, hostile)),
            (418, b"HOSTILE".to_vec()),
        ] {
            let outcome = classify(status, &body, None);
            let shown = format!("{outcome:?}");
            assert!(!shown.contains("HOSTILE"), "{shown}");
        }
        assert!(matches!(
            classify(403, &error("PERMISSION_DENIED", hostile, hostile), None),
            DeliveryOutcome::Permanent { reason: Some(r), .. } if r == "PERMISSION_DENIED"
        ));
        assert!(matches!(
            classify(404, &error("NOT_FOUND", "SENDER_ID_MISMATCH", hostile), None),
            DeliveryOutcome::Permanent { reason: Some(r), .. } if r == "SENDER_ID_MISMATCH"
        ));
    }
}
