//! What guards requests: idempotency records of POSTs, and the per-account budget of
//! notifications accepted per minute.

use async_trait::async_trait;

use crate::domain::{AccountId, Timestamp};

use super::StoreError;

/// The answer a POST gave, kept to be given again to a retry with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Its HTTP status.
    pub status: u16,
    /// Its `Location` header.
    pub location: Option<String>,
    /// Its JSON body.
    pub body: String,
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key is new (or its record expired, or its holder died): this request runs, and must
    /// `finish` or `abandon`.
    Started,
    /// A request with this key and the same fingerprint already answered: give its answer.
    Replay(Replay),
    /// A request with this key and the same fingerprint is running.
    InProgress,
    /// The key was used for a different request (another body, method or path).
    Mismatch,
}

/// Idempotency records: one per account and key, kept 24 hours.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request with `fingerprint` at `now`, unless a live record exists: a
    /// finished one (kept until `now` + the window of its first claim), or a running one whose
    /// claim has not lapsed (`lease_until`).
    async fn begin(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: Timestamp,
        lease_until: Timestamp,
        expires: Timestamp,
    ) -> Result<Begin, StoreError>;
    /// Records the answer of the request that claimed `key` (kept until `expires`).
    async fn finish(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: [u8; 32],
        replay: &Replay,
        expires: Timestamp,
    ) -> Result<(), StoreError>;
    /// Releases a claim whose request failed in a way worth retrying (nothing was done): the
    /// next request with the key runs. A finished record is never removed.
    async fn abandon(&self, account: &AccountId, key: &str, fingerprint: [u8; 32]) -> Result<(), StoreError>;
}

/// Notifications accepted per account and minute (fixed one-minute windows): one counter per
/// account and minute, moved once per send, never per notification.
#[async_trait]
pub trait SendBudget: Send + Sync {
    /// Adds `notifications` to the account's count for the minute of `at`, unless the count
    /// would then pass `per_minute`: `false` (nothing added).
    async fn admit(
        &self,
        account: &AccountId,
        at: Timestamp,
        notifications: u64,
        per_minute: u64,
    ) -> Result<bool, StoreError>;
}
