//! Announcing operation events without ever holding up sending: a failure to hand an
//! event over is logged, never returned.

use tracing::warn;

use crate::domain::{AccountId, EventType, NotificationId, Operation, OperationEvent};

use super::Deps;
use super::ports::{Finish, StoreError};

/// Publishes the `kind` event of `op` (after the change that caused it).
pub async fn announce(deps: &Deps, kind: EventType, op: &Operation) {
    let event = OperationEvent::new(kind, op, deps.clock.now());
    if let Err(e) = deps.events.publish(event).await {
        warn!(error = %e, operation_id = %op.id, event = kind.as_str(), "could not publish an operation event");
    }
}

/// Finishes a notification (see `PushWriter::finish`) and, if that completed its operation,
/// announces `operation.completed`.
pub async fn finish(deps: &Deps, account: &AccountId, id: NotificationId, finish: Finish) -> Result<(), StoreError> {
    let finished = deps.push.finish(account, id, finish).await?;
    if finished.completed {
        announce(deps, EventType::Completed, &finished.operation).await;
    }
    Ok(())
}
