//! Credentials and Apps, and the secret content a credential holds.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{AccountId, AppName, CredentialId};
use super::model::{Provider, Timestamp};
use super::send::FieldError;

/// Most Apps per account.
pub const MAX_APPS: usize = 10;
/// Most credentials per App.
pub const MAX_CREDENTIALS_PER_APP: usize = 10;

/// The kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CredentialType {
    /// APNs production.
    #[serde(rename = "APN")]
    Apn,
    /// APNs sandbox (development builds).
    #[serde(rename = "APN_SANDBOX")]
    ApnSandbox,
    /// Firebase Cloud Messaging.
    #[serde(rename = "FCM")]
    Fcm,
}

impl CredentialType {
    /// All types.
    pub const ALL: [Self; 3] = [Self::Apn, Self::ApnSandbox, Self::Fcm];

    /// The provider it sends through.
    pub fn provider(self) -> Provider {
        match self {
            Self::Apn | Self::ApnSandbox => Provider::Apn,
            Self::Fcm => Provider::Fcm,
        }
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apn => "APN",
            Self::ApnSandbox => "APN_SANDBOX",
            Self::Fcm => "FCM",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A credential's public metadata (what the API returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: CredentialId,
    /// Owner.
    pub account_id: AccountId,
    /// Kind.
    pub credential_type: CredentialType,
    /// The App it belongs to.
    pub app_name: AppName,
    /// Is it the App's default for its type?
    pub is_default: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// An App: a named group of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Owner.
    pub account_id: AccountId,
    /// Its name (and id).
    pub name: AppName,
    /// Is it the account's default App?
    pub is_default: bool,
    /// Default credential per type.
    pub default_credentials: Vec<(CredentialType, CredentialId)>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Secret credential content. Never printed, logged or returned.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CredentialSecret {
    /// APNs token-based auth (`.p8` key).
    ApnToken {
        /// The key id (JWT `kid`).
        key_id: String,
        /// The team id (JWT `iss`).
        team_id: String,
        /// The PKCS#8 PEM of the key.
        private_key_pem: String,
        /// The app's bundle id (`apns-topic`).
        bundle_id: String,
    },
    /// APNs certificate-based auth.
    ApnCertificate {
        /// The client certificate PEM.
        certificate_pem: String,
        private_key_pem: String,
        /// The topic read from the certificate (its UID), if it has one.
        topic: Option<String>,
    },
    /// An FCM service account.
    Fcm {
        /// Firebase project id.
        project_id: String,
        /// Service account email (JWT `iss`).
        client_email: String,
        /// The RSA private key PEM.
        private_key_pem: String,
        /// Where to exchange the assertion for an access token.
        token_uri: String,
    },
}

impl fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ApnToken { .. } => "CredentialSecret::ApnToken([redacted])",
            Self::ApnCertificate { .. } => "CredentialSecret::ApnCertificate([redacted])",
            Self::Fcm { .. } => "CredentialSecret::Fcm([redacted])",
        })
    }
}

impl CredentialSecret {
    /// Parses and checks `content` for `credential_type`; field errors name `content.<field>`.
    pub fn parse(credential_type: CredentialType, content: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(c) = content.as_object() else {
            return Err(vec![FieldError::new("content", "must be an object")]);
        };
        let mut errors = Vec::new();
        let secret = match credential_type {
            CredentialType::Fcm => {
                let json = text(c, "privateKey", &mut errors)
                    .and_then(|b64| decode_b64(&b64, "content.privateKey", &mut errors));
                json.and_then(|json| parse_service_account(&json, &mut errors))
            }
            CredentialType::Apn | CredentialType::ApnSandbox if c.contains_key("keyId") || c.contains_key("teamId") => {
                let key_id = text(c, "keyId", &mut errors)
                    .filter(|v| checked(is_apple_id(v), "content.keyId", APPLE_ID_RULE, &mut errors));
                let team_id = text(c, "teamId", &mut errors)
                    .filter(|v| checked(is_apple_id(v), "content.teamId", APPLE_ID_RULE, &mut errors));
                let bundle_id = text(c, "bundleId", &mut errors)
                    .filter(|v| checked(is_bundle_id(v), "content.bundleId", BUNDLE_ID_RULE, &mut errors));
                let key = text(c, "privateKey", &mut errors)
                    .and_then(|b64| decode_b64(&b64, "content.privateKey", &mut errors));
                let key = key.filter(|pem| {
                    check_pem(pem, &["PRIVATE KEY", "EC PRIVATE KEY"], "content.privateKey", &mut errors)
                });
                match (key_id, team_id, bundle_id, key) {
                    (Some(key_id), Some(team_id), Some(bundle_id), Some(private_key_pem)) => {
                        Some(Self::ApnToken { key_id, team_id, private_key_pem, bundle_id })
                    }
                    _ => None,
                }
            }
            CredentialType::Apn | CredentialType::ApnSandbox => {
                let cert = text(c, "certificate", &mut errors)
                    .and_then(|b64| decode_b64(&b64, "content.certificate", &mut errors));
                let cert = cert.filter(|pem| check_pem(pem, &["CERTIFICATE"], "content.certificate", &mut errors));
                let key = text(c, "privateKey", &mut errors)
                    .and_then(|b64| decode_b64(&b64, "content.privateKey", &mut errors));
                let key = key.filter(|pem| {
                    check_pem(
                        pem,
                        &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"],
                        "content.privateKey",
                        &mut errors,
                    )
                });
                // The certificate's UID becomes the `apns-topic` header.
                let topic = cert.as_deref().map(certificate_topic);
                let topic_ok = match &topic {
                    Some(Some(topic)) => checked(
                        is_bundle_id(topic),
                        "content.certificate",
                        &format!("holds a UID (the topic) that is not a bundle id: {BUNDLE_ID_RULE}"),
                        &mut errors,
                    ),
                    _ => true,
                };
                match (cert, key, topic_ok) {
                    (Some(certificate_pem), Some(private_key_pem), true) => {
                        Some(Self::ApnCertificate { certificate_pem, private_key_pem, topic: topic.flatten() })
                    }
                    _ => None,
                }
            }
        };
        match secret {
            Some(secret) if errors.is_empty() => Ok(secret),
            _ => Err(errors),
        }
    }
}

/// What `keyId` and `teamId` must be.
const APPLE_ID_RULE: &str = "must be Apple's 10-character id (letters A-Z a-z and digits 0-9)";
/// What a bundle id (the `apns-topic` header) must be.
const BUNDLE_ID_RULE: &str = "must be a bundle id: 1 to 255 characters from A-Z a-z 0-9 . - (reverse-DNS)";

/// Apple key and team ids (the JWT's `kid` and `iss`): 10 ASCII letters or digits.
pub fn is_apple_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An app's bundle id, sent as the `apns-topic` header (with suffixes such as `.voip`):
/// reverse-DNS characters only, so no control character or separator reaches a header.
pub fn is_bundle_id(s: &str) -> bool {
    (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A Google Cloud project id, which goes into FCM's URL path: 6 to 30 lowercase letters,
/// digits or hyphens, starting with a letter and not ending with a hyphen, optionally behind a
/// legacy domain scope (`example.com:my-project`).
pub fn is_project_id(s: &str) -> bool {
    let (scope, id) = match s.rsplit_once(':') {
        Some((scope, id)) => (Some(scope), id),
        None => (None, s),
    };
    let id_ok = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let scope_ok = scope.is_none_or(|d| {
        (1..=253).contains(&d.len())
            && d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    });
    id_ok && scope_ok
}

/// Records `message` on `field` unless `ok`; returns `ok`.
fn checked(ok: bool, field: &str, message: &str, errors: &mut Vec<FieldError>) -> bool {
    if !ok {
        errors.push(FieldError::new(field, message));
    }
    ok
}

fn text(c: &serde_json::Map<String, Value>, name: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match c.get(name).and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
        Some(s) => Some(s.to_owned()),
        None => {
            errors.push(FieldError::new(format!("content.{name}"), "is required (a non-empty string)"));
            None
        }
    }
}

fn decode_b64(b64: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let cleaned: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    match STANDARD.decode(cleaned).ok().and_then(|bytes| String::from_utf8(bytes).ok()) {
        Some(s) => Some(s),
        None => {
            errors.push(FieldError::new(field, "must be base64 of a UTF-8 PEM or JSON document"));
            None
        }
    }
}

/// Does `pem` hold a block with one of `labels`?
fn check_pem(pem: &str, labels: &[&str], field: &str, errors: &mut Vec<FieldError>) -> bool {
    let found = pem_blocks(pem).iter().any(|label| labels.contains(&label.as_str()));
    if !found {
        errors.push(FieldError::new(field, format!("must be a PEM holding a {} block", labels.join(" or "))));
    }
    found
}

/// The labels of well-formed PEM blocks in `pem` (base64 bodies checked).
fn pem_blocks(pem: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else { continue };
        let mut body = String::new();
        let end = format!("-----END {label}-----");
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            body.push_str(line);
        }
        if closed && !body.is_empty() && STANDARD.decode(&body).is_ok() {
            labels.push(label.to_owned());
        }
    }
    labels
}

fn parse_service_account(json: &str, errors: &mut Vec<FieldError>) -> Option<CredentialSecret> {
    let field = "content.privateKey";
    let Ok(Value::Object(sa)) = serde_json::from_str::<Value>(json) else {
        errors.push(FieldError::new(field, "must be base64 of a Firebase service-account JSON object"));
        return None;
    };
    let get = |k: &str| sa.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut missing = Vec::new();
    for k in ["project_id", "client_email", "private_key"] {
        if get(k).is_none() {
            missing.push(k);
        }
    }
    if !missing.is_empty() {
        errors.push(FieldError::new(field, format!("service-account JSON lacks {}", missing.join(", "))));
        return None;
    }
    let project_id = get("project_id")?;
    if !is_project_id(&project_id) {
        errors.push(FieldError::new(
            field,
            "service-account project_id must be a Google Cloud project id: 6 to 30 lowercase letters, digits \
             or hyphens, starting with a letter",
        ));
        return None;
    }
    let private_key_pem = get("private_key")?;
    if !check_pem(&private_key_pem, &["PRIVATE KEY", "RSA PRIVATE KEY"], field, errors) {
        return None;
    }
    let token_uri = get("token_uri").unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned());
    if !url::Url::parse(&token_uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        errors.push(FieldError::new(field, "service-account token_uri must be an http(s) URL"));
        return None;
    }
    Some(CredentialSecret::Fcm { project_id, client_email: get("client_email")?, private_key_pem, token_uri })
}

/// Apple push certificates carry the bundle id as the subject's UID.
fn certificate_topic(pem: &str) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    cert.subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == "0.9.2342.19200300.100.1.1")
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned)
}

/// Why a change to the credential book was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// The account already has [`MAX_APPS`] Apps.
    #[error("an account may have at most {MAX_APPS} Apps")]
    TooManyApps,
    /// The App already has [`MAX_CREDENTIALS_PER_APP`] credentials.
    #[error("an App may have at most {MAX_CREDENTIALS_PER_APP} credentials")]
    TooManyCredentials,
    /// No such credential.
    #[error("credential not found")]
    CredentialNotFound,
    /// No such App.
    #[error("App not found")]
    AppNotFound,
}

/// Everything an account has in Credentials and Apps, kept together because every rule (limits,
/// one default per type and App, one default App, the delete cascade) spans several records. It
/// is small by construction (≤ 10 Apps × 10 credentials), so stores save it whole with an
/// optimistic version check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialBook {
    /// Apps in creation order (`default_credentials` is derived, kept empty here).
    pub apps: Vec<App>,
    /// Credentials in creation order.
    pub credentials: Vec<Credential>,
}

/// What deleting a credential removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The removed credential.
    pub credential: Credential,
    /// The App, when it was the App's last credential.
    pub app_removed: Option<AppName>,
}

impl CredentialBook {
    /// Adds a credential, creating its App when new (the account's first App becomes default).
    /// The first credential of a type in an App is default; `is_default` makes it default anyway.
    pub fn add(&mut self, mut credential: Credential, is_default: bool) -> Result<Credential, BookError> {
        let now = credential.created_at;
        if !self.apps.iter().any(|a| a.name == credential.app_name) {
            if self.apps.len() >= MAX_APPS {
                return Err(BookError::TooManyApps);
            }
            self.apps.push(App {
                account_id: credential.account_id.clone(),
                name: credential.app_name.clone(),
                is_default: self.apps.is_empty(),
                default_credentials: Vec::new(),
                created_at: now,
                updated_at: now,
            });
        }
        let in_app = self.credentials.iter().filter(|c| c.app_name == credential.app_name);
        if in_app.clone().count() >= MAX_CREDENTIALS_PER_APP {
            return Err(BookError::TooManyCredentials);
        }
        let first_of_type = !in_app.clone().any(|c| c.credential_type == credential.credential_type);
        credential.is_default = false;
        self.credentials.push(credential.clone());
        if is_default || first_of_type {
            return self.set_default(&credential.id, now);
        }
        Ok(credential)
    }

    /// Makes a credential the default of its type in its App, clearing the previous default.
    pub fn set_default(&mut self, id: &CredentialId, now: Timestamp) -> Result<Credential, BookError> {
        let target = self.credential(id).cloned().ok_or(BookError::CredentialNotFound)?;
        for c in &mut self.credentials {
            if c.app_name == target.app_name && c.credential_type == target.credential_type {
                let make_default = &c.id == id;
                if c.is_default != make_default {
                    c.is_default = make_default;
                    c.updated_at = now;
                }
            }
        }
        self.credential(id).cloned().ok_or(BookError::CredentialNotFound)
    }

    /// Makes an App the account's default.
    pub fn set_default_app(&mut self, name: &AppName, now: Timestamp) -> Result<App, BookError> {
        if !self.apps.iter().any(|a| &a.name == name) {
            return Err(BookError::AppNotFound);
        }
        for app in &mut self.apps {
            let make_default = &app.name == name;
            if app.is_default != make_default {
                app.is_default = make_default;
                app.updated_at = now;
            }
        }
        self.app(name).ok_or(BookError::AppNotFound)
    }

    /// Deletes a credential; deleting an App's last credential deletes the App. When the removed
    /// credential was a default, the newest remaining one of its type becomes default; when the
    /// removed App was the default App, the oldest remaining App becomes default.
    pub fn remove(&mut self, id: &CredentialId, now: Timestamp) -> Result<Removal, BookError> {
        let pos = self.credentials.iter().position(|c| &c.id == id).ok_or(BookError::CredentialNotFound)?;
        let credential = self.credentials.remove(pos);
        if credential.is_default
            && let Some(next) = self
                .credentials
                .iter()
                .rev()
                .find(|c| c.app_name == credential.app_name && c.credential_type == credential.credential_type)
                .map(|c| c.id.clone())
        {
            self.set_default(&next, now)?;
        }
        let mut app_removed = None;
        if !self.credentials.iter().any(|c| c.app_name == credential.app_name) {
            let was_default = self.apps.iter().any(|a| a.name == credential.app_name && a.is_default);
            self.apps.retain(|a| a.name != credential.app_name);
            if was_default && let Some(first) = self.apps.first_mut() {
                first.is_default = true;
                first.updated_at = now;
            }
            app_removed = Some(credential.app_name.clone());
        }
        Ok(Removal { credential, app_removed })
    }

    /// A credential by id.
    pub fn credential(&self, id: &CredentialId) -> Option<&Credential> {
        self.credentials.iter().find(|c| &c.id == id)
    }

    /// An App by name, with its default credentials filled in.
    pub fn app(&self, name: &AppName) -> Option<App> {
        let mut app = self.apps.iter().find(|a| &a.name == name)?.clone();
        app.default_credentials = CredentialType::ALL
            .into_iter()
            .filter_map(|t| {
                self.credentials
                    .iter()
                    .find(|c| &c.app_name == name && c.credential_type == t && c.is_default)
                    .map(|c| (t, c.id.clone()))
            })
            .collect();
        Some(app)
    }

    /// All Apps with their default credentials.
    pub fn apps(&self) -> Vec<App> {
        self.apps.iter().filter_map(|a| self.app(&a.name)).collect()
    }

    /// The account's default App.
    pub fn default_app(&self) -> Option<App> {
        self.apps.iter().find(|a| a.is_default).and_then(|a| self.app(&a.name))
    }
}

impl App {
    /// The App's default credential for `provider`: for APN the `APN` default, else `APN_SANDBOX`.
    pub fn default_for(&self, provider: Provider) -> Option<CredentialId> {
        let pick =
            |t: CredentialType| self.default_credentials.iter().find(|(ct, _)| *ct == t).map(|(_, id)| id.clone());
        match provider {
            Provider::Apn => pick(CredentialType::Apn).or_else(|| pick(CredentialType::ApnSandbox)),
            Provider::Fcm => pick(CredentialType::Fcm),
        }
    }
}

/// The additional data a credential secret is sealed with: it cannot be moved to another
/// account or credential.
pub fn secret_aad(account: &crate::domain::AccountId, id: &crate::domain::CredentialId) -> Vec<u8> {
    format!("{account}/{id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cred(n: u8, app: &str, t: CredentialType) -> Credential {
        let now = chrono::Utc::now();
        Credential {
            id: CredentialId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000 + u64::from(n), u128::from(n))),
            account_id: AccountId::from_bytes([1; 16]),
            credential_type: t,
            app_name: AppName::parse(app).expect("valid"),
            is_default: false,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_first_app_and_first_credential_of_a_type_become_defaults() {
        let mut book = CredentialBook::default();
        let a = book.add(cred(1, "app_a", CredentialType::Apn), false).expect("added");
        let b = book.add(cred(2, "app_a", CredentialType::Apn), false).expect("added");
        book.add(cred(3, "app_b", CredentialType::Fcm), false).expect("added");
        assert!(a.is_default && !b.is_default);
        let apps = book.apps();
        assert!(apps[0].is_default && !apps[1].is_default);
        assert_eq!(apps[0].default_for(Provider::Apn), Some(a.id.clone()));
    }

    #[test]
    fn setting_a_default_clears_the_previous_default_of_that_type_and_app() {
        let mut book = CredentialBook::default();
        let a = book.add(cred(1, "app_a", CredentialType::Apn), false).expect("added");
        let b = book.add(cred(2, "app_a", CredentialType::Apn), true).expect("added");
        assert!(b.is_default);
        assert!(!book.credential(&a.id).expect("exists").is_default);
    }

    #[test]
    fn app_and_credential_limits_hold() {
        let mut book = CredentialBook::default();
        for i in 0..10 {
            book.add(cred(i, "app_a", CredentialType::Fcm), false).expect("within limit");
        }
        assert_eq!(book.add(cred(10, "app_a", CredentialType::Fcm), false), Err(BookError::TooManyCredentials));
        for i in 1..10 {
            book.add(cred(20 + i, &format!("app_{i}"), CredentialType::Fcm), false).expect("within limit");
        }
        assert_eq!(book.add(cred(40, "app_x", CredentialType::Fcm), false), Err(BookError::TooManyApps));
    }

    #[test]
    fn deleting_an_apps_last_credential_deletes_the_app_and_moves_the_default() {
        let mut book = CredentialBook::default();
        let a = book.add(cred(1, "app_a", CredentialType::Apn), false).expect("added");
        book.add(cred(2, "app_b", CredentialType::Fcm), false).expect("added");
        let removal = book.remove(&a.id, chrono::Utc::now()).expect("removed");
        assert_eq!(removal.app_removed.map(|n| n.to_string()), Some("app_a".to_owned()));
        assert_eq!(book.default_app().map(|a| a.name.to_string()), Some("app_b".to_owned()));
    }

    const FAKE_PEM_KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn apn_token_content_is_parsed_and_never_printed() {
        let content = json!({"keyId": "ABC123DEFG", "teamId": "TEAM123456", "bundleId": "com.example.app", "privateKey": b64(FAKE_PEM_KEY)});
        let secret = CredentialSecret::parse(CredentialType::Apn, &content).expect("valid");
        assert!(matches!(secret, CredentialSecret::ApnToken { ref bundle_id, .. } if bundle_id == "com.example.app"));
        let printed = format!("{secret:?}");
        assert!(!printed.contains("MIGH") && !printed.contains("ABC123"), "{printed}");
    }

    #[test]
    fn apn_token_content_reports_every_missing_field() {
        let errors =
            CredentialSecret::parse(CredentialType::Apn, &json!({"keyId": "ABC123DEFG"})).expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["content.teamId", "content.bundleId", "content.privateKey"]);
    }

    #[test]
    fn content_that_is_not_base64_pem_is_refused() {
        for content in [
            json!({"certificate": "%%%", "privateKey": b64(FAKE_PEM_KEY)}),
            json!({"certificate": b64("not a pem"), "privateKey": b64(FAKE_PEM_KEY)}),
        ] {
            let errors = CredentialSecret::parse(CredentialType::ApnSandbox, &content).expect_err("invalid");
            assert_eq!(errors[0].field, "content.certificate");
        }
    }

    #[test]
    fn fcm_content_must_be_a_service_account_json() {
        let sa = json!({"project_id": "my-project", "client_email": "a@p.iam.gserviceaccount.com", "private_key": FAKE_PEM_KEY, "token_uri": "http://127.0.0.1:1/token"});
        let secret =
            CredentialSecret::parse(CredentialType::Fcm, &json!({"privateKey": b64(&sa.to_string())})).expect("valid");
        assert!(matches!(secret, CredentialSecret::Fcm { ref project_id, .. } if project_id == "my-project"));
        let bad = json!({"project_id": "my-project"});
        let errors = CredentialSecret::parse(CredentialType::Fcm, &json!({"privateKey": b64(&bad.to_string())}))
            .expect_err("invalid");
        assert!(errors[0].message.contains("client_email"));
    }

    #[test]
    fn header_and_url_fields_of_credentials_are_refused_when_malformed() {
        let apn = |field: &str, value: &str| {
            let mut content = json!({"keyId": "ABC123DEFG", "teamId": "TEAM123456", "bundleId": "com.example.app", "privateKey": b64(FAKE_PEM_KEY)});
            content[field] = json!(value);
            CredentialSecret::parse(CredentialType::Apn, &content)
                .err()
                .map(|e| e.into_iter().map(|e| e.field).collect::<Vec<_>>())
        };
        for (field, value) in [
            ("bundleId", "com.example.app\r\nx: 1"),
            ("bundleId", "com example"),
            ("bundleId", "com/example"),
            ("keyId", "ABC123DEF"),
            ("keyId", "ABC123DEF\n"),
            ("teamId", "TEAM-12345"),
        ] {
            assert_eq!(apn(field, value), Some(vec![format!("content.{field}")]), "{field}={value:?}");
        }
        assert_eq!(apn("bundleId", "com.example.app-2.voip"), None);

        let fcm = |project: &str| {
            let sa = json!({"project_id": project, "client_email": "a@p.iam.gserviceaccount.com", "private_key": FAKE_PEM_KEY});
            CredentialSecret::parse(CredentialType::Fcm, &json!({"privateKey": b64(&sa.to_string())})).is_ok()
        };
        assert!(fcm("my-project-42") && fcm("example.com:my-project"));
        let long = "a".repeat(31);
        for project in ["p", "p/../x", "My-Project", "project-\n", "1project", "project-", long.as_str()] {
            assert!(!fcm(project), "{project:?}");
        }
    }

    #[test]
    fn a_sealed_secret_keeps_its_field_names_since_credentials_outlive_every_deploy() {
        // The plaintext pushgate seals (KMS or AES-GCM) is this JSON; credentials are never
        // expired, so a renamed field would make every stored credential unreadable.
        let cases = [
            (
                CredentialSecret::ApnToken {
                    key_id: "KEY1234567".into(),
                    team_id: "TEAM123456".into(),
                    private_key_pem: "pem".into(),
                    bundle_id: "com.example.app".into(),
                },
                serde_json::json!({"kind": "apnToken", "key_id": "KEY1234567", "team_id": "TEAM123456",
                                   "private_key_pem": "pem", "bundle_id": "com.example.app"}),
            ),
            (
                CredentialSecret::ApnCertificate {
                    certificate_pem: "cert".into(),
                    private_key_pem: "pem".into(),
                    topic: Some("com.example.app".into()),
                },
                serde_json::json!({"kind": "apnCertificate", "certificate_pem": "cert", "private_key_pem": "pem",
                                   "topic": "com.example.app"}),
            ),
            (
                CredentialSecret::Fcm {
                    project_id: "p".into(),
                    client_email: "a@p.iam.gserviceaccount.com".into(),
                    private_key_pem: "pem".into(),
                    token_uri: "https://oauth2.googleapis.com/token".into(),
                },
                serde_json::json!({"kind": "fcm", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com",
                                   "private_key_pem": "pem", "token_uri": "https://oauth2.googleapis.com/token"}),
            ),
        ];
        for (secret, sealed) in cases {
            assert_eq!(serde_json::to_value(&secret).expect("serializes"), sealed);
            assert_eq!(serde_json::from_value::<CredentialSecret>(sealed).expect("reads back"), secret);
        }
    }
}
