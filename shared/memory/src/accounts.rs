use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::ports::{AccountStore, StoreError};
use pushgate_core::domain::{Account, AccountId, ApiKey, ApiKeySid};

/// Accounts and API keys held in memory.
#[derive(Default)]
pub struct MemoryAccounts {
    accounts: RwLock<HashMap<AccountId, Account>>,
    keys: RwLock<HashMap<ApiKeySid, ApiKey>>,
}

impl MemoryAccounts {
    /// Adds (or replaces) an account: for set-up.
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

    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let mut accounts = super::write(&self.accounts)?;
        if accounts.contains_key(&account.id) {
            return Err(StoreError::Conflict);
        }
        accounts.insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn save_account(&self, account: &Account) -> Result<(), StoreError> {
        match super::write(&self.accounts)?.get_mut(&account.id) {
            Some(stored) => {
                *stored = account.clone();
                Ok(())
            }
            None => Err(StoreError::Conflict),
        }
    }

    async fn delete_account(&self, id: &AccountId) -> Result<(), StoreError> {
        let mut accounts = super::write(&self.accounts)?;
        super::write(&self.keys)?.retain(|_, key| &key.account != id);
        accounts.remove(id);
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let accounts = super::read(&self.accounts)?;
        let mut keys = super::write(&self.keys)?;
        if keys.contains_key(&key.sid) || !accounts.contains_key(&key.account) {
            return Err(StoreError::Conflict);
        }
        keys.insert(key.sid.clone(), key.clone());
        Ok(())
    }

    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
        Ok(super::read(&self.keys)?.get(sid).cloned())
    }

    async fn list_api_keys(&self, account: &AccountId) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> =
            super::read(&self.keys)?.values().filter(|k| &k.account == account).cloned().collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.sid.cmp(&b.sid)));
        Ok(keys)
    }

    async fn delete_api_key(&self, account: &AccountId, sid: &ApiKeySid) -> Result<bool, StoreError> {
        let mut keys = super::write(&self.keys)?;
        if keys.get(sid).is_some_and(|k| &k.account == account) {
            keys.remove(sid);
            Ok(true)
        } else {
            Ok(false)
        }
    }
}
