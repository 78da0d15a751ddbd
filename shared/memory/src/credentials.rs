use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::ports::{CredentialStore, StoreError};
use pushgate_core::domain::credential::CredentialBook;
use pushgate_core::domain::{AccountId, CredentialId};

/// Credential books and sealed secrets held in memory.
#[derive(Default)]
pub struct MemoryCredentials {
    books: RwLock<HashMap<AccountId, (CredentialBook, u64)>>,
    secrets: RwLock<HashMap<(AccountId, CredentialId), Vec<u8>>>,
}

#[async_trait]
impl CredentialStore for MemoryCredentials {
    async fn load_book(&self, account: &AccountId) -> Result<(CredentialBook, u64), StoreError> {
        Ok(super::read(&self.books)?.get(account).cloned().unwrap_or_default())
    }

    async fn save_book(&self, account: &AccountId, book: &CredentialBook, expected: u64) -> Result<(), StoreError> {
        let mut books = super::write(&self.books)?;
        let entry = books.entry(account.clone()).or_default();
        if entry.1 != expected {
            return Err(StoreError::Conflict);
        }
        *entry = (book.clone(), expected + 1);
        Ok(())
    }

    async fn put_secret(&self, account: &AccountId, id: &CredentialId, sealed: Vec<u8>) -> Result<(), StoreError> {
        super::write(&self.secrets)?.insert((account.clone(), id.clone()), sealed);
        Ok(())
    }

    async fn get_secret(&self, account: &AccountId, id: &CredentialId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(super::read(&self.secrets)?.get(&(account.clone(), id.clone())).cloned())
    }

    async fn delete_secret(&self, account: &AccountId, id: &CredentialId) -> Result<(), StoreError> {
        super::write(&self.secrets)?.remove(&(account.clone(), id.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_book_saved_against_a_stale_version_is_a_conflict() {
        let store = MemoryCredentials::default();
        let account = AccountId::from_bytes([3; 16]);
        let (book, v) = store.load_book(&account).await.expect("loads");
        store.save_book(&account, &book, v).await.expect("first save wins");
        assert_eq!(store.save_book(&account, &book, v).await, Err(StoreError::Conflict));
    }

    #[tokio::test]
    async fn secrets_are_scoped_by_account() {
        let store = MemoryCredentials::default();
        let id = CredentialId::from_ulid(ulid::Ulid::generate());
        store.put_secret(&AccountId::from_bytes([1; 16]), &id, vec![1]).await.expect("stored");
        assert_eq!(store.get_secret(&AccountId::from_bytes([2; 16]), &id).await, Ok(None));
    }
}
