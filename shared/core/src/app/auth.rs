//! Authentication: HTTP Basic with the account id and its auth token, or an API key's sid and
//! its secret (the key acts for its account).

use crate::domain::{AccountId, ApiKeySid, AuthToken, Timestamp};

use super::{AppError, Deps, Limits};

/// Who a request acts for, and the limits in force for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account.
    pub account: AccountId,
    /// Its limits (its own, else the deployment's defaults).
    pub limits: Limits,
}

/// Checks the username (an account id `AC…` or an API key sid `SK…`) and its secret at `now`;
/// every failure looks the same to the caller. A key's account is read too (its limits, and a
/// key never acts for an account that is gone).
pub async fn authenticate(deps: &Deps, user: &str, secret: &AuthToken, now: Timestamp) -> Result<Principal, AppError> {
    let account = if user.starts_with("SK") {
        let sid = ApiKeySid::parse(user).map_err(|_| AppError::Unauthorized)?;
        match deps.accounts.get_api_key(&sid).await? {
            Some(key) if key.verify(secret) => deps.accounts.get_account(&key.account).await?,
            _ => return Err(AppError::Unauthorized),
        }
    } else {
        let id = AccountId::parse(user).map_err(|_| AppError::Unauthorized)?;
        deps.accounts.get_account(&id).await?.filter(|acct| acct.verify(secret, now))
    };
    let account = account.ok_or(AppError::Unauthorized)?;
    Ok(Principal { limits: deps.settings.limits_for(&account.limits), account: account.id })
}
