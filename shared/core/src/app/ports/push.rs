//! Notifications and operations: the push store.

use async_trait::async_trait;

use crate::domain::{
    AccountId, DeliveryError, Notification, NotificationId, NotificationStatus, Operation, OperationErrorEntry,
    OperationId, OperationStatus, Provider, Senders, Timestamp, UserId,
};

use super::queue::Chunk;
use super::{Page, PageRequest, StoreError};

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
