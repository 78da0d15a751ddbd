//! The directory contract (Users, DeviceRegistrations, token claims) against the memory adapter
//! (always runs).

use std::sync::Arc;

use pushgate_memory::MemoryDirectory;
use pushgate_tests::directory_contract::Directory;

async fn memory_directory() -> Option<Directory> {
    Some(Arc::new(MemoryDirectory::default()))
}

mod memory_store {
    pushgate_tests::directory_store_contract_tests!(super::memory_directory);
}
