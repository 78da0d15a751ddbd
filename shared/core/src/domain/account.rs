//! Accounts and their auth tokens: kept only as a SHA-256 hash, compared in constant time.
//!
//! Auth tokens are 32 random bytes (hex), so a fast hash is enough: there is no low-entropy
//! password to stretch.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::AccountId;

/// An auth token as presented by a client. Never printed.
#[derive(Clone)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the one place that shows it (the local server's start banner).
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

/// The SHA-256 of an auth token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash([redacted])")
    }
}

/// An account that may call the API.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its id (the Basic auth username).
    pub id: AccountId,
    /// The hash of its auth token.
    pub token_hash: TokenHash,
}

impl Account {
    /// Does `token` match, compared in constant time?
    pub fn verify(&self, token: &AuthToken) -> bool {
        self.token_hash.0.ct_eq(&token.hash().0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_verifies_only_its_own_token_and_never_prints_it() {
        let token = AuthToken::new("s3cret-token-value");
        let account = Account { id: AccountId::from_bytes([7; 16]), token_hash: token.hash() };
        assert!(account.verify(&token));
        assert!(!account.verify(&AuthToken::new("s3cret-token-valuf")));
        assert!(!format!("{token:?} {account:?}").contains("s3cret"));
    }
}
