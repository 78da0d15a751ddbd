//! Batch calls: `BatchGetItem` and `BatchWriteItem` send what they can and hand back the rest;
//! these helpers split work into calls of the sizes DynamoDB accepts and retry the leftovers.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use futures::{StreamExt, TryStreamExt};

use pushgate_core::app::backoff::Backoff;
use pushgate_core::app::ports::StoreError;

use super::items::{Item, build_error, store_error};

/// Most keys one `BatchGetItem` call may read.
const BATCH_GET_KEYS: usize = 100;
/// Most `BatchGetItem` calls in flight for one read.
const BATCH_GET_CONCURRENCY: usize = 16;
/// Most items one `BatchWriteItem` call may write.
pub(crate) const BATCH_WRITE_ITEMS: usize = 25;

/// How a batch's leftovers are retried: 12 calls in all, pauses from 50 ms doubling up to 2 s
/// (about 12 s in all). DynamoDB leaves items unprocessed when their partition is over its
/// throughput: waiting is how a hot key gets written, and giving up early costs more (the
/// caller's whole batch comes back).
const BATCH_RETRIES: Backoff = Backoff::new(12, Duration::from_millis(50), Duration::from_millis(2_000));

/// Sends `request`, then what each call left unprocessed, as [`BATCH_RETRIES`] says; returns the items all calls returned. `send` makes one call and
/// returns its items and its leftovers (`None` when everything was processed).
pub(crate) async fn until_processed<R, Fut>(
    what: &str,
    request: R,
    send: impl Fn(R) -> Fut,
) -> Result<Vec<Item>, StoreError>
where
    Fut: Future<Output = Result<(Vec<Item>, Option<R>), StoreError>>,
{
    let mut found = Vec::new();
    let mut pending = request;
    for attempt in 0..BATCH_RETRIES.attempts {
        if attempt > 0 {
            tokio::time::sleep(BATCH_RETRIES.wait(attempt)).await;
        }
        let (items, left) = send(pending).await?;
        found.extend(items);
        match left {
            Some(left) => pending = left,
            None => return Ok(found),
        }
    }
    Err(StoreError::Unavailable(format!(
        "DynamoDB {what} left work unprocessed after {} calls",
        BATCH_RETRIES.attempts
    )))
}

/// The items of `table` with the keys `keys` (any number), read consistently with
/// `BatchGetItem` ([`BATCH_GET_KEYS`] per call, [`BATCH_GET_CONCURRENCY`] calls at a time), in any
/// order; missing ones are left out.
pub(crate) async fn batch_get_items(client: &Client, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
    let mut keys = keys;
    let mut batches = Vec::with_capacity(keys.len().div_ceil(BATCH_GET_KEYS));
    while !keys.is_empty() {
        let rest = keys.split_off(keys.len().min(BATCH_GET_KEYS));
        batches.push(std::mem::replace(&mut keys, rest));
    }
    let found: Vec<Vec<Item>> = futures::stream::iter(batches)
        .map(|keys| batch_get_call(client, table, keys))
        .buffer_unordered(BATCH_GET_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// One `BatchGetItem` of at most [`BATCH_GET_KEYS`] keys, repeated for what it left unprocessed.
async fn batch_get_call(client: &Client, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
    let request =
        KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(build_error)?;
    until_processed("BatchGetItem", request, |request| {
        let call = client.batch_get_item().request_items(table, request).send();
        async move {
            let out = call.await.map_err(|e| store_error("BatchGetItem", e))?;
            let items = out.responses.and_then(|mut r| r.remove(table)).unwrap_or_default();
            let left = out.unprocessed_keys.and_then(|mut u| u.remove(table)).filter(|k| !k.keys().is_empty());
            Ok((items, left))
        }
    })
    .await
}
