use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::ports::{SharedToken, StoreError, TokenCache};
use pushgate_core::domain::Timestamp;

/// Shared provider tokens held in memory (for tests of the sharing; one local process needs no
/// sharing).
#[derive(Default)]
pub struct MemoryTokenCache {
    tokens: RwLock<HashMap<String, SharedToken>>,
}

#[async_trait]
impl TokenCache for MemoryTokenCache {
    async fn get(&self, key: &str) -> Result<Option<SharedToken>, StoreError> {
        Ok(super::read(&self.tokens)?.get(key).cloned())
    }

    async fn put(&self, key: &str, token: SharedToken, stale_before: Timestamp) -> Result<SharedToken, StoreError> {
        let mut tokens = super::write(&self.tokens)?;
        match tokens.get(key) {
            Some(stored) if stored.minted_at >= stale_before => Ok(stored.clone()),
            _ => {
                tokens.insert(key.to_owned(), token.clone());
                Ok(token)
            }
        }
    }
}
