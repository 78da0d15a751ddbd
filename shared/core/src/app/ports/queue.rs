//! The fan-out queue, the scheduler, and the versioned messages they carry (a chunk of a send,
//! a scheduled release, an operation event): queued bodies outlive a deploy, so old ones must
//! still read.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::domain::{
    AccountId, AppName, Content, OperationEvent, OperationId, Priority, Provider, Senders, Timestamp, UserId,
};

/// One recipient inside a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecipient {
    /// Position of the notification in the operation (derives its id).
    pub slot: u32,
    /// Device token.
    pub token: String,
    pub provider: Provider,
    /// Template variables (shared by the devices of one User, and by the instants of a
    /// scheduled send).
    #[serde(default, skip_serializing_if = "no_variables")]
    pub variables: Arc<Map<String, Value>>,
    /// The User whose device this is, for a user recipient.
    #[serde(default, rename = "userId", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
}

/// A slice of an operation's recipients, as queued for dispatch. Versioned: producer and
/// consumer share this type, and a consumer refuses versions it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    /// Message format version.
    pub v: u8,
    /// Owner.
    pub account_id: AccountId,
    pub operation_id: OperationId,
    /// When the operation was created (the notifications' `createdAt`).
    pub created_at: Timestamp,
    /// Content templates (one copy shared by every chunk of the operation in memory).
    pub content: Arc<Content>,
    /// Tag templates.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub priority: Priority,
    pub sound: Option<String>,
    /// Credentials resolved at send time.
    pub senders: Senders,
    /// The App the send resolved to (its registrations lose the devices a provider reports
    /// dead), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppName>,
    pub recipients: Vec<ChunkRecipient>,
    /// The `sendAt` instant of a scheduled send's chunk (`None`: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// A scheduled chunk put on the queue by its release (deliver now). A scheduled chunk that
    /// is not released only creates its notifications, SCHEDULED.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

fn no_variables(variables: &Arc<Map<String, Value>>) -> bool {
    variables.is_empty()
}

impl Chunk {
    /// The current message format version.
    pub const VERSION: u8 = 1;
}

/// Why a queue refused work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue unavailable: {0}")]
pub struct QueueError(pub String);

/// The fan-out queue (SQS on AWS, an in-process queue locally).
#[async_trait]
pub trait FanoutQueue: Send + Sync {
    /// Makes every chunk durable on the queue, or fails without a partial promise to the caller.
    async fn enqueue(&self, chunks: Vec<Chunk>) -> Result<(), QueueError>;
}

/// The release of one `sendAt` instant of a scheduled operation: at `at`, the chunks stored for
/// `(operation, instant)` go on the fan-out queue. On AWS this is the input of the one-time
/// EventBridge Scheduler schedule, delivered to the fan-out queue like a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Owner.
    pub account_id: AccountId,
    pub operation_id: OperationId,
    /// Index of the instant in `sendAt`.
    pub instant: u8,
    /// The instant.
    pub at: Timestamp,
}

/// What the fan-out queue carries: a chunk, or the release of a scheduled instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueBody {
    /// `{"release": {...}}`.
    Release { release: Release },
    /// `{"event": {...}}`: an operation event for the account's webhook.
    Event { event: OperationEvent },
    /// A chunk (see [`Chunk`]).
    Chunk(Box<Chunk>),
}

/// Sends releases at their instants (EventBridge Scheduler on AWS, an in-process timer locally).
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Arranges for `release` to reach the dispatcher at `release.at`, never before. Scheduling
    /// the same (operation, instant) again is not an error.
    async fn schedule(&self, release: &Release) -> Result<(), QueueError>;
    /// Forgets the pending release of (operation, instant); one that fired or never existed is
    /// fine.
    async fn unschedule(&self, account: &AccountId, operation: OperationId, instant: u8) -> Result<(), QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_queued_before_user_recipients_existed_still_reads_and_round_trips() {
        let old = serde_json::json!({
            "v": 1,
            "accountId": "AC0123456789abcdef0123456789abcdef",
            "operationId": "comms_operation_01h9krwprkeee8fzqspvwy6nq8",
            "createdAt": "2026-11-27T10:00:00Z",
            "content": {"title": "x"},
            "priority": "HIGH",
            "sound": null,
            "senders": {},
            "recipients": [{"slot": 0, "token": "t", "provider": "FCM"}]
        });
        let chunk: Chunk = serde_json::from_value(old).expect("an old chunk reads");
        assert_eq!((chunk.app.as_ref(), chunk.recipients[0].user_id), (None, None));

        let mut chunk = chunk;
        chunk.app = Some(AppName::parse("main").expect("name"));
        chunk.recipients[0].user_id =
            Some(UserId::parse("comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8").expect("id"));
        let wire = serde_json::to_value(&chunk).expect("serializes");
        assert_eq!(wire["recipients"][0]["userId"], "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8");
        assert_eq!(serde_json::from_value::<Chunk>(wire).expect("reads back"), chunk);
    }

    #[test]
    fn a_queued_chunk_keeps_its_version_1_field_names_and_value_forms() {
        // Chunks sit on the queue (and in the table, for scheduled sends) across a deploy: the
        // domain types they carry (content, senders, priority) must keep their serialized form.
        let chunk = Chunk {
            v: Chunk::VERSION,
            account_id: AccountId::parse("AC0123456789abcdef0123456789abcdef").expect("account"),
            operation_id: OperationId::parse("comms_operation_01h9krwprkeee8fzqspvwy6nq8").expect("id"),
            created_at: chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").expect("time").to_utc(),
            content: Arc::new(Content {
                title: Some("Hi {{ name }}".into()),
                data: Some(BTreeMap::from([("k".into(), "v".into())])),
                badge: Some(1),
                collapse_key: Some("c".into()),
                ttl: Some(60),
                content_available: Some(true),
                mutable_content: Some(false),
                image: Some("https://x.test/i.png".into()),
                body: Some("b".into()),
                apn: Some(Map::from_iter([("aps".to_owned(), serde_json::json!({"sound": "s"}))])),
                fcm: Some(Map::from_iter([("android".to_owned(), serde_json::json!({}))])),
            }),
            tags: BTreeMap::from([("flight".into(), "PG1".into())]),
            priority: Priority::Low,
            sound: Some("ring".into()),
            senders: Senders {
                apn: Some(
                    crate::domain::CredentialId::parse("comms_credential_8qn6ywvpsqzf8eeekrpwrk9h10").expect("id"),
                ),
                fcm: None,
            },
            app: Some(AppName::parse("main").expect("name")),
            recipients: vec![ChunkRecipient {
                slot: 3,
                token: "t".into(),
                provider: Provider::Apn,
                variables: Arc::new(Map::from_iter([("name".to_owned(), serde_json::json!("Ada"))])),
                user_id: None,
            }],
            scheduled_for: None,
            released: false,
        };
        let wire = serde_json::to_value(&chunk).expect("serializes");
        assert_eq!(
            wire,
            serde_json::json!({
                "v": 1,
                "accountId": "AC0123456789abcdef0123456789abcdef",
                "operationId": "comms_operation_01h9krwprkeee8fzqspvwy6nq8",
                "createdAt": "2026-11-27T10:00:00Z",
                "content": {
                    "title": "Hi {{ name }}", "body": "b", "image": "https://x.test/i.png", "data": {"k": "v"},
                    "badge": 1, "collapseKey": "c", "ttl": 60, "contentAvailable": true, "mutableContent": false,
                    "apn": {"aps": {"sound": "s"}}, "fcm": {"android": {}}
                },
                "tags": {"flight": "PG1"},
                "priority": "LOW",
                "sound": "ring",
                "senders": {"apn": "comms_credential_8qn6ywvpsqzf8eeekrpwrk9h10"},
                "app": "main",
                "recipients": [{"slot": 3, "token": "t", "provider": "APN", "variables": {"name": "Ada"}}]
            })
        );
        assert_eq!(serde_json::from_value::<Chunk>(wire).expect("reads back"), chunk);
    }
}
