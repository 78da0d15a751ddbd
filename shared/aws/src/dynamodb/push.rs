//! Notifications and operations on DynamoDB: the [`PushReader`]/[`PushWriter`] ports, with the
//! same semantics as `pushgate_memory::MemoryPushStore` (the contract suite in `tests/` runs the
//! same checks against both).
//!
//! # Table design (one table, see [`tables`])
//!
//! | item | `pk` | `sk` | `gsi1pk` / `gsi1sk` (`byUser`) |
//! |---|---|---|---|
//! | notification | `NOTIFICATION#{account}#{shard:02}` (32 shards, from the id) | notification id | `USER#{account}#{user}` / notification id, only when addressed to a User |
//! | operation | `OPERATION#{account}` | operation id | — |
//! | tag index | `TAG#{account}#{len(key)}:{key}={value}` | notification id | — |
//! | stored chunk of a scheduled send | `SCHEDULED#{account}#{operation}` | `{instant:02}#{index:05}` | — |
//! | lease of a chunk of an immediate send | `CHUNK#{account}#{operation}#{first slot}` | `CHUNK` | — |
//!
//! A stored chunk holds one fan-out chunk as JSON (`chunk`, ≤ 192 KiB, under the 400 KB item
//! limit) until its instant's release queues it; `expiresAt` = instant + 7 days.
//! - Every key starts with the account id: another account's record is simply not found.
//! - Ids are `prefix` + lowercase ULID; the Crockford alphabet is in ASCII order and the length
//!   is fixed, so the string order of `sk` is time order. Lists are Queries on one partition with
//!   `ScanIndexForward = false` (newest first) — never Scans.
//! - An account's notifications are spread over [`NOTIFICATION_SHARDS`] partitions (the shard
//!   comes from the id: a fetch is one `GetItem`), so no partition key takes more than 1/32 of
//!   an account's notification writes. Lists without a user or tag filter merge the shards
//!   newest first, reading each a few items at a time as the merge needs them.
//! - `operationId` filter: `NotificationId::derive` gives an operation's notifications one
//!   contiguous id range (its timestamp, a 48-bit hash of its id, the slot), so they are that
//!   `sk` range of every shard. No index needed.
//! - `tags` filter: the tag's index partition holds small entries (keys and `expiresAt`, no
//!   copy of the notification): one per operation whose tags are the same for every
//!   notification (sort key: its last possible notification id, attribute `operation`; written
//!   once per chunk pass), else one per tag of a notification (sort key: its id). The key is
//!   prefixed with its length in bytes, so keys and values holding `=`, `:` or `#` cannot make
//!   two tags share a partition. Tags never change after create, so entries are never updated.
//! - `user` filter: the sparse `byUser` GSI. GSIs are eventually consistent on AWS (moto is
//!   consistent); base-table reads and Queries are `ConsistentRead`, so a writer sees its writes.
//! - `expiresAt` (number, epoch seconds) = `createdAt` + 7 days on every item: the TTL attribute.
//!   A tag index item carries its notification's. TTL deletes the two independently, so an
//!   index item may outlive its notification for a while: reads skip it.
//! - Items are the adapter's own item types (`records`: `NotificationItem` with its
//!   `ContentItem`, `DestinationItem`, `SendersItem`, `DeliveryErrorItem`; `OperationItem`),
//!   written with `serde_dynamo`, plus the key attributes; operations store their counters as
//!   top-level numbers so `finish` can `ADD` to them. The values `finish`, `promote` and
//!   `cancel_operation` set go through the same types. The stored chunk of a scheduled send is
//!   the exception: it is the core's versioned queue message (`Chunk`, JSON, `v`), held until
//!   its release puts it on the queue as it is.
//!   A claim is a `claimUntil` number (epoch ms) on the notification item.
//!
//! # Paging and filters
//!
//! The cursor is the id of the last returned item (the app layer signs it). A page Queries
//! `sk BETWEEN low AND cursor` (skipping the cursor item itself), keeps going with
//! `ExclusiveStartKey` until `size` matching items plus one more are found or the range is
//! exhausted, so `pageSize` is honoured exactly and `next` is `None` on the last page. Filters
//! that are not keys (status, provider, dates, the other tags, and operationId within its
//! millisecond) are applied in code on the decoded item, with the same predicate as the memory
//! store.
//!
//! Which partitions a page Queries: with tags, the tag index partition of the first tag (exact
//! and read consistently, so it wins over `user`; see `list_tagged`); else with `user`, the
//! `byUser` GSI; else the account's notification shards, merged. Notification entries of the
//! tag index hold ids, not notifications: runs of them are resolved with `BatchGetItem` (≤ 100
//! keys per call, the calls in parallel, `ConsistentRead`, unprocessed keys retried with
//! backoff), in the Query's order, skipping ids whose notification is gone; an operation entry
//! becomes a merge of its id range over the shards.
//!
//! # Writes
//!
//! - `create_operation`: `PutItem` with `attribute_not_exists(pk)` → `Conflict` if it exists.
//! - `create_notification`: the same, with `ReturnValuesOnConditionCheckFailure = ALL_OLD`; on a
//!   lost condition the stored status is returned (read consistently if the error carries no item).
//!   Then the tag index items of the stored notification are put with `BatchWriteItem` (≤ 25 per
//!   call, unprocessed items retried with backoff; still unprocessed → `Unavailable`). They are
//!   written on the `Conflict` path too: index writes are idempotent, so a redelivered chunk
//!   repairs an index write that was interrupted after the notification was stored. Until then
//!   the notification is missing from `tags` lists only.
//! - `claim`: `UpdateItem SET claimUntil` if `status = QUEUED` and the claim is absent or expired.
//! - `release`: `UpdateItem REMOVE claimUntil` (a missing notification is fine).
//! - `finish`: reads the notification (its status is the `from` of the transition), then one
//!   `TransactWriteItems`: the notification (condition: still `from`) gets status, `from`, error,
//!   `updated_at`, `completed_at` and loses its claim; the operation `ADD`s −1/+1 to the two
//!   counters and sets `updated_at`. Then, when nothing is queued or scheduled, a conditional
//!   `UpdateItem` moves the operation `PROCESSING → COMPLETED` (a lost condition means another
//!   finisher did it). Unlike `Stats::apply`, `ADD` does not saturate at 0: counters are only
//!   moved by transitions that hold one notification each, so they cannot go below 0.
//! - `discard_operation`: `DeleteItem`.
//! - `lease_chunk`: `UpdateItem SET holder, leaseUntil` if not `counted` and the lease is
//!   absent, expired or the holder's (`ReturnValues = ALL_OLD`: no old item = fresh; the old
//!   `notifications`/`sent`/`failed`/`canceled` are what the chunk counted so far). Each chunk
//!   has its own partition, so the chunks of one operation never meet on one key.
//! - `release_chunk`: `UpdateItem SET leaseUntil = 0` if the holder still holds it.
//! - `store_decided`: `BatchWriteItem` of the notification items (marked `chunkCounted`) and
//!   their tag index items, unconditional: only the lease holder writes them.
//! - `count_chunk`: one `TransactWriteItems`: the lease item (condition: this holder, not
//!   `counted`) gets the chunk's tally (and `counted` on its last pass); the operation `ADD`s
//!   the difference to its counters. Then the same completion as `finish`. A notification
//!   marked `chunkCounted` is finished (cancel, redelivery) by a conditional `UpdateItem` of
//!   the notification alone.
//! - Transactions DynamoDB cancels for `TransactionConflict` or `ThrottlingError` are repeated
//!   with jittered backoff ([`TRANSACTION_ATTEMPTS`]); the SDK does not retry those.
//!
//! Two finishes racing on one notification both read `QUEUED`; the transaction of the second is
//! cancelled by the notification's condition and it gets `Conflict` (a `TransactionConflict`
//! cancellation is `Unavailable`: the retry reads the final status and gets `Conflict`).
//!
//! On moto (the emulator tier) everything above behaves as on DynamoDB except concurrent
//! transactions: moto restores a copy of the table when it cancels a transaction, undoing a
//! transaction that committed meanwhile, so the contract check racing two finishes is ignored
//! there.
//!
//! SDK errors: a lost condition → `Conflict`; throttling, 5xx, timeouts and dispatch failures →
//! `Unavailable`; anything else → `Unexpected`. No SDK type leaves `pushgate-aws`.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update, WriteRequest,
};
use futures::future::try_join_all;
use serde::Serialize;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};

use super::batch::{BATCH_WRITE_ITEMS, batch_get_items, until_processed};
use super::items::{
    Item, MAX_PARTITION_KEY_BYTES, build_error, codec_error, delete_item, expires_at, get_item, key, n, s, store_error,
};
use super::records::{self, DeliveryErrorItem, NotificationItem, OperationItem, SendersItem};
use super::tables;

use pushgate_core::app::paging::parse_cursor;
use pushgate_core::app::ports::{
    Chunk, ChunkCount, ChunkKey, ChunkTally, Finish, Finished, Lease, NotificationFilter, OperationFilter, Page,
    PageRequest, PushReader, PushWriter, StoreError,
};
use pushgate_core::domain::{
    AccountId, DeliveryError, Notification, NotificationId, NotificationStatus, Operation, OperationId,
    OperationStatus, Senders, Timestamp, UserId,
};

/// How many partitions an account's notifications are spread over: a notification is one write
/// of about 1 WRU, so each partition key takes 1/32 ≈ 0.031 WRU per notification of the
/// account, which keeps an account under DynamoDB's 1,000 WCU/s per key up to ~32,000
/// notifications/s. Lists merge the partitions newest first.
pub(crate) const NOTIFICATION_SHARDS: u32 = 32;

/// The shard of a notification, from its id alone (so a fetch by id is one `GetItem`): the
/// operation's 48-bit hash in the id plus the slot, so an operation's notifications go round
/// the shards and the single notifications of many small sends spread by their operation.
fn shard_of(id: NotificationId) -> u32 {
    let bits = id.ulid().0;
    let hash = (bits >> 32) as u64;
    let slot = u64::from(bits as u32);
    (hash.wrapping_add(slot) % u64::from(NOTIFICATION_SHARDS)) as u32
}

/// The partition of shard `shard` of the account's notifications.
fn notification_shard_pk(account: &AccountId, shard: u32) -> String {
    format!("NOTIFICATION#{account}#{shard:02}")
}

/// The partition of notification `id`.
pub fn notification_pk(account: &AccountId, id: NotificationId) -> String {
    notification_shard_pk(account, shard_of(id))
}

/// The key of notification `id`.
fn notification_key(account: &AccountId, id: NotificationId) -> Item {
    key(notification_pk(account, id), id)
}

/// Every partition of the account's notifications.
fn notification_partitions(account: &AccountId) -> Vec<String> {
    (0..NOTIFICATION_SHARDS).map(|shard| notification_shard_pk(account, shard)).collect()
}

fn operation_pk(account: &AccountId) -> String {
    format!("OPERATION#{account}")
}

fn user_pk(account: &AccountId, user: &UserId) -> String {
    format!("USER#{account}#{user}")
}

/// The tag index partition of the tag `(key, value)`. The key's length (bytes) comes first, so
/// the key ends at a known place whatever `=`, `:` or `#` the key and the value hold.
fn tag_pk(account: &AccountId, key: &str, value: &str) -> String {
    format!("TAG#{account}#{}:{key}={value}", key.len())
}

/// The lease item of one chunk of an immediate send (its own partition: the chunks of one
/// operation never meet on one key).
fn chunk_key(account: &AccountId, chunk: ChunkKey) -> Item {
    key(format!("CHUNK#{account}#{}#{}", chunk.operation, chunk.first_slot), "CHUNK")
}

/// The tally a chunk's lease item says was counted so far (0 where an attribute is missing).
fn counted_tally(item: &Item) -> ChunkTally {
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
        _ => 0,
    };
    ChunkTally {
        notifications: number("notifications"),
        sent: number("sent"),
        failed: number("failed"),
        canceled: number("canceled"),
    }
}

/// `after − before`, as a DynamoDB number.
fn delta(after: u64, before: u64) -> Result<AttributeValue, StoreError> {
    let signed = |v: u64| i64::try_from(v).map_err(|e| StoreError::Unexpected(e.to_string()));
    Ok(n(signed(after)? - signed(before)?))
}

/// The attribute of an operation's tag index entry that names the operation.
const TAGGED_OPERATION: &str = "operation";

/// The sort key of an operation's tag index entry: the id of its last possible notification,
/// so the entry sorts among notification entries exactly where its notifications do
/// (`NotificationId::derive` gives each operation its own contiguous id range).
fn operation_tag_sort_key(operation: OperationId) -> String {
    NotificationId::derive(operation, u32::MAX).to_string()
}

/// The attribute marking a notification stored by `store_decided` (counted with its chunk).
const CHUNK_COUNTED: &str = "chunkCounted";

/// Attempts of a transaction DynamoDB cancels for a conflict with another one or for
/// throttling (the SDK does not retry those: the cancellation is the answer).
const TRANSACTION_ATTEMPTS: u32 = 6;

/// The partition of a scheduled operation's stored chunks (sort key `{instant:02}#{index:05}`).
fn scheduled_pk(account: &AccountId, operation: OperationId) -> String {
    format!("SCHEDULED#{account}#{operation}")
}

/// The string sort key of an item.
fn sort_key(item: &Item) -> Option<&str> {
    match item.get(tables::PUSH_KEY.sort) {
        Some(AttributeValue::S(sk)) => Some(sk),
        _ => None,
    }
}

/// The counter attribute a status is counted in.
fn counter(status: NotificationStatus) -> &'static str {
    match status {
        NotificationStatus::Scheduled => "scheduled",
        NotificationStatus::Queued => "queued",
        NotificationStatus::Sent => "sent",
        NotificationStatus::Failed => "failed",
        NotificationStatus::Canceled => "canceled",
    }
}

/// The key attributes stored beside a notification's own attributes.
#[derive(Serialize)]
struct NotificationKeys {
    pk: String,
    sk: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    #[serde(rename = "expiresAt")]
    expires_at: i64,
}

/// The tag index items of `notification`: one per tag, its keys and `expiresAt` only.
fn tag_index_items(notification: &Notification) -> Vec<Item> {
    let expires = expires_at(&notification.created_at);
    notification
        .tags
        .iter()
        .map(|(k, v)| {
            let mut item = key(tag_pk(&notification.account_id, k, v), notification.id);
            item.insert(tables::TTL_ATTRIBUTE.to_owned(), n(expires));
            item
        })
        .collect()
}

/// The item of a notification: its attributes and its keys.
pub(super) fn notification_item(n: &Notification) -> Result<Item, StoreError> {
    let mut item: Item = to_item(NotificationItem::from(n)).map_err(codec_error)?;
    let keys = NotificationKeys {
        pk: notification_pk(&n.account_id, n.id),
        sk: n.id.to_string(),
        gsi1pk: n.to.user_id.as_ref().map(|u| user_pk(&n.account_id, u)),
        gsi1sk: n.to.user_id.as_ref().map(|_| n.id.to_string()),
        expires_at: expires_at(&n.created_at),
    };
    item.extend(to_item::<_>(keys).map_err(codec_error)?);
    Ok(item)
}

/// The notification a stored item holds.
pub(super) fn read_notification(item: Item) -> Result<Notification, StoreError> {
    from_item::<NotificationItem>(item).map_err(codec_error)?.try_into()
}

/// The item of an operation: its attributes, its counters at the top level (so `ADD` reaches
/// them), and its keys.
pub(super) fn operation_item(op: &Operation) -> Result<Item, StoreError> {
    let mut item: Item = to_item(OperationItem::from(op)).map_err(codec_error)?;
    item.extend(key(operation_pk(&op.account_id), op.id));
    item.insert(tables::TTL_ATTRIBUTE.to_owned(), n(expires_at(&op.created_at)));
    Ok(item)
}

/// The operation a stored item holds.
pub(super) fn read_operation(item: Item) -> Result<Operation, StoreError> {
    from_item::<OperationItem>(item).map_err(codec_error)?.try_into()
}

/// A timestamp attribute value, as `updated_at`, `completed_at` and the others are stored.
pub(super) fn timestamp_value(at: Timestamp) -> Result<AttributeValue, StoreError> {
    Ok(s(records::time(&at)))
}

/// The `from` attribute value of a notification.
pub(super) fn senders_value(from: &Senders) -> Result<AttributeValue, StoreError> {
    to_attribute_value(SendersItem::from(from)).map_err(codec_error)
}

/// The `error` attribute value of a notification (NULL when there is none).
pub(super) fn error_value(error: Option<&DeliveryError>) -> Result<AttributeValue, StoreError> {
    to_attribute_value(error.map(DeliveryErrorItem::from)).map_err(codec_error)
}

/// One Query range of records: the partition (of the table or an index) and the inclusive `sk`
/// bounds.
struct Range {
    index: Option<&'static str>,
    partition_attr: &'static str,
    partition: String,
    sort_attr: &'static str,
    low: String,
    high: String,
}

/// One partition in a merge: what was read and not yet taken, and where its Query goes on.
struct Source {
    partition: String,
    start: Option<Item>,
    buffer: VecDeque<Notification>,
    done: bool,
}

/// The notifications a tag walk has found (newest first, ids strictly decreasing), up to one
/// more than a page so it knows whether a next page exists.
struct TaggedWalk<'a> {
    found: Vec<Notification>,
    want: usize,
    /// More matches are known to follow what was found.
    more: bool,
    cursor: Option<NotificationId>,
    filter: &'a NotificationFilter,
}

impl TaggedWalk<'_> {
    fn full(&self) -> bool {
        self.found.len() >= self.want
    }

    /// Keeps `n` if it is below the cursor and below everything kept so far (a notification
    /// with both kinds of index entry is listed once).
    fn push(&mut self, n: Notification) {
        let below =
            |id: NotificationId| self.cursor.is_none_or(|c| id < c) && self.found.last().is_none_or(|l| id < l.id);
        if !self.full() && below(n.id) {
            self.found.push(n);
        }
    }

    fn push_all(&mut self, items: Vec<Notification>) {
        for n in items {
            self.push(n);
        }
    }

    /// Keeps the resolved records of notification entries that pass the filter.
    fn take(&mut self, records: Vec<Item>) -> Result<(), StoreError> {
        for record in records {
            let n = read_notification(record)?;
            if self.filter.matches(&n) {
                self.push(n);
            }
        }
        Ok(())
    }

    /// The page: `size` notifications, and a cursor when more were found.
    fn page(mut self, size: usize) -> Page<Notification> {
        if self.found.len() > size || (self.more && !self.found.is_empty()) {
            self.found.truncate(size);
            let next = self.found.last().map(|n| n.id.to_string());
            return Page { items: self.found, next };
        }
        Page { items: self.found, next: None }
    }
}

/// Notifications and operations in one DynamoDB table (see the module docs).
#[derive(Clone, Debug)]
pub struct DynamoPushStore {
    client: Client,
    table: String,
}

impl DynamoPushStore {
    /// Uses the push table `table` (its name comes from the template's environment).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        get_item(&self.client, &self.table, key).await
    }

    /// Up to `size` records of `range` newest first (each item read with `read`) that `keep`
    /// accepts, skipping the cursor item `skip`, and the cursor of the next page (`None` when
    /// nothing more matches).
    async fn query_page<T>(
        &self,
        range: Range,
        skip: Option<String>,
        read: impl Fn(Item) -> Result<T, StoreError>,
        id_of: impl Fn(&T) -> String,
        keep: impl Fn(&T) -> bool,
        size: usize,
    ) -> Result<Page<T>, StoreError> {
        let mut items = Vec::new();
        let mut last = None;
        let mut start: Option<Item> = None;
        if range.low > range.high {
            return Ok(Page { items, next: None });
        }
        // Read a little more than the page: the item after it tells whether there is a next page.
        let limit = i32::try_from((size + 2).clamp(10, 1000)).unwrap_or(1000);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(range.index.map(str::to_owned))
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                .expression_attribute_names("#pk", range.partition_attr)
                .expression_attribute_names("#sk", range.sort_attr)
                .expression_attribute_values(":pk", s(range.partition.clone()))
                .expression_attribute_values(":low", s(range.low.clone()))
                .expression_attribute_values(":high", s(range.high.clone()))
                .scan_index_forward(false)
                .consistent_read(range.index.is_none())
                .limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for raw in out.items.unwrap_or_default() {
                let item = read(raw)?;
                let id = id_of(&item);
                if skip.as_deref() == Some(id.as_str()) || !keep(&item) {
                    continue;
                }
                if items.len() == size {
                    return Ok(Page { items, next: last });
                }
                last = Some(id);
                items.push(item);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(Page { items, next: None }),
            }
        }
    }

    /// Notifications carrying every tag of `filter`, newest first, from the index partition
    /// `partition` of its first tag. The partition holds two kinds of entry: one per notification
    /// (sort key: its id) and one per operation whose notifications all carry the tag (sort key:
    /// the operation's last possible notification id; its notifications are the contiguous id
    /// range below it). Entries are read newest first; runs of notification entries are resolved
    /// with `BatchGetItem`, an operation entry becomes a Query of its range of the account's
    /// notification partition. The cursor is the last returned id, as everywhere: the walk starts
    /// at the end of the cursor's operation range, so an operation entry above the cursor whose
    /// notifications go on below it is found again.
    async fn list_tagged(
        &self,
        account: &AccountId,
        partition: String,
        filter: &NotificationFilter,
        cursor: Option<NotificationId>,
        size: usize,
    ) -> Result<Page<Notification>, StoreError> {
        if partition.len() > MAX_PARTITION_KEY_BYTES {
            // A tag too long to be a key was never stored (and DynamoDB would refuse the Query).
            return Ok(Page { items: Vec::new(), next: None });
        }
        let (low, high) = NotificationId::range_of(filter.operation_id);
        let high =
            cursor.map_or(high, |c| high.min(NotificationId::from_ulid(ulid::Ulid(c.ulid().0 | u128::from(u32::MAX)))));
        let skip = cursor.map(|c| c.to_string());
        let mut walk = TaggedWalk { found: Vec::new(), want: size + 1, more: false, cursor, filter };
        let limit = i32::try_from((size + 2).clamp(10, 1000)).unwrap_or(1000);
        let mut start: Option<Item> = None;
        'pages: loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                .expression_attribute_values(":pk", s(partition.clone()))
                .expression_attribute_values(":low", s(low.to_string()))
                .expression_attribute_values(":high", s(high.to_string()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            let mut pointers = Vec::new();
            for entry in out.items.unwrap_or_default() {
                let Some(AttributeValue::S(operation)) = entry.get(TAGGED_OPERATION) else {
                    pointers.push(entry);
                    continue;
                };
                let operation = OperationId::parse(operation)
                    .map_err(|_| StoreError::Unexpected("a malformed operation tag index entry".into()))?;
                let pending = std::mem::take(&mut pointers);
                walk.take(self.resolve(account, pending, skip.as_deref()).await?)?;
                if walk.full() {
                    break 'pages;
                }
                let first = NotificationId::derive(operation, 0);
                let last = NotificationId::derive(operation, u32::MAX);
                let range = (first, cursor.map_or(last, |c| c.min(last)));
                let keep = |n: &Notification| n.operation_id == operation && filter.matches(n);
                let wanted = walk.want - walk.found.len();
                let page = self.merged_page(account, range, cursor, keep, wanted).await?;
                walk.more = page.next.is_some();
                walk.push_all(page.items);
                if walk.more || walk.full() {
                    break 'pages;
                }
            }
            walk.take(self.resolve(account, pointers, skip.as_deref()).await?)?;
            if walk.full() {
                break;
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(walk.page(size))
    }

    /// The records of `partition` the index items `hits` point to, in the order of `hits`,
    /// without the cursor record `skip` and without those that are gone (expired).
    async fn resolve(&self, account: &AccountId, hits: Vec<Item>, skip: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let mut ids = hits
            .iter()
            .map(|hit| sort_key(hit).map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Unexpected("an index item without a string sort key".into()))?;
        ids.retain(|id| Some(id.as_str()) != skip);
        let parsed = ids
            .iter()
            .map(|id| NotificationId::parse(id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Unexpected("a tag index entry that names no notification".into()))?;
        let found = self.batch_get_notifications(account, &parsed).await?;
        let mut by_id: HashMap<String, Item> =
            found.into_iter().filter_map(|item| Some((sort_key(&item)?.to_owned(), item))).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// The stored items of the notifications `ids`, read consistently, in any order; missing
    /// ones are left out.
    async fn batch_get_notifications(
        &self,
        account: &AccountId,
        ids: &[NotificationId],
    ) -> Result<Vec<Item>, StoreError> {
        batch_get_items(&self.client, &self.table, ids.iter().map(|id| notification_key(account, *id)).collect()).await
    }

    /// Up to `size` notifications of the account with `low ≤ id ≤ high` that `keep` accepts,
    /// newest first, skipping the cursor item `skip`, and the cursor of the next page: a merge
    /// of the account's notification partitions. Each partition is read newest first a few
    /// items at a time (a page's share of them plus some), only when the merge needs its next
    /// item, so a page reads about `size` items plus a few per partition.
    async fn merged_page(
        &self,
        account: &AccountId,
        (low, high): (NotificationId, NotificationId),
        skip: Option<NotificationId>,
        keep: impl Fn(&Notification) -> bool,
        size: usize,
    ) -> Result<Page<Notification>, StoreError> {
        let mut items = Vec::new();
        if low > high {
            return Ok(Page { items, next: None });
        }
        let partitions = notification_partitions(account);
        let limit = i32::try_from(((size + 2) / partitions.len() + 8).clamp(10, 1000)).unwrap_or(1000);
        let mut sources: Vec<Source> = partitions
            .into_iter()
            .map(|partition| Source { partition, start: None, buffer: VecDeque::new(), done: false })
            .collect();
        let (low, high) = (low.to_string(), high.to_string());
        loop {
            let refills = sources
                .iter_mut()
                .filter(|source| source.buffer.is_empty() && !source.done)
                .map(|source| self.refill(source, (&low, &high), limit, skip, &keep));
            try_join_all(refills).await?;
            let newest = sources
                .iter_mut()
                .filter_map(|source| source.buffer.front().map(|n| n.id).map(|id| (id, source)))
                .max_by_key(|(id, _)| *id);
            let Some((_, source)) = newest else { return Ok(Page { items, next: None }) };
            if items.len() == size {
                let next = items.last().map(|n: &Notification| n.id.to_string());
                return Ok(Page { items, next });
            }
            items.extend(source.buffer.pop_front());
        }
    }

    /// Reads the next items of one partition of a merge until one is kept or the range ends.
    async fn refill(
        &self,
        source: &mut Source,
        (low, high): (&str, &str),
        limit: i32,
        skip: Option<NotificationId>,
        keep: &impl Fn(&Notification) -> bool,
    ) -> Result<(), StoreError> {
        while source.buffer.is_empty() && !source.done {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                .expression_attribute_values(":pk", s(source.partition.clone()))
                .expression_attribute_values(":low", s(low))
                .expression_attribute_values(":high", s(high))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(limit)
                .set_exclusive_start_key(source.start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let n = read_notification(item)?;
                if Some(n.id) != skip && keep(&n) {
                    source.buffer.push_back(n);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => source.start = Some(k),
                _ => source.done = true,
            }
        }
        Ok(())
    }

    /// Puts the tag index items of `notification` (idempotent: the same items every time).
    async fn index_tags(&self, notification: &Notification) -> Result<(), StoreError> {
        let writes = tag_index_items(notification)
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_write(writes).await
    }

    /// Writes `writes` with `BatchWriteItem` ([`BATCH_WRITE_ITEMS`] per call, in parallel),
    /// repeating what a call left unprocessed.
    async fn batch_write(&self, writes: Vec<WriteRequest>) -> Result<(), StoreError> {
        let batches = writes.chunks(BATCH_WRITE_ITEMS).map(|batch| {
            until_processed("BatchWriteItem", batch.to_vec(), |writes| {
                let call = self.client.batch_write_item().request_items(&self.table, writes).send();
                async move {
                    let out = call.await.map_err(|e| store_error("BatchWriteItem", e))?;
                    let left = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).filter(|w| !w.is_empty());
                    Ok((Vec::new(), left))
                }
            })
        });
        try_join_all(batches).await?;
        Ok(())
    }

    /// Every item of the partition `pk` whose sort key starts with `prefix` (consistent, in sort
    /// key order, following `LastEvaluatedKey`).
    async fn query_prefix(&self, pk: String, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut request =
                self.client.query().table_name(&self.table).expression_attribute_values(":pk", s(pk.clone()));
            // DynamoDB refuses an empty `begins_with` operand.
            request = if prefix.is_empty() {
                request.key_condition_expression("pk = :pk")
            } else {
                request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix))
            };
            let out = request
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Applies `notification` (a conditional update of one notification) and moves one from the
    /// operation's counter of `from` to that of `to`, in one transaction. `Conflict` when the
    /// notification's condition fails; `Unexpected` when the operation is missing.
    async fn move_one(
        &self,
        notification: Update,
        account: &AccountId,
        operation: OperationId,
        from: NotificationStatus,
        to: NotificationStatus,
        at: AttributeValue,
    ) -> Result<(), StoreError> {
        let counters = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(operation_pk(account), operation)))
            .update_expression("SET updated_at = :at ADD #left :minus, #reached :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#left", counter(from))
            .expression_attribute_names("#reached", counter(to))
            .expression_attribute_values(":at", at)
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().update(notification).build(),
            TransactWriteItem::builder().update(counters).build(),
        ];
        self.transact(items, 0, "notification without its operation").await
    }

    /// The operation after a change of its counters, moved `PROCESSING → COMPLETED` by a
    /// conditional update when nothing is queued or scheduled (a lost condition means another
    /// writer did it, or a counter moved).
    async fn complete_if_done(&self, account: &AccountId, operation: OperationId) -> Result<Finished, StoreError> {
        let op_key = key(operation_pk(account), operation);
        let read = |item: Option<Item>| -> Result<Operation, StoreError> {
            let item = item.ok_or_else(|| StoreError::Unexpected("the operation vanished during finish".into()))?;
            read_operation(item)
        };
        let op = read(self.get(op_key.clone()).await?)?;
        let open = matches!(op.status, OperationStatus::Scheduled | OperationStatus::Processing);
        if !open || !op.stats.all_final() {
            return Ok(Finished { operation: op, completed: false });
        }
        let complete = self
            .client
            .update_item()
            .set_key(Some(op_key.clone()))
            .update_expression("SET #status = :completed")
            .condition_expression("#status IN (:scheduled, :processing) AND queued = :zero AND scheduled = :zero")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s(OperationStatus::Completed.as_str()))
            .expression_attribute_values(":scheduled", s(OperationStatus::Scheduled.as_str()))
            .expression_attribute_values(":processing", s(OperationStatus::Processing.as_str()))
            .expression_attribute_values(":zero", n(0))
            .return_values(ReturnValue::AllNew);
        match self.update(complete, "UpdateItem (complete)").await {
            Ok(item) => Ok(Finished { operation: read(item)?, completed: true }),
            Err(StoreError::Conflict) => Ok(Finished { operation: read(self.get(op_key).await?)?, completed: false }),
            Err(e) => Err(e),
        }
    }

    /// Runs the transaction `items`, again (with backoff) while DynamoDB cancels it for a
    /// conflict with another transaction or for throttling. `Conflict` when the condition of
    /// item `conflict_at` fails; `Unexpected` when another item's condition fails.
    async fn transact(&self, items: Vec<TransactWriteItem>, conflict_at: usize, what: &str) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let written = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let Err(err) = written else { return Ok(()) };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
                return Err(store_error("TransactWriteItems", err));
            };
            let codes: Vec<&str> = cancel.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
            if codes.get(conflict_at) == Some(&"ConditionalCheckFailed") {
                return Err(StoreError::Conflict);
            }
            if codes.contains(&"ConditionalCheckFailed") {
                return Err(StoreError::Unexpected(format!("{what}: a condition failed ({codes:?})")));
            }
            let transient = codes.iter().any(|c| matches!(*c, "TransactionConflict" | "ThrottlingError"));
            if !transient || attempt >= TRANSACTION_ATTEMPTS {
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB TransactWriteItems cancelled ({what}): {}",
                    DisplayErrorContext(&err)
                )));
            }
            let ceiling = 20u64 << attempt.min(6);
            let pause = rand::Rng::gen_range(&mut rand::thread_rng(), ceiling / 2..=ceiling);
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
    }

    async fn update(
        &self,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        what: &str,
    ) -> Result<Option<Item>, StoreError> {
        let out = request.table_name(&self.table).send().await.map_err(|e| store_error(what, e))?;
        Ok(out.attributes)
    }
}

#[async_trait]
impl PushReader for DynamoPushStore {
    /// Not kept on DynamoDB yet: summing the open operations would read every operation of the
    /// last 7 days on each send. A per-account counter belongs with the write path of issue 11.
    async fn live_notifications(&self, _account: &AccountId) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    async fn get_notification(
        &self,
        account: &AccountId,
        id: NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        self.get(notification_key(account, id)).await?.map(read_notification).transpose()
    }

    async fn list_notifications(
        &self,
        account: &AccountId,
        filter: &NotificationFilter,
        page: &PageRequest,
    ) -> Result<Page<Notification>, StoreError> {
        let cursor = parse_cursor(&page.cursor, |c| NotificationId::parse(c).ok())?;
        let (low, high) = NotificationId::range_of(filter.operation_id);
        let high = cursor.map_or(high, |c| c.min(high));
        if let Some((k, v)) = filter.tags.first() {
            return self.list_tagged(account, tag_pk(account, k, v), filter, cursor, page.size).await;
        }
        let Some(user) = &filter.user else {
            // An operation's notifications are exactly its own id range.
            let (low, high) = match filter.operation_id {
                Some(op) => (NotificationId::derive(op, 0), high.min(NotificationId::derive(op, u32::MAX))),
                None => (low, high),
            };
            return self.merged_page(account, (low, high), cursor, |n| filter.matches(n), page.size).await;
        };
        let range = Range {
            index: Some(tables::BY_USER.name),
            partition_attr: tables::BY_USER.key.partition,
            partition: user_pk(account, user),
            sort_attr: tables::BY_USER.key.sort,
            low: low.to_string(),
            high: high.to_string(),
        };
        let skip = cursor.map(|c| c.to_string());
        let id_of = |n: &Notification| n.id.to_string();
        self.query_page(range, skip, read_notification, id_of, |n| filter.matches(n), page.size).await
    }

    async fn get_notifications(
        &self,
        account: &AccountId,
        ids: &[NotificationId],
    ) -> Result<Vec<Notification>, StoreError> {
        self.batch_get_notifications(account, ids).await?.into_iter().map(read_notification).collect()
    }

    async fn get_operation(&self, account: &AccountId, id: OperationId) -> Result<Option<Operation>, StoreError> {
        self.get(key(operation_pk(account), id)).await?.map(read_operation).transpose()
    }

    async fn list_operations(
        &self,
        account: &AccountId,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, StoreError> {
        let cursor = parse_cursor(&page.cursor, |c| OperationId::parse(c).ok())?;
        let range = Range {
            index: None,
            partition_attr: tables::PUSH_KEY.partition,
            partition: operation_pk(account),
            sort_attr: tables::PUSH_KEY.sort,
            low: OperationId::min().to_string(),
            high: cursor.unwrap_or(OperationId::max()).to_string(),
        };
        let keep = |op: &Operation| filter.matches(op.status, op.created_at);
        let skip = cursor.map(|c| c.to_string());
        self.query_page(range, skip, read_operation, |op: &Operation| op.id.to_string(), keep, page.size).await
    }
}

#[async_trait]
impl PushWriter for DynamoPushStore {
    async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        let item = operation_item(op)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    async fn discard_operation(&self, account: &AccountId, id: OperationId) -> Result<(), StoreError> {
        delete_item(&self.client, &self.table, key(operation_pk(account), id), "DeleteItem").await
    }

    async fn create_notification(&self, n: Notification) -> Result<NotificationStatus, StoreError> {
        let item = notification_item(&n)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let stored = match result {
            Ok(_) => n,
            Err(err) => {
                let Some(PutItemError::ConditionalCheckFailedException(lost)) = err.as_service_error() else {
                    return Err(store_error("PutItem", err));
                };
                let stored = match lost.item() {
                    Some(old) => Some(old.clone()),
                    None => self.get(notification_key(&n.account_id, n.id)).await?,
                };
                let stored = stored.ok_or(StoreError::Conflict)?;
                if matches!(stored.get(CHUNK_COUNTED), Some(AttributeValue::Bool(true))) {
                    // Stored with its index by its chunk's holder.
                    return Ok(read_notification(stored)?.status);
                }
                read_notification(stored)?
            }
        };
        // Also after a lost condition: a redelivery repairs an index write that was interrupted.
        self.index_tags(&stored).await?;
        Ok(stored.status)
    }

    async fn claim(
        &self,
        account: &AccountId,
        id: NotificationId,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .set_key(Some(notification_key(account, id)))
            .update_expression("SET claimUntil = :until")
            .condition_expression(
                "attribute_exists(pk) AND #status = :queued AND (attribute_not_exists(claimUntil) OR claimUntil <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":queued", s(NotificationStatus::Queued.as_str()))
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()));
        self.update(request, "UpdateItem (claim)").await?;
        Ok(())
    }

    async fn release(&self, account: &AccountId, id: NotificationId) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .set_key(Some(notification_key(account, id)))
            .update_expression("REMOVE claimUntil")
            .condition_expression("attribute_exists(pk)");
        match self.update(request, "UpdateItem (release)").await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn finish(&self, account: &AccountId, id: NotificationId, finish: Finish) -> Result<Finished, StoreError> {
        let item = self.get(notification_key(account, id)).await?.ok_or(StoreError::Conflict)?;
        let counted_with_chunk = matches!(item.get(CHUNK_COUNTED), Some(AttributeValue::Bool(true)));
        let stored = read_notification(item)?;
        let from = stored.status;
        let to = from.transition(finish.status).map_err(|_| StoreError::Conflict)?;
        let at = timestamp_value(finish.at)?;
        let condition = if finish.unclaimed {
            "#status = :was AND (attribute_not_exists(claimUntil) OR claimUntil <= :now)"
        } else {
            "#status = :was"
        };
        let mut notification = Update::builder()
            .table_name(&self.table)
            .set_key(Some(notification_key(account, id)))
            .update_expression(
                "SET #status = :to, #from = :from, #error = :error, updated_at = :at, completed_at = :at \
                 REMOVE claimUntil",
            )
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#from", "from")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":was", s(from.as_str()))
            .expression_attribute_values(":from", senders_value(&finish.from)?)
            .expression_attribute_values(":error", error_value(finish.error.as_ref())?)
            .expression_attribute_values(":at", at.clone());
        if finish.unclaimed {
            notification = notification.expression_attribute_values(":now", n(finish.at.timestamp_millis()));
        }
        if counted_with_chunk {
            // Its chunk counts it: the notification alone, conditionally as in the transaction.
            let change = notification;
            let mut request = self
                .client
                .update_item()
                .set_key(Some(notification_key(account, id)))
                .update_expression(
                    "SET #status = :to, #from = :from, #error = :error, updated_at = :at, completed_at = :at \
                     REMOVE claimUntil",
                )
                .condition_expression(condition);
            let built = change.build().map_err(build_error)?;
            request = request
                .set_expression_attribute_names(built.expression_attribute_names().cloned())
                .set_expression_attribute_values(built.expression_attribute_values().cloned());
            self.update(request, "UpdateItem (finish)").await?;
            let op = self.get(key(operation_pk(account), stored.operation_id)).await?;
            let op = op.ok_or_else(|| StoreError::Unexpected("notification without its operation".into()))?;
            return Ok(Finished { operation: read_operation(op)?, completed: false });
        }
        let notification = notification.build().map_err(build_error)?;
        self.move_one(notification, account, stored.operation_id, from, to, at).await?;
        self.complete_if_done(account, stored.operation_id).await
    }

    async fn lease_chunk(
        &self,
        account: &AccountId,
        chunk: ChunkKey,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Lease, StoreError> {
        let created = Timestamp::from_timestamp_millis(chunk.operation.timestamp_ms() as i64).unwrap_or(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(chunk_key(account, chunk)))
            .update_expression("SET holder = :holder, leaseUntil = :until, expiresAt = :expires")
            .condition_expression(
                "attribute_not_exists(counted) AND \
                 (attribute_not_exists(leaseUntil) OR leaseUntil <= :now OR holder = :holder)",
            )
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":expires", n(expires_at(&created)))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                Ok(Lease::Held { fresh: old.is_empty(), counted: counted_tally(&old) })
            }
            Err(err) => {
                let Some(UpdateItemError::ConditionalCheckFailedException(lost)) = err.as_service_error() else {
                    return Err(store_error("UpdateItem (lease)", err));
                };
                let old = match lost.item() {
                    Some(old) => Some(old.clone()),
                    None => self.get(chunk_key(account, chunk)).await?,
                };
                let old = old.unwrap_or_default();
                if old.contains_key("counted") {
                    return Ok(Lease::Counted);
                }
                let until = match old.get("leaseUntil") {
                    Some(AttributeValue::N(ms)) => ms.parse().ok().and_then(Timestamp::from_timestamp_millis),
                    _ => None,
                };
                Ok(Lease::Busy { until: until.unwrap_or(now) })
            }
        }
    }

    async fn release_chunk(&self, account: &AccountId, chunk: ChunkKey, holder: &str) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .set_key(Some(chunk_key(account, chunk)))
            .update_expression("SET leaseUntil = :zero")
            .condition_expression("holder = :holder AND attribute_not_exists(counted)")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":zero", n(0));
        match self.update(request, "UpdateItem (release lease)").await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn store_decided(&self, notifications: Vec<Notification>, tags_by_operation: bool) -> Result<(), StoreError> {
        let mut writes = Vec::new();
        for notification in &notifications {
            let mut item = notification_item(notification)?;
            item.insert(CHUNK_COUNTED.to_owned(), AttributeValue::Bool(true));
            let tags = if tags_by_operation { Vec::new() } else { tag_index_items(notification) };
            for item in std::iter::once(item).chain(tags) {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
        }
        self.batch_write(writes).await
    }

    async fn index_operation_tags(
        &self,
        account: &AccountId,
        operation: OperationId,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let created = Timestamp::from_timestamp_millis(operation.timestamp_ms() as i64)
            .ok_or_else(|| StoreError::Unexpected("an operation id out of the time range".into()))?;
        let writes = tags
            .iter()
            .map(|(k, v)| {
                let mut item = key(tag_pk(account, k, v), operation_tag_sort_key(operation));
                item.insert(TAGGED_OPERATION.to_owned(), s(operation.to_string()));
                item.insert(tables::TTL_ATTRIBUTE.to_owned(), n(expires_at(&created)));
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_write(writes).await
    }

    async fn count_chunk(
        &self,
        account: &AccountId,
        chunk: ChunkKey,
        holder: &str,
        count: ChunkCount,
        at: Timestamp,
    ) -> Result<Finished, StoreError> {
        let at = timestamp_value(at)?;
        let ChunkCount { before, after, last } = count;
        let expression = if last {
            "SET notifications = :n, sent = :sent, failed = :failed, canceled = :canceled, counted = :at"
        } else {
            "SET notifications = :n, sent = :sent, failed = :failed, canceled = :canceled"
        };
        let mut lease = Update::builder()
            .table_name(&self.table)
            .set_key(Some(chunk_key(account, chunk)))
            .update_expression(expression)
            .condition_expression("holder = :holder AND attribute_not_exists(counted)")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":n", n(after.notifications))
            .expression_attribute_values(":sent", n(after.sent))
            .expression_attribute_values(":failed", n(after.failed))
            .expression_attribute_values(":canceled", n(after.canceled));
        if last {
            lease = lease.expression_attribute_values(":at", at.clone());
        }
        let lease = lease.build().map_err(build_error)?;
        let counters = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(operation_pk(account), chunk.operation)))
            .update_expression("SET updated_at = :at ADD queued :minus, sent :sent, failed :failed, canceled :canceled")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", at)
            .expression_attribute_values(":minus", delta(before.notifications, after.notifications)?)
            .expression_attribute_values(":sent", delta(after.sent, before.sent)?)
            .expression_attribute_values(":failed", delta(after.failed, before.failed)?)
            .expression_attribute_values(":canceled", delta(after.canceled, before.canceled)?)
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().update(lease).build(),
            TransactWriteItem::builder().update(counters).build(),
        ];
        self.transact(items, 0, "count a chunk").await?;
        if !last {
            let op = self.get(key(operation_pk(account), chunk.operation)).await?;
            let op = op.ok_or_else(|| StoreError::Unexpected("chunk without its operation".into()))?;
            return Ok(Finished { operation: read_operation(op)?, completed: false });
        }
        self.complete_if_done(account, chunk.operation).await
    }

    async fn cancel_operation(
        &self,
        account: &AccountId,
        id: OperationId,
        at: Timestamp,
    ) -> Result<Option<Operation>, StoreError> {
        let request = self
            .client
            .update_item()
            .set_key(Some(key(operation_pk(account), id)))
            .update_expression("SET #status = :canceled, updated_at = :at")
            .condition_expression(
                "attribute_exists(pk) AND #status IN (:scheduled, :processing) AND (queued > :zero OR scheduled > :zero)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":canceled", s(OperationStatus::Canceled.as_str()))
            .expression_attribute_values(":scheduled", s(OperationStatus::Scheduled.as_str()))
            .expression_attribute_values(":processing", s(OperationStatus::Processing.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":at", timestamp_value(at)?)
            .return_values(ReturnValue::AllNew);
        match self.update(request, "UpdateItem (cancel)").await {
            Ok(item) => {
                let item = item.ok_or_else(|| StoreError::Unexpected("UpdateItem returned no operation".into()))?;
                Ok(Some(read_operation(item)?))
            }
            Err(StoreError::Conflict) => match self.get(key(operation_pk(account), id)).await? {
                None => Ok(None),
                Some(_) => Err(StoreError::Conflict),
            },
            Err(e) => Err(e),
        }
    }

    async fn promote(&self, account: &AccountId, id: NotificationId, at: Timestamp) -> Result<bool, StoreError> {
        let stored = read_notification(self.get(notification_key(account, id)).await?.ok_or(StoreError::Conflict)?)?;
        if stored.status != NotificationStatus::Scheduled {
            return Err(StoreError::Conflict);
        }
        let at_value = timestamp_value(at)?;
        let notification = Update::builder()
            .table_name(&self.table)
            .set_key(Some(notification_key(account, id)))
            .update_expression("SET #status = :queued, updated_at = :at")
            .condition_expression("#status = :scheduled")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":queued", s(NotificationStatus::Queued.as_str()))
            .expression_attribute_values(":scheduled", s(NotificationStatus::Scheduled.as_str()))
            .expression_attribute_values(":at", at_value.clone())
            .build()
            .map_err(build_error)?;
        self.move_one(
            notification,
            account,
            stored.operation_id,
            NotificationStatus::Scheduled,
            NotificationStatus::Queued,
            at_value,
        )
        .await?;
        let start = self
            .client
            .update_item()
            .set_key(Some(key(operation_pk(account), stored.operation_id)))
            .update_expression("SET #status = :processing")
            .condition_expression("#status = :scheduled")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(OperationStatus::Processing.as_str()))
            .expression_attribute_values(":scheduled", s(OperationStatus::Scheduled.as_str()));
        match self.update(start, "UpdateItem (start)").await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put_scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: u8,
        chunks: &[Chunk],
    ) -> Result<(), StoreError> {
        let writes = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let body = serde_json::to_string(chunk).map_err(|e| StoreError::Unexpected(e.to_string()))?;
                let expires = chunk.scheduled_for.unwrap_or(chunk.created_at);
                let item = Item::from([
                    ("pk".to_owned(), s(scheduled_pk(account, operation))),
                    ("sk".to_owned(), s(format!("{instant:02}#{i:05}"))),
                    ("chunk".to_owned(), s(body)),
                    ("expiresAt".to_owned(), n(expires_at(&expires))),
                ]);
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_write(writes).await
    }

    async fn scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: u8,
    ) -> Result<Vec<Chunk>, StoreError> {
        let items = self.query_prefix(scheduled_pk(account, operation), &format!("{instant:02}#")).await?;
        items
            .into_iter()
            .map(|item| match item.get("chunk") {
                Some(AttributeValue::S(body)) => serde_json::from_str(body)
                    .map_err(|e| StoreError::Unexpected(format!("a stored scheduled chunk is unreadable: {e}"))),
                _ => Err(StoreError::Unexpected("a stored scheduled chunk has no body".into())),
            })
            .collect()
    }

    async fn delete_scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: Option<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let prefix = instant.map(|i| format!("{i:02}#")).unwrap_or_default();
        let pk = scheduled_pk(account, operation);
        let items = self.query_prefix(pk.clone(), &prefix).await?;
        let mut instants = Vec::new();
        let mut writes = Vec::new();
        for item in &items {
            let Some(sk) = sort_key(item) else { continue };
            if let Some(i) = sk.get(..2).and_then(|i| i.parse::<u8>().ok())
                && !instants.contains(&i)
            {
                instants.push(i);
            }
            let delete = DeleteRequest::builder().set_key(Some(key(pk.clone(), sk))).build().map_err(build_error)?;
            writes.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.batch_write(writes).await?;
        Ok(instants)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn an_operations_notifications_go_round_every_shard_evenly() {
        let op = OperationId::from_ulid(ulid::Ulid::from_parts(1_780_000_000_000, 42));
        let mut per_shard = vec![0u32; NOTIFICATION_SHARDS as usize];
        for slot in 0..NOTIFICATION_SHARDS * 100 {
            per_shard[shard_of(NotificationId::derive(op, slot)) as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| *n == 100), "{per_shard:?}");
    }

    #[test]
    fn the_single_notifications_of_many_small_sends_spread_over_the_shards() {
        let mut per_shard = vec![0u32; NOTIFICATION_SHARDS as usize];
        for i in 0..NOTIFICATION_SHARDS * 100 {
            let op = OperationId::from_ulid(ulid::Ulid::from_parts(1_780_000_000_000 + u64::from(i), u128::from(i)));
            per_shard[shard_of(NotificationId::derive(op, 0)) as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| (50..=150).contains(n)), "{per_shard:?}");
    }

    #[test]
    fn a_notifications_partition_is_its_accounts_shard_named_by_its_id_alone() {
        let account = AccountId::from_bytes([7; 16]);
        let op = OperationId::from_ulid(ulid::Ulid::from_parts(1_780_000_000_000, 42));
        let id = NotificationId::derive(op, 5);
        let partition = notification_pk(&account, id);
        assert_eq!(partition, format!("NOTIFICATION#{account}#{:02}", shard_of(id)));
        assert!(notification_partitions(&account).contains(&partition));
        assert_eq!(notification_partitions(&account).len(), NOTIFICATION_SHARDS as usize);
    }

    #[test]
    fn a_tag_index_partition_is_the_account_then_the_length_prefixed_key_and_the_value() {
        let account = AccountId::from_bytes([7; 16]);
        assert_eq!(tag_pk(&account, "flight", "PG1"), format!("TAG#{account}#6:flight=PG1"));
    }

    #[test]
    fn tags_that_differ_never_share_an_index_partition_whatever_separators_they_hold() {
        let account = AccountId::from_bytes([7; 16]);
        let tags = [
            ("a", "b=c"),
            ("a=b", "c"),
            ("a", "b:c"),
            ("a:b", "c"),
            ("a#b", "c"),
            ("a", "b#c"),
            ("1:a", "b"),
            ("a", "1:a=b"),
            ("3:a", "b"),
            ("a", "3:a=b"),
            ("a", ""),
            ("a=", ""),
        ];
        let partitions: HashSet<_> = tags.iter().map(|(k, v)| tag_pk(&account, k, v)).collect();
        assert_eq!(partitions.len(), tags.len());
    }
}
