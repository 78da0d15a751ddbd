//! Cancel: `PATCH` a notification or an operation with `{"status": "CANCELED"}`.
//!
//! A notification is cancelable while SCHEDULED or QUEUED and not handed to a provider: the
//! change is one conditional transition that requires no live dispatcher claim, and a
//! dispatcher's claim requires the notification QUEUED and unclaimed — of a cancel and a claim
//! racing on one notification exactly one wins. Otherwise `400` with code 30409.
//!
//! An operation is canceled by marking it CANCELED (conditionally: SCHEDULED or PROCESSING with
//! notifications not yet final), deleting its pending schedules and stored chunks, then sweeping
//! its existing SCHEDULED/QUEUED notifications the same way as a single cancel. Notifications that do not exist yet (their chunk is still on the
//! queue) are canceled by the dispatcher: after each claim it checks the operation (see
//! `dispatch::CancelWatch`), so nothing is sent after the cancel answered. The sweep only makes
//! the stats show it sooner: if it fails half way the cancel still stands (it is logged).

use futures::StreamExt;

use tracing::{instrument, warn};

use crate::domain::{AccountId, NotificationId, NotificationStatus, Operation, OperationId, Senders};

use super::ports::{Finish, NotificationFilter, PageRequest, StoreError};
use super::{AppError, Deps};

/// The error code of a change the resource's state forbids.
pub const NOT_CANCELABLE: u32 = 30409;
/// Notifications swept per page, and cancels in flight while sweeping.
const SWEEP_PAGE: usize = 1000;
const SWEEP_CONCURRENCY: usize = 32;

fn not_cancelable(message: String) -> AppError {
    AppError::NotAllowed { code: NOT_CANCELABLE, message }
}

/// Cancels one notification; `400` (30409) if it is final or being handed to a provider.
#[instrument(skip_all, fields(account_id = %account, notification_id = %id))]
pub async fn cancel_notification(deps: &Deps, account: &AccountId, id: NotificationId) -> Result<(), AppError> {
    let n = deps.push.get_notification(account, id).await?.ok_or(AppError::NotFound("PushNotification"))?;
    if n.status.is_final() {
        return Err(not_cancelable(format!("The PushNotification is {} and cannot be canceled", n.status.as_str())));
    }
    match cancel_one(deps, account, id, n.from).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => {
            Err(not_cancelable("The PushNotification is being handed to its provider and cannot be canceled".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The conditional cancel of one notification no dispatcher holds (`Conflict` otherwise).
async fn cancel_one(deps: &Deps, account: &AccountId, id: NotificationId, from: Senders) -> Result<(), StoreError> {
    let finish =
        Finish { status: NotificationStatus::Canceled, from, error: None, at: deps.clock.now(), unclaimed: true };
    super::events::finish(deps, account, id, finish).await
}

/// Cancels an operation: every notification not yet handed to a provider ends CANCELED.
#[instrument(skip_all, fields(account_id = %account, operation_id = %id))]
pub async fn cancel_operation(deps: &Deps, account: &AccountId, id: OperationId) -> Result<Operation, AppError> {
    let now = deps.clock.now();
    let operation = match deps.push.cancel_operation(account, id, now).await {
        Ok(Some(op)) => op,
        Ok(None) => return Err(AppError::NotFound("Operation")),
        Err(StoreError::Conflict) => {
            let current = deps.push.get_operation(account, id).await?.ok_or(AppError::NotFound("Operation"))?;
            return Err(not_cancelable(format!(
                "The Operation is {} and cannot be canceled",
                match current.status {
                    crate::domain::OperationStatus::Canceled => "CANCELED already",
                    crate::domain::OperationStatus::Completed => "COMPLETED",
                    _ => "delivered in full",
                }
            )));
        }
        Err(e) => return Err(e.into()),
    };
    forget_schedules(deps, account, id).await;
    if let Err(e) = sweep(deps, account, id).await {
        warn!(error = %e, "sweeping a canceled operation failed; its dispatchers cancel the rest");
    }
    Ok(deps.push.get_operation(account, id).await?.unwrap_or(operation))
}

/// Deletes the stored chunks of the instants not released yet and their schedules. Best effort:
/// a release that still fires finds no chunks, or puts chunks on the queue whose dispatchers
/// see the operation CANCELED.
async fn forget_schedules(deps: &Deps, account: &AccountId, id: OperationId) {
    let instants = match deps.push.delete_scheduled_chunks(account, id, None).await {
        Ok(instants) => instants,
        Err(e) => {
            warn!(error = %e, "could not delete the stored chunks of a canceled operation");
            return;
        }
    };
    for instant in instants {
        if let Err(e) = deps.scheduler.unschedule(account, id, instant).await {
            warn!(error = %e, instant, "could not delete the schedule of a canceled operation");
        }
    }
}

/// Cancels every existing SCHEDULED or QUEUED notification of the operation that no dispatcher
/// holds (those it holds finish as the provider answers).
async fn sweep(deps: &Deps, account: &AccountId, id: OperationId) -> Result<(), StoreError> {
    for status in [NotificationStatus::Scheduled, NotificationStatus::Queued] {
        let filter = NotificationFilter { operation_id: Some(id), status: Some(status), ..Default::default() };
        let mut cursor = None;
        loop {
            let page = PageRequest { size: SWEEP_PAGE, cursor: cursor.take() };
            let found = deps.push.list_notifications(account, &filter, &page).await?;
            let results: Vec<Result<(), StoreError>> = futures::stream::iter(found.items)
                .map(|n| async move {
                    match cancel_one(deps, account, n.id, n.from).await {
                        Ok(()) | Err(StoreError::Conflict) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(SWEEP_CONCURRENCY)
                .collect()
                .await;
            results.into_iter().collect::<Result<(), StoreError>>()?;
            match found.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(())
}
