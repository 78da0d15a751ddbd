//! A fake Google OAuth 2.0 token endpoint plus FCM HTTP v1 API, on one server
//! speaking HTTP/1.1 and HTTP/2 (h2c with prior knowledge).
//!
//! `POST /token` (form-encoded `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`):
//! the assertion must be RS256, its `iss` a client email registered with
//! [`FakeFcm::register_service_account`], signed by that account's key,
//! `aud` equal to [`FakeFcm::token_uri`] (or the account's `token_uri`),
//! `scope` containing `https://www.googleapis.com/auth/firebase.messaging`
//! (or `https://www.googleapis.com/auth/cloud-platform`, which Google also
//! accepts), integer `iat` (at most 60 s in the future) and `exp` with
//! `exp - iat <= 3600` and `exp` in the future. Success mints an access token
//! for the account's project: `200 {"access_token", "expires_in": 3599,
//! "token_type": "Bearer"}`. Failures are `400 {"error": "invalid_grant",
//! "error_description"}` (`unsupported_grant_type` for another grant type,
//! `invalid_request` for a missing assertion or non-form body).
//!
//! `POST /v1/projects/{project}/messages:send`, checked in order:
//!
//! 1. `authorization: Bearer <token>` minted by `/token`, unexpired and for
//!    `{project}`, else `401 UNAUTHENTICATED`.
//! 2. Body a JSON object with only `message` / `validate_only` fields and a
//!    `message` object whose fields are all known FCM v1 `Message` fields.
//! 3. Exactly one of `token`, `topic`, `condition`; the fake supports only
//!    `token`, which must be a non-empty string.
//! 4. The serialized `message` at most 4096 bytes ("Message is too big").
//! 5. `data` / `android.data` / `apns.headers` maps of strings,
//!    `android.priority` `HIGH`/`NORMAL` (any case), `android.ttl` a duration
//!    string like `"3600s"` or `"1.5s"`.
//!
//! Every failure is `400 INVALID_ARGUMENT` in Google's error shape. Only then
//! is the next scripted [`FcmReply`] for the token used; success is
//! `200 {"name": "projects/{project}/messages/<id>"}`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::keys::FcmServiceAccount;
use crate::server::{self, ConnInfo};
use crate::support::{self, lock};

/// How a scripted registration token is answered (after the request passed
/// every check).
#[derive(Clone, Debug)]
pub enum FcmReply {
    /// `200 {"name": "projects/{project}/messages/<id>"}`.
    Ok,
    /// `404 NOT_FOUND`, `errorCode` `UNREGISTERED`.
    Unregistered,
    /// `400 INVALID_ARGUMENT`, `errorCode` `INVALID_ARGUMENT`, "The
    /// registration token is not a valid FCM registration token".
    InvalidToken,
    /// `429 RESOURCE_EXHAUSTED`, `errorCode` `QUOTA_EXCEEDED`, with
    /// `Retry-After` if `Some`.
    QuotaExceeded {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// `503 UNAVAILABLE`, `errorCode` `UNAVAILABLE`.
    Unavailable,
    /// `500 INTERNAL`, `errorCode` `INTERNAL`.
    Internal,
    /// Sleep this long, then answer `200`.
    Delay(Duration),
}

/// One `messages:send` request the fake received, with the answer it gave.
#[derive(Clone, Debug)]
pub struct FcmRequest {
    /// The `{project}` path segment.
    pub project_id: String,
    /// `message.token` (empty if absent or not a string).
    pub device_token: String,
    /// The `message` object (`Null` if the body had none).
    pub message: Value,
    /// Request headers by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// Status code answered.
    pub status: u16,
    /// Google's `error.status` answered, for non-200 answers.
    pub error_status: Option<String>,
    /// Google's `error.message` answered, for non-200 answers.
    pub error_message: Option<String>,
    /// `"HTTP/1.1"` or `"HTTP/2.0"`.
    pub http_version: String,
}

/// One request to the OAuth token endpoint, with the answer it gave.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The assertion's `iss` (the service account's client email), if it
    /// could be read.
    pub client_email: Option<String>,
    /// Status code answered: `200` when an access token was minted.
    pub status: u16,
    /// The OAuth `error` answered (`invalid_grant`, ...), for non-200 answers.
    pub error: Option<String>,
    /// The OAuth `error_description` answered, for non-200 answers.
    pub error_description: Option<String>,
}

/// A request the fake answered, as [`FakeFcm::subscribe`] reports it.
#[derive(Clone, Debug)]
pub enum FcmEvent {
    /// A `messages:send` request (as [`FakeFcm::received`] lists it).
    Send(FcmRequest),
    /// A request to the OAuth token endpoint.
    Token(TokenRequest),
}

/// A running fake FCM + OAuth server. Cheap to clone; all clones share the
/// server.
#[derive(Clone)]
pub struct FakeFcm {
    state: Arc<State>,
}

impl std::fmt::Debug for FakeFcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFcm").field("base_url", &self.state.base_url).finish_non_exhaustive()
    }
}

impl FakeFcm {
    /// Starts the server on `127.0.0.1` with a random port, on the current
    /// tokio runtime. It accepts HTTP/1.1 and HTTP/2 with prior knowledge.
    pub async fn start_h2c() -> FakeFcm {
        let (listener, addr) = server::bind_loopback().await;
        let fake = FakeFcm::unstarted(format!("http://127.0.0.1:{}", addr.port()));
        let handler = fake.clone();
        server::spawn(listener, None, move |request, conn| handler.clone().respond(request, conn));
        fake
    }

    /// A fake with no listener yet, answering for `base_url` (its token
    /// endpoint `{base_url}/token`); a server passes it its requests with
    /// [`FakeFcm::respond`].
    pub(crate) fn unstarted(base_url: String) -> FakeFcm {
        let state = Arc::new(State {
            token_uri: format!("{base_url}/token"),
            base_url,
            accounts: Mutex::default(),
            access_tokens: Mutex::default(),
            records: Mutex::default(),
            seq: AtomicU64::new(0),
            delivered: AtomicUsize::new(0),
            minted: AtomicUsize::new(0),
            events: broadcast::channel(EVENT_BACKLOG).0,
        });
        FakeFcm { state }
    }

    /// Checks and answers one request (`/token` or `messages:send`),
    /// recording it.
    pub(crate) async fn respond(self, request: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        handle(self.state, request, conn).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    /// `{base_url}/token`, the OAuth token endpoint.
    pub fn token_uri(&self) -> String {
        self.state.token_uri.clone()
    }

    /// Lets `account` obtain access tokens for its project.
    pub fn register_service_account(&self, account: &FcmServiceAccount) {
        let key = DecodingKey::from_rsa_pem(account.public_key_pem.as_bytes())
            .expect("pushgate-fakes: FcmServiceAccount::public_key_pem is not an RSA public key PEM");
        lock(&self.state.accounts).insert(
            account.client_email.clone(),
            Account { project_id: account.project_id.clone(), token_uri: account.token_uri.clone(), key },
        );
    }

    /// Queues replies for the registration token `device_token`; they are
    /// used in order by requests that pass every check, after which the
    /// token is answered `200` again.
    pub fn script(&self, device_token: &str, replies: Vec<FcmReply>) {
        lock(&self.state.records).scripts.entry(device_token.to_owned()).or_default().extend(replies);
    }

    /// Every `messages:send` request received (including rejected ones), in
    /// arrival order.
    pub fn received(&self) -> Vec<FcmRequest> {
        let mut records = lock(&self.state.records).received.clone();
        records.sort_by_key(|(seq, _)| *seq);
        records.into_iter().map(|(_, request)| request).collect()
    }

    /// The `messages:send` requests answered `200`, in arrival order.
    pub fn delivered(&self) -> Vec<FcmRequest> {
        self.received().into_iter().filter(|request| request.status == 200).collect()
    }

    /// How many `messages:send` requests were answered `200`; cheap enough
    /// to poll.
    pub fn delivered_count(&self) -> usize {
        self.state.delivered.load(Ordering::Relaxed)
    }

    /// How many access tokens `/token` minted.
    pub fn oauth_token_requests(&self) -> usize {
        self.state.minted.load(Ordering::Relaxed)
    }

    /// Every `messages:send` and `/token` request received from now on
    /// (including rejected ones), as it is answered. A receiver that falls
    /// more than 1024 requests behind gets `RecvError::Lagged` and skips
    /// them; [`FakeFcm::received`] still has the sends.
    pub fn subscribe(&self) -> broadcast::Receiver<FcmEvent> {
        self.state.events.subscribe()
    }

    /// Forgets received requests, scripts and counters. Registered accounts
    /// and already minted access tokens stay valid.
    pub fn reset(&self) {
        let mut records = lock(&self.state.records);
        records.received.clear();
        records.scripts.clear();
        self.state.delivered.store(0, Ordering::Relaxed);
        self.state.minted.store(0, Ordering::Relaxed);
    }
}

struct State {
    base_url: String,
    token_uri: String,
    /// Registered service accounts by client email.
    accounts: Mutex<HashMap<String, Account>>,
    /// Minted access tokens.
    access_tokens: Mutex<HashMap<String, AccessToken>>,
    records: Mutex<Records>,
    seq: AtomicU64,
    delivered: AtomicUsize,
    minted: AtomicUsize,
    /// Each answered request, for [`FakeFcm::subscribe`].
    events: broadcast::Sender<FcmEvent>,
}

struct Account {
    project_id: String,
    token_uri: String,
    key: DecodingKey,
}

struct AccessToken {
    project_id: String,
    expires_at: i64,
}

#[derive(Default)]
struct Records {
    received: Vec<(u64, FcmRequest)>,
    scripts: HashMap<String, VecDeque<FcmReply>>,
}

/// A Google API error.
struct ApiError {
    code: StatusCode,
    status: &'static str,
    message: String,
    /// The `FcmError` `errorCode` detail, if any.
    error_code: Option<&'static str>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn invalid_argument(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::BAD_REQUEST,
            status: "INVALID_ARGUMENT",
            message: message.into(),
            error_code: Some("INVALID_ARGUMENT"),
            retry_after_secs: None,
        }
    }

    fn unauthenticated() -> Self {
        ApiError {
            code: StatusCode::UNAUTHORIZED,
            status: "UNAUTHENTICATED",
            message: "Request had invalid authentication credentials.".to_owned(),
            error_code: None,
            retry_after_secs: None,
        }
    }

    fn response(&self) -> Response<Body> {
        let mut error = json!({
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        });
        if let Some(error_code) = self.error_code {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }]);
        }
        let headers: Vec<(&'static str, String)> =
            self.retry_after_secs.map(|secs| ("retry-after", secs.to_string())).into_iter().collect();
        support::json_response(self.code, &json!({ "error": error }), &headers)
    }
}

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_SCOPES: [&str; 2] =
    ["https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"];
/// Lifetime announced for minted access tokens.
const ACCESS_TOKEN_SECS: i64 = 3599;
/// FCM's limit on a message, approximated on its JSON form.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Bodies larger than this are not even read.
const READ_LIMIT: usize = 1 << 20;
/// Requests a [`FakeFcm::subscribe`] receiver may fall behind by.
const EVENT_BACKLOG: usize = 1024;

const MESSAGE_FIELDS: [&str; 11] = [
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "fcmOptions",
    "token",
    "topic",
    "condition",
];

async fn handle(state: Arc<State>, request: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
    let seq = state.seq.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(Body::new(body), READ_LIMIT).await;
    let path = parts.uri.path();

    if path == "/token" {
        if parts.method != Method::POST {
            return method_not_allowed();
        }
        return state.token(&parts, body.as_deref().unwrap_or_default());
    }
    let project = path
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/messages:send"))
        .filter(|project| !project.is_empty() && !project.contains('/'));
    match project {
        Some(_) if parts.method != Method::POST => method_not_allowed(),
        Some(project) => {
            let project = project.to_owned();
            state.send(seq, &parts, body, project).await
        }
        None => ApiError {
            code: StatusCode::NOT_FOUND,
            status: "NOT_FOUND",
            message: format!("The requested URL {path} was not found on this server."),
            error_code: None,
            retry_after_secs: None,
        }
        .response(),
    }
}

fn method_not_allowed() -> Response<Body> {
    ApiError {
        code: StatusCode::METHOD_NOT_ALLOWED,
        status: "METHOD_NOT_ALLOWED",
        message: "Method not allowed.".to_owned(),
        error_code: None,
        retry_after_secs: None,
    }
    .response()
}

impl State {
    /// The OAuth token endpoint.
    fn token(&self, parts: &Parts, body: &[u8]) -> Response<Body> {
        let mut client_email = None;
        let minted = self.mint(parts, body, &mut client_email);
        if self.events.receiver_count() > 0 {
            let (status, error, error_description) = match &minted {
                Ok(_) => (200, None, None),
                Err((error, description)) => (400, Some((*error).to_owned()), Some(description.clone())),
            };
            let _ = self.events.send(FcmEvent::Token(TokenRequest { client_email, status, error, error_description }));
        }
        match minted {
            Ok(access_token) => support::json_response(
                StatusCode::OK,
                &json!({
                    "access_token": access_token,
                    "expires_in": ACCESS_TOKEN_SECS,
                    "token_type": "Bearer",
                }),
                &[],
            ),
            Err((error, description)) => support::json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": error, "error_description": description }),
                &[],
            ),
        }
    }

    /// Checks a JWT-bearer grant and mints an access token, or returns the
    /// OAuth `error` and `error_description`. Sets `issuer` to the
    /// assertion's `iss` once it is read.
    fn mint(&self, parts: &Parts, body: &[u8], issuer: &mut Option<String>) -> Result<String, (&'static str, String)> {
        let content_type = support::header(&parts.headers, "content-type").unwrap_or_default();
        if !content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
            return Err(("invalid_request", "Content-Type must be application/x-www-form-urlencoded".to_owned()));
        }
        let form = support::parse_form(body);
        let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let grant_type = field("grant_type").unwrap_or_default();
        if grant_type != JWT_BEARER_GRANT {
            return Err(("unsupported_grant_type", format!("Invalid grant_type: {grant_type}")));
        }
        let assertion = field("assertion")
            .filter(|a| !a.is_empty())
            .ok_or(("invalid_request", "Missing required parameter: assertion".to_owned()))?;

        let invalid = |description: &str| ("invalid_grant", description.to_owned());
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| invalid("Invalid JWT: malformed assertion"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("Invalid JWT Signature."));
        }
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
            .map_err(|_| invalid("Invalid JWT: malformed assertion"))?
            .claims;
        let issuer_claim = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Invalid JWT: No issuer (iss) claim"))?;
        *issuer = Some(issuer_claim.to_owned());

        let (project_id, account_token_uri, key) = {
            let accounts = lock(&self.accounts);
            let account = accounts.get(issuer_claim).ok_or_else(|| invalid("Invalid grant: account not found"))?;
            (account.project_id.clone(), account.token_uri.clone(), account.key.clone())
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
            .map_err(|_| invalid("Invalid JWT Signature."))?
            .claims;

        let audience = claims.get("aud").and_then(Value::as_str);
        if audience != Some(self.token_uri.as_str()) && audience != Some(account_token_uri.as_str()) {
            return Err(invalid("Invalid JWT: Failed audience check. The right audience is the token URI."));
        }
        let scopes = claims.get("scope").and_then(Value::as_str).unwrap_or_default();
        if !scopes.split_whitespace().any(|s| FCM_SCOPES.contains(&s)) {
            return Err(invalid(
                "Invalid JWT: scope does not include https://www.googleapis.com/auth/firebase.messaging",
            ));
        }
        let now = support::now_secs();
        let iat = claims.get("iat").and_then(Value::as_i64);
        let exp = claims.get("exp").and_then(Value::as_i64);
        let timely = match (iat, exp) {
            (Some(iat), Some(exp)) => iat <= now + 60 && exp > now && exp > iat && exp - iat <= 3600,
            _ => false,
        };
        if !timely {
            return Err(invalid(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }

        let access_token = format!("ya29.fake-{:016x}{:016x}", support::random_u64(), support::random_u64());
        lock(&self.access_tokens)
            .insert(access_token.clone(), AccessToken { project_id, expires_at: now + ACCESS_TOKEN_SECS });
        self.minted.fetch_add(1, Ordering::Relaxed);
        Ok(access_token)
    }

    /// `messages:send`.
    async fn send(
        &self,
        seq: u64,
        parts: &Parts,
        body: Result<Bytes, axum::Error>,
        project_id: String,
    ) -> Response<Body> {
        let mut record = FcmRequest {
            project_id,
            device_token: String::new(),
            message: Value::Null,
            headers: support::header_map(&parts.headers),
            status: 0,
            error_status: None,
            error_message: None,
            http_version: format!("{:?}", parts.version),
        };
        let checked = match &body {
            Ok(bytes) => self.check_send(parts, bytes, &mut record),
            Err(_) => Err(ApiError::invalid_argument("Message is too big")),
        };
        let reply = match checked {
            Ok(()) => self.next_reply(&record.device_token),
            Err(error) => Err(error),
        };
        let reply = match reply {
            Ok(Some(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };

        let response = match &reply {
            Ok(()) => {
                record.status = 200;
                let name = format!(
                    "projects/{}/messages/0:{}%{:016x}",
                    record.project_id,
                    support::now_millis(),
                    support::random_u64()
                );
                support::json_response(StatusCode::OK, &json!({ "name": name }), &[])
            }
            Err(error) => {
                record.status = error.code.as_u16();
                record.error_status = Some(error.status.to_owned());
                record.error_message = Some(error.message.clone());
                error.response()
            }
        };
        if record.status == 200 {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(FcmEvent::Send(record.clone()));
        }
        lock(&self.records).received.push((seq, record));
        response
    }

    /// Google's checks of a send request; fills `device_token` and `message`.
    fn check_send(&self, parts: &Parts, body: &[u8], record: &mut FcmRequest) -> Result<(), ApiError> {
        let authorized = support::bearer_token(&parts.headers).flatten().is_some_and(|token| {
            lock(&self.access_tokens)
                .get(token)
                .is_some_and(|t| t.project_id == record.project_id && t.expires_at > support::now_secs())
        });
        if !authorized {
            return Err(ApiError::unauthenticated());
        }

        let request: Value =
            serde_json::from_slice(body).map_err(|_| ApiError::invalid_argument("Invalid JSON payload received."))?;
        let request = request
            .as_object()
            .ok_or_else(|| ApiError::invalid_argument("Invalid JSON payload received. Expected an object."))?;
        check_known_fields(request, &["message", "validate_only", "validateOnly"])?;
        let message = request
            .get("message")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::invalid_argument("Request contains an invalid argument."))?;
        record.message = Value::Object(message.clone());
        if let Some(token) = message.get("token").and_then(Value::as_str) {
            record.device_token = token.to_owned();
        }
        check_known_fields(message, &MESSAGE_FIELDS)?;

        let targets = ["token", "topic", "condition"].iter().filter(|target| message.contains_key(**target)).count();
        match targets {
            0 => {
                return Err(ApiError::invalid_argument("Recipient of the message is not set."));
            }
            1 => {}
            _ => {
                return Err(ApiError::invalid_argument("Exactly one of token, topic or condition must be set."));
            }
        }
        if !message.contains_key("token") {
            return Err(ApiError::invalid_argument(
                "pushgate-fakes only supports messages addressed to a registration token.",
            ));
        }
        if record.device_token.is_empty() {
            return Err(ApiError::invalid_argument("The registration token is not a valid FCM registration token"));
        }

        if record.message.to_string().len() > MAX_MESSAGE_BYTES {
            return Err(ApiError::invalid_argument("Message is too big"));
        }

        check_string_map(message.get("data"), "message.data")?;
        if let Some(android) = message.get("android") {
            let android =
                android.as_object().ok_or_else(|| ApiError::invalid_argument("Invalid value at 'message.android'."))?;
            check_string_map(android.get("data"), "message.android.data")?;
            if let Some(priority) = android.get("priority") {
                let valid = priority.as_str().is_some_and(|p| matches!(p, "HIGH" | "NORMAL" | "high" | "normal"));
                if !valid {
                    return Err(ApiError::invalid_argument(format!(
                        "Invalid value at 'message.android.priority' \
                         (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority}"
                    )));
                }
            }
            if let Some(ttl) = android.get("ttl")
                && !ttl.as_str().is_some_and(is_duration)
            {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}"
                )));
            }
        }
        if let Some(apns) = message.get("apns") {
            let apns =
                apns.as_object().ok_or_else(|| ApiError::invalid_argument("Invalid value at 'message.apns'."))?;
            check_string_map(apns.get("headers"), "message.apns.headers")?;
        }
        Ok(())
    }

    /// The next scripted reply for `device_token`: `Ok(None)` to answer 200
    /// now, `Ok(Some(delay))` to answer 200 after `delay`, or an error.
    fn next_reply(&self, device_token: &str) -> Result<Option<Duration>, ApiError> {
        let reply = {
            let mut records = lock(&self.records);
            records.scripts.get_mut(device_token).and_then(VecDeque::pop_front).unwrap_or(FcmReply::Ok)
        };
        let error = |code, status, message: &str, error_code| ApiError {
            code,
            status,
            message: message.to_owned(),
            error_code: Some(error_code),
            retry_after_secs: None,
        };
        match reply {
            FcmReply::Ok => Ok(None),
            FcmReply::Delay(delay) => Ok(Some(delay)),
            FcmReply::Unregistered => {
                Err(error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"))
            }
            FcmReply::InvalidToken => {
                Err(ApiError::invalid_argument("The registration token is not a valid FCM registration token"))
            }
            FcmReply::QuotaExceeded { retry_after_secs } => Err(ApiError {
                retry_after_secs,
                ..error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded for quota metric 'Send requests'.",
                    "QUOTA_EXCEEDED",
                )
            }),
            FcmReply::Unavailable => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                "UNAVAILABLE",
            )),
            FcmReply::Internal => {
                Err(error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Internal error encountered.", "INTERNAL"))
            }
        }
    }
}

/// Rejects fields not in `known`, the way Google's JSON-to-proto mapping does.
fn check_known_fields(object: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(ApiError::invalid_argument(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        ))),
    }
}

/// A `map<string, string>` field: absent, or an object of string values.
fn check_string_map(value: Option<&Value>, field: &str) -> Result<(), ApiError> {
    let Some(value) = value else {
        return Ok(());
    };
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::invalid_argument(format!("Invalid value at '{field}' (map), {value}")))?;
    match object.iter().find(|(_, v)| !v.is_string()) {
        None => Ok(()),
        Some((key, v)) => {
            Err(ApiError::invalid_argument(format!("Invalid value at '{field}[{key}].value' (TYPE_STRING), {v}")))
        }
    }
}

/// A protobuf JSON duration: digits, optional fraction of up to 9 digits,
/// then `s` (e.g. `"3600s"`, `"1.5s"`).
fn is_duration(s: &str) -> bool {
    let Some(number) = s.strip_suffix('s') else {
        return false;
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn android_ttl_must_be_a_protobuf_duration_string() {
        assert!(is_duration("3600s"));
        assert!(is_duration("0s"));
        assert!(is_duration("1.5s"));
        assert!(!is_duration("3600"));
        assert!(!is_duration("s"));
        assert!(!is_duration("1.s"));
        assert!(!is_duration("-1s"));
        assert!(!is_duration("1h"));
    }
}
