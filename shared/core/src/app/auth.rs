//! Authentication: HTTP Basic account id + auth token.

use crate::domain::{AccountId, AuthToken};

use super::{AppError, Deps};

/// Checks the account id and token; every failure looks the same to the caller.
pub async fn authenticate(deps: &Deps, account: &str, token: &AuthToken) -> Result<AccountId, AppError> {
    let id = AccountId::parse(account).map_err(|_| AppError::Unauthorized)?;
    match deps.accounts.get_account(&id).await? {
        Some(acct) if acct.verify(token) => Ok(id),
        _ => Err(AppError::Unauthorized),
    }
}
