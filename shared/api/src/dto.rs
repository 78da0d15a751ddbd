//! Response bodies: Twilio's camelCase JSON, one type per resource shape. These types are the
//! wire format and nothing else: the domain records carry no API field names, and the DynamoDB
//! items have their own types, so renaming a field here changes the API only (the tests below
//! pin each shape).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use pushgate_core::domain::{
    App, Content, Credential, CredentialId, DeviceRegistration, DeviceRegistrationId, Notification, NotificationId,
    Operation, OperationErrorEntry, OperationId, Senders, Stats, Timestamp, User, UserId, wire_time,
};

/// `202`/`200` of a write that names the resource it created or changed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub resource_id: String,
    pub resource_location: String,
}

/// `202` of a send.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRef {
    pub operation_id: OperationId,
    pub operation_location: String,
}

/// One page of a list: `{"<collection>": [...], "pagination": {next, self}}`. The collection
/// key differs per list, so this serializes through a map.
pub struct ListPage<T> {
    pub collection: &'static str,
    pub items: Vec<T>,
    pub pagination: Pagination,
}

impl<T: Serialize> Serialize for ListPage<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(self.collection, &self.items)?;
        map.serialize_entry("pagination", &self.pagination)?;
        map.end()
    }
}

/// Page tokens of a list answer.
#[derive(Debug, Serialize)]
pub struct Pagination {
    pub next: Option<String>,
    #[serde(rename = "self")]
    pub this: String,
}

fn time(t: &Timestamp) -> String {
    wire_time(t)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    pub token: &'a str,
    pub provider: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Sender {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apn: Option<CredentialId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<CredentialId>,
}

impl From<&Senders> for Sender {
    fn from(s: &Senders) -> Self {
        Self { apn: s.apn.clone(), fcm: s.fcm.clone() }
    }
}

/// `error` of a FAILED notification.
#[derive(Debug, Serialize)]
pub struct NotificationError<'a> {
    pub code: u32,
    pub message: &'a str,
}

/// A PushNotification as the list shows it (everything but `content`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationMetadata<'a> {
    pub id: NotificationId,
    pub to: Destination<'a>,
    pub from: Sender,
    pub priority: &'static str,
    pub sound: Option<&'a str>,
    pub status: &'static str,
    pub tags: &'a BTreeMap<String, String>,
    pub operation_id: OperationId,
    pub scheduled_for: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub error: Option<NotificationError<'a>>,
}

impl<'a> From<&'a Notification> for NotificationMetadata<'a> {
    fn from(n: &'a Notification) -> Self {
        Self {
            id: n.id,
            to: Destination { user_id: n.to.user_id, token: &n.to.token, provider: n.to.provider.as_str() },
            from: Sender::from(&n.from),
            priority: match n.priority {
                pushgate_core::domain::Priority::High => "HIGH",
                pushgate_core::domain::Priority::Low => "LOW",
            },
            sound: n.sound.as_deref(),
            status: n.status.as_str(),
            tags: &n.tags,
            operation_id: n.operation_id,
            scheduled_for: n.scheduled_for.as_ref().map(time),
            created_at: time(&n.created_at),
            updated_at: time(&n.updated_at),
            error: n.error.as_ref().map(|e| NotificationError { code: e.code, message: &e.message }),
        }
    }
}

/// `content` of a fetched PushNotification: the rendered content.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationContent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub badge: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_available: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutable_content: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apn: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<&'a Map<String, Value>>,
}

impl<'a> From<&'a Content> for NotificationContent<'a> {
    fn from(c: &'a Content) -> Self {
        Self {
            title: c.title.as_deref(),
            body: c.body.as_deref(),
            image: c.image.as_deref(),
            data: c.data.as_ref(),
            badge: c.badge,
            collapse_key: c.collapse_key.as_deref(),
            ttl: c.ttl,
            content_available: c.content_available,
            mutable_content: c.mutable_content,
            apn: c.apn.as_ref(),
            fcm: c.fcm.as_ref(),
        }
    }
}

/// A fetched PushNotification.
#[derive(Debug, Serialize)]
pub struct NotificationBody<'a> {
    #[serde(flatten)]
    pub metadata: NotificationMetadata<'a>,
    pub content: NotificationContent<'a>,
}

impl<'a> From<&'a Notification> for NotificationBody<'a> {
    fn from(n: &'a Notification) -> Self {
        Self { metadata: NotificationMetadata::from(n), content: NotificationContent::from(n.content.as_ref()) }
    }
}

#[derive(Debug, Serialize)]
pub struct OperationStats {
    pub total: u64,
    pub recipients: u64,
    pub unaddressable: u64,
    pub scheduled: u64,
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl From<&Stats> for OperationStats {
    fn from(s: &Stats) -> Self {
        Self {
            total: s.total,
            recipients: s.recipients,
            unaddressable: s.unaddressable,
            scheduled: s.scheduled,
            queued: s.queued,
            sent: s.sent,
            failed: s.failed,
            canceled: s.canceled,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationBody {
    pub id: OperationId,
    pub status: &'static str,
    pub stats: OperationStats,
    pub created_at: String,
    pub updated_at: String,
    /// [pushgate] Where to read more: `errors`, the paged list of this operation's FAILED
    /// notifications with their codes and the providers' reasons.
    pub links: OperationLinks,
}

/// The `links` of an Operation (absolute URLs, like `operationLocation`).
#[derive(Debug, Serialize)]
pub struct OperationLinks {
    pub errors: String,
}

impl OperationBody {
    /// The body of `op`, its links under `base` (this pushgate's public URL, no trailing `/`).
    pub fn new(op: &Operation, base: &str) -> Self {
        Self {
            id: op.id,
            status: op.status.as_str(),
            stats: OperationStats::from(&op.stats),
            created_at: time(&op.created_at),
            updated_at: time(&op.updated_at),
            links: OperationLinks { errors: format!("{base}/v1/PushNotifications/Operations/{}/Errors", op.id) },
        }
    }
}

/// An entry of an Operation's Errors list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationErrorBody<'a> {
    pub push_notification_id: NotificationId,
    pub code: u32,
    pub message: &'a str,
    pub provider: &'static str,
    pub provider_reason: Option<&'a str>,
    pub occurred_at: String,
}

impl<'a> From<&'a OperationErrorEntry> for OperationErrorBody<'a> {
    fn from(e: &'a OperationErrorEntry) -> Self {
        Self {
            push_notification_id: e.notification_id,
            code: e.error.code,
            message: &e.error.message,
            provider: e.provider.as_str(),
            provider_reason: e.error.provider_reason.as_deref(),
            occurred_at: time(&e.occurred_at),
        }
    }
}

/// A Credential: its metadata, never its content.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialBody<'a> {
    pub id: &'a CredentialId,
    pub credential_type: &'static str,
    pub is_default: bool,
    pub app_name: &'a str,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a Credential> for CredentialBody<'a> {
    fn from(c: &'a Credential) -> Self {
        Self {
            id: &c.id,
            credential_type: c.credential_type.as_str(),
            is_default: c.is_default,
            app_name: c.app_name.as_str(),
            created_at: time(&c.created_at),
            updated_at: time(&c.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultCredential<'a> {
    pub credential_type: &'static str,
    pub credential_id: &'a CredentialId,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppBody<'a> {
    pub name: &'a str,
    pub is_default: bool,
    pub default_credentials: Vec<DefaultCredential<'a>>,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a App> for AppBody<'a> {
    fn from(a: &'a App) -> Self {
        Self {
            name: a.name.as_str(),
            is_default: a.is_default,
            default_credentials: a
                .default_credentials
                .iter()
                .map(|(t, id)| DefaultCredential { credential_type: t.as_str(), credential_id: id })
                .collect(),
            created_at: time(&a.created_at),
            updated_at: time(&a.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredDevice<'a> {
    pub token: &'a str,
    pub provider: &'static str,
    pub created_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationBody<'a> {
    pub id: &'a DeviceRegistrationId,
    pub app_name: &'a str,
    pub user_id: UserId,
    pub devices: Vec<RegisteredDevice<'a>>,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a DeviceRegistration> for DeviceRegistrationBody<'a> {
    fn from(r: &'a DeviceRegistration) -> Self {
        Self {
            id: &r.id,
            app_name: r.app_name.as_str(),
            user_id: r.user_id,
            devices: r
                .devices
                .iter()
                .map(|d| RegisteredDevice {
                    token: &d.token,
                    provider: d.provider.as_str(),
                    created_at: time(&d.created_at),
                })
                .collect(),
            created_at: time(&r.created_at),
            updated_at: time(&r.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserBody {
    pub id: UserId,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
}

impl From<&User> for UserBody {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            created_at: time(&u.created_at),
            updated_at: time(&u.updated_at),
            deleted_at: u.deleted_at.as_ref().map(time),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone as _, Utc};
    use serde_json::json;

    use super::*;
    use pushgate_core::domain::{
        AccountId, DeliveryError, Destination as To, NotificationStatus, OperationStatus, Priority, Provider,
    };

    fn at(second: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, second).single().expect("valid time")
    }

    fn notification() -> Notification {
        let operation = OperationId::from_ulid(ulid::Ulid::from_parts(1_764_576_000_000, 7));
        let content = Content {
            title: Some("Gate B12".into()),
            body: Some("Boarding".into()),
            data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            badge: Some(3),
            collapse_key: Some("gate".into()),
            ttl: Some(600),
            apn: Some(serde_json::from_value(json!({"aps": {"thread-id": "t"}})).expect("object")),
            ..Content::default()
        };
        Notification {
            id: NotificationId::derive(operation, 4),
            account_id: AccountId::parse("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").expect("account id"),
            operation_id: operation,
            to: To {
                token: "ab".repeat(32),
                provider: Provider::Apn,
                user_id: Some(UserId::from_ulid(ulid::Ulid::from_parts(1_764_576_000_000, 9))),
            },
            from: Senders {
                apn: Some(CredentialId::parse("comms_credential_0123456789abcdefghjkmnpqrs").expect("id")),
                fcm: None,
            },
            content: Arc::new(content),
            priority: Priority::Low,
            sound: None,
            status: NotificationStatus::Failed,
            tags: BTreeMap::from([("flight".to_owned(), "PG1".to_owned())]),
            scheduled_for: None,
            created_at: at(1),
            updated_at: at(2),
            error: Some(DeliveryError {
                code: 30410,
                message: "gone".into(),
                provider_reason: Some("Unregistered".into()),
            }),
            completed_at: Some(at(2)),
        }
    }

    #[test]
    fn a_fetched_notification_has_exactly_twilios_field_names_and_value_forms() {
        let n = notification();
        let wire = serde_json::to_value(NotificationBody::from(&n)).expect("serializes");
        assert_eq!(
            wire,
            json!({
                "id": n.id.to_string(),
                "to": {"userId": n.to.user_id.expect("user").to_string(), "token": "ab".repeat(32), "provider": "APN"},
                "from": {"apn": "comms_credential_0123456789abcdefghjkmnpqrs"},
                "priority": "LOW",
                "sound": null,
                "status": "FAILED",
                "tags": {"flight": "PG1"},
                "operationId": n.operation_id.to_string(),
                "scheduledFor": null,
                "createdAt": "2026-12-01T08:00:01Z",
                "updatedAt": "2026-12-01T08:00:02Z",
                "error": {"code": 30410, "message": "gone"},
                "content": {
                    "title": "Gate B12", "body": "Boarding", "data": {"k": "v"}, "badge": 3,
                    "collapseKey": "gate", "ttl": 600, "apn": {"aps": {"thread-id": "t"}}
                }
            })
        );
        let listed = serde_json::to_value(NotificationMetadata::from(&n)).expect("serializes");
        assert_eq!(listed.get("content"), None, "a listed notification has no content");
        assert_eq!(listed["operationId"], wire["operationId"]);
    }

    #[test]
    fn an_operation_and_its_errors_have_twilios_field_names() {
        let n = notification();
        let op = Operation {
            id: n.operation_id,
            account_id: n.account_id.clone(),
            status: OperationStatus::Completed,
            stats: Stats { total: 2, recipients: 2, sent: 1, failed: 1, ..Stats::default() },
            created_at: at(1),
            updated_at: at(3),
        };
        assert_eq!(
            serde_json::to_value(OperationBody::new(&op, "https://push.example.com")).expect("serializes"),
            json!({
                "id": op.id.to_string(), "status": "COMPLETED",
                "stats": {"total": 2, "recipients": 2, "unaddressable": 0, "scheduled": 0, "queued": 0,
                          "sent": 1, "failed": 1, "canceled": 0},
                "createdAt": "2026-12-01T08:00:01Z", "updatedAt": "2026-12-01T08:00:03Z",
                "links": {"errors": format!("https://push.example.com/v1/PushNotifications/Operations/{}/Errors", op.id)}
            })
        );
        let entry = OperationErrorEntry {
            notification_id: n.id,
            provider: Provider::Fcm,
            error: n.error.clone().expect("error"),
            occurred_at: at(2),
        };
        assert_eq!(
            serde_json::to_value(OperationErrorBody::from(&entry)).expect("serializes"),
            json!({
                "pushNotificationId": n.id.to_string(), "code": 30410, "message": "gone", "provider": "FCM",
                "providerReason": "Unregistered", "occurredAt": "2026-12-01T08:00:02Z"
            })
        );
    }

    #[test]
    fn a_list_page_names_its_collection_and_both_page_tokens() {
        let page = ListPage {
            collection: "users",
            items: vec![UserBody::from(&User::new(
                UserId::from_ulid(ulid::Ulid::from_parts(1_764_576_000_000, 1)),
                AccountId::parse("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").expect("account id"),
                at(5),
            ))],
            pagination: Pagination { next: None, this: "tok".into() },
        };
        let wire = serde_json::to_value(&page).expect("serializes");
        assert_eq!(wire["pagination"], json!({"next": null, "self": "tok"}));
        assert_eq!(wire["users"][0]["deletedAt"], Value::Null);
        assert_eq!(wire["users"][0]["createdAt"], "2026-12-01T08:00:05Z");
    }
}
