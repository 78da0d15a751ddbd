//! Single-item helpers every DynamoDB store shares: the item type, attribute values, keys, the
//! retention attribute, and the one mapping of SDK errors to store errors.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use pushgate_core::app::ports::StoreError;
use pushgate_core::domain::{RETENTION, Timestamp};

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Service error codes that mean "try again later".
const RETRYABLE: [&str; 6] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// The longest partition key DynamoDB accepts (bytes): nothing is stored under a longer one.
pub(crate) const MAX_PARTITION_KEY_BYTES: usize = 2048;

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

/// Reads one item consistently (every store's reads are `ConsistentRead`).
pub(crate) async fn get_item(client: &Client, table: &str, key: Item) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("GetItem", e))?;
    Ok(out.item)
}

/// Deletes one item (a missing one is fine); `what` names the call in errors.
pub(crate) async fn delete_item(client: &Client, table: &str, key: Item, what: &str) -> Result<(), StoreError> {
    client.delete_item().table_name(table).set_key(Some(key)).send().await.map_err(|e| store_error(what, e))?;
    Ok(())
}

pub(crate) fn codec_error(e: serde_dynamo::Error) -> StoreError {
    StoreError::Unexpected(format!("cannot map a DynamoDB item: {e}"))
}

/// An item that does not hold what its kind must (a missing or mistyped attribute, an invalid
/// id, status or instant).
pub(crate) fn malformed(what: &str) -> StoreError {
    StoreError::Unexpected(format!("malformed DynamoDB item: {what}"))
}

pub(crate) fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unexpected(format!("invalid DynamoDB request: {e}"))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: String, sk: impl ToString) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk.to_string()))])
}

pub(crate) fn expires_at(created: &Timestamp) -> i64 {
    (*created + RETENTION).timestamp()
}
