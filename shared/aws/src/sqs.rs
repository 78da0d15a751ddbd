//! The fan-out queue on SQS: chunks travel as versioned JSON messages, sent with
//! `SendMessageBatch` in batches that respect SQS's limits (10 entries, 256 KiB per message and
//! per batch), all batches in parallel.

use async_trait::async_trait;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry};
use futures::future::try_join_all;

use pushgate_core::app::dispatch::QueueMessage;
use pushgate_core::app::ports::{Chunk, FanoutQueue, QueueError};

/// SQS's limit on one message and on one batch, in bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// SQS's limit on entries per batch.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Sends chunks to one SQS queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    /// Uses `queue_url` (from the template's environment).
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    /// Queues an operation event (a `{"event": …}` message the dispatch function delivers to
    /// the account's webhook).
    pub async fn publish_event(&self, event: pushgate_core::domain::OperationEvent) -> Result<(), QueueError> {
        let body = serde_json::to_string(&pushgate_core::app::ports::QueueBody::Event { event })
            .map_err(|e| QueueError(format!("cannot encode an event: {e}")))?;
        self.send_batch(vec![(0, body)]).await
    }

    async fn send_batch(&self, batch: Vec<(usize, String)>) -> Result<(), QueueError> {
        let mut entries = Vec::with_capacity(batch.len());
        for (i, body) in batch {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .map_err(|e| QueueError(format!("invalid SQS entry: {e}")))?;
            entries.push(entry);
        }
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                QueueError(format!("SendMessageBatch failed: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))
            })?;
        match output.failed().first() {
            None => Ok(()),
            Some(failed) => Err(QueueError(format!(
                "SQS refused {} of the batch ({}: {})",
                output.failed().len(),
                failed.code(),
                failed.message().unwrap_or("no message")
            ))),
        }
    }
}

/// A message received from SQS, with the handle that deletes it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message as the dispatcher sees it.
    pub message: QueueMessage,
    receipt: String,
}

impl SqsQueue {
    /// Long-polls for up to `max` (≤ 10) messages, waiting at most `wait_secs` (what the Lambda
    /// event source mapping does for the dispatch function; `pushgate-local` in its AWS mode
    /// does it itself).
    pub async fn receive(&self, max: i32, wait_secs: i32) -> Result<Vec<Received>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_secs.clamp(0, 20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| {
                QueueError(format!("ReceiveMessage failed: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))
            })?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    message: QueueMessage {
                        id: m.message_id()?.to_owned(),
                        body: m.body().unwrap_or_default().to_owned(),
                        receive_count,
                    },
                    receipt: m.receipt_handle()?.to_owned(),
                })
            })
            .collect())
    }

    /// Deletes messages that are done (at most 10 per call, as SQS allows).
    pub async fn delete(&self, done: &[&Received]) -> Result<(), QueueError> {
        for batch in done.chunks(MAX_BATCH_ENTRIES) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&r.receipt)
                        .build()
                        .map_err(|e| QueueError(format!("invalid SQS entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    QueueError(format!("DeleteMessageBatch failed: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))
                })?;
        }
        Ok(())
    }
}

/// Groups serialized messages into batches within SQS's entry and byte limits.
pub fn batches(bodies: Vec<String>) -> Result<Vec<Vec<(usize, String)>>, QueueError> {
    let mut out: Vec<Vec<(usize, String)>> = Vec::new();
    let mut bytes = 0;
    for (i, body) in bodies.into_iter().enumerate() {
        if body.len() > MAX_BATCH_BYTES {
            return Err(QueueError(format!("a chunk of {} bytes is over the SQS message limit", body.len())));
        }
        let full = out.last().is_none_or(|b| b.len() >= MAX_BATCH_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += body.len();
        if let Some(batch) = out.last_mut() {
            batch.push((i, body));
        }
    }
    Ok(out)
}

#[async_trait]
impl FanoutQueue for SqsQueue {
    async fn enqueue(&self, chunks: Vec<Chunk>) -> Result<(), QueueError> {
        let bodies = chunks
            .iter()
            .map(|c| serde_json::to_string(c).map_err(|e| QueueError(format!("cannot encode a chunk: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        try_join_all(batches(bodies)?.into_iter().map(|b| self.send_batch(b))).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib() {
        let small: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        let sizes: Vec<usize> = batches(small).expect("fits").iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big: Vec<String> = (0..3).map(|_| "x".repeat(100 * 1024)).collect();
        let sizes: Vec<usize> = batches(big).expect("fits").iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1]);
        assert!(batches(vec!["x".repeat(MAX_BATCH_BYTES + 1)]).is_err());
    }
}
