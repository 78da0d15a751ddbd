//! Read-only use cases: fetch and list notifications and operations, tenant-scoped.

use crate::domain::{AccountId, Notification, NotificationId, Operation, OperationErrorEntry, OperationId};

use super::ports::{NotificationFilter, OperationFilter, Page, PageRequest};
use super::{AppError, Deps};

/// One notification.
pub async fn fetch_notification(
    deps: &Deps,
    account: &AccountId,
    id: NotificationId,
) -> Result<Notification, AppError> {
    deps.push.get_notification(account, id).await?.ok_or(AppError::NotFound("PushNotification"))
}

/// Notifications matching `filter`.
pub async fn list_notifications(
    deps: &Deps,
    account: &AccountId,
    filter: &NotificationFilter,
    page: &PageRequest,
) -> Result<Page<Notification>, AppError> {
    Ok(deps.push.list_notifications(account, filter, page).await?)
}

/// One operation.
pub async fn fetch_operation(deps: &Deps, account: &AccountId, id: OperationId) -> Result<Operation, AppError> {
    deps.push.get_operation(account, id).await?.ok_or(AppError::NotFound("Operation"))
}

/// Operations matching `filter`.
pub async fn list_operations(
    deps: &Deps,
    account: &AccountId,
    filter: &OperationFilter,
    page: &PageRequest,
) -> Result<Page<Operation>, AppError> {
    Ok(deps.push.list_operations(account, filter, page).await?)
}

/// The FAILED notifications of an operation (404 if the operation is not the account's).
pub async fn list_operation_errors(
    deps: &Deps,
    account: &AccountId,
    id: OperationId,
    page: &PageRequest,
) -> Result<Page<OperationErrorEntry>, AppError> {
    fetch_operation(deps, account, id).await?;
    Ok(deps.push.list_operation_errors(account, id, page).await?)
}
