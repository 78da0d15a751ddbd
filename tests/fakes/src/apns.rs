//! A fake Apple Push Notification service (HTTP/2 provider API).
//!
//! Requests are checked in this order, each failure answered the way Apple
//! does (status code, `{"reason": "..."}` body) and always with an `apns-id`
//! response header (the request's `apns-id` echoed, or a fresh UUID):
//!
//! 1. HTTP/2 only: any other version gets `505` (`HttpVersionNotSupported`,
//!    a fake-only reason; Apple does not speak HTTP/1 at all).
//! 2. Route `POST /3/device/{token}`: other paths `404 BadPath`, other
//!    methods `405 MethodNotAllowed`.
//! 3. Device token: hex (any case), even length, 64..=200 characters, else
//!    `400 BadDeviceToken`.
//! 4. Authentication. With `authorization: bearer <jwt>`: header `alg` ES256
//!    and a `kid` registered with [`FakeApns::register_signing_key`],
//!    signature valid for that key, `iss` equal to the key's team id, integer
//!    `iat` not more than 60 s in the future, else `403 InvalidProviderToken`;
//!    `iat` older than 3600 s gives `403 ExpiredProviderToken`. Without an
//!    `authorization` header the TLS connection must have presented a client
//!    certificate signed by [`FakeApns::client_ca_pem`], else
//!    `403 MissingProviderToken`.
//! 5. `apns-topic` required with token authentication (`400 MissingTopic`).
//! 6. `apns-push-type`, if present, one of Apple's types (`400
//!    InvalidPushType`).
//! 7. `apns-priority`, if present, one of 10, 5, 1; `background` pushes must
//!    say `apns-priority: 5` explicitly (Apple defaults to 10, which it
//!    rejects for background pushes) — else `400 BadPriority`.
//! 8. `apns-expiration`, if present, an integer (`400 BadExpirationDate`);
//!    `apns-collapse-id` at most 64 bytes (`400 BadCollapseId`); `apns-id`, if
//!    present, a UUID (`400 BadMessageId`).
//! 9. Body at most 4096 bytes (5120 for `voip`), else `413 PayloadTooLarge`;
//!    empty is `400 PayloadEmpty`; not a JSON object with an `aps` object is
//!    `400 BadPayload` (a fake-only reason).
//!
//! Only a request passing every check consumes the next scripted
//! [`ApnsReply`] for its device token.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_rustls::TlsAcceptor;

use crate::keys::{ApnsClientCertificate, ApnsSigningKey, client_ca, server_ca, server_identity};
use crate::server::{self, ConnInfo};
use crate::support::{self, lock};

/// How a scripted device token is answered (after the request passed every
/// check).
#[derive(Clone, Debug)]
pub enum ApnsReply {
    /// `200` with an empty body.
    Ok,
    /// `410 {"reason": "Unregistered", "timestamp": <ms since epoch>}`.
    Unregistered,
    /// `400 {"reason": "BadDeviceToken"}`.
    BadDeviceToken,
    /// `429 {"reason": "TooManyRequests"}`, with `Retry-After` if `Some`.
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// `500 {"reason": "InternalServerError"}`.
    InternalServerError,
    /// `503 {"reason": "ServiceUnavailable"}`.
    ServiceUnavailable,
    /// Sleep this long, then answer `200`.
    Delay(Duration),
}

/// One request the fake received, with the answer it gave.
#[derive(Clone, Debug)]
pub struct ApnsRequest {
    /// The `{token}` path segment as received (empty if the path did not
    /// match).
    pub device_token: String,
    /// Request headers by lower-case name; `authorization` kept as received.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, or `Null` if it is not JSON.
    pub payload: Value,
    /// Body length in bytes.
    pub body_len: usize,
    /// The provider token's claims, when token authentication passed.
    pub jwt_claims: Option<Value>,
    /// The request came over a TLS connection that presented a client
    /// certificate.
    pub client_certificate: bool,
    /// Status code answered.
    pub status: u16,
    /// The `reason` answered, for non-200 answers.
    pub reason: Option<String>,
    /// `"HTTP/2.0"` (or whatever version the request used).
    pub http_version: String,
}

/// A running fake APNs server. Cheap to clone; all clones share the server.
#[derive(Clone)]
pub struct FakeApns {
    state: Arc<State>,
    base_url: String,
    tls: bool,
}

impl std::fmt::Debug for FakeApns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApns").field("base_url", &self.base_url).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl FakeApns {
    /// Starts a plain-text HTTP/2 server (h2c, prior knowledge) on
    /// `127.0.0.1` with a random port, on the current tokio runtime.
    pub async fn start_h2c() -> FakeApns {
        let (listener, addr) = server::bind_loopback().await;
        let fake = FakeApns::unstarted(format!("http://127.0.0.1:{}", addr.port()), false);
        let handler = fake.clone();
        server::spawn(listener, None, move |request, conn| handler.clone().respond(request, conn));
        fake
    }

    /// Starts an HTTPS server (ALPN `h2` only) on `127.0.0.1` with a random
    /// port. Its certificate is valid for `localhost` and `127.0.0.1` and
    /// signed by [`FakeApns::server_ca_pem`]. Client certificates signed by
    /// [`FakeApns::client_ca_pem`] are requested but not required.
    pub async fn start_tls() -> FakeApns {
        let (listener, addr) = server::bind_loopback().await;
        let fake = FakeApns::unstarted(format!("https://localhost:{}", addr.port()), true);
        let handler = fake.clone();
        server::spawn(listener, Some(tls_acceptor()), move |request, conn| handler.clone().respond(request, conn));
        fake
    }

    /// A fake with no listener yet, answering for `base_url`; a server passes it its requests
    /// with [`FakeApns::respond`].
    pub(crate) fn unstarted(base_url: String, tls: bool) -> FakeApns {
        FakeApns { state: Arc::new(State::new()), base_url, tls }
    }

    /// Checks and answers one request, recording it.
    pub(crate) async fn respond(self, request: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        handle(self.state, request, conn).await
    }

    /// `http://127.0.0.1:PORT` (h2c) or `https://localhost:PORT` (TLS).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// PEM of the CA to trust for the TLS server; `None` for h2c.
    pub fn server_ca_pem(&self) -> Option<String> {
        self.tls.then(|| server_ca().pem().to_owned())
    }

    /// PEM of the CA that signs [`FakeApns::issue_client_certificate`]
    /// certificates (the same for every fake in the process).
    pub fn client_ca_pem(&self) -> String {
        client_ca().pem().to_owned()
    }

    /// Issues a client certificate for `topic` that the TLS server accepts
    /// (subject `UID = topic`, `CN = "Apple Push Services: {topic}"`).
    pub fn issue_client_certificate(&self, topic: &str) -> ApnsClientCertificate {
        client_ca().issue_client_certificate(topic)
    }

    /// Accepts provider tokens with `kid = key.key_id` and
    /// `iss = key.team_id`, verified with `key.public_key_pem`. Replaces any
    /// key registered under the same id.
    pub fn register_signing_key(&self, key: &ApnsSigningKey) {
        let decoding_key = DecodingKey::from_ec_pem(key.public_key_pem.as_bytes())
            .expect("pushgate-fakes: ApnsSigningKey::public_key_pem is not an EC public key PEM");
        let mut keys = lock(&self.state.keys);
        keys.by_kid.insert(key.key_id.clone(), RegisteredKey { team_id: key.team_id.clone(), key: decoding_key });
        keys.verified.clear();
    }

    /// Queues replies for `device_token` (matched case-insensitively); they
    /// are used in order by requests that pass every check, after which the
    /// token is answered `200` again.
    pub fn script(&self, device_token: &str, replies: Vec<ApnsReply>) {
        lock(&self.state.records).scripts.entry(device_token.to_ascii_lowercase()).or_default().extend(replies);
    }

    /// Every request received (including rejected ones), in arrival order.
    pub fn received(&self) -> Vec<ApnsRequest> {
        let mut records = lock(&self.state.records).received.clone();
        records.sort_by_key(|(seq, _)| *seq);
        records.into_iter().map(|(_, request)| request).collect()
    }

    /// The requests answered `200`, in arrival order.
    pub fn delivered(&self) -> Vec<ApnsRequest> {
        self.received().into_iter().filter(|request| request.status == 200).collect()
    }

    /// How many requests were answered `200`; cheap enough to poll.
    pub fn delivered_count(&self) -> usize {
        self.state.delivered.load(Ordering::Relaxed)
    }

    /// How many different bearer tokens (valid or not) requests carried.
    pub fn distinct_jwts(&self) -> usize {
        lock(&self.state.records).jwts_seen.len()
    }

    /// Every request received from now on (including rejected ones), as it
    /// is answered. A receiver that falls more than 1024 requests behind
    /// gets `RecvError::Lagged` and skips them; [`FakeApns::received`] still
    /// has them all.
    pub fn subscribe(&self) -> broadcast::Receiver<ApnsRequest> {
        self.state.events.subscribe()
    }

    /// Forgets received requests, scripts, seen tokens and the delivered
    /// count. Registered signing keys stay registered.
    pub fn reset(&self) {
        let mut records = lock(&self.state.records);
        records.received.clear();
        records.scripts.clear();
        records.jwts_seen.clear();
        self.state.delivered.store(0, Ordering::Relaxed);
    }
}

struct State {
    keys: Mutex<Keys>,
    records: Mutex<Records>,
    seq: AtomicU64,
    delivered: AtomicUsize,
    /// Each answered request, for [`FakeApns::subscribe`].
    events: broadcast::Sender<ApnsRequest>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, RegisteredKey>,
    /// Provider tokens whose signature was already verified.
    verified: HashMap<String, VerifiedJwt>,
}

#[derive(Clone)]
struct RegisteredKey {
    team_id: String,
    key: DecodingKey,
}

struct VerifiedJwt {
    iat: i64,
    claims: Value,
}

#[derive(Default)]
struct Records {
    received: Vec<(u64, ApnsRequest)>,
    scripts: HashMap<String, VecDeque<ApnsReply>>,
    jwts_seen: HashSet<String>,
}

/// A failed check: status and Apple `reason`.
struct Reject(StatusCode, &'static str);

const PUSH_TYPES: [&str; 9] =
    ["alert", "background", "voip", "complication", "fileprovider", "mdm", "liveactivity", "location", "pushtotalk"];

/// Provider tokens older than this are expired.
const JWT_MAX_AGE_SECS: i64 = 3600;
/// Tolerated clock skew for `iat` in the future.
const JWT_MAX_SKEW_SECS: i64 = 60;
/// Bodies larger than this are not even read.
const READ_LIMIT: usize = 1 << 20;
/// Requests a [`FakeApns::subscribe`] receiver may fall behind by.
const EVENT_BACKLOG: usize = 1024;

fn tls_acceptor() -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(client_ca().der()).expect("pushgate-fakes: the client CA certificate is not a valid trust anchor");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .expect("pushgate-fakes: building the client certificate verifier failed");
    let identity = server_identity();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("pushgate-fakes: aws-lc-rs supports the default TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.certificate()], identity.private_key())
        .expect("pushgate-fakes: the server certificate and key do not match");
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

async fn handle(state: Arc<State>, request: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let seq = state.seq.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let apns_id = support::header(&parts.headers, "apns-id")
        .filter(|id| support::is_uuid(id))
        .map_or_else(support::uuid_like, str::to_owned);
    let body = axum::body::to_bytes(Body::new(body), READ_LIMIT).await;

    let mut record = ApnsRequest {
        device_token: String::new(),
        headers: support::header_map(&parts.headers),
        payload: Value::Null,
        body_len: body.as_ref().map_or(0, |b| b.len()),
        jwt_claims: None,
        client_certificate: conn.client_certificate,
        status: 0,
        reason: None,
        http_version: format!("{:?}", parts.version),
    };
    let bearer = support::bearer_token(&parts.headers).flatten().map(str::to_owned);

    let outcome = match &body {
        Ok(bytes) => {
            record.payload = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            state.check(&parts, bytes, conn, &mut record)
        }
        Err(_) => Err(Reject(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge")),
    };
    let reply = match outcome {
        Err(reject) => Err(reject),
        Ok(()) => Ok(state.next_reply(&record.device_token)),
    };

    let (status, reason, retry_after) = match reply {
        Err(Reject(status, reason)) => (status, Some(reason), None),
        Ok(ApnsReply::Ok) => (StatusCode::OK, None, None),
        Ok(ApnsReply::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, None, None)
        }
        Ok(ApnsReply::Unregistered) => (StatusCode::GONE, Some("Unregistered"), None),
        Ok(ApnsReply::BadDeviceToken) => (StatusCode::BAD_REQUEST, Some("BadDeviceToken"), None),
        Ok(ApnsReply::TooManyRequests { retry_after_secs }) => {
            (StatusCode::TOO_MANY_REQUESTS, Some("TooManyRequests"), retry_after_secs)
        }
        Ok(ApnsReply::InternalServerError) => (StatusCode::INTERNAL_SERVER_ERROR, Some("InternalServerError"), None),
        Ok(ApnsReply::ServiceUnavailable) => (StatusCode::SERVICE_UNAVAILABLE, Some("ServiceUnavailable"), None),
    };

    record.status = status.as_u16();
    record.reason = reason.map(str::to_owned);
    state.record(seq, record, bearer);

    let mut headers = vec![("apns-id", apns_id)];
    if let Some(secs) = retry_after {
        headers.push(("retry-after", secs.to_string()));
    }
    match reason {
        None => support::empty_response(status, &headers),
        Some(reason) => {
            let body = if status == StatusCode::GONE {
                json!({ "reason": reason, "timestamp": support::now_millis() })
            } else {
                json!({ "reason": reason })
            };
            support::json_response(status, &body, &headers)
        }
    }
}

impl State {
    fn new() -> State {
        State {
            keys: Mutex::default(),
            records: Mutex::default(),
            seq: AtomicU64::new(0),
            delivered: AtomicUsize::new(0),
            events: broadcast::channel(EVENT_BACKLOG).0,
        }
    }

    /// Runs Apple's checks; fills `device_token` and `jwt_claims` of `record`.
    fn check(&self, parts: &Parts, body: &[u8], conn: ConnInfo, record: &mut ApnsRequest) -> Result<(), Reject> {
        if parts.version != Version::HTTP_2 {
            return Err(Reject(StatusCode::HTTP_VERSION_NOT_SUPPORTED, "HttpVersionNotSupported"));
        }
        let token = parts
            .uri
            .path()
            .strip_prefix("/3/device/")
            .filter(|token| !token.is_empty() && !token.contains('/'))
            .ok_or(Reject(StatusCode::NOT_FOUND, "BadPath"))?;
        record.device_token = token.to_owned();
        if parts.method != Method::POST {
            return Err(Reject(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
        }
        if !is_valid_device_token(token) {
            return Err(Reject(StatusCode::BAD_REQUEST, "BadDeviceToken"));
        }

        let headers = &parts.headers;
        let token_auth = match support::bearer_token(headers) {
            Some(None) => {
                return Err(Reject(StatusCode::FORBIDDEN, "InvalidProviderToken"));
            }
            Some(Some(jwt)) => {
                let claims = self.verify_jwt(jwt).map_err(|reason| Reject(StatusCode::FORBIDDEN, reason))?;
                record.jwt_claims = Some(claims);
                true
            }
            None if conn.client_certificate => false,
            None => return Err(Reject(StatusCode::FORBIDDEN, "MissingProviderToken")),
        };

        let topic = support::header(headers, "apns-topic").filter(|t| !t.is_empty());
        if token_auth && topic.is_none() {
            return Err(Reject(StatusCode::BAD_REQUEST, "MissingTopic"));
        }

        let push_type = support::header(headers, "apns-push-type");
        if is_invalid(headers, "apns-push-type", |t| PUSH_TYPES.contains(&t)) {
            return Err(Reject(StatusCode::BAD_REQUEST, "InvalidPushType"));
        }

        let priority = support::header(headers, "apns-priority");
        if is_invalid(headers, "apns-priority", |p| matches!(p, "10" | "5" | "1"))
            || (push_type == Some("background") && priority != Some("5"))
        {
            return Err(Reject(StatusCode::BAD_REQUEST, "BadPriority"));
        }

        if is_invalid(headers, "apns-expiration", |e| e.parse::<i64>().is_ok()) {
            return Err(Reject(StatusCode::BAD_REQUEST, "BadExpirationDate"));
        }
        if is_invalid(headers, "apns-collapse-id", |id| id.len() <= 64) {
            return Err(Reject(StatusCode::BAD_REQUEST, "BadCollapseId"));
        }
        if is_invalid(headers, "apns-id", support::is_uuid) {
            return Err(Reject(StatusCode::BAD_REQUEST, "BadMessageId"));
        }

        let max_body = if push_type == Some("voip") { 5120 } else { 4096 };
        if body.len() > max_body {
            return Err(Reject(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
        }
        if body.is_empty() {
            return Err(Reject(StatusCode::BAD_REQUEST, "PayloadEmpty"));
        }
        if !record.payload.get("aps").is_some_and(Value::is_object) {
            return Err(Reject(StatusCode::BAD_REQUEST, "BadPayload"));
        }
        Ok(())
    }

    /// Verifies a provider token, answering from the cache for tokens already
    /// verified. Returns its claims or Apple's `reason`.
    fn verify_jwt(&self, jwt: &str) -> Result<Value, &'static str> {
        let now = support::now_secs();
        if let Some(verified) = lock(&self.keys).verified.get(jwt) {
            check_iat(verified.iat, now)?;
            return Ok(verified.claims.clone());
        }

        const INVALID: &str = "InvalidProviderToken";
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| INVALID)?;
        if header.alg != Algorithm::ES256 {
            return Err(INVALID);
        }
        let kid = header.kid.ok_or(INVALID)?;
        let registered = lock(&self.keys).by_kid.get(&kid).cloned().ok_or(INVALID)?;

        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Value>(jwt, &registered.key, &validation).map_err(|_| INVALID)?.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(registered.team_id.as_str()) {
            return Err(INVALID);
        }
        let iat = claims.get("iat").and_then(Value::as_i64).ok_or(INVALID)?;
        check_iat(iat, now)?;

        let mut keys = lock(&self.keys);
        if keys.verified.len() > 10_000 {
            keys.verified.retain(|_, verified| now - verified.iat <= JWT_MAX_AGE_SECS);
        }
        keys.verified.insert(jwt.to_owned(), VerifiedJwt { iat, claims: claims.clone() });
        Ok(claims)
    }

    /// The next scripted reply for `device_token`, or `Ok`.
    fn next_reply(&self, device_token: &str) -> ApnsReply {
        let mut records = lock(&self.records);
        if records.scripts.is_empty() {
            return ApnsReply::Ok;
        }
        records
            .scripts
            .get_mut(&device_token.to_ascii_lowercase())
            .and_then(VecDeque::pop_front)
            .unwrap_or(ApnsReply::Ok)
    }

    fn record(&self, seq: u64, request: ApnsRequest, bearer: Option<String>) {
        if request.status == 200 {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(request.clone());
        }
        let mut records = lock(&self.records);
        if let Some(jwt) = bearer {
            records.jwts_seen.insert(jwt);
        }
        records.received.push((seq, request));
    }
}

fn check_iat(iat: i64, now: i64) -> Result<(), &'static str> {
    if now - iat > JWT_MAX_AGE_SECS {
        Err("ExpiredProviderToken")
    } else if iat - now > JWT_MAX_SKEW_SECS {
        Err("InvalidProviderToken")
    } else {
        Ok(())
    }
}

/// Whether header `name` is present but not valid UTF-8 or not accepted by
/// `valid`.
fn is_invalid(headers: &http::HeaderMap, name: &str, valid: impl Fn(&str) -> bool) -> bool {
    headers.get(name).is_some_and(|value| !value.to_str().is_ok_and(&valid))
}

/// Hex, even length, 64 to 200 characters.
fn is_valid_device_token(token: &str) -> bool {
    (64..=200).contains(&token.len()) && token.len().is_multiple_of(2) && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tokens_must_be_even_length_hex_of_64_to_200_characters() {
        assert!(is_valid_device_token(&"ab".repeat(32)));
        assert!(is_valid_device_token(&"AB".repeat(100)));
        assert!(!is_valid_device_token(&"ab".repeat(31)));
        assert!(!is_valid_device_token(&"ab".repeat(101)));
        assert!(!is_valid_device_token(&format!("{}a", "ab".repeat(32))));
        assert!(!is_valid_device_token(&"zz".repeat(32)));
    }

    #[test]
    fn provider_token_age_is_limited_to_an_hour_with_a_minute_of_skew() {
        assert!(check_iat(1000, 1000).is_ok());
        assert_eq!(check_iat(1000, 1000 + 3601), Err("ExpiredProviderToken"));
        assert_eq!(check_iat(1000 + 61, 1000), Err("InvalidProviderToken"));
    }
}
