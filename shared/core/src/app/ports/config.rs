//! Accounts, credentials and their sealed secrets, shared provider tokens.

use async_trait::async_trait;

use crate::domain::credential::CredentialBook;
use crate::domain::{Account, AccountId, ApiKey, ApiKeySid, CredentialId, Timestamp};

use super::StoreError;

/// Credentials, Apps, and sealed credential secrets.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The account's credential book and its version (0 when it has none).
    async fn load_book(&self, account: &AccountId) -> Result<(CredentialBook, u64), StoreError>;
    /// Replaces the book if its version is still `expected`. `Conflict` otherwise.
    async fn save_book(&self, account: &AccountId, book: &CredentialBook, expected: u64) -> Result<(), StoreError>;
    /// Stores a sealed secret.
    async fn put_secret(&self, account: &AccountId, id: &CredentialId, sealed: Vec<u8>) -> Result<(), StoreError>;
    /// A sealed secret, or `None`.
    async fn get_secret(&self, account: &AccountId, id: &CredentialId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes a sealed secret (missing is fine).
    async fn delete_secret(&self, account: &AccountId, id: &CredentialId) -> Result<(), StoreError>;
}

/// Accounts and their API keys. Reads are strongly consistent: a revoked key or a deleted
/// account stops authenticating at once.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account, or `None`.
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    /// Adds a new account. `Conflict` if the id is taken.
    async fn create_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Replaces an existing account (its token, grace period, limits). `Conflict` if it does
    /// not exist (a deleted account is never brought back).
    async fn save_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Deletes the account and its API keys (missing is fine). The keys go first, so a key never
    /// outlives its account.
    async fn delete_account(&self, id: &AccountId) -> Result<(), StoreError>;
    /// Adds an API key. `Conflict` if its sid is taken.
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// The API key, or `None`.
    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError>;
    /// The account's API keys, oldest first.
    async fn list_api_keys(&self, account: &AccountId) -> Result<Vec<ApiKey>, StoreError>;
    /// Deletes the account's key `sid`; `false` if the account has no such key.
    async fn delete_api_key(&self, account: &AccountId, sid: &ApiKeySid) -> Result<bool, StoreError>;
}

/// Authenticated encryption of credential secrets (AES-GCM locally, KMS envelope on AWS).
#[async_trait]
pub trait SecretBox: Send + Sync {
    /// Encrypts `plaintext`, bound to `aad`.
    async fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Decrypts what `seal` produced with the same `aad`.
    async fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// A provider token every process shares (Apple throttles keys whose provider token changes more
/// often than every 20 minutes, and every Lambda instance would otherwise mint its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedToken {
    /// The token (a secret: never logged).
    pub token: String,
    /// When it was minted.
    pub minted_at: Timestamp,
}

/// Where shared provider tokens live (DynamoDB on AWS; none locally, where one process is all).
#[async_trait]
pub trait TokenCache: Send + Sync {
    /// The token stored under `key`, if any (however old).
    async fn get(&self, key: &str) -> Result<Option<SharedToken>, StoreError>;
    /// Stores `token` under `key` unless the stored token was minted at or after `stale_before`
    /// (another process refreshed it first). Returns the token stored afterwards: ours, or the
    /// winner's.
    async fn put(&self, key: &str, token: SharedToken, stale_before: Timestamp) -> Result<SharedToken, StoreError>;
}
