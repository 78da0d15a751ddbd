//! The records pushgate keeps: PushNotifications and Operations, and the value types they hold.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::{AccountId, CredentialId, NotificationId, OperationId, UserId};
use super::status::{NotificationStatus, OperationStatus};

/// PushNotifications and Operations are kept this long after creation (Twilio: 7 days).
pub const RETENTION: chrono::Duration = chrono::Duration::days(7);

/// A point in time (UTC).
pub type Timestamp = DateTime<Utc>;

/// Formats a timestamp the way the wire wants it: RFC 3339, seconds, `Z`.
pub fn wire_time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A push provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Provider {
    /// Apple Push Notification service.
    #[serde(rename = "APN")]
    Apn,
    /// Firebase Cloud Messaging (HTTP v1).
    #[serde(rename = "FCM")]
    Fcm,
}

impl Provider {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apn => "APN",
            Self::Fcm => "FCM",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "APN" => Some(Self::Apn),
            "FCM" => Some(Self::Fcm),
            _ => None,
        }
    }
}

/// Delivery priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    /// Deliver now, may wake the device (APNs 10, FCM HIGH).
    #[default]
    High,
    /// Save battery (APNs 5, FCM NORMAL).
    Low,
}

/// The content of a notification. In a send every string is a Liquid template
/// source; on a stored notification it is the rendered text for that recipient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// Alert title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Alert body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Image URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Custom key/value data delivered to the app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    /// APNs badge number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub badge: Option<u32>,
    /// `apns-collapse-id` / android `collapse_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// Seconds the provider may keep trying to deliver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Background (silent) notification flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_available: Option<bool>,
    /// Lets a notification service extension modify the content (APNs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutable_content: Option<bool>,
    /// Object merged into the APNs payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apn: Option<Map<String, Value>>,
    /// Object merged into the FCM `message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<Map<String, Value>>,
}

/// Which credential sends for each provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Senders {
    /// Credential used for APN recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apn: Option<CredentialId>,
    /// Credential used for FCM recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<CredentialId>,
}

impl Senders {
    /// The credential for `provider`.
    pub fn for_provider(&self, provider: Provider) -> Option<CredentialId> {
        match provider {
            Provider::Apn => self.apn.clone(),
            Provider::Fcm => self.fcm.clone(),
        }
    }
}

/// Where a notification went: a device token, and the User it belongs to if addressed by user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The device token, as given.
    pub token: String,
    /// The provider of the token.
    pub provider: Provider,
    /// The User, for user recipients.
    pub user_id: Option<UserId>,
}

/// Why a notification failed, as shown in `error` and in the Operation's Errors list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// A pushgate error code (see [`ErrorCode`]).
    pub code: u32,
    /// A human-readable explanation.
    pub message: String,
    /// The provider's own reason (`Unregistered`, `UNREGISTERED`, …) when it gave one.
    pub provider_reason: Option<String>,
}

/// pushgate's delivery error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The provider says the device token is not (or no longer) valid.
    InvalidToken = 30410,
    /// The provider refused the notification for another reason.
    ProviderRejected = 30400,
    /// The provider stayed unavailable through every retry.
    ProviderUnavailable = 30503,
    /// The rendered payload is over the provider's size limit.
    PayloadTooLarge = 30413,
    /// No credential resolved for the recipient's provider, or it could not be used.
    NoCredential = 30404,
    /// A template failed to render for this recipient.
    RenderFailed = 30422,
    /// pushgate itself failed while processing this notification (a bug, logged); nothing
    /// else was affected.
    Internal = 30500,
}

impl DeliveryError {
    /// Builds an error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>, provider_reason: Option<String>) -> Self {
        Self { code: code as u32, message: message.into(), provider_reason }
    }
}

/// A PushNotification record: one recipient device, one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its id (derived from the operation and slot).
    pub id: NotificationId,
    /// Owner.
    pub account_id: AccountId,
    /// The operation that created it.
    pub operation_id: OperationId,
    /// Recipient device.
    pub to: Destination,
    /// Credential actually used (keyed by provider).
    pub from: Senders,
    /// Rendered content (shared between the record and the delivery in flight).
    pub content: std::sync::Arc<Content>,
    pub priority: Priority,
    /// Sound name.
    pub sound: Option<String>,
    pub status: NotificationStatus,
    /// Rendered tags.
    pub tags: BTreeMap<String, String>,
    /// The instant it is scheduled for.
    pub scheduled_for: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Why it failed, when FAILED.
    pub error: Option<DeliveryError>,
    /// When FAILED or SENT: when the provider answered.
    pub completed_at: Option<Timestamp>,
}

/// Counts of an Operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Notifications the operation created (or will create).
    pub total: u64,
    /// Entries in `to`.
    pub recipients: u64,
    /// Recipients that resolved to no device.
    pub unaddressable: u64,
    /// Notifications waiting for an instant.
    pub scheduled: u64,
    /// Notifications not yet final.
    pub queued: u64,
    /// Notifications SENT.
    pub sent: u64,
    /// Notifications FAILED.
    pub failed: u64,
    /// Notifications CANCELED.
    pub canceled: u64,
}

impl Stats {
    /// Moves one notification from `from` to `to` in the counters.
    pub fn apply(&mut self, from: NotificationStatus, to: NotificationStatus) {
        *self.slot(from) = self.slot(from).saturating_sub(1);
        *self.slot(to) += 1;
    }

    fn slot(&mut self, status: NotificationStatus) -> &mut u64 {
        match status {
            NotificationStatus::Scheduled => &mut self.scheduled,
            NotificationStatus::Queued => &mut self.queued,
            NotificationStatus::Sent => &mut self.sent,
            NotificationStatus::Failed => &mut self.failed,
            NotificationStatus::Canceled => &mut self.canceled,
        }
    }

    /// Are all notifications final?
    pub fn all_final(&self) -> bool {
        self.scheduled == 0 && self.queued == 0
    }

    /// The invariant of a COMPLETED operation.
    pub fn adds_up(&self) -> bool {
        self.scheduled + self.queued + self.sent + self.failed + self.canceled == self.total
    }
}

/// An Operation: what one send request created, and its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: OperationId,
    /// Owner.
    pub account_id: AccountId,
    pub status: OperationStatus,
    /// Counters.
    pub stats: Stats,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A FAILED notification, as the Operation's Errors list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationErrorEntry {
    /// The failed notification.
    pub notification_id: NotificationId,
    pub provider: Provider,
    /// Why.
    pub error: DeliveryError,
    /// When.
    pub occurred_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_move_one_notification_between_counters() {
        let mut stats = Stats { total: 2, queued: 2, ..Stats::default() };
        stats.apply(NotificationStatus::Queued, NotificationStatus::Sent);
        stats.apply(NotificationStatus::Queued, NotificationStatus::Failed);
        assert_eq!((stats.queued, stats.sent, stats.failed), (0, 1, 1));
        assert!(stats.all_final());
        assert!(stats.adds_up());
    }

    #[test]
    fn wire_time_is_rfc3339_utc_with_z() {
        let t = DateTime::parse_from_rfc3339("2026-05-30T19:24:46.123+02:00").expect("valid").with_timezone(&Utc);
        assert_eq!(wire_time(&t), "2026-05-30T17:24:46Z");
    }
}
