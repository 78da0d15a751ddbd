//! Authentication: HTTP Basic with the account id and its auth token, or an API key's sid and
//! its secret (the key acts for its account).

use crate::domain::{AccountId, ApiKeySid, AuthToken, Timestamp};

use super::{AppError, Deps};

/// Checks the username (an account id `AC…` or an API key sid `SK…`) and its secret at `now`;
/// every failure looks the same to the caller.
pub async fn authenticate(deps: &Deps, user: &str, secret: &AuthToken, now: Timestamp) -> Result<AccountId, AppError> {
    if user.starts_with("SK") {
        let sid = ApiKeySid::parse(user).map_err(|_| AppError::Unauthorized)?;
        return match deps.accounts.get_api_key(&sid).await? {
            Some(key) if key.verify(secret) => Ok(key.account),
            _ => Err(AppError::Unauthorized),
        };
    }
    let id = AccountId::parse(user).map_err(|_| AppError::Unauthorized)?;
    match deps.accounts.get_account(&id).await? {
        Some(acct) if acct.verify(secret, now) => Ok(id),
        _ => Err(AppError::Unauthorized),
    }
}
