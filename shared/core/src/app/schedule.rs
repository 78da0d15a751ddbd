//! Releases of scheduled sends. At each `sendAt` instant the scheduler (EventBridge
//! Scheduler on AWS, an in-process timer locally) delivers a [`Release`]; its stored chunks go on
//! the fan-out queue marked released, and the dispatcher moves their notifications from
//! SCHEDULED to QUEUED and delivers them. The stored chunks are deleted only once queued, so a
//! release that fails half way is simply repeated (dispatch is idempotent).

use tracing::{info, instrument};

use super::ports::{Release, StoreError};
use super::{AppError, Deps};

/// Puts the chunks of `release` on the fan-out queue. An instant already released, or whose
/// operation was canceled (its chunks deleted), releases nothing.
#[instrument(skip_all, fields(account_id = %release.account_id, operation_id = %release.operation_id, instant = release.instant))]
pub async fn release(deps: &Deps, release: &Release) -> Result<(), AppError> {
    let (account, operation) = (&release.account_id, release.operation_id);
    let mut chunks = deps.push.scheduled_chunks(account, operation, release.instant).await?;
    if chunks.is_empty() {
        info!("nothing to release (released already, or canceled)");
        return Ok(());
    }
    for chunk in &mut chunks {
        chunk.released = true;
    }
    let count = chunks.len();
    deps.queue.enqueue(chunks).await?;
    match deps.push.delete_scheduled_chunks(account, operation, Some(release.instant)).await {
        Ok(_) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    info!(chunks = count, "released");
    Ok(())
}
