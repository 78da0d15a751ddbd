//! Queue messages: each is a chunk to process, a scheduled release to queue, or an operation
//! event to post to its webhook. A panic in one message fails that message alone.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tracing::{error, warn};

use super::{ChunkResult, process_chunk};
use crate::app::Deps;
use crate::app::backoff::Backoff;
use crate::app::ports::QueueBody;

/// A message as the queue delivered it.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// The queue's message id (reported back for messages to retry).
    pub id: String,
    /// The body: a JSON [`Chunk`].
    pub body: String,
    /// How many times the queue has delivered it (1 the first time).
    pub receive_count: u32,
}

/// Processes a batch of queue messages (what the dispatch Lambda gets from SQS); returns the ids
/// of the messages the queue must deliver again. A body that does not decode is reported too, so
/// it ends in the dead-letter queue instead of vanishing.
pub async fn process_messages(deps: &Deps, messages: &[QueueMessage]) -> Vec<String> {
    let results = futures::future::join_all(messages.iter().map(|m| async move {
        // A panic in one message fails that message alone (it is redelivered, then
        // dead-lettered), never the batch around it.
        AssertUnwindSafe(process_message(deps, m)).catch_unwind().await.unwrap_or_else(|_| {
            error!(message_id = %m.id, "processing a queue message panicked; it goes back to the queue");
            Some(m.id.clone())
        })
    }))
    .await;
    results.into_iter().flatten().collect()
}

/// Processes one queue message; returns its id if the queue must deliver it again.
async fn process_message(deps: &Deps, m: &QueueMessage) -> Option<String> {
    match serde_json::from_str::<QueueBody>(&m.body) {
        Ok(QueueBody::Chunk(chunk)) => match process_chunk(deps, &chunk, m.receive_count).await {
            ChunkResult::Done => None,
            ChunkResult::RetryAfter(_) => Some(m.id.clone()),
        },
        Ok(QueueBody::Event { event }) => match deliver_event(deps, &event).await {
            Ok(()) => None,
            Err(e) => {
                warn!(message_id = %m.id, event = %event.id, error = %e, "webhook failed; the event goes back to the queue");
                Some(m.id.clone())
            }
        },
        Ok(QueueBody::Release { release }) => match crate::app::schedule::release(deps, &release).await {
            Ok(()) => None,
            Err(e) => {
                warn!(message_id = %m.id, error = %e, "release failed; it goes back to the queue");
                Some(m.id.clone())
            }
        },
        Err(e) => {
            error!(message_id = %m.id, error = %e, "queue message is not a chunk; leaving it for the dead-letter queue");
            Some(m.id.clone())
        }
    }
}

/// How the dispatcher retries an event's webhook post inline before the queue's redelivery takes
/// over: three tries, pauses of about 0.5 s and 1 s.
const EVENT_RETRIES: Backoff = Backoff::new(3, Duration::from_secs(1), Duration::from_secs(2));

/// Posts an event to its webhook, retrying as [`EVENT_RETRIES`] says.
async fn deliver_event(
    deps: &Deps,
    event: &crate::domain::OperationEvent,
) -> Result<(), crate::app::ports::WebhookError> {
    let mut failures = 0;
    loop {
        match deps.events.deliver(event).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures += 1;
                if !EVENT_RETRIES.retries_after(failures) {
                    return Err(e);
                }
                tokio::time::sleep(EVENT_RETRIES.wait(failures)).await;
            }
        }
    }
}
