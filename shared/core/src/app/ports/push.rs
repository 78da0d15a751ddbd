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

/// One chunk of an operation, named by its first slot (the chunks of an operation hold
/// disjoint slot ranges, so the first slot names one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkKey {
    pub operation: OperationId,
    pub first_slot: u32,
}

/// What asking for a chunk's lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the chunk until the `until` it asked for. `fresh`: no pass ever held it,
    /// so none of its notifications is stored yet. `counted`: what earlier passes added to the
    /// operation's stats for this chunk.
    Held { fresh: bool, counted: ChunkTally },
    /// Another pass holds it until `until`.
    Busy { until: Timestamp },
    /// The chunk is counted: every one of its notifications is final and in the stats.
    Counted,
}

/// A chunk's part of its operation's stats, added once when every recipient is final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkTally {
    /// Notifications of the chunk (all of them leave `queued`).
    pub notifications: u64,
    pub sent: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl ChunkTally {
    /// Counts one notification's final status (others are not counted: a tally is taken when
    /// every notification is final).
    pub fn add(&mut self, status: NotificationStatus) {
        match status {
            NotificationStatus::Sent => self.sent += 1,
            NotificationStatus::Failed => self.failed += 1,
            NotificationStatus::Canceled => self.canceled += 1,
            NotificationStatus::Queued | NotificationStatus::Scheduled => return,
        }
        self.notifications += 1;
    }
}

/// What a pass over a chunk adds to its operation's stats: its tally now (every notification of
/// the chunk final so far) over the tally counted before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCount {
    /// Counted by earlier passes (from the lease).
    pub before: ChunkTally,
    /// Final now.
    pub after: ChunkTally,
    /// Every notification of the chunk is final: the chunk is done.
    pub last: bool,
}

impl ChunkCount {
    /// Applies the difference to `stats` (what [`PushWriter::count_chunk`] stores).
    pub fn apply(&self, stats: &mut crate::domain::Stats) {
        let (before, after) = (self.before, self.after);
        stats.queued = stats.queued.saturating_sub(after.notifications.saturating_sub(before.notifications));
        stats.sent += after.sent.saturating_sub(before.sent);
        stats.failed += after.failed.saturating_sub(before.failed);
        stats.canceled += after.canceled.saturating_sub(before.canceled);
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
    /// The stored ones of the notifications `ids` (read consistently; missing ones left out,
    /// any order).
    async fn get_notifications(
        &self,
        account: &AccountId,
        ids: &[NotificationId],
    ) -> Result<Vec<Notification>, StoreError>;
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
    /// moves the operation's counters (completing it when nothing is left) — unless it was
    /// stored by [`Self::store_decided`]: its chunk counts it. `Conflict` if the
    /// notification is already final. Returns the operation after the change (see [`Finished`]).
    async fn finish(&self, account: &AccountId, id: NotificationId, finish: Finish) -> Result<Finished, StoreError>;
    /// Takes the lease of a chunk of an immediate send for `holder` until `until`, if it is not
    /// counted and its lease is free, expired at `now`, or `holder`'s already (a renewal).
    async fn lease_chunk(
        &self,
        account: &AccountId,
        chunk: ChunkKey,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Lease, StoreError>;
    /// Gives a lease back early (a redelivery need not wait for it to expire); nothing if
    /// `holder` no longer holds it.
    async fn release_chunk(&self, account: &AccountId, chunk: ChunkKey, holder: &str) -> Result<(), StoreError>;
    /// Stores what a chunk's lease holder decided for some of its notifications: final ones,
    /// and QUEUED ones waiting for the chunk's redelivery (replacing what is stored under
    /// their ids). They are counted with their chunk ([`Self::count_chunk`]): a later
    /// [`Self::finish`] of one of them (a cancel, the redelivery) moves no counter.
    /// `tags_by_operation`: their tags are their operation's, indexed once by
    /// [`Self::index_operation_tags`], so they need no index entries of their own.
    async fn store_decided(&self, notifications: Vec<Notification>, tags_by_operation: bool) -> Result<(), StoreError>;
    /// Indexes every notification of `operation` under each of `tags` at once (for a `tags`
    /// filter), when the tags are the same for all of them: one index entry per tag for the
    /// operation instead of one per notification. Idempotent.
    async fn index_operation_tags(
        &self,
        account: &AccountId,
        operation: OperationId,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError>;
    /// Adds what a pass counted (`count.after` over `count.before`) to the operation's stats and
    /// stores `count.after` as the chunk's counted tally, in one atomic step; with `count.last`
    /// the chunk is done (its lease answers `Counted` from then on) and the operation completes
    /// when nothing is left. `Conflict` if the chunk is done already or `holder` no longer holds
    /// its lease.
    async fn count_chunk(
        &self,
        account: &AccountId,
        chunk: ChunkKey,
        holder: &str,
        count: ChunkCount,
        at: Timestamp,
    ) -> Result<Finished, StoreError>;
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
