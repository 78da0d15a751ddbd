//! The config contract (credentials and accounts) against the memory adapters (always runs).

use std::sync::Arc;

use pushgate_memory::{MemoryAccounts, MemoryCredentials};
use pushgate_tests::config_contract::{Accounts, Credentials};

async fn memory_credentials() -> Option<Credentials> {
    Some(Arc::new(MemoryCredentials::default()))
}

async fn memory_accounts() -> Option<Accounts> {
    Some(Arc::new(MemoryAccounts::default()))
}

mod memory_stores {
    pushgate_tests::config_store_contract_tests!(
        credentials: super::memory_credentials,
        accounts: super::memory_accounts,
    );
}
