//! The push store contract against the memory adapter (always runs).

use std::sync::Arc;

use pushgate_memory::MemoryPushStore;
use pushgate_tests::contract::Store;

async fn memory_store() -> Option<Store> {
    Some(Arc::new(MemoryPushStore::default()))
}

mod memory_store {
    pushgate_tests::push_store_contract_tests!(super::memory_store);
}
