//! Emulator tier: the config contract (credentials and accounts) against the DynamoDB adapters
//! on moto, each check on its own freshly created tables (created from `table_definitions`, the
//! single definition the template is checked against). Skipped by plain `cargo test`; run by
//! `tests/run`.

use std::sync::Arc;

use pushgate_aws::dynamodb::{DynamoAccountStore, DynamoCredentialStore};
use pushgate_tests::config_contract::{Accounts, Credentials};
use pushgate_tests::fresh_table;

async fn dynamodb_credentials() -> Option<Credentials> {
    let (client, table) = fresh_table("ConfigTable").await?;
    Some(Arc::new(DynamoCredentialStore::new(client, table)))
}

async fn dynamodb_accounts() -> Option<Accounts> {
    let (client, table) = fresh_table("ConfigTable").await?;
    Some(Arc::new(DynamoAccountStore::new(client, table)))
}

mod dynamodb_stores {
    pushgate_tests::config_store_contract_tests!(
        credentials: super::dynamodb_credentials,
        accounts: super::dynamodb_accounts,
    );
}

/// The token hash is stored as binary, never as a readable string, and the tables this suite
/// needs exist with the designed keys and TTL (the directory table has none).
#[tokio::test]
async fn dynamodb_account_items_hold_the_token_hash_as_binary() {
    use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
    use pushgate_core::domain::{Account, AccountId, AuthToken};

    let Some((client, table)) = fresh_table("ConfigTable").await else { return };
    let store = DynamoAccountStore::new(client.clone(), table.clone());
    let account = Account::new(AccountId::from_bytes(rand::random()), AuthToken::new("t").hash());
    store.put_account(&account).await.expect("stored");
    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{}", account.id)))
        .key("sk", AttributeValue::S("ACCOUNT".into()))
        .send()
        .await
        .expect("read")
        .item
        .expect("stored");
    assert_eq!(item.get("tokenHash"), Some(&AttributeValue::B(account.token_hash.0.to_vec().into())));
    assert!(item.values().all(|v| !matches!(v, AttributeValue::S(s) if s.len() >= 64)), "no hex hash");

    let ttl = client.describe_time_to_live().table_name(&table).send().await.expect("described");
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    let directory = format!("{}directory", table.strip_suffix("config").expect("named {prefix}config"));
    let described = client.describe_table().table_name(&directory).send().await.expect("the directory table exists");
    let indexes: Vec<_> = described
        .table()
        .map(|t| t.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect())
        .unwrap_or_default();
    assert_eq!(indexes, ["byToken"]);
}
