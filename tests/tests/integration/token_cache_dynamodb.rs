//! Emulator tier: the shared provider-token cache on DynamoDB (moto), each test on its own
//! freshly created tables. Skipped by plain `cargo test`; run by `tests/run`.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use pushgate_aws::dynamodb::DynamoTokenCache;
use pushgate_core::app::ports::{SharedToken, TokenCache};
use pushgate_core::domain::Timestamp;
use pushgate_memory::crypto::AesGcmBox;

/// A DynamoDB client, the name of a fresh config table and a cache on it, or `None` without an
/// emulator.
async fn fresh_cache() -> Option<(aws_sdk_dynamodb::Client, String, DynamoTokenCache)> {
    let (client, table) = pushgate_tests::fresh_table("ConfigTable").await?;
    let cache = DynamoTokenCache::new(client.clone(), table.clone(), Arc::new(AesGcmBox::new(&[5; 32])));
    Some((client, table, cache))
}

/// Now, at millisecond precision (what the cache stores).
fn now() -> Timestamp {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

fn token(value: &str, minted_at: Timestamp) -> SharedToken {
    SharedToken { token: value.to_owned(), minted_at }
}

#[tokio::test]
async fn a_put_on_an_empty_cache_stores_the_token() {
    let Some((_, _, cache)) = fresh_cache().await else { return };
    assert_eq!(cache.get("credential-a").await, Ok(None));
    let minted = now();
    let first = token("eyJ.first.token", minted);
    assert_eq!(cache.put("credential-a", first.clone(), minted - Duration::minutes(40)).await, Ok(first.clone()));
    assert_eq!(cache.get("credential-a").await, Ok(Some(first)));
    assert_eq!(cache.get("credential-b").await, Ok(None), "keys are separate");
}

#[tokio::test]
async fn a_put_that_is_not_newer_than_the_stored_token_returns_the_stored_one() {
    let Some((_, _, cache)) = fresh_cache().await else { return };
    let minted = now();
    let first = token("eyJ.first.token", minted);
    cache.put("credential-a", first.clone(), minted - Duration::minutes(40)).await.expect("stored");
    for stale_before in [minted - Duration::minutes(40), minted] {
        let late = token("eyJ.late.token", minted + Duration::seconds(1));
        assert_eq!(cache.put("credential-a", late, stale_before).await, Ok(first.clone()), "{stale_before}");
    }
    assert_eq!(cache.get("credential-a").await, Ok(Some(first)), "the first token is kept");
}

#[tokio::test]
async fn a_put_after_the_stored_token_went_stale_replaces_it() {
    let Some((_, _, cache)) = fresh_cache().await else { return };
    let minted = now() - Duration::minutes(45);
    cache.put("credential-a", token("eyJ.old.token", minted), minted).await.expect("stored");
    let fresh = token("eyJ.fresh.token", now());
    let stale_before = minted + Duration::milliseconds(1);
    assert_eq!(cache.put("credential-a", fresh.clone(), stale_before).await, Ok(fresh.clone()));
    assert_eq!(cache.get("credential-a").await, Ok(Some(fresh)));
}

#[tokio::test]
async fn the_stored_item_holds_the_token_sealed_with_an_expiry_an_hour_after_minting() {
    let Some((client, table, cache)) = fresh_cache().await else { return };
    let minted = now();
    let secret = "eyJhbGciOiJFUzI1NiJ9.plaintext-provider-token.signature";
    cache.put("credential-a", token(secret, minted), minted).await.expect("stored");
    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("TOKEN#credential-a".into()))
        .key("sk", AttributeValue::S("TOKEN".into()))
        .send()
        .await
        .expect("read")
        .item
        .expect("stored");
    assert_eq!(item.get("mintedAt"), Some(&AttributeValue::N(minted.timestamp_millis().to_string())));
    let expires = (minted + Duration::hours(1)).timestamp().to_string();
    assert_eq!(item.get("expiresAt"), Some(&AttributeValue::N(expires)));
    let needle = secret.as_bytes();
    let contains = |haystack: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    for (name, value) in &item {
        let bytes = match value {
            AttributeValue::B(blob) => blob.as_ref(),
            AttributeValue::S(s) | AttributeValue::N(s) => s.as_bytes(),
            other => panic!("unexpected attribute {name}: {other:?}"),
        };
        assert!(!contains(bytes), "{name} holds the token in plaintext");
    }
    assert!(matches!(item.get("sealed"), Some(AttributeValue::B(_))), "the token is sealed as binary");
}

#[tokio::test]
async fn a_token_sealed_under_another_key_does_not_open() {
    let Some((client, table, cache)) = fresh_cache().await else { return };
    let minted = now();
    cache.put("credential-a", token("eyJ.first.token", minted), minted).await.expect("stored");
    let sealed = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("TOKEN#credential-a".into()))
        .key("sk", AttributeValue::S("TOKEN".into()))
        .send()
        .await
        .expect("read")
        .item
        .expect("stored");
    let mut moved = sealed.clone();
    moved.insert("pk".into(), AttributeValue::S("TOKEN#credential-b".into()));
    client.put_item().table_name(&table).set_item(Some(moved)).send().await.expect("copied");
    assert!(cache.get("credential-b").await.is_err(), "the key is the AAD: a copied item does not open");
}
