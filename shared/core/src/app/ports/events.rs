//! Operation events on their way to webhooks.

use async_trait::async_trait;

use crate::domain::OperationEvent;

use super::queue::QueueError;

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
