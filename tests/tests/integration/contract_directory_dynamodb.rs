//! Emulator tier: the directory contract (Users, DeviceRegistrations, token claims) against the
//! DynamoDB adapter on moto, each check on its own freshly created tables (created from
//! `table_definitions`, the single definition the template is checked against). Skipped by plain
//! `cargo test`; run by `tests/run`.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use pushgate_aws::dynamodb::DynamoDirectoryStore;
use pushgate_core::app::ports::DirectoryStore;
use pushgate_core::domain::{AccountId, AppName, DeviceRegistration, DeviceRegistrationId, Provider, UserId};
use pushgate_tests::directory_contract::Directory;
use pushgate_tests::fresh_table;

async fn dynamodb_directory() -> Option<Directory> {
    let (client, table) = fresh_table("DirectoryTable").await?;
    Some(Arc::new(DynamoDirectoryStore::new(client, table)))
}

mod dynamodb_store {
    pushgate_tests::directory_store_contract_tests!(super::dynamodb_directory);
}

/// Claim items key a token by its SHA-256, never by the token itself, and are found through
/// `byToken` by (provider, token) with the App as sort key.
#[tokio::test]
async fn dynamodb_claims_key_tokens_by_hash_and_are_queryable_on_by_token() {
    let Some((client, table)) = fresh_table("DirectoryTable").await else { return };
    let store = DynamoDirectoryStore::new(client.clone(), table.clone());
    let account = AccountId::from_bytes(rand::random());
    let token = "z".repeat(4096);
    let registration = DeviceRegistration::new(
        DeviceRegistrationId::from_ulid(ulid::Ulid::generate()),
        account.clone(),
        AppName::parse("app").expect("valid"),
        UserId::from_ulid(ulid::Ulid::generate()),
        chrono::Utc::now(),
    );
    store.claim_token(&registration, Provider::Fcm, &token, None).await.expect("claimed");
    let hash = pushgate_core::domain::directory::token_hash(&token);
    let found = client
        .query()
        .table_name(&table)
        .index_name("byToken")
        .key_condition_expression("gsi1pk = :pk AND gsi1sk = :app")
        .expression_attribute_values(":pk", AttributeValue::S(format!("TOKEN#{account}#FCM#{hash}")))
        .expression_attribute_values(":app", AttributeValue::S("app".into()))
        .send()
        .await
        .expect("queried");
    let items = found.items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].get("registrationId"), Some(&AttributeValue::S(registration.id.to_string())));
    assert!(
        items[0].values().all(|v| !matches!(v, AttributeValue::S(s) if s.contains(&token))),
        "the token is not stored in the claim"
    );
}
