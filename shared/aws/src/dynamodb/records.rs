//! The stored form of the records the DynamoDB stores keep: the adapter's own item types,
//! apart from the domain's types and from every wire format (HTTP, queue messages, webhooks).
//!
//! Each type names its attributes explicitly (`rename` on every field) and holds leaf values in
//! their canonical string forms: ids as `as_str`/`parse` write and read them, statuses and the
//! other upper-case enums as their `as_str`/`parse` names, instants as RFC 3339 in UTC with `Z`
//! and the fraction of a second only when there is one (`2026-05-30T17:24:46.123Z`). Counters,
//! badges and codes are numbers, flags booleans; free-form JSON the tenant supplied (the APNs
//! and FCM blocks of a notification's content) stays a JSON value, stored as a map.
//!
//! Renaming or re-typing a domain field therefore changes only the conversions here, never
//! what is stored. The format itself is what the items written before these types existed hold
//! (the serde form the domain types had then): `stored_format` pins it attribute by attribute,
//! and a change to it is a migration (items live 7 days).
//!
//! Writing is infallible (`From<&Record>`); reading checks every leaf (`TryFrom<XItem>`): an item
//! that does not hold a valid record is `StoreError::Unexpected`, never a panic. An optional
//! value is written as `NULL` where it always was (and read from `NULL` or absence), or left out
//! where it always was (the content's fields, a notification's senders).
//!
//! Key attributes (`pk`, `sk`, the index keys, `expiresAt`, `version`) are not part of these
//! types: each store adds its own beside them, and reading ignores them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use pushgate_core::app::ports::StoreError;
use pushgate_core::domain::credential::CredentialBook;
use pushgate_core::domain::{
    AccountId, App, AppName, Content, Credential, CredentialId, CredentialType, DeliveryError, Destination, Device,
    DeviceRegistration, DeviceRegistrationId, Notification, NotificationId, NotificationStatus, Operation, OperationId,
    OperationStatus, Priority, Provider, Senders, Stats, Timestamp, User, UserId,
};

use super::items::malformed;

// ---------------------------------------------------------------------------------------------
// Leaf values

/// The stored form of an instant: RFC 3339, UTC as `Z`, the fraction of a second in 3, 6 or 9
/// digits and only when it is not 0.
pub(crate) fn time(at: &Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Reads a stored instant (any RFC 3339 offset is accepted and converted to UTC).
fn parse_time(stored: &str, what: &str) -> Result<Timestamp, StoreError> {
    stored
        .parse::<DateTime<FixedOffset>>()
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| malformed(&format!("`{what}` is not an RFC 3339 instant: {stored:?}")))
}

fn parse_optional_time(stored: Option<&str>, what: &str) -> Result<Option<Timestamp>, StoreError> {
    stored.map(|at| parse_time(at, what)).transpose()
}

/// Reads a stored leaf with `parse` (an id's or an enum's), naming `what` when it fails.
fn leaf<T, E>(stored: &str, what: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, StoreError> {
    parse(stored).map_err(|_| malformed(&format!("`{what}` is not valid: {stored:?}")))
}

/// [`leaf`] for the enums whose `parse` answers an `Option`.
fn name<T>(stored: &str, what: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, StoreError> {
    leaf(stored, what, |s| parse(s).ok_or(()))
}

fn priority(p: Priority) -> &'static str {
    match p {
        Priority::High => "HIGH",
        Priority::Low => "LOW",
    }
}

fn parse_priority(stored: &str) -> Option<Priority> {
    match stored {
        "HIGH" => Some(Priority::High),
        "LOW" => Some(Priority::Low),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Notifications (push table)

/// A notification's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NotificationItem {
    #[serde(rename = "id")]
    id: String,
    #[serde(rename = "account_id")]
    account_id: String,
    #[serde(rename = "operation_id")]
    operation_id: String,
    #[serde(rename = "to")]
    to: DestinationItem,
    #[serde(rename = "from")]
    from: SendersItem,
    #[serde(rename = "content")]
    content: ContentItem,
    #[serde(rename = "priority")]
    priority: String,
    #[serde(rename = "sound", default)]
    sound: Option<String>,
    #[serde(rename = "status")]
    status: String,
    #[serde(rename = "tags")]
    tags: BTreeMap<String, String>,
    #[serde(rename = "scheduled_for", default)]
    scheduled_for: Option<String>,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "updated_at")]
    updated_at: String,
    #[serde(rename = "error", default)]
    error: Option<DeliveryErrorItem>,
    #[serde(rename = "completed_at", default)]
    completed_at: Option<String>,
}

impl From<&Notification> for NotificationItem {
    fn from(n: &Notification) -> Self {
        Self {
            id: n.id.to_string(),
            account_id: n.account_id.to_string(),
            operation_id: n.operation_id.to_string(),
            to: (&n.to).into(),
            from: (&n.from).into(),
            content: n.content.as_ref().into(),
            priority: priority(n.priority).to_owned(),
            sound: n.sound.clone(),
            status: n.status.as_str().to_owned(),
            tags: n.tags.clone(),
            scheduled_for: n.scheduled_for.as_ref().map(time),
            created_at: time(&n.created_at),
            updated_at: time(&n.updated_at),
            error: n.error.as_ref().map(Into::into),
            completed_at: n.completed_at.as_ref().map(time),
        }
    }
}

impl TryFrom<NotificationItem> for Notification {
    type Error = StoreError;

    fn try_from(item: NotificationItem) -> Result<Self, StoreError> {
        Ok(Self {
            id: leaf(&item.id, "id", NotificationId::parse)?,
            account_id: leaf(&item.account_id, "account_id", AccountId::parse)?,
            operation_id: leaf(&item.operation_id, "operation_id", OperationId::parse)?,
            to: item.to.try_into()?,
            from: item.from.try_into()?,
            content: Arc::new(item.content.into()),
            priority: name(&item.priority, "priority", parse_priority)?,
            sound: item.sound,
            status: name(&item.status, "status", NotificationStatus::parse)?,
            tags: item.tags,
            scheduled_for: parse_optional_time(item.scheduled_for.as_deref(), "scheduled_for")?,
            created_at: parse_time(&item.created_at, "created_at")?,
            updated_at: parse_time(&item.updated_at, "updated_at")?,
            error: item.error.map(Into::into),
            completed_at: parse_optional_time(item.completed_at.as_deref(), "completed_at")?,
        })
    }
}

/// Where a notification went (`to`). `user_id` is `NULL` for a device recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DestinationItem {
    #[serde(rename = "token")]
    token: String,
    #[serde(rename = "provider")]
    provider: String,
    #[serde(rename = "user_id", default)]
    user_id: Option<String>,
}

impl From<&Destination> for DestinationItem {
    fn from(d: &Destination) -> Self {
        Self {
            token: d.token.clone(),
            provider: d.provider.as_str().to_owned(),
            user_id: d.user_id.as_ref().map(ToString::to_string),
        }
    }
}

impl TryFrom<DestinationItem> for Destination {
    type Error = StoreError;

    fn try_from(item: DestinationItem) -> Result<Self, StoreError> {
        Ok(Self {
            token: item.token,
            provider: name(&item.provider, "to.provider", Provider::parse)?,
            user_id: item.user_id.map(|u| leaf(&u, "to.user_id", UserId::parse)).transpose()?,
        })
    }
}

/// The credential used per provider (`from`); a provider without one is left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SendersItem {
    #[serde(rename = "apn", default, skip_serializing_if = "Option::is_none")]
    apn: Option<String>,
    #[serde(rename = "fcm", default, skip_serializing_if = "Option::is_none")]
    fcm: Option<String>,
}

impl From<&Senders> for SendersItem {
    fn from(s: &Senders) -> Self {
        Self { apn: s.apn.as_ref().map(ToString::to_string), fcm: s.fcm.as_ref().map(ToString::to_string) }
    }
}

impl TryFrom<SendersItem> for Senders {
    type Error = StoreError;

    fn try_from(item: SendersItem) -> Result<Self, StoreError> {
        let credential = |id: Option<String>, what| id.map(|id| leaf(&id, what, CredentialId::parse)).transpose();
        Ok(Self { apn: credential(item.apn, "from.apn")?, fcm: credential(item.fcm, "from.fcm")? })
    }
}

/// A notification's rendered content; a field it does not have is left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ContentItem {
    #[serde(rename = "title", default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(rename = "body", default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(rename = "image", default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(rename = "data", default, skip_serializing_if = "Option::is_none")]
    data: Option<BTreeMap<String, String>>,
    #[serde(rename = "badge", default, skip_serializing_if = "Option::is_none")]
    badge: Option<u32>,
    #[serde(rename = "collapseKey", default, skip_serializing_if = "Option::is_none")]
    collapse_key: Option<String>,
    #[serde(rename = "ttl", default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(rename = "contentAvailable", default, skip_serializing_if = "Option::is_none")]
    content_available: Option<bool>,
    #[serde(rename = "mutableContent", default, skip_serializing_if = "Option::is_none")]
    mutable_content: Option<bool>,
    /// The tenant's own APNs payload block, as given.
    #[serde(rename = "apn", default, skip_serializing_if = "Option::is_none")]
    apn: Option<Map<String, Value>>,
    /// The tenant's own FCM message block, as given.
    #[serde(rename = "fcm", default, skip_serializing_if = "Option::is_none")]
    fcm: Option<Map<String, Value>>,
}

impl From<&Content> for ContentItem {
    fn from(c: &Content) -> Self {
        Self {
            title: c.title.clone(),
            body: c.body.clone(),
            image: c.image.clone(),
            data: c.data.clone(),
            badge: c.badge,
            collapse_key: c.collapse_key.clone(),
            ttl: c.ttl,
            content_available: c.content_available,
            mutable_content: c.mutable_content,
            apn: c.apn.clone(),
            fcm: c.fcm.clone(),
        }
    }
}

impl From<ContentItem> for Content {
    fn from(item: ContentItem) -> Self {
        Self {
            title: item.title,
            body: item.body,
            image: item.image,
            data: item.data,
            badge: item.badge,
            collapse_key: item.collapse_key,
            ttl: item.ttl,
            content_available: item.content_available,
            mutable_content: item.mutable_content,
            apn: item.apn,
            fcm: item.fcm,
        }
    }
}

/// Why a notification failed (`error`); also the operation's Errors list. `provider_reason` is
/// `NULL` when the provider gave none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeliveryErrorItem {
    #[serde(rename = "code")]
    code: u32,
    #[serde(rename = "message")]
    message: String,
    #[serde(rename = "provider_reason", default)]
    provider_reason: Option<String>,
}

impl From<&DeliveryError> for DeliveryErrorItem {
    fn from(e: &DeliveryError) -> Self {
        Self { code: e.code, message: e.message.clone(), provider_reason: e.provider_reason.clone() }
    }
}

impl From<DeliveryErrorItem> for DeliveryError {
    fn from(item: DeliveryErrorItem) -> Self {
        Self { code: item.code, message: item.message, provider_reason: item.provider_reason }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations (push table)

/// An operation's attributes, its counters at the top level (so `finish` can `ADD` to them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OperationItem {
    #[serde(rename = "id")]
    id: String,
    #[serde(rename = "account_id")]
    account_id: String,
    #[serde(rename = "status")]
    status: String,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "updated_at")]
    updated_at: String,
    #[serde(rename = "total")]
    total: u64,
    #[serde(rename = "recipients")]
    recipients: u64,
    #[serde(rename = "unaddressable")]
    unaddressable: u64,
    #[serde(rename = "scheduled")]
    scheduled: u64,
    #[serde(rename = "queued")]
    queued: u64,
    #[serde(rename = "sent")]
    sent: u64,
    #[serde(rename = "failed")]
    failed: u64,
    #[serde(rename = "canceled")]
    canceled: u64,
}

impl From<&Operation> for OperationItem {
    fn from(op: &Operation) -> Self {
        let st = op.stats;
        Self {
            id: op.id.to_string(),
            account_id: op.account_id.to_string(),
            status: op.status.as_str().to_owned(),
            created_at: time(&op.created_at),
            updated_at: time(&op.updated_at),
            total: st.total,
            recipients: st.recipients,
            unaddressable: st.unaddressable,
            scheduled: st.scheduled,
            queued: st.queued,
            sent: st.sent,
            failed: st.failed,
            canceled: st.canceled,
        }
    }
}

impl TryFrom<OperationItem> for Operation {
    type Error = StoreError;

    fn try_from(item: OperationItem) -> Result<Self, StoreError> {
        Ok(Self {
            id: leaf(&item.id, "id", OperationId::parse)?,
            account_id: leaf(&item.account_id, "account_id", AccountId::parse)?,
            status: name(&item.status, "status", OperationStatus::parse)?,
            stats: Stats {
                total: item.total,
                recipients: item.recipients,
                unaddressable: item.unaddressable,
                scheduled: item.scheduled,
                queued: item.queued,
                sent: item.sent,
                failed: item.failed,
                canceled: item.canceled,
            },
            created_at: parse_time(&item.created_at, "created_at")?,
            updated_at: parse_time(&item.updated_at, "updated_at")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Credential books (config table)

/// An account's Apps and credentials (the `book` map of the book item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CredentialBookItem {
    #[serde(rename = "apps")]
    apps: Vec<AppItem>,
    #[serde(rename = "credentials")]
    credentials: Vec<CredentialItem>,
}

impl From<&CredentialBook> for CredentialBookItem {
    fn from(book: &CredentialBook) -> Self {
        Self {
            apps: book.apps.iter().map(Into::into).collect(),
            credentials: book.credentials.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<CredentialBookItem> for CredentialBook {
    type Error = StoreError;

    fn try_from(item: CredentialBookItem) -> Result<Self, StoreError> {
        Ok(Self {
            apps: item.apps.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
            credentials: item.credentials.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
        })
    }
}

/// An App. `default_credentials` is a list of `[type, credential id]` pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppItem {
    #[serde(rename = "account_id")]
    account_id: String,
    #[serde(rename = "name")]
    name: String,
    #[serde(rename = "is_default")]
    is_default: bool,
    #[serde(rename = "default_credentials")]
    default_credentials: Vec<(String, String)>,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "updated_at")]
    updated_at: String,
}

impl From<&App> for AppItem {
    fn from(app: &App) -> Self {
        Self {
            account_id: app.account_id.to_string(),
            name: app.name.to_string(),
            is_default: app.is_default,
            default_credentials: app
                .default_credentials
                .iter()
                .map(|(kind, id)| (kind.as_str().to_owned(), id.to_string()))
                .collect(),
            created_at: time(&app.created_at),
            updated_at: time(&app.updated_at),
        }
    }
}

impl TryFrom<AppItem> for App {
    type Error = StoreError;

    fn try_from(item: AppItem) -> Result<Self, StoreError> {
        let default_credentials = item
            .default_credentials
            .iter()
            .map(|(kind, id)| {
                let kind = name(kind, "default_credentials", CredentialType::parse)?;
                Ok((kind, leaf(id, "default_credentials", CredentialId::parse)?))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self {
            account_id: leaf(&item.account_id, "account_id", AccountId::parse)?,
            name: leaf(&item.name, "name", AppName::parse)?,
            is_default: item.is_default,
            default_credentials,
            created_at: parse_time(&item.created_at, "created_at")?,
            updated_at: parse_time(&item.updated_at, "updated_at")?,
        })
    }
}

/// A credential's public metadata (its secret is a separate, sealed item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CredentialItem {
    #[serde(rename = "id")]
    id: String,
    #[serde(rename = "account_id")]
    account_id: String,
    #[serde(rename = "credential_type")]
    credential_type: String,
    #[serde(rename = "app_name")]
    app_name: String,
    #[serde(rename = "is_default")]
    is_default: bool,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "updated_at")]
    updated_at: String,
}

impl From<&Credential> for CredentialItem {
    fn from(c: &Credential) -> Self {
        Self {
            id: c.id.to_string(),
            account_id: c.account_id.to_string(),
            credential_type: c.credential_type.as_str().to_owned(),
            app_name: c.app_name.to_string(),
            is_default: c.is_default,
            created_at: time(&c.created_at),
            updated_at: time(&c.updated_at),
        }
    }
}

impl TryFrom<CredentialItem> for Credential {
    type Error = StoreError;

    fn try_from(item: CredentialItem) -> Result<Self, StoreError> {
        Ok(Self {
            id: leaf(&item.id, "id", CredentialId::parse)?,
            account_id: leaf(&item.account_id, "account_id", AccountId::parse)?,
            credential_type: name(&item.credential_type, "credential_type", CredentialType::parse)?,
            app_name: leaf(&item.app_name, "app_name", AppName::parse)?,
            is_default: item.is_default,
            created_at: parse_time(&item.created_at, "created_at")?,
            updated_at: parse_time(&item.updated_at, "updated_at")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Users and device registrations (directory table)

/// A User's attributes; `deleted_at` is `NULL` while it lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserItem {
    #[serde(rename = "id")]
    id: String,
    #[serde(rename = "account_id")]
    account_id: String,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "updated_at")]
    updated_at: String,
    #[serde(rename = "deleted_at", default)]
    deleted_at: Option<String>,
}

impl From<&User> for UserItem {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            account_id: u.account_id.to_string(),
            created_at: time(&u.created_at),
            updated_at: time(&u.updated_at),
            deleted_at: u.deleted_at.as_ref().map(time),
        }
    }
}

impl TryFrom<UserItem> for User {
    type Error = StoreError;

    fn try_from(item: UserItem) -> Result<Self, StoreError> {
        Ok(Self {
            id: leaf(&item.id, "id", UserId::parse)?,
            account_id: leaf(&item.account_id, "account_id", AccountId::parse)?,
            created_at: parse_time(&item.created_at, "created_at")?,
            updated_at: parse_time(&item.updated_at, "updated_at")?,
            deleted_at: parse_optional_time(item.deleted_at.as_deref(), "deleted_at")?,
        })
    }
}

/// A registration's attributes, its devices inline (least recently registered first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceRegistrationItem {
    #[serde(rename = "id")]
    id: String,
    #[serde(rename = "account_id")]
    account_id: String,
    #[serde(rename = "app_name")]
    app_name: String,
    #[serde(rename = "user_id")]
    user_id: String,
    #[serde(rename = "devices")]
    devices: Vec<DeviceItem>,
    #[serde(rename = "created_at")]
    created_at: String,
    #[serde(rename = "updated_at")]
    updated_at: String,
}

impl From<&DeviceRegistration> for DeviceRegistrationItem {
    fn from(r: &DeviceRegistration) -> Self {
        Self {
            id: r.id.to_string(),
            account_id: r.account_id.to_string(),
            app_name: r.app_name.to_string(),
            user_id: r.user_id.to_string(),
            devices: r.devices.iter().map(Into::into).collect(),
            created_at: time(&r.created_at),
            updated_at: time(&r.updated_at),
        }
    }
}

impl TryFrom<DeviceRegistrationItem> for DeviceRegistration {
    type Error = StoreError;

    fn try_from(item: DeviceRegistrationItem) -> Result<Self, StoreError> {
        Ok(Self {
            id: leaf(&item.id, "id", DeviceRegistrationId::parse)?,
            account_id: leaf(&item.account_id, "account_id", AccountId::parse)?,
            app_name: leaf(&item.app_name, "app_name", AppName::parse)?,
            user_id: leaf(&item.user_id, "user_id", UserId::parse)?,
            devices: item.devices.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
            created_at: parse_time(&item.created_at, "created_at")?,
            updated_at: parse_time(&item.updated_at, "updated_at")?,
        })
    }
}

/// One device of a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceItem {
    #[serde(rename = "token")]
    token: String,
    #[serde(rename = "provider")]
    provider: String,
    #[serde(rename = "created_at")]
    created_at: String,
}

impl From<&Device> for DeviceItem {
    fn from(d: &Device) -> Self {
        Self { token: d.token.clone(), provider: d.provider.as_str().to_owned(), created_at: time(&d.created_at) }
    }
}

impl TryFrom<DeviceItem> for Device {
    type Error = StoreError;

    fn try_from(item: DeviceItem) -> Result<Self, StoreError> {
        Ok(Self {
            token: item.token,
            provider: name(&item.provider, "devices.provider", Provider::parse)?,
            created_at: parse_time(&item.created_at, "devices.created_at")?,
        })
    }
}
