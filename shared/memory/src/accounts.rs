use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::ports::{AccountStore, StoreError};
use pushgate_core::domain::{Account, AccountId};

/// Accounts held in memory.
#[derive(Default)]
pub struct MemoryAccounts {
    accounts: RwLock<HashMap<AccountId, Account>>,
}

impl MemoryAccounts {
    /// Adds (or replaces) an account.
    pub fn insert(&self, account: Account) -> Result<(), StoreError> {
        super::write(&self.accounts)?.insert(account.id.clone(), account);
        Ok(())
    }
}

#[async_trait]
impl AccountStore for MemoryAccounts {
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        Ok(super::read(&self.accounts)?.get(id).cloned())
    }
}
