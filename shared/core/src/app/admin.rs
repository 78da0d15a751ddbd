//! The operator's use cases (`pushgate-admin`): accounts, auth token rotation, API keys and
//! per-account limits. They work on the stores alone, so the admin command runs them against
//! DynamoDB with the operator's AWS credentials, and `pushgate-local` behind its admin routes.
//!
//! Every secret is generated here, returned once in the answer and stored only as a hash.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::domain::account::{MAX_API_KEYS, MAX_KEY_NAME_CHARS};
use crate::domain::{Account, AccountId, AccountLimits, ApiKey, ApiKeySid, AuthToken, Timestamp};

use super::AppError;
use super::ports::{AccountStore, CredentialStore, StoreError};

/// Longest grace period of a rotated auth token.
pub const MAX_GRACE: Duration = Duration::days(30);

/// A new account, with its auth token (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    pub account_sid: AccountId,
    pub auth_token: String,
}

/// What the operator may see of an account (never a secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub account_sid: AccountId,
    /// Until when the auth token replaced by the last rotation still works (RFC 3339).
    pub previous_token_valid_until: Option<Timestamp>,
    /// The operator's limits (absent ones take the deployment's defaults).
    pub limits: AccountLimits,
    /// How many API keys it has.
    pub api_keys: usize,
}

/// A rotated auth token (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotatedToken {
    pub account_sid: AccountId,
    pub auth_token: String,
    /// Until when the replaced token still works; `None` = it stopped at once.
    pub previous_token_valid_until: Option<Timestamp>,
}

/// A new API key, with its secret (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewApiKey {
    pub sid: ApiKeySid,
    pub account_sid: AccountId,
    pub friendly_name: String,
    pub secret: String,
    pub date_created: Timestamp,
}

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    pub sid: ApiKeySid,
    pub account_sid: AccountId,
    pub friendly_name: String,
    pub date_created: Timestamp,
}

impl From<&ApiKey> for ApiKeyInfo {
    fn from(key: &ApiKey) -> Self {
        Self {
            sid: key.sid.clone(),
            account_sid: key.account.clone(),
            friendly_name: key.friendly_name.clone(),
            date_created: key.created,
        }
    }
}

/// Creates an account with a random id and auth token.
pub async fn create_account(accounts: &dyn AccountStore) -> Result<NewAccount, AppError> {
    let token = AuthToken::generate();
    let id = AccountId::from_bytes(rand::random());
    accounts.create_account(&Account::new(id.clone(), token.hash())).await?;
    Ok(NewAccount { account_sid: id, auth_token: token.expose().to_owned() })
}

/// The account as the operator may see it.
pub async fn fetch_account(
    accounts: &dyn AccountStore,
    id: &AccountId,
    now: Timestamp,
) -> Result<AccountInfo, AppError> {
    let account = existing(accounts, id).await?;
    let keys = accounts.list_api_keys(id).await?;
    Ok(AccountInfo {
        account_sid: account.id,
        previous_token_valid_until: account.previous.map(|p| p.until).filter(|until| *until > now),
        limits: account.limits,
        api_keys: keys.len(),
    })
}

/// Gives the account a new auth token; the old one keeps working for `grace` (0 to 30 days).
pub async fn rotate_token(
    accounts: &dyn AccountStore,
    id: &AccountId,
    grace: Duration,
    now: Timestamp,
) -> Result<RotatedToken, AppError> {
    if grace < Duration::zero() || grace > MAX_GRACE {
        return Err(AppError::field("grace", "must be between 0 seconds and 30 days"));
    }
    let mut account = existing(accounts, id).await?;
    let token = AuthToken::generate();
    account.rotate(&token, now, now + grace);
    accounts.save_account(&account).await.map_err(gone)?;
    Ok(RotatedToken {
        account_sid: account.id,
        auth_token: token.expose().to_owned(),
        previous_token_valid_until: account.previous.map(|p| p.until),
    })
}

/// Replaces the account's limits (a `None` field returns to the deployment's default).
pub async fn set_limits(
    accounts: &dyn AccountStore,
    id: &AccountId,
    limits: AccountLimits,
) -> Result<AccountLimits, AppError> {
    let zero =
        [limits.requests_per_second, limits.request_burst, limits.notifications_per_minute, limits.live_notifications]
            .contains(&Some(0));
    if zero {
        return Err(AppError::field("limits", "every limit must be at least 1 (omit it for the default)"));
    }
    let mut account = existing(accounts, id).await?;
    account.limits = limits;
    accounts.save_account(&account).await.map_err(gone)?;
    Ok(account.limits)
}

/// Deletes the account: its API keys, its credentials' secrets and its credential book, then
/// the account itself (from then on nothing authenticates as it). Its notifications expire
/// with the 7-day retention; its Users and DeviceRegistrations stay unreachable.
pub async fn delete_account(
    accounts: &dyn AccountStore,
    credentials: &dyn CredentialStore,
    id: &AccountId,
) -> Result<(), AppError> {
    existing(accounts, id).await?;
    for key in accounts.list_api_keys(id).await? {
        accounts.delete_api_key(id, &key.sid).await?;
    }
    let (book, version) = credentials.load_book(id).await?;
    for credential in &book.credentials {
        credentials.delete_secret(id, &credential.id).await?;
    }
    if version > 0 {
        credentials.save_book(id, &Default::default(), version).await?;
    }
    accounts.delete_account(id).await?;
    Ok(())
}

/// Creates an API key for the account (at most 100 per account).
pub async fn create_api_key(
    accounts: &dyn AccountStore,
    account: &AccountId,
    friendly_name: &str,
    now: Timestamp,
) -> Result<NewApiKey, AppError> {
    if friendly_name.chars().count() > MAX_KEY_NAME_CHARS || friendly_name.chars().any(char::is_control) {
        return Err(AppError::field("friendlyName", "at most 64 characters, no control characters"));
    }
    existing(accounts, account).await?;
    if accounts.list_api_keys(account).await?.len() >= MAX_API_KEYS {
        return Err(AppError::NotAllowed {
            code: 20403,
            message: format!("An account may hold at most {MAX_API_KEYS} API keys: revoke one first"),
        });
    }
    let secret = AuthToken::generate();
    let key = ApiKey {
        sid: ApiKeySid::generate(),
        account: account.clone(),
        secret_hash: secret.hash(),
        friendly_name: friendly_name.to_owned(),
        created: now,
    };
    accounts.create_api_key(&key).await?;
    Ok(NewApiKey {
        sid: key.sid,
        account_sid: key.account,
        friendly_name: key.friendly_name,
        secret: secret.expose().to_owned(),
        date_created: now,
    })
}

/// The account's API keys, oldest first.
pub async fn list_api_keys(accounts: &dyn AccountStore, account: &AccountId) -> Result<Vec<ApiKeyInfo>, AppError> {
    existing(accounts, account).await?;
    Ok(accounts.list_api_keys(account).await?.iter().map(ApiKeyInfo::from).collect())
}

/// Revokes (deletes) one of the account's API keys: it stops authenticating at once.
pub async fn revoke_api_key(accounts: &dyn AccountStore, account: &AccountId, sid: &ApiKeySid) -> Result<(), AppError> {
    if accounts.delete_api_key(account, sid).await? { Ok(()) } else { Err(AppError::NotFound("API key")) }
}

async fn existing(accounts: &dyn AccountStore, id: &AccountId) -> Result<Account, AppError> {
    accounts.get_account(id).await?.ok_or(AppError::NotFound("Account"))
}

/// A save that found the account gone (deleted meanwhile) is a 404, not a retry.
fn gone(e: StoreError) -> AppError {
    match e {
        StoreError::Conflict => AppError::NotFound("Account"),
        other => other.into(),
    }
}
