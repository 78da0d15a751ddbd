//! Apple Push Notification service: a pure payload builder (using a2's payload types) and a
//! sender that speaks HTTP/2 to a configurable base URL with reqwest (a2's own client hard-codes
//! Apple's hosts), with token (ES256 JWT) or certificate auth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a2::request::notification::{DefaultNotificationBuilder, NotificationBuilder, NotificationOptions};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::http::{HttpSettings, MAX_REPLY_BYTES, client_builder, identity_client_builder, read_capped};
use pushgate_core::app::ports::{Delivery, DeliveryOutcome, SharedToken, TokenCache};
use pushgate_core::domain::credential::is_bundle_id;
use pushgate_core::domain::device_token::is_apn_token;
use pushgate_core::domain::{Content, CredentialId, CredentialSecret, CredentialType, ErrorCode, Priority};

/// Apple's limit on the payload of a (non-VoIP) notification.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Apple's production host.
pub const PRODUCTION: &str = "https://api.push.apple.com";
/// Apple's sandbox host.
pub const SANDBOX: &str = "https://api.sandbox.push.apple.com";
/// A provider token is reused for this long (Apple: refresh no more than once per 20 minutes,
/// and at least once per hour).
pub const JWT_LIFETIME: Duration = Duration::from_secs(40 * 60);

/// One APNs request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsRequest {
    /// `apns-*` headers (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON payload.
    pub body: String,
}

/// Why a payload could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Over the provider's size limit.
    #[error("payload is {0} bytes; the limit is {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    /// Anything else.
    #[error("{0}")]
    Invalid(String),
}

/// Builds the payload and headers for one notification.
pub fn build_request(
    content: &Content,
    priority: Priority,
    sound: Option<&str>,
    topic: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ApnsRequest, PayloadError> {
    let silent = content.title.is_none() && content.body.is_none() && content.badge.is_none() && sound.is_none();
    let background = silent && content.content_available == Some(true);
    let mut builder = DefaultNotificationBuilder::new();
    if let Some(title) = content.title.as_deref() {
        builder = builder.set_title(title);
    }
    if let Some(body) = content.body.as_deref() {
        builder = builder.set_body(body);
    }
    if let Some(badge) = content.badge {
        builder = builder.set_badge(badge);
    }
    if let Some(sound) = sound {
        builder = builder.set_sound(sound);
    }
    if content.content_available == Some(true) {
        builder = builder.set_content_available();
    }
    if content.mutable_content == Some(true) || content.image.is_some() {
        builder = builder.set_mutable_content();
    }
    let payload = builder.build("", NotificationOptions::default());
    // a2 builds the `aps` dictionary; extras are merged into the same JSON tree, serialized once.
    let mut root = serde_json::to_value(&payload).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    if let Value::Object(root) = &mut root {
        if root.get("aps").and_then(|a| a.get("mutable-content")) == Some(&Value::from(0))
            && let Some(Value::Object(aps)) = root.get_mut("aps")
        {
            aps.remove("mutable-content");
        }
        for (k, v) in content.data.iter().flatten() {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(image) = &content.image {
            root.insert("image".into(), Value::String(image.clone()));
        }
        if let Some(extra) = &content.apn {
            merge(root, extra);
        }
    }
    let body = serde_json::to_string(&root).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge(body.len()));
    }
    let mut headers = vec![
        ("apns-push-type", if background { "background" } else { "alert" }.to_owned()),
        ("apns-priority", if background || priority == Priority::Low { "5" } else { "10" }.to_owned()),
    ];
    if let Some(topic) = topic {
        headers.push(("apns-topic", topic.to_owned()));
    }
    if let Some(ttl) = content.ttl {
        let expiration = if ttl == 0 { 0 } else { now.timestamp().max(0) + i64::from(ttl) };
        headers.push(("apns-expiration", expiration.to_string()));
    }
    if let Some(key) = &content.collapse_key {
        headers.push(("apns-collapse-id", key.clone()));
    }
    Ok(ApnsRequest { headers, body })
}

/// Deep-merges `extra` into `target` (objects merge, anything else replaces).
pub fn merge(target: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(e)) => merge(t, e),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The `reason` values Apple documents ("Handling notification responses from APNs"): the only
/// text of an APNs reply that reaches a tenant.
pub const REASONS: [&str; 32] = [
    "BadCollapseId",
    "BadDeviceToken",
    "BadExpirationDate",
    "BadMessageId",
    "BadPriority",
    "BadTopic",
    "DeviceTokenNotForTopic",
    "DuplicateHeaders",
    "IdleTimeout",
    "InvalidPushType",
    "MissingDeviceToken",
    "MissingTopic",
    "PayloadEmpty",
    "TopicDisallowed",
    "BadCertificate",
    "BadCertificateEnvironment",
    "ExpiredProviderToken",
    "Forbidden",
    "InvalidProviderToken",
    "MissingProviderToken",
    "UnrelatedKeyIdInToken",
    "BadEnvironmentKeyIdInToken",
    "BadPath",
    "MethodNotAllowed",
    "ExpiredToken",
    "Unregistered",
    "PayloadTooLarge",
    "TooManyProviderTokenUpdates",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
    "Shutdown",
];

/// Classifies an APNs answer. The reason is one of Apple's documented [`REASONS`], else
/// `HTTP <status>`: no other text of the reply is kept.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> DeliveryOutcome {
    if status == 200 {
        return DeliveryOutcome::Sent;
    }
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).and_then(|r| REASONS.into_iter().find(|k| *k == r)))
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    match (status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken") => DeliveryOutcome::InvalidToken { reason },
        (429, _) | (500, _) | (503, _) => DeliveryOutcome::Retryable { after: retry_after, reason },
        (403, "ExpiredProviderToken") => DeliveryOutcome::Retryable { after: None, reason },
        (413, _) => DeliveryOutcome::Permanent {
            code: ErrorCode::PayloadTooLarge,
            message: "APNs refused the payload as too large".into(),
            reason: Some(reason),
        },
        _ => DeliveryOutcome::Permanent {
            code: ErrorCode::ProviderRejected,
            message: format!("APNs refused the notification (HTTP {status})"),
            reason: Some(reason),
        },
    }
}

#[derive(Clone)]
struct CachedJwt {
    token: Arc<str>,
    minted_at: DateTime<Utc>,
}

/// Sends to APNs over one reused HTTP/2 client (token auth) or one client per certificate.
pub struct ApnsSender {
    production: String,
    sandbox: String,
    settings: HttpSettings,
    client: reqwest::Client,
    cert_clients: Mutex<HashMap<CredentialId, reqwest::Client>>,
    jwts: Mutex<HashMap<CredentialId, CachedJwt>>,
    /// Credentials whose token Apple refused: the next token replaces any minted at or before
    /// the refused one's time, in the shared cache too.
    refused: Mutex<HashMap<CredentialId, DateTime<Utc>>>,
    shared: Option<Arc<dyn TokenCache>>,
    /// One refresh at a time per credential: the deliveries that miss the local token together
    /// (a cold process starting a chunk) wait for one look into the shared cache and one mint,
    /// instead of each reading, minting and writing it.
    refreshing: Mutex<HashMap<CredentialId, Arc<tokio::sync::Mutex<()>>>>,
}

impl ApnsSender {
    /// Uses `endpoint` for both environments when given (tests, proxies), else Apple's hosts.
    pub fn new(endpoint: Option<&str>, settings: HttpSettings) -> Result<Self, reqwest::Error> {
        let production = endpoint.unwrap_or(PRODUCTION).trim_end_matches('/').to_owned();
        let sandbox = endpoint.unwrap_or(SANDBOX).trim_end_matches('/').to_owned();
        let client = client_builder(&production, &settings)?.build()?;
        Ok(Self {
            production,
            sandbox,
            settings,
            client,
            cert_clients: Mutex::default(),
            jwts: Mutex::default(),
            refused: Mutex::default(),
            shared: None,
            refreshing: Mutex::default(),
        })
    }

    /// Shares provider tokens with every other process through `cache` (Lambda instances), so a
    /// key's token changes once per [`JWT_LIFETIME`] however many instances send with it.
    pub fn with_token_cache(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.shared = Some(cache);
        self
    }

    async fn jwt(&self, id: &CredentialId, key_id: &str, team_id: &str, pem: &str) -> Result<Arc<str>, String> {
        let now = Utc::now();
        let fresh = |t: &CachedJwt| now - t.minted_at < lifetime();
        let local = self.jwts.lock().map_err(|_| "jwt cache poisoned".to_owned())?.get(id).cloned();
        if let Some(cached) = local.filter(fresh) {
            return Ok(cached.token);
        }
        let gate =
            self.refreshing.lock().map_err(|_| "jwt cache poisoned".to_owned())?.entry(id.clone()).or_default().clone();
        let _refreshing = gate.lock().await;
        // Refreshed by the delivery this one waited for?
        let local = self.jwts.lock().map_err(|_| "jwt cache poisoned".to_owned())?.get(id).cloned();
        if let Some(cached) = local.filter(fresh) {
            return Ok(cached.token);
        }
        let refused = self.refused.lock().map_err(|_| "jwt cache poisoned".to_owned())?.remove(id);
        let token = match &self.shared {
            None => mint(key_id, team_id, pem, now)?,
            Some(cache) => {
                let key = shared_key(id, key_id, team_id, pem);
                let stored = match (refused, cache.get(&key).await) {
                    (None, Ok(Some(t))) => Some(CachedJwt { token: t.token.into(), minted_at: t.minted_at }),
                    (_, Ok(_)) => None,
                    (_, Err(e)) => {
                        warn!(error = %e, "APNs token cache unavailable; using a token of this process");
                        None
                    }
                };
                match stored.filter(|t| fresh(t) && refused.is_none_or(|r| t.minted_at > r)) {
                    Some(t) => t,
                    None => {
                        let minted = mint(key_id, team_id, pem, now)?;
                        // Replace only tokens that are stale, or the one Apple refused.
                        let stale_before = refused.map_or(now - lifetime(), |r| r + chrono::Duration::milliseconds(1));
                        let ours = SharedToken { token: minted.token.to_string(), minted_at: minted.minted_at };
                        match cache.put(&key, ours, stale_before).await {
                            Ok(t) => CachedJwt { token: t.token.into(), minted_at: t.minted_at },
                            Err(e) => {
                                warn!(error = %e, "APNs token cache unavailable; using a token of this process");
                                minted
                            }
                        }
                    }
                }
            }
        };
        self.jwts.lock().map_err(|_| "jwt cache poisoned".to_owned())?.insert(id.clone(), token.clone());
        Ok(token.token)
    }

    fn forget_jwt(&self, id: &CredentialId) {
        let refused = self.jwts.lock().ok().and_then(|mut jwts| jwts.remove(id));
        if let (Some(refused), Ok(mut map)) = (refused, self.refused.lock()) {
            map.insert(id.clone(), refused.minted_at);
        }
    }

    fn cert_client(&self, id: &CredentialId, cert: &str, key: &str) -> Result<reqwest::Client, String> {
        let mut clients = self.cert_clients.lock().map_err(|_| "client cache poisoned".to_owned())?;
        if let Some(c) = clients.get(id) {
            return Ok(c.clone());
        }
        let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
            .map_err(|_| "the APNs certificate or its private key cannot be used".to_owned())?;
        let client = identity_client_builder(&self.production, &self.settings, identity)
            .and_then(|b| b.build())
            .map_err(|_| "could not build an HTTP client for the APNs certificate".to_owned())?;
        clients.insert(id.clone(), client.clone());
        Ok(client)
    }

    /// Sends one notification and classifies the answer.
    pub async fn send(&self, d: &Delivery<'_>) -> DeliveryOutcome {
        // The token becomes a path segment: one that is not hex (one queued before tokens were
        // checked) must never shape the URL.
        if !is_apn_token(d.token) {
            return DeliveryOutcome::Permanent {
                code: ErrorCode::InvalidToken,
                message: "the device token is not an APNs device token (hex digits); nothing was sent".into(),
                reason: None,
            };
        }
        let base = if d.credential_type == CredentialType::ApnSandbox { &self.sandbox } else { &self.production };
        let (client, auth, topic) = match d.secret.as_ref() {
            CredentialSecret::ApnToken { key_id, team_id, private_key_pem, bundle_id } => {
                match self.jwt(&d.credential_id, key_id, team_id, private_key_pem).await {
                    Ok(jwt) => (self.client.clone(), Some(jwt), Some(bundle_id.as_str())),
                    Err(message) => return unusable(message),
                }
            }
            CredentialSecret::ApnCertificate { certificate_pem, private_key_pem, topic } => {
                match self.cert_client(&d.credential_id, certificate_pem, private_key_pem) {
                    Ok(client) => (client, None, topic.as_deref()),
                    Err(message) => return unusable(message),
                }
            }
            CredentialSecret::Fcm { .. } => return unusable("an FCM credential cannot send to APNs".into()),
        };
        // A credential stored before topics were checked must not put a control character (or
        // anything else) into a header.
        if topic.is_some_and(|t| !is_bundle_id(t)) {
            return unusable("the credential's topic (bundle id) is not a valid bundle id".into());
        }
        let request = match build_request(d.content, d.priority, d.sound, topic, Utc::now()) {
            Ok(r) => r,
            Err(PayloadError::TooLarge(n)) => {
                return DeliveryOutcome::Permanent {
                    code: ErrorCode::PayloadTooLarge,
                    message: format!("the APNs payload is {n} bytes; the limit is {MAX_PAYLOAD_BYTES}"),
                    reason: None,
                };
            }
            Err(PayloadError::Invalid(m)) => return unusable(m),
        };
        let mut req = client
            .post(format!("{base}/3/device/{}", d.token))
            .header("content-type", "application/json")
            .body(request.body);
        for (name, value) in request.headers {
            req = req.header(name, value);
        }
        if let Some(jwt) = &auth {
            req = req.header("authorization", format!("bearer {jwt}"));
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %redact(&e), "APNs request failed");
                super::http::warn_unreachable("apns", &e);
                return DeliveryOutcome::Retryable { after: None, reason: transport_reason(&e) };
            }
        };
        let status = response.status().as_u16();
        let retry_after = super::http::retry_after(response.headers());
        let body = read_capped(response, MAX_REPLY_BYTES).await;
        let outcome = classify(status, &body, retry_after);
        if status == 403 {
            self.forget_jwt(&d.credential_id);
        }
        outcome
    }
}

/// Can `pem` sign APNs provider tokens (ES256, a P-256 key), the way [`ApnsSender`] will?
pub fn check_signing_key(key_id: &str, team_id: &str, pem: &str) -> Result<(), String> {
    mint(key_id, team_id, pem, Utc::now()).map(|_| ()).map_err(|_| {
        "must be the P-256 private key of an APNs auth key (.p8, PKCS#8 PEM): it signs ES256 tokens".into()
    })
}

/// Do `cert` and `key` make the client identity [`ApnsSender`] will present?
pub fn check_identity(cert: &str, key: &str) -> Result<(), String> {
    reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
        .map(|_| ())
        .map_err(|_| "the certificate and private key do not make a TLS client identity".into())
}

fn lifetime() -> chrono::Duration {
    chrono::Duration::from_std(JWT_LIFETIME).unwrap_or(chrono::Duration::minutes(40))
}

/// Signs a provider token for `team_id` with the key `key_id`.
fn mint(key_id: &str, team_id: &str, pem: &str, now: DateTime<Utc>) -> Result<CachedJwt, String> {
    let key = EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|_| "the APNs signing key is not a valid P-256 key".to_owned())?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key_id.to_owned());
    let claims = serde_json::json!({ "iss": team_id, "iat": now.timestamp() });
    let token = jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|_| "could not sign the APNs provider token".to_owned())?;
    Ok(CachedJwt { token: token.into(), minted_at: now })
}

/// The shared-cache key of a credential's token: the credential id (globally unique, so one
/// account can never pick up another's token) and a fingerprint of the key material (a PATCHed
/// key gets a new token).
fn shared_key(id: &CredentialId, key_id: &str, team_id: &str, pem: &str) -> String {
    let digest = Sha256::new()
        .chain_update(key_id)
        .chain_update([0])
        .chain_update(team_id)
        .chain_update([0])
        .chain_update(pem)
        .finalize();
    let fingerprint: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("apns/{id}/{fingerprint}")
}

fn unusable(message: String) -> DeliveryOutcome {
    DeliveryOutcome::Permanent { code: ErrorCode::NoCredential, message, reason: None }
}

/// A transport error without its URL (which carries the device token).
pub(crate) fn redact(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(source) => format!("{}: {source}", transport_reason(e)),
        None => transport_reason(e),
    }
}

pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").expect("valid").with_timezone(&Utc)
    }

    fn header<'a>(r: &'a ApnsRequest, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_alert_carries_title_body_badge_sound_data_and_headers() {
        let content = Content {
            title: Some("Boarding".into()),
            body: Some("Gate 12".into()),
            badge: Some(3),
            data: Some([("flight".to_owned(), "LX7".to_owned())].into()),
            collapse_key: Some("boarding".into()),
            ttl: Some(3600),
            ..Content::default()
        };
        let r = build_request(&content, Priority::High, Some("ring"), Some("com.example.app"), now()).expect("builds");
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["aps"]["alert"]["title"], "Boarding");
        assert_eq!(body["aps"]["alert"]["body"], "Gate 12");
        assert_eq!(body["aps"]["badge"], 3);
        assert_eq!(body["aps"]["sound"], "ring");
        assert_eq!(body["flight"], "LX7");
        assert_eq!(header(&r, "apns-push-type"), Some("alert"));
        assert_eq!(header(&r, "apns-priority"), Some("10"));
        assert_eq!(header(&r, "apns-topic"), Some("com.example.app"));
        assert_eq!(header(&r, "apns-collapse-id"), Some("boarding"));
        assert_eq!(header(&r, "apns-expiration"), Some((now().timestamp() + 3600).to_string().as_str()));
    }

    #[test]
    fn a_content_available_only_notification_is_a_low_priority_background_push() {
        let content = Content { content_available: Some(true), data: Some(Default::default()), ..Content::default() };
        let r = build_request(&content, Priority::High, None, Some("t"), now()).expect("builds");
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["aps"]["content-available"], 1);
        assert_eq!(header(&r, "apns-push-type"), Some("background"));
        assert_eq!(header(&r, "apns-priority"), Some("5"));
    }

    #[test]
    fn low_priority_maps_to_five_and_the_apn_object_is_merged() {
        let content = Content {
            body: Some("b".into()),
            apn: Some(json!({"aps": {"category": "GATE"}, "x": 1}).as_object().cloned().unwrap_or_default()),
            ..Content::default()
        };
        let r = build_request(&content, Priority::Low, None, None, now()).expect("builds");
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["aps"]["category"], "GATE");
        assert_eq!(body["aps"]["alert"], "b");
        assert_eq!(body["x"], 1);
        assert_eq!(header(&r, "apns-priority"), Some("5"));
        assert_eq!(header(&r, "apns-topic"), None);
    }

    #[test]
    fn a_payload_over_4096_bytes_is_refused() {
        let content = Content { body: Some("x".repeat(5000)), ..Content::default() };
        assert!(matches!(build_request(&content, Priority::High, None, None, now()), Err(PayloadError::TooLarge(_))));
    }

    #[test]
    fn answers_are_classified_like_apple_documents_them() {
        assert_eq!(classify(200, b"", None), DeliveryOutcome::Sent);
        assert!(
            matches!(classify(410, br#"{"reason":"Unregistered"}"#, None), DeliveryOutcome::InvalidToken { reason } if reason == "Unregistered")
        );
        assert!(matches!(classify(400, br#"{"reason":"BadDeviceToken"}"#, None), DeliveryOutcome::InvalidToken { .. }));
        assert!(matches!(
            classify(400, br#"{"reason":"BadTopic"}"#, None),
            DeliveryOutcome::Permanent { code: ErrorCode::ProviderRejected, .. }
        ));
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify(429, br#"{"reason":"TooManyRequests"}"#, after),
            DeliveryOutcome::Retryable { after, reason: "TooManyRequests".into() }
        );
        assert!(matches!(classify(500, b"", None), DeliveryOutcome::Retryable { .. }));
        assert!(matches!(
            classify(503, br#"{"reason":"ServiceUnavailable"}"#, None),
            DeliveryOutcome::Retryable { .. }
        ));
    }

    #[test]
    fn only_apples_documented_reasons_reach_the_tenant() {
        assert!(matches!(
            classify(400, br#"{"reason":"<script>HOSTILE</script>"}"#, None),
            DeliveryOutcome::Permanent { reason: Some(r), .. } if r == "HTTP 400"
        ));
        assert!(matches!(
            classify(400, br#"{"reason":"DeviceTokenNotForTopic"}"#, None),
            DeliveryOutcome::Permanent { reason: Some(r), .. } if r == "DeviceTokenNotForTopic"
        ));
        assert!(matches!(
            classify(503, br#"{"reason":"HOSTILE"}"#, None),
            DeliveryOutcome::Retryable { reason, .. } if reason == "HTTP 503"
        ));
    }
}
