//! Announcing operation events (spec §7) without ever holding up sending: a failure to hand an
//! event over is logged, never returned.

use tracing::warn;

use crate::domain::{EventType, Operation, OperationEvent};

use super::Deps;

/// Publishes the `kind` event of `op` (after the change that caused it).
pub async fn announce(deps: &Deps, kind: EventType, op: &Operation) {
    let event = OperationEvent::new(kind, op, deps.clock.now());
    if let Err(e) = deps.events.publish(event).await {
        warn!(error = %e, operation_id = %op.id, event = kind.as_str(), "could not publish an operation event");
    }
}
