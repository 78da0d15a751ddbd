//! The idempotency store contract: memory (always) and DynamoDB on moto (emulator tier, a fresh
//! config table per check).

use std::sync::Arc;

use pushgate_aws::dynamodb::DynamoIdempotency;
use pushgate_memory::MemoryIdempotency;
use pushgate_tests::fresh_table;
use pushgate_tests::idempotency_contract::Store;

async fn memory() -> Option<Store> {
    Some(Arc::new(MemoryIdempotency::default()))
}

async fn dynamodb() -> Option<Store> {
    let (client, table) = fresh_table("ConfigTable").await?;
    Some(Arc::new(DynamoIdempotency::new(client, table)))
}

mod memory_store {
    pushgate_tests::idempotency_store_contract_tests!(super::memory);
}

mod dynamodb_store {
    pushgate_tests::idempotency_store_contract_tests!(super::dynamodb);
}
