//! Accounts, their auth tokens and API keys: secrets kept only as a SHA-256 hash, compared in
//! constant time.
//!
//! Every secret pushgate issues is 32 random bytes (64 hex chars), so a fast hash is the right
//! scheme: there is no low-entropy password to stretch, and a password hash (Argon2, bcrypt)
//! would add tens of milliseconds of CPU to every request for no gain against 2^256 guesses.

use std::fmt;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::{AccountId, InvalidId};
use super::model::Timestamp;

/// A secret as presented by a client (an auth token or an API key secret). Never printed.
#[derive(Clone)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// A new secret: 32 random bytes as 64 lowercase hex chars.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token itself, for the places that show it once (the local server's start banner,
    /// the admin command's answer to a create or rotate).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its stored form.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken([redacted])")
    }
}

/// The SHA-256 of a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Does `secret` hash to this, compared in constant time?
    pub fn matches(&self, secret: &AuthToken) -> bool {
        self.0.ct_eq(&secret.hash().0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash([redacted])")
    }
}

/// The auth token a rotation replaced, still accepted until `until` (the grace period lets
/// clients switch to the new token without an outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousToken {
    /// Its hash.
    pub hash: TokenHash,
    /// When it stops working.
    pub until: Timestamp,
}

/// Per-account limits set by the operator (`pushgate-admin limits set`); a `None` takes the
/// deployment's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimits {
    /// API requests per second (token bucket refill rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// API requests allowed in a burst (token bucket size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_burst: Option<u32>,
    /// Notifications accepted per minute (recipients of sends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications_per_minute: Option<u32>,
    /// Notifications queued or scheduled at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_notifications: Option<u32>,
}

/// An account that may call the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// Its id (the Basic auth username).
    pub id: AccountId,
    /// The hash of its auth token.
    pub token_hash: TokenHash,
    /// The token the last rotation replaced, while its grace period lasts.
    pub previous: Option<PreviousToken>,
    /// The operator's limits for it.
    pub limits: AccountLimits,
}

impl Account {
    /// An account with one auth token, no previous token and the default limits.
    pub fn new(id: AccountId, token_hash: TokenHash) -> Self {
        Self { id, token_hash, previous: None, limits: AccountLimits::default() }
    }

    /// Does `token` match its auth token, or the previous one while its grace period lasts at
    /// `now`? Both are compared (constant time) whatever the first answers.
    pub fn verify(&self, token: &AuthToken, now: Timestamp) -> bool {
        let current = self.token_hash.matches(token);
        let previous = self.previous.is_some_and(|p| p.hash.matches(token) && now < p.until);
        current | previous
    }

    /// Replaces its auth token with `new`; the old one keeps working until `until` (not at all
    /// when `until` is not after `now`).
    pub fn rotate(&mut self, new: &AuthToken, now: Timestamp, until: Timestamp) {
        let old = std::mem::replace(&mut self.token_hash, new.hash());
        self.previous = (until > now).then_some(PreviousToken { hash: old, until });
    }
}

/// An API key's sid: `SK` followed by 32 lowercase hex chars (Twilio's form); it is the Basic
/// auth username of requests made with the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiKeySid(Arc<str>);

impl ApiKeySid {
    /// The API key sid pattern.
    pub const PATTERN: &'static str = "^SK[0-9a-f]{32}$";

    /// Parses `SK` + 32 lowercase hex.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = s.len() == 34 && s.starts_with("SK") && s[2..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok { Ok(Self(s.into())) } else { Err(InvalidId { pattern: Self::PATTERN }) }
    }

    /// A new random sid.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("SK{hex}").into())
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApiKeySid {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ApiKeySid> for String {
    fn from(id: ApiKeySid) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for ApiKeySid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Most API keys one account may hold.
pub const MAX_API_KEYS: usize = 100;

/// Longest friendly name of an API key, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 64;

/// An API key: a second secret that acts for its account, created and revoked by the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Its sid (the Basic auth username).
    pub sid: ApiKeySid,
    /// The account it acts for.
    pub account: AccountId,
    /// The hash of its secret.
    pub secret_hash: TokenHash,
    /// A name for people (at most 64 chars, may be empty).
    pub friendly_name: String,
    /// When it was created.
    pub created: Timestamp,
}

impl ApiKey {
    /// Does `secret` match, compared in constant time?
    pub fn verify(&self, secret: &AuthToken) -> bool {
        self.secret_hash.matches(secret)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    fn at(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("valid")
    }

    #[test]
    fn an_account_verifies_only_its_own_token_and_never_prints_it() {
        let token = AuthToken::new("s3cret-token-value");
        let account = Account::new(AccountId::from_bytes([7; 16]), token.hash());
        assert!(account.verify(&token, at(0)));
        assert!(!account.verify(&AuthToken::new("s3cret-token-valuf"), at(0)));
        assert!(!format!("{token:?} {account:?}").contains("s3cret"));
    }

    #[test]
    fn a_rotated_token_works_until_its_grace_period_ends_and_the_new_one_at_once() {
        let (old, new) = (AuthToken::generate(), AuthToken::generate());
        let mut account = Account::new(AccountId::from_bytes([7; 16]), old.hash());
        account.rotate(&new, at(0), at(0) + Duration::seconds(60));
        assert!(account.verify(&new, at(0)));
        assert!(account.verify(&old, at(59)));
        assert!(!account.verify(&old, at(60)), "the grace period is over");
        assert!(account.verify(&new, at(3600)));
    }

    #[test]
    fn a_rotation_without_grace_stops_the_old_token_at_once_and_a_second_rotation_forgets_the_first() {
        let (a, b, c) = (AuthToken::generate(), AuthToken::generate(), AuthToken::generate());
        let mut account = Account::new(AccountId::from_bytes([7; 16]), a.hash());
        account.rotate(&b, at(0), at(0));
        assert!(!account.verify(&a, at(0)));
        account.rotate(&c, at(10), at(100));
        assert!(account.verify(&b, at(50)) && account.verify(&c, at(50)));
        assert!(!account.verify(&a, at(50)), "only the last replaced token has a grace period");
    }

    #[test]
    fn generated_secrets_are_64_hex_chars_and_differ() {
        let (a, b) = (AuthToken::generate(), AuthToken::generate());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn api_key_sids_are_sk_and_32_lowercase_hex() {
        let sid = ApiKeySid::generate();
        assert_eq!(ApiKeySid::parse(sid.as_str()), Ok(sid));
        for bad in ["", "SK", "AC0123456789abcdef0123456789abcdef", "SK0123456789ABCDEF0123456789abcdef", "SK0123"] {
            assert!(ApiKeySid::parse(bad).is_err(), "{bad}");
        }
    }
}
