//! APNs provider tokens shared between processes (Lambda instances) through a `TokenCache`.

use std::sync::Arc;

use pushgate_core::app::ports::{Delivery, DeliveryOutcome, PushGateway, SharedToken, TokenCache};
use pushgate_core::domain::{Content, CredentialId, CredentialSecret, CredentialType, Priority};
use pushgate_fakes::FakeApns;
use pushgate_fakes::keys::{ApnsSigningKey, apns_signing_key};
use pushgate_memory::MemoryTokenCache;
use pushgate_providers::gateway::{ProviderConfig, ProviderGateway};
use pushgate_tests::apn_token;

fn gateway(apns: &FakeApns, cache: &Arc<MemoryTokenCache>) -> ProviderGateway {
    let config = ProviderConfig { apns_endpoint: Some(apns.base_url()), ..ProviderConfig::default() };
    ProviderGateway::new(&config).expect("gateway builds").with_token_cache(cache.clone())
}

async fn deliver(
    gateway: &ProviderGateway,
    id: &CredentialId,
    secret: &Arc<CredentialSecret>,
    n: usize,
) -> DeliveryOutcome {
    let content = Content { title: Some("hi".into()), ..Default::default() };
    let token = apn_token(n);
    gateway
        .deliver(&Delivery {
            credential_id: id.clone(),
            credential_type: CredentialType::Apn,
            secret,
            token: &token,
            content: &content,
            priority: Priority::High,
            sound: None,
        })
        .await
}

fn secret_for(key: &ApnsSigningKey) -> Arc<CredentialSecret> {
    Arc::new(CredentialSecret::ApnToken {
        key_id: key.key_id.clone(),
        team_id: key.team_id.clone(),
        private_key_pem: key.private_key_pem.clone(),
        bundle_id: "com.example.app".into(),
    })
}

#[tokio::test]
async fn two_processes_sharing_a_token_cache_send_with_one_provider_token() {
    let apns = FakeApns::start_h2c().await;
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let cache = Arc::new(MemoryTokenCache::default());
    let (first, second) = (gateway(&apns, &cache), gateway(&apns, &cache));
    let id = CredentialId::from_ulid(ulid::Ulid::generate());
    let secret = secret_for(&key);

    for n in 0..3 {
        assert_eq!(deliver(&first, &id, &secret, n).await, DeliveryOutcome::Sent);
        assert_eq!(deliver(&second, &id, &secret, 10 + n).await, DeliveryOutcome::Sent);
    }

    assert_eq!(apns.delivered_count(), 6);
    assert_eq!(apns.distinct_jwts(), 1, "both processes used the token the first one minted");
}

/// A cache whose stored token is one Apple refuses until someone replaces it.
struct PoisonedCache {
    inner: MemoryTokenCache,
    replaced: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl TokenCache for PoisonedCache {
    async fn get(&self, key: &str) -> Result<Option<SharedToken>, pushgate_core::app::ports::StoreError> {
        if self.replaced.load(std::sync::atomic::Ordering::SeqCst) {
            return self.inner.get(key).await;
        }
        Ok(Some(SharedToken { token: "not-a-provider-token".into(), minted_at: chrono::Utc::now() }))
    }

    async fn put(
        &self,
        key: &str,
        token: SharedToken,
        stale_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<SharedToken, pushgate_core::app::ports::StoreError> {
        self.replaced.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.put(key, token, stale_before).await
    }
}

#[tokio::test]
async fn a_shared_token_apple_refuses_is_replaced_and_every_process_moves_to_the_replacement() {
    let apns = FakeApns::start_h2c().await;
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let cache = Arc::new(PoisonedCache { inner: MemoryTokenCache::default(), replaced: false.into() });
    let config = |apns: &FakeApns| ProviderConfig { apns_endpoint: Some(apns.base_url()), ..ProviderConfig::default() };
    let first = ProviderGateway::new(&config(&apns)).expect("builds").with_token_cache(cache.clone());
    let second = ProviderGateway::new(&config(&apns)).expect("builds").with_token_cache(cache.clone());
    let id = CredentialId::from_ulid(ulid::Ulid::generate());
    let secret = secret_for(&key);

    let refused = deliver(&first, &id, &secret, 1).await;
    assert!(!matches!(refused, DeliveryOutcome::Sent), "the poisoned shared token is refused: {refused:?}");
    assert_eq!(deliver(&first, &id, &secret, 2).await, DeliveryOutcome::Sent, "a fresh token replaces it");
    assert_eq!(deliver(&second, &id, &secret, 3).await, DeliveryOutcome::Sent);

    let bearers: std::collections::HashSet<_> =
        apns.delivered().into_iter().filter_map(|r| r.headers.get("authorization").cloned()).collect();
    assert_eq!(bearers.len(), 1, "both processes sent with the replacement");
    assert_eq!(apns.distinct_jwts(), 2, "the refused token and its one replacement");
}

#[tokio::test]
async fn two_credentials_with_the_same_apple_key_ids_never_share_a_cached_token() {
    // Another account uploading the same key id and team id (with whatever key) must not be
    // handed the first account's token from the shared cache.
    let apns = FakeApns::start_h2c().await;
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let cache = Arc::new(MemoryTokenCache::default());
    let (first, second) = (gateway(&apns, &cache), gateway(&apns, &cache));
    let (mine, theirs) =
        (CredentialId::from_ulid(ulid::Ulid::generate()), CredentialId::from_ulid(ulid::Ulid::generate()));
    let stranger = apns_signing_key("KEY1234567", "TEAM123456");

    assert_eq!(deliver(&first, &mine, &secret_for(&key), 1).await, DeliveryOutcome::Sent);
    let outcome = deliver(&second, &theirs, &secret_for(&stranger), 2).await;

    assert!(!matches!(outcome, DeliveryOutcome::Sent), "the stranger's own token is refused: {outcome:?}");
    assert_eq!(apns.distinct_jwts(), 2, "the stranger signed its own token instead of reusing the cached one");
}

/// A shared cache that counts its reads and writes (each one a DynamoDB request, and a write
/// a KMS `GenerateDataKey` too, on AWS).
#[derive(Default)]
struct CountingCache {
    inner: MemoryTokenCache,
    gets: std::sync::atomic::AtomicUsize,
    puts: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl TokenCache for CountingCache {
    async fn get(&self, key: &str) -> Result<Option<SharedToken>, pushgate_core::app::ports::StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // As slow as a network round trip, so concurrent deliveries overlap here.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.inner.get(key).await
    }

    async fn put(
        &self,
        key: &str,
        token: SharedToken,
        stale_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<SharedToken, pushgate_core::app::ports::StoreError> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.inner.put(key, token, stale_before).await
    }
}

/// A cold dispatcher starting a chunk runs its deliveries concurrently: the first 100 with one
/// key must share one look into the shared cache and one minted token, not race 100 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_process_delivering_concurrently_reads_and_writes_the_shared_token_once() {
    let apns = FakeApns::start_h2c().await;
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let cache = Arc::new(CountingCache::default());
    let config = ProviderConfig { apns_endpoint: Some(apns.base_url()), ..ProviderConfig::default() };
    let gateway = Arc::new(ProviderGateway::new(&config).expect("gateway builds").with_token_cache(cache.clone()));
    let id = CredentialId::from_ulid(ulid::Ulid::generate());
    let secret = secret_for(&key);

    let deliveries = (0..100).map(|n| {
        let (gateway, id, secret) = (gateway.clone(), id.clone(), secret.clone());
        tokio::spawn(async move { deliver(&gateway, &id, &secret, n).await })
    });
    for outcome in futures::future::join_all(deliveries).await {
        assert_eq!(outcome.expect("delivery ran"), DeliveryOutcome::Sent);
    }
    let (gets, puts) =
        (cache.gets.load(std::sync::atomic::Ordering::SeqCst), cache.puts.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!((gets, puts), (1, 1), "one read and one write of the shared token");
    assert_eq!(apns.distinct_jwts(), 1);
}
