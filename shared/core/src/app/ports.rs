//! Ports: the capabilities the use cases need, implemented by adapters (memory here; DynamoDB,
//! SQS and Scheduler on AWS). Every store method is scoped by account: a record of another
//! account is indistinguishable from a missing one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::domain::credential::CredentialBook;
use crate::domain::{
    Account, AccountId, AppName, Content, CredentialId, CredentialSecret, CredentialType, DeliveryError,
    DeviceRegistration, DeviceRegistrationId, ErrorCode, Notification, NotificationId, NotificationStatus, Operation,
    OperationErrorEntry, OperationEvent, OperationId, OperationStatus, Priority, Provider, Senders, Timestamp, User,
    UserId,
};

/// What a store can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the record exists, or is not in the expected state/version.
    #[error("conflict")]
    Conflict,
    /// The store is temporarily unavailable (throttled, timed out): retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("store failure: {0}")]
    Unexpected(String),
}

/// A page request: at most `size` items after the keyset `cursor` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items wanted (1–1000).
    pub size: usize,
    /// Where the previous page ended (an adapter-defined key), or `None` for the first page.
    pub cursor: Option<String>,
}

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page, `None` on the last page.
    pub next: Option<String>,
}

/// Filters of `GET /v1/PushNotifications` (all ANDed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only this operation's notifications.
    pub operation_id: Option<OperationId>,
    /// Only this status.
    pub status: Option<NotificationStatus>,
    /// Must carry all of these tags.
    pub tags: Vec<(String, String)>,
    /// Created at or after.
    pub start: Option<Timestamp>,
    /// Created at or before.
    pub end: Option<Timestamp>,
    /// Only this User's notifications.
    pub user: Option<UserId>,
    /// Only this provider.
    pub provider: Option<Provider>,
}

impl NotificationFilter {
    /// Does `n` pass every filter? (Adapters apply what their keys do not.)
    pub fn matches(&self, n: &Notification) -> bool {
        self.operation_id.is_none_or(|op| n.operation_id == op)
            && self.status.is_none_or(|s| n.status == s)
            && self.provider.is_none_or(|p| n.to.provider == p)
            && self.user.as_ref().is_none_or(|u| n.to.user_id.as_ref() == Some(u))
            && self.start.is_none_or(|s| n.created_at >= s)
            && self.end.is_none_or(|e| n.created_at <= e)
            && self.tags.iter().all(|(k, v)| n.tags.get(k) == Some(v))
    }
}

/// Filters of `GET /v1/PushNotifications/Operations`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationFilter {
    /// Only this status.
    pub status: Option<OperationStatus>,
    /// Created at or after.
    pub start: Option<Timestamp>,
    /// Created at or before.
    pub end: Option<Timestamp>,
}

impl OperationFilter {
    /// Does an operation with this status and creation time pass every filter?
    pub fn matches(&self, status: OperationStatus, created_at: Timestamp) -> bool {
        self.status.is_none_or(|s| status == s)
            && self.start.is_none_or(|s| created_at >= s)
            && self.end.is_none_or(|e| created_at <= e)
    }
}

/// The final outcome of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// `SENT`, `FAILED` or `CANCELED`.
    pub status: NotificationStatus,
    /// The credential used.
    pub from: Senders,
    /// Why, when FAILED.
    pub error: Option<DeliveryError>,
    /// When.
    pub at: Timestamp,
    /// A cancel through the API: the change happens only if no dispatcher holds a claim that is
    /// still live at `at` (one handed to a provider cannot be taken back). A dispatcher
    /// finishing its own claim leaves this `false`.
    pub unclaimed: bool,
}

impl Finish {
    /// A dispatcher's outcome for the notification it claimed.
    pub fn by_dispatcher(
        status: NotificationStatus,
        from: Senders,
        error: Option<DeliveryError>,
        at: Timestamp,
    ) -> Self {
        Self { status, from, error, at, unclaimed: false }
    }
}

/// What a finish changed: the operation after it, and whether this very finish completed it
/// (of concurrent finishes at most one does: it announces `operation.completed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The operation after the change.
    pub operation: Operation,
    /// Did this finish move the operation to COMPLETED?
    pub completed: bool,
}

impl std::ops::Deref for Finished {
    type Target = Operation;

    fn deref(&self) -> &Operation {
        &self.operation
    }
}

/// Read access to notifications and operations (what fetch/list functions may do).
#[async_trait]
pub trait PushReader: Send + Sync {
    /// The notification, or `None` if missing or another account's.
    async fn get_notification(
        &self,
        account: &AccountId,
        id: NotificationId,
    ) -> Result<Option<Notification>, StoreError>;
    /// Notifications matching `filter`, newest first.
    async fn list_notifications(
        &self,
        account: &AccountId,
        filter: &NotificationFilter,
        page: &PageRequest,
    ) -> Result<Page<Notification>, StoreError>;
    /// The operation, or `None`.
    async fn get_operation(&self, account: &AccountId, id: OperationId) -> Result<Option<Operation>, StoreError>;
    /// Notifications of the account not yet final (queued or scheduled, counted from its open
    /// operations), or `None` when this store does not keep that figure (the per-account cap
    /// on live notifications then does not apply).
    async fn live_notifications(&self, account: &AccountId) -> Result<Option<u64>, StoreError>;
    /// Operations matching `filter`, newest first.
    async fn list_operations(
        &self,
        account: &AccountId,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, StoreError>;
    /// FAILED notifications of an operation, newest first (derived from `list_notifications`).
    async fn list_operation_errors(
        &self,
        account: &AccountId,
        id: OperationId,
        page: &PageRequest,
    ) -> Result<Page<OperationErrorEntry>, StoreError> {
        let filter = NotificationFilter {
            operation_id: Some(id),
            status: Some(NotificationStatus::Failed),
            ..Default::default()
        };
        let notifications = self.list_notifications(account, &filter, page).await?;
        let items = notifications
            .items
            .into_iter()
            .filter_map(|n| {
                Some(OperationErrorEntry {
                    notification_id: n.id,
                    provider: n.to.provider,
                    error: n.error?,
                    occurred_at: n.completed_at.unwrap_or(n.updated_at),
                })
            })
            .collect();
        Ok(Page { items, next: notifications.next })
    }
}

/// Write access used by send and dispatch.
#[async_trait]
pub trait PushWriter: PushReader {
    /// Stores a new operation. `Conflict` if the id exists.
    async fn create_operation(&self, op: &Operation) -> Result<(), StoreError>;
    /// Removes an operation that was never accepted (its chunks could not be enqueued).
    async fn discard_operation(&self, account: &AccountId, id: OperationId) -> Result<(), StoreError>;
    /// Stores `n` unless a notification with its id exists; returns the status of the stored
    /// record either way (a redelivered chunk learns whether the first delivery finished).
    async fn create_notification(&self, n: Notification) -> Result<NotificationStatus, StoreError>;
    /// Claims a QUEUED notification for delivery until `until`. `Conflict` if it is final, or
    /// claimed by someone else whose claim has not expired at `now`.
    async fn claim(
        &self,
        account: &AccountId,
        id: NotificationId,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Gives a claim back (the notification stays QUEUED, to be retried).
    async fn release(&self, account: &AccountId, id: NotificationId) -> Result<(), StoreError>;
    /// Moves a claimed QUEUED notification to its final status and, in the same atomic step,
    /// moves the operation's counters (completing it when nothing is left). `Conflict` if the
    /// notification is already final. Returns the operation after the change (see [`Finished`]).
    async fn finish(&self, account: &AccountId, id: NotificationId, finish: Finish) -> Result<Finished, StoreError>;
    /// Marks an operation CANCELED if it is SCHEDULED or PROCESSING with notifications not yet
    /// final (`scheduled` or `queued` above 0); returns it. `Conflict` otherwise (completed,
    /// canceled already, or everything final and about to complete); `None` if it is missing.
    async fn cancel_operation(
        &self,
        account: &AccountId,
        id: OperationId,
        at: Timestamp,
    ) -> Result<Option<Operation>, StoreError>;
    /// Moves a SCHEDULED notification to QUEUED at its release and, in the same atomic step,
    /// the operation's counters (`scheduled` → `queued`); a SCHEDULED operation becomes
    /// PROCESSING. Returns whether this promote started the operation (at most one does).
    /// `Conflict` unless the notification is SCHEDULED.
    async fn promote(&self, account: &AccountId, id: NotificationId, at: Timestamp) -> Result<bool, StoreError>;
    /// Stores the chunks of one `sendAt` instant of a scheduled operation until its release
    /// (replacing any stored for that instant).
    async fn put_scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: u8,
        chunks: &[Chunk],
    ) -> Result<(), StoreError>;
    /// The chunks stored for one instant (empty if none, or released or canceled already).
    async fn scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: u8,
    ) -> Result<Vec<Chunk>, StoreError>;
    /// Deletes the chunks stored for one instant (`Some`) or every instant (`None`); returns the
    /// instants that had chunks.
    async fn delete_scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: Option<u8>,
    ) -> Result<Vec<u8>, StoreError>;
}

/// Credentials, Apps, and sealed credential secrets.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The account's credential book and its version (0 when it has none).
    async fn load_book(&self, account: &AccountId) -> Result<(CredentialBook, u64), StoreError>;
    /// Replaces the book if its version is still `expected`. `Conflict` otherwise.
    async fn save_book(&self, account: &AccountId, book: &CredentialBook, expected: u64) -> Result<(), StoreError>;
    /// Stores a sealed secret.
    async fn put_secret(&self, account: &AccountId, id: &CredentialId, sealed: Vec<u8>) -> Result<(), StoreError>;
    /// A sealed secret, or `None`.
    async fn get_secret(&self, account: &AccountId, id: &CredentialId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes a sealed secret (missing is fine).
    async fn delete_secret(&self, account: &AccountId, id: &CredentialId) -> Result<(), StoreError>;
}

/// Users, DeviceRegistrations and the token claims that keep a device in one registration of an
/// App. Registrations carry a version for optimistic concurrency (like the credential book); the
/// use cases in `app::directory` apply the rules and retry on `Conflict`.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Stores a new User. `Conflict` if its id exists.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    /// The User (deleted ones too), or `None` if missing or another account's.
    async fn get_user(&self, account: &AccountId, id: UserId) -> Result<Option<User>, StoreError>;
    /// The account's Users, newest first.
    async fn list_users(&self, account: &AccountId, page: &PageRequest) -> Result<Page<User>, StoreError>;
    /// Replaces a stored User (to record its deletion). `Conflict` if it does not exist.
    async fn save_user(&self, user: &User) -> Result<(), StoreError>;
    /// The User's registration in `app` and its version, or `None`.
    async fn registration(
        &self,
        account: &AccountId,
        user: UserId,
        app: &AppName,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError>;
    /// A registration by id and its version, or `None` if missing or another account's.
    async fn registration_by_id(
        &self,
        account: &AccountId,
        id: &DeviceRegistrationId,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError>;
    /// Every registration of a User (at most one per App), in no particular order.
    async fn registrations_of_user(
        &self,
        account: &AccountId,
        user: UserId,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError>;
    /// The registrations in `app` of each of `users` (a send's user recipients; up to 10,000
    /// ids, distinct), read consistently, in no particular order; Users without one are left
    /// out.
    async fn registrations_of_users(
        &self,
        account: &AccountId,
        app: &AppName,
        users: &[UserId],
    ) -> Result<Vec<DeviceRegistration>, StoreError>;
    /// Every registration in an App (for the App deletion cascade), in no particular order.
    async fn registrations_in_app(
        &self,
        account: &AccountId,
        app: &AppName,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError>;
    /// Stores `registration` at version `expected + 1`. `expected` 0 creates it: `Conflict` if
    /// its (User, App) already has one. Otherwise `Conflict` unless the stored version is
    /// `expected`.
    async fn save_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError>;
    /// Deletes a registration if its version is still `expected` (`Conflict` otherwise; a missing
    /// one is fine). Its token claims are not touched: release them with [`Self::release_token`].
    async fn delete_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError>;
    /// The registration of `app` that holds `(token, provider)`, or `None`.
    async fn token_holder(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
    ) -> Result<Option<DeviceRegistrationId>, StoreError>;
    /// Makes `holder` the registration of its App that holds `(token, provider)`, if the current
    /// holder is still `previous` (`None`: nobody). `Conflict` otherwise: at most one of two
    /// concurrent claims with the same `previous` wins.
    async fn claim_token(
        &self,
        holder: &DeviceRegistration,
        provider: Provider,
        token: &str,
        previous: Option<&DeviceRegistrationId>,
    ) -> Result<(), StoreError>;
    /// Forgets the claim on `(token, provider)` in `app` if `holder` still holds it (otherwise,
    /// or if there is none, nothing happens).
    async fn release_token(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
        holder: &DeviceRegistrationId,
    ) -> Result<(), StoreError>;
}

/// Accounts.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account, or `None`.
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
}

/// Authenticated encryption of credential secrets (AES-GCM locally, KMS envelope on AWS).
#[async_trait]
pub trait SecretBox: Send + Sync {
    /// Encrypts `plaintext`, bound to `aad`.
    async fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Decrypts what `seal` produced with the same `aad`.
    async fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// A provider token every process shares (Apple throttles keys whose provider token changes more
/// often than every 20 minutes, and every Lambda instance would otherwise mint its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedToken {
    /// The token (a secret: never logged).
    pub token: String,
    /// When it was minted.
    pub minted_at: Timestamp,
}

/// Where shared provider tokens live (DynamoDB on AWS; none locally, where one process is all).
#[async_trait]
pub trait TokenCache: Send + Sync {
    /// The token stored under `key`, if any (however old).
    async fn get(&self, key: &str) -> Result<Option<SharedToken>, StoreError>;
    /// Stores `token` under `key` unless the stored token was minted at or after `stale_before`
    /// (another process refreshed it first). Returns the token stored afterwards: ours, or the
    /// winner's.
    async fn put(&self, key: &str, token: SharedToken, stale_before: Timestamp) -> Result<SharedToken, StoreError>;
}

/// Current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// New ULIDs for resource ids.
pub trait IdGenerator: Send + Sync {
    /// A fresh ULID at `now`.
    fn ulid(&self, now: Timestamp) -> ulid::Ulid;
}

/// One recipient inside a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecipient {
    /// Position of the notification in the operation (derives its id).
    pub slot: u32,
    /// Device token.
    pub token: String,
    /// Provider.
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
    /// Operation.
    pub operation_id: OperationId,
    /// When the operation was created (the notifications' `createdAt`).
    pub created_at: Timestamp,
    /// Content templates (one copy shared by every chunk of the operation in memory).
    pub content: Arc<Content>,
    /// Tag templates.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Priority.
    pub priority: Priority,
    /// Sound.
    pub sound: Option<String>,
    /// Credentials resolved at send time.
    pub senders: Senders,
    /// The App the send resolved to (its registrations lose the devices a provider reports
    /// dead), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppName>,
    /// The recipients.
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
    /// The operation.
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
    Release {
        /// The release.
        release: Release,
    },
    /// `{"event": {...}}`: an operation event for the account's webhook.
    Event {
        /// The event.
        event: OperationEvent,
    },
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

/// Why an event could not be delivered to its webhook (it will be tried again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook delivery failed: {0}")]
pub struct WebhookError(pub String);

/// Operation events on their way to accounts' webhooks.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Hands `event` over for delivery (if its account has a webhook). Never waits for the
    /// webhook: locally a task delivers it with retries; on AWS it is queued for the dispatch
    /// function.
    async fn publish(&self, event: OperationEvent) -> Result<(), QueueError>;
    /// Posts `event` to its account's webhook once (nothing to do without one).
    async fn deliver(&self, event: &OperationEvent) -> Result<(), WebhookError>;
}

/// What the provider needs to deliver one notification.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The credential (cache key for clients and tokens).
    pub credential_id: CredentialId,
    /// Its type (APN vs APN_SANDBOX picks the host).
    pub credential_type: CredentialType,
    /// Its decrypted content.
    pub secret: &'a Arc<CredentialSecret>,
    /// Device token.
    pub token: &'a str,
    /// Rendered content.
    pub content: &'a Content,
    /// Priority.
    pub priority: Priority,
    /// Sound.
    pub sound: Option<&'a str>,
}

/// How a provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Accepted.
    Sent,
    /// The token is not (or no longer) valid: fail and forget the device.
    InvalidToken {
        /// The provider's reason.
        reason: String,
    },
    /// Try again later (429/5xx/timeouts).
    Retryable {
        /// The provider's Retry-After, if any.
        after: Option<Duration>,
        /// The provider's reason.
        reason: String,
    },
    /// Refused for good.
    Permanent {
        /// The pushgate code.
        code: ErrorCode,
        /// Explanation.
        message: String,
        /// The provider's reason, if any.
        reason: Option<String>,
    },
}

/// Why a provider would refuse a credential's content, found when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialProblem {
    /// The private key cannot sign what the provider requires (APNs: ES256 with a P-256 key;
    /// FCM: RS256 with an RSA key). The text says what is needed.
    PrivateKey(String),
    /// The certificate and its key do not make a client identity.
    Certificate(String),
    /// The service account's `token_uri` is not one of the OAuth token endpoints this
    /// deployment talks to.
    TokenUri(String),
}

/// Delivers one notification to APNs or FCM.
#[async_trait]
pub trait PushGateway: Send + Sync {
    /// Sends once (no retries: the dispatcher owns the retry policy) and classifies the answer.
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryOutcome;
    /// Checks a credential against what its provider accepts, the way [`Self::deliver`] will
    /// use it (signing a provider token or an OAuth assertion; the allowed OAuth endpoints),
    /// without any request. Empty when usable.
    fn check_credential(&self, secret: &CredentialSecret) -> Vec<CredentialProblem>;
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
}
