//! Readiness: can this process serve requests (do its stores answer)?

use crate::domain::{AccountId, OperationId};

use super::{AppError, Deps};

/// `Ok` when the account store and the push store answer a read (of records that never exist);
/// `Unavailable` otherwise — a store that answers with an error (a missing table, no
/// permission) is not ready either.
pub async fn ready(deps: &Deps) -> Result<(), AppError> {
    let nobody = AccountId::from_bytes([0; 16]);
    let accounts = deps.accounts.get_account(&nobody).await;
    let push = deps.push.get_operation(&nobody, OperationId::min()).await;
    match (accounts, push) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "not ready: a store does not answer");
            Err(AppError::Unavailable { retry_after: 5 })
        }
    }
}
