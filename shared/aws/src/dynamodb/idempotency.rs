//! Idempotency records of POSTs in the config table: the [`IdempotencyStore`] port, with the
//! same semantics as `pushgate_memory::MemoryIdempotency` (the contract suite in `tests/` runs
//! on both).
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | claim | `IDEMPOTENCY#{account}#{sha256(key) hex}` | `IDEMPOTENCY` | `fingerprint` (binary: SHA-256 of method, path, body), `leaseUntil` (number, epoch ms), `expiresAt` (number, epoch s: the TTL attribute) |
//! | answer | same | same | the claim's attributes + `status` (number), `body` (string), `location` (string, when the answer had one) |
//!
//! - The key is hashed into the partition key: a client's key (≤ 255 bytes of its choosing)
//!   never becomes a key of its own shape, and every record's key has the same length.
//! - `begin` is one conditional `PutItem` (`attribute_not_exists(pk) OR expiresAt < :now OR
//!   (attribute_not_exists(#status) AND leaseUntil < :now_ms)`); a lost condition returns the
//!   record that won (`ReturnValuesOnConditionCheckFailure = ALL_OLD`, read consistently if the
//!   error carries none), which says replay, in progress or mismatch. `finish` is a `PutItem`,
//!   `abandon` a `DeleteItem` conditioned on the claim still being unanswered and ours.
//! - Cost: a POST with a key writes 2 items (claim, answer; ~1 WRU each), a replay reads 1.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use sha2::{Digest, Sha256};

use super::items::malformed;
use super::{Item, get_item, key, n, s, store_error};
use pushgate_core::app::ports::{Begin, IdempotencyStore, Replay, StoreError};
use pushgate_core::domain::{AccountId, Timestamp};

/// Idempotency records in the config table (see the module docs).
#[derive(Clone, Debug)]
pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    /// Uses the config table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn record_key(account: &AccountId, idempotency_key: &str) -> Item {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    key(format!("IDEMPOTENCY#{account}#{hex}"), "IDEMPOTENCY")
}

fn claim_item(
    account: &AccountId,
    idempotency_key: &str,
    fingerprint: [u8; 32],
    lease_until: Timestamp,
    expires: Timestamp,
) -> Item {
    let mut item = record_key(account, idempotency_key);
    item.insert("fingerprint".to_owned(), AttributeValue::B(Blob::new(fingerprint)));
    item.insert("leaseUntil".to_owned(), n(lease_until.timestamp_millis()));
    item.insert("expiresAt".to_owned(), n(expires.timestamp()));
    item
}

/// What a record that won the condition says to a request with `fingerprint`.
fn classify(item: &Item, fingerprint: [u8; 32]) -> Result<Begin, StoreError> {
    let stored = match item.get("fingerprint") {
        Some(AttributeValue::B(b)) => b.as_ref(),
        _ => return Err(malformed("an idempotency record without `fingerprint`")),
    };
    if stored != fingerprint.as_slice() {
        return Ok(Begin::Mismatch);
    }
    let Some(AttributeValue::N(status)) = item.get("status") else { return Ok(Begin::InProgress) };
    let status = status.parse().map_err(|_| malformed("`status` is not an HTTP status"))?;
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let body = text("body").ok_or_else(|| malformed("an answered idempotency record without `body`"))?;
    Ok(Begin::Replay(Replay { status, location: text("location"), body }))
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn begin(
        &self,
        account: &AccountId,
        idempotency_key: &str,
        fingerprint: [u8; 32],
        now: Timestamp,
        lease_until: Timestamp,
        expires: Timestamp,
    ) -> Result<Begin, StoreError> {
        let item = claim_item(account, idempotency_key, fingerprint, lease_until, expires);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR expiresAt < :now OR (attribute_not_exists(#status) AND leaseUntil < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Begin::Started),
            Err(err) => err,
        };
        let Some(PutItemError::ConditionalCheckFailedException(lost)) = err.as_service_error() else {
            return Err(store_error("PutItem (idempotency claim)", err));
        };
        let winner = match lost.item() {
            Some(old) => Some(old.clone()),
            None => get_item(&self.client, &self.table, record_key(account, idempotency_key)).await?,
        };
        match winner {
            Some(winner) => classify(&winner, fingerprint),
            // Gone between the write and the read (abandoned): the caller polls again.
            None => Ok(Begin::InProgress),
        }
    }

    async fn finish(
        &self,
        account: &AccountId,
        idempotency_key: &str,
        fingerprint: [u8; 32],
        replay: &Replay,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        let mut item = claim_item(account, idempotency_key, fingerprint, expires, expires);
        item.insert("status".to_owned(), n(replay.status));
        item.insert("body".to_owned(), s(replay.body.clone()));
        if let Some(location) = &replay.location {
            item.insert("location".to_owned(), s(location.clone()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (idempotency answer)", e))?;
        Ok(())
    }

    async fn abandon(
        &self,
        account: &AccountId,
        idempotency_key: &str,
        fingerprint: [u8; 32],
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(record_key(account, idempotency_key)))
            .condition_expression("attribute_not_exists(#status) AND fingerprint = :fingerprint")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":fingerprint", AttributeValue::B(Blob::new(fingerprint)))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem (idempotency claim)", e));
        match result {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Notifications accepted per account and minute, in the config table: one item per account
/// and minute (`BUDGET#{account}` / the minute's epoch second, `notifications` a number,
/// `expiresAt` one hour later for TTL), moved by one conditional `UpdateItem` per send
/// (`ADD notifications :n` if `attribute_not_exists(notifications) OR notifications <= :room`,
/// where `:room` = the limit − n). One key per account: DynamoDB takes 1,000 writes a second
/// on a key, so up to 1,000 sends a second per account (each up to 10,000 recipients).
#[derive(Clone, Debug)]
pub struct DynamoSendBudget {
    client: Client,
    table: String,
}

impl DynamoSendBudget {
    /// Uses the config table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[async_trait]
impl pushgate_core::app::ports::SendBudget for DynamoSendBudget {
    async fn admit(
        &self,
        account: &AccountId,
        at: Timestamp,
        notifications: u64,
        per_minute: u64,
    ) -> Result<bool, StoreError> {
        let Some(room) = per_minute.checked_sub(notifications) else { return Ok(false) };
        let minute = at.timestamp().div_euclid(60) * 60;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("BUDGET#{account}"), minute)))
            .update_expression("ADD notifications :n SET expiresAt = :expires")
            .condition_expression("attribute_not_exists(notifications) OR notifications <= :room")
            .expression_attribute_values(":n", n(notifications))
            .expression_attribute_values(":room", n(room))
            .expression_attribute_values(":expires", n(minute + 3600))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem (send budget)", e));
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
