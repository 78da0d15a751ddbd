//! Request bodies: the JSON a route receives ([`JsonBody`](crate::handlers)) read into the
//! core's commands through `TryFrom`, one wrapper type per body. They are read by hand from the
//! JSON value rather than derived with serde because a Twilio client expects every problem of a
//! request at once, each naming its field (`to[3].token`, `content.fcm.topic`); a derived
//! deserializer stops at the first and names a line and column. The rules the values must obey
//! (limits, token formats, what a provider accepts) are the core's; this module only knows the
//! wire's field names and shapes.

pub mod send;

use serde_json::Value;

use pushgate_core::app::credentials::NewCredential;
use pushgate_core::app::directory::RegisterDevice;
use pushgate_core::domain::device_token::parse_token;
use pushgate_core::domain::{AppName, CredentialSecret, CredentialType, FieldError, Provider, UserId};

pub use send::SendBody;

/// `value` as a whole number from 0 to `max`, if it is one: a JSON number with no fractional
/// part, which JSON Schema (the contract's language) counts as an integer however it is written
/// (`706`, `706.0`, `7.06e2`, `-0.0`). A fraction, a negative, a number past `max` or any other
/// JSON value is `None`, for the caller to refuse naming its field.
pub(crate) fn whole_number(value: &Value, max: u64) -> Option<u64> {
    let Value::Number(number) = value else { return None };
    let whole = match number.as_u64() {
        Some(n) => n,
        // A float: exact for every whole number up to 2^53, far past any field's maximum.
        None => match number.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..=max as f64).contains(&f) => f as u64,
            _ => return None,
        },
    };
    (whole <= max).then_some(whole)
}

fn not_an_object(expected: &str) -> Vec<FieldError> {
    vec![FieldError::new("", format!("body must be a JSON object{expected}"))]
}

/// The body's `appName`, required.
fn required_app_name(obj: &serde_json::Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<AppName> {
    match obj.get("appName").and_then(Value::as_str).map(AppName::parse) {
        Some(Ok(n)) => Some(n),
        _ => {
            errors.push(FieldError::new("appName", format!("is required and must match {}", AppName::PATTERN)));
            None
        }
    }
}

/// `PATCH` of a PushNotification or an Operation: exactly `{"status": "CANCELED"}`.
pub struct CancelBody(pub Value);

/// A valid cancel request.
pub struct Cancel;

impl TryFrom<CancelBody> for Cancel {
    type Error = Vec<FieldError>;

    fn try_from(CancelBody(body): CancelBody) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(not_an_object(": {\"status\": \"CANCELED\"}"));
        };
        let mut errors = Vec::new();
        if obj.get("status").and_then(Value::as_str) != Some("CANCELED") {
            errors.push(FieldError::new("status", "must be CANCELED (the only change allowed)"));
        }
        for field in obj.keys().filter(|k| k.as_str() != "status") {
            errors.push(FieldError::new(field.clone(), "is not a field that can be changed"));
        }
        if errors.is_empty() { Ok(Cancel) } else { Err(errors) }
    }
}

/// `PATCH` of a Credential or an App: `{"isDefault": true}`, the only change there is.
pub struct MakeDefaultBody(pub Value);

/// A valid make-default request.
pub struct MakeDefault;

impl TryFrom<MakeDefaultBody> for MakeDefault {
    type Error = Vec<FieldError>;

    fn try_from(MakeDefaultBody(body): MakeDefaultBody) -> Result<Self, Vec<FieldError>> {
        match body.get("isDefault") {
            Some(Value::Bool(true)) => Ok(MakeDefault),
            _ => Err(vec![FieldError::new(
                "isDefault",
                "must be true (make this the default); to change the default, patch another one",
            )]),
        }
    }
}

/// `POST /Credentials`: `{credentialType, appName, isDefault?, content}`.
pub struct CredentialBody(pub Value);

impl TryFrom<CredentialBody> for NewCredential {
    type Error = Vec<FieldError>;

    fn try_from(CredentialBody(body): CredentialBody) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(not_an_object(""));
        };
        let mut errors = Vec::new();
        let credential_type = match obj.get("credentialType").and_then(Value::as_str).and_then(CredentialType::parse) {
            Some(t) => Some(t),
            None => {
                errors.push(FieldError::new("credentialType", "must be one of APN, APN_SANDBOX, FCM"));
                None
            }
        };
        let app_name = required_app_name(obj, &mut errors);
        let is_default = match obj.get("isDefault") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(FieldError::new("isDefault", "must be a boolean"));
                false
            }
        };
        let secret = match (credential_type, obj.get("content")) {
            (_, None) => {
                errors.push(FieldError::new("content", "is required"));
                None
            }
            (Some(t), Some(content)) => match CredentialSecret::parse(t, content) {
                Ok(s) => Some(s),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            },
            (None, Some(_)) => None,
        };
        match (credential_type, app_name, secret, errors.is_empty()) {
            (Some(credential_type), Some(app_name), Some(secret), true) => {
                Ok(NewCredential { credential_type, app_name, is_default, secret })
            }
            _ => Err(errors),
        }
    }
}

/// `POST /DeviceRegistrations`: `{appName, token, provider, userId?}`.
pub struct RegistrationBody(pub Value);

impl TryFrom<RegistrationBody> for RegisterDevice {
    type Error = Vec<FieldError>;

    fn try_from(RegistrationBody(body): RegistrationBody) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(not_an_object(""));
        };
        let mut errors = Vec::new();
        let app_name = required_app_name(obj, &mut errors);
        let provider = obj.get("provider").and_then(Value::as_str).and_then(Provider::parse);
        let token = match obj.get("token").and_then(Value::as_str).map(|t| parse_token(t, provider)) {
            Some(Ok(t)) => Some(t.to_owned()),
            Some(Err(e)) => {
                errors.push(FieldError::new("token", e.to_string()));
                None
            }
            None => {
                errors.push(FieldError::new("token", "is required (a string)"));
                None
            }
        };
        if provider.is_none() {
            errors.push(FieldError::new("provider", "must be one of APN, FCM"));
        }
        let user_id = match obj.get("userId") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_str().map(UserId::parse) {
                Some(Ok(id)) => Some(id),
                _ => {
                    errors.push(FieldError::new("userId", format!("must match {}", UserId::PATTERN)));
                    None
                }
            },
        };
        match (app_name, token, provider, errors.is_empty()) {
            (Some(app_name), Some(token), Some(provider), true) => {
                Ok(RegisterDevice { app_name, token, provider, user_id })
            }
            _ => Err(errors),
        }
    }
}
