//! Notifications and operations on DynamoDB: the [`PushReader`]/[`PushWriter`] ports, with the
//! same semantics as `adapters::memory::MemoryPushStore` (the contract suite in `tests/` runs the
//! same checks against both).
//!
//! # Table design (one table, see [`tables`])
//!
//! | item | `pk` | `sk` | `gsi1pk` / `gsi1sk` (`byUser`) |
//! |---|---|---|---|
//! | notification | `NOTIFICATION#{account}` | notification id | `USER#{account}#{user}` / notification id, only when addressed to a User |
//! | operation | `OPERATION#{account}` | operation id | — |
//!
//! - Every key starts with the account id: another account's record is simply not found.
//! - Ids are `prefix` + lowercase ULID; the Crockford alphabet is in ASCII order and the length
//!   is fixed, so the string order of `sk` is time order. Lists are Queries on one partition with
//!   `ScanIndexForward = false` (newest first) — never Scans.
//! - `operationId` filter: `NotificationId::derive` puts every notification of an operation at the
//!   operation's ULID timestamp, so the operation's notifications are the `sk` range
//!   `BETWEEN id(ts, 0) AND id(ts, max)` of the account's partition (other operations of the same
//!   millisecond are filtered out on the item). No index needed.
//! - `user` filter: the sparse `byUser` GSI. GSIs are eventually consistent on AWS (moto is
//!   consistent); base-table reads and Queries are `ConsistentRead`, so a writer sees its writes.
//! - `expiresAt` (number, epoch seconds) = `createdAt` + 7 days on every item: the TTL attribute.
//! - Items are the serde form of the domain records (`serde_dynamo`) plus the key attributes;
//!   operations store their counters as top-level numbers so `finish` can `ADD` to them.
//!   A claim is a `claimUntil` number (epoch ms) on the notification item.
//!
//! # Paging and filters
//!
//! The cursor is the id of the last returned item (the app layer signs it). A page Queries
//! `sk BETWEEN low AND cursor` (skipping the cursor item itself), keeps going with
//! `ExclusiveStartKey` until `size` matching items plus one more are found or the range is
//! exhausted, so `pageSize` is honoured exactly and `next` is `None` on the last page. Filters
//! that are not keys (status, provider, dates, tags, and operationId within its millisecond) are
//! applied in code on the decoded item, with the same predicate as the memory store. The `tags`
//! filter reads every candidate item for now; tag index items (`account#key:value`) are a later step.
//!
//! # Writes
//!
//! - `create_operation`: `PutItem` with `attribute_not_exists(pk)` → `Conflict` if it exists.
//! - `create_notification`: the same, with `ReturnValuesOnConditionCheckFailure = ALL_OLD`; on a
//!   lost condition the stored status is returned (read consistently if the error carries no item).
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
//! `Unavailable`; anything else → `Unexpected`. No SDK type leaves `adapters::aws`.

pub mod config;
pub mod tables;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};

pub use config::{DynamoAccountStore, DynamoCredentialStore, DynamoTokenCache};
pub use tables::{TableDefinition, create_tables, table_definitions};

use crate::adapters::parse_cursor;
use crate::app::ports::{
    Finish, NotificationFilter, OperationFilter, Page, PageRequest, PushReader, PushWriter, StoreError,
};
use crate::domain::{
    AccountId, Notification, NotificationId, NotificationStatus, Operation, OperationId, OperationStatus, RETENTION,
    Stats, Timestamp, UserId,
};

type Item = HashMap<String, AttributeValue>;

/// Service error codes that mean "try again later".
const RETRYABLE: [&str; 6] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// Maps an SDK error to what the ports can say about it.
pub(crate) fn store_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = || format!("DynamoDB {what} failed: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable(message()),
        SdkError::ResponseError(ctx) if ctx.raw().status().is_server_error() => StoreError::Unavailable(message()),
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            if code == "ConditionalCheckFailedException" {
                StoreError::Conflict
            } else if RETRYABLE.contains(&code) || ctx.raw().status().is_server_error() {
                StoreError::Unavailable(message())
            } else {
                StoreError::Unexpected(message())
            }
        }
        _ => StoreError::Unexpected(message()),
    }
}

fn codec_error(e: serde_dynamo::Error) -> StoreError {
    StoreError::Unexpected(format!("cannot map a DynamoDB item: {e}"))
}

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unexpected(format!("invalid DynamoDB request: {e}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn notification_pk(account: &AccountId) -> String {
    format!("NOTIFICATION#{account}")
}

fn operation_pk(account: &AccountId) -> String {
    format!("OPERATION#{account}")
}

fn user_pk(account: &AccountId, user: &UserId) -> String {
    format!("USER#{account}#{user}")
}

fn key(pk: String, sk: impl ToString) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk.to_string()))])
}

fn expires_at(created: &Timestamp) -> i64 {
    (*created + RETENTION).timestamp()
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

fn notification_item(n: &Notification) -> Result<Item, StoreError> {
    let mut item: Item = to_item(n).map_err(codec_error)?;
    let keys = NotificationKeys {
        pk: notification_pk(&n.account_id),
        sk: n.id.to_string(),
        gsi1pk: n.to.user_id.as_ref().map(|u| user_pk(&n.account_id, u)),
        gsi1sk: n.to.user_id.as_ref().map(|_| n.id.to_string()),
        expires_at: expires_at(&n.created_at),
    };
    item.extend(to_item::<_>(keys).map_err(codec_error)?);
    Ok(item)
}

/// An operation item: the record with its counters at the top level (so `ADD` reaches them).
#[derive(Serialize, Deserialize)]
struct OperationRecord {
    pk: String,
    sk: String,
    #[serde(rename = "expiresAt")]
    expires_at: i64,
    id: OperationId,
    account_id: AccountId,
    status: OperationStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    total: u64,
    recipients: u64,
    unaddressable: u64,
    scheduled: u64,
    queued: u64,
    sent: u64,
    failed: u64,
    canceled: u64,
}

impl From<&Operation> for OperationRecord {
    fn from(op: &Operation) -> Self {
        let st = op.stats;
        Self {
            pk: operation_pk(&op.account_id),
            sk: op.id.to_string(),
            expires_at: expires_at(&op.created_at),
            id: op.id,
            account_id: op.account_id.clone(),
            status: op.status,
            created_at: op.created_at,
            updated_at: op.updated_at,
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

impl From<OperationRecord> for Operation {
    fn from(r: OperationRecord) -> Self {
        Self {
            id: r.id,
            account_id: r.account_id,
            status: r.status,
            stats: Stats {
                total: r.total,
                recipients: r.recipients,
                unaddressable: r.unaddressable,
                scheduled: r.scheduled,
                queued: r.queued,
                sent: r.sent,
                failed: r.failed,
                canceled: r.canceled,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn decode<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    from_item(item).map_err(codec_error)
}

/// One Query range: the partition and the inclusive `sk` bounds.
struct Range {
    index: Option<&'static str>,
    partition_attr: &'static str,
    partition: String,
    sort_attr: &'static str,
    low: String,
    high: String,
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
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Up to `size` items of `range` newest first that `keep` accepts, skipping the cursor item
    /// `skip`, and the cursor of the next page (`None` when nothing more matches).
    async fn query_page<T: DeserializeOwned>(
        &self,
        range: Range,
        skip: Option<String>,
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
                let item: T = decode(raw)?;
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
    async fn get_notification(
        &self,
        account: &AccountId,
        id: NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        self.get(key(notification_pk(account), id)).await?.map(decode).transpose()
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
        let (index, partition_attr, partition, sort_attr) = match &filter.user {
            Some(user) => (
                Some(tables::BY_USER.name),
                tables::BY_USER.key.partition,
                user_pk(account, user),
                tables::BY_USER.key.sort,
            ),
            None => (None, tables::PUSH_KEY.partition, notification_pk(account), tables::PUSH_KEY.sort),
        };
        let range = Range { index, partition_attr, partition, sort_attr, low: low.to_string(), high: high.to_string() };
        let skip = cursor.map(|c| c.to_string());
        self.query_page(range, skip, |n: &Notification| n.id.to_string(), |n| filter.matches(n), page.size).await
    }

    async fn get_operation(&self, account: &AccountId, id: OperationId) -> Result<Option<Operation>, StoreError> {
        Ok(self.get(key(operation_pk(account), id)).await?.map(decode::<OperationRecord>).transpose()?.map(Into::into))
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
        let keep = |op: &OperationRecord| filter.matches(op.status, op.created_at);
        let skip = cursor.map(|c| c.to_string());
        let page = self.query_page(range, skip, |op: &OperationRecord| op.id.to_string(), keep, page.size).await?;
        Ok(Page { items: page.items.into_iter().map(Into::into).collect(), next: page.next })
    }
}

#[async_trait]
impl PushWriter for DynamoPushStore {
    async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        let item: Item = to_item(OperationRecord::from(op)).map_err(codec_error)?;
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
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(operation_pk(account), id)))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
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
        let err = match result {
            Ok(_) => return Ok(n.status),
            Err(err) => err,
        };
        let Some(PutItemError::ConditionalCheckFailedException(lost)) = err.as_service_error() else {
            return Err(store_error("PutItem", err));
        };
        let stored = match lost.item() {
            Some(old) => Some(old.clone()),
            None => self.get(key(notification_pk(&n.account_id), n.id)).await?,
        };
        let stored: Notification = decode(stored.ok_or(StoreError::Conflict)?)?;
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
            .set_key(Some(key(notification_pk(account), id)))
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
            .set_key(Some(key(notification_pk(account), id)))
            .update_expression("REMOVE claimUntil")
            .condition_expression("attribute_exists(pk)");
        match self.update(request, "UpdateItem (release)").await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn finish(&self, account: &AccountId, id: NotificationId, finish: Finish) -> Result<Operation, StoreError> {
        let stored: Notification =
            decode(self.get(key(notification_pk(account), id)).await?.ok_or(StoreError::Conflict)?)?;
        let from = stored.status;
        let to = from.transition(finish.status).map_err(|_| StoreError::Conflict)?;
        let at = to_attribute_value(finish.at).map_err(codec_error)?;
        let notification = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(notification_pk(account), id)))
            .update_expression(
                "SET #status = :to, #from = :from, #error = :error, updated_at = :at, completed_at = :at \
                 REMOVE claimUntil",
            )
            .condition_expression("#status = :was")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#from", "from")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":was", s(from.as_str()))
            .expression_attribute_values(":from", to_attribute_value(&finish.from).map_err(codec_error)?)
            .expression_attribute_values(":error", to_attribute_value(&finish.error).map_err(codec_error)?)
            .expression_attribute_values(":at", at.clone())
            .build()
            .map_err(build_error)?;
        let operation = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(operation_pk(account), stored.operation_id)))
            .update_expression("SET updated_at = :at ADD #left :minus, #reached :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#left", counter(from))
            .expression_attribute_names("#reached", counter(to))
            .expression_attribute_values(":at", at)
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(notification).build())
            .transact_items(TransactWriteItem::builder().update(operation).build())
            .send()
            .await;
        if let Err(err) = written {
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() {
                let lost = |i: usize| {
                    cancel.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                };
                if lost(0) {
                    return Err(StoreError::Conflict);
                }
                if lost(1) {
                    return Err(StoreError::Unexpected("notification without its operation".into()));
                }
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB TransactWriteItems cancelled: {}",
                    DisplayErrorContext(&err)
                )));
            }
            return Err(store_error("TransactWriteItems", err));
        }
        let op_key = key(operation_pk(account), stored.operation_id);
        let read = |item: Option<Item>| -> Result<Operation, StoreError> {
            let item = item.ok_or_else(|| StoreError::Unexpected("the operation vanished during finish".into()))?;
            Ok(decode::<OperationRecord>(item)?.into())
        };
        let op = read(self.get(op_key.clone()).await?)?;
        if op.status != OperationStatus::Processing || !op.stats.all_final() {
            return Ok(op);
        }
        let complete = self
            .client
            .update_item()
            .set_key(Some(op_key.clone()))
            .update_expression("SET #status = :completed")
            .condition_expression("#status = :processing AND queued = :zero AND scheduled = :zero")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", s(OperationStatus::Completed.as_str()))
            .expression_attribute_values(":processing", s(OperationStatus::Processing.as_str()))
            .expression_attribute_values(":zero", n(0))
            .return_values(ReturnValue::AllNew);
        match self.update(complete, "UpdateItem (complete)").await {
            Ok(item) => read(item),
            // Someone else completed it (or a counter moved): read what is there now.
            Err(StoreError::Conflict) => read(self.get(op_key).await?),
            Err(e) => Err(e),
        }
    }
}
