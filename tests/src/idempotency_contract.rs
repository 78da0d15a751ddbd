//! The contract suite of the [`IdempotencyStore`] port: the same checks against every adapter
//! (memory always; DynamoDB on the emulator tier). [`idempotency_store_contract_tests!`]
//! generates one `#[tokio::test]` per check from a store factory.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use pushgate_core::app::ports::{Begin, IdempotencyStore, Replay};
use pushgate_core::domain::{AccountId, Timestamp};

/// The store under test.
pub type Store = Arc<dyn IdempotencyStore>;

/// Generates one `#[tokio::test]` per check; `$factory` is an `async fn() -> Option<Store>`
/// (`None` skips: the emulator tier without an emulator).
#[macro_export]
macro_rules! idempotency_store_contract_tests {
    ($factory:path) => {
        $crate::idempotency_store_contract_tests!(@checks $factory;
            a_new_key_starts_and_its_answer_is_replayed_to_the_same_request,
            a_key_used_for_another_request_is_a_mismatch_while_running_and_when_answered,
            a_running_claim_is_in_progress_until_its_lease_lapses_then_taken_over,
            an_abandoned_claim_lets_the_next_request_run_but_an_answer_is_never_abandoned,
            keys_are_scoped_by_account,
            an_expired_answer_is_claimed_anew,
            of_many_concurrent_claims_of_one_key_exactly_one_starts,
        );
    };
    (@checks $factory:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if let Some(store) = $factory().await {
                    $crate::idempotency_contract::$check(store).await;
                }
            }
        )*
    };
}

fn account() -> AccountId {
    AccountId::from_bytes(rand::random())
}

fn now() -> Timestamp {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

fn key() -> String {
    format!("key-{}", ulid::Ulid::generate())
}

/// Claims at `at` with a 60 s lease and a 24 h window.
async fn claim(store: &Store, account: &AccountId, key: &str, fingerprint: [u8; 32], at: Timestamp) -> Begin {
    store
        .begin(account, key, fingerprint, at, at + Duration::seconds(60), at + Duration::hours(24))
        .await
        .expect("the store answers")
}

fn answer(body: &str) -> Replay {
    Replay { status: 202, location: Some("https://push.example/v1/x".into()), body: body.into() }
}

/// A new key starts; once answered, the same request gets that answer (status, location, body).
pub async fn a_new_key_starts_and_its_answer_is_replayed_to_the_same_request(store: Store) {
    let (a, k) = (account(), key());
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Started);
    store
        .finish(&a, &k, [1; 32], &answer(r#"{"operationId":"op1"}"#), now() + Duration::hours(24))
        .await
        .expect("kept");
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Replay(answer(r#"{"operationId":"op1"}"#)));
    let no_location = Replay { status: 400, location: None, body: "{}".into() };
    let k2 = key();
    assert_eq!(claim(&store, &a, &k2, [1; 32], now()).await, Begin::Started);
    store.finish(&a, &k2, [1; 32], &no_location, now() + Duration::hours(24)).await.expect("kept");
    assert_eq!(claim(&store, &a, &k2, [1; 32], now()).await, Begin::Replay(no_location));
}

/// Another fingerprint under a used key is a mismatch, whether the first is running or answered.
pub async fn a_key_used_for_another_request_is_a_mismatch_while_running_and_when_answered(store: Store) {
    let (a, k) = (account(), key());
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Started);
    assert_eq!(claim(&store, &a, &k, [2; 32], now()).await, Begin::Mismatch);
    store.finish(&a, &k, [1; 32], &answer("{}"), now() + Duration::hours(24)).await.expect("kept");
    assert_eq!(claim(&store, &a, &k, [2; 32], now()).await, Begin::Mismatch);
}

/// A running claim is in progress for others until its lease lapses; then the next takes over.
pub async fn a_running_claim_is_in_progress_until_its_lease_lapses_then_taken_over(store: Store) {
    let (a, k) = (account(), key());
    let t = now();
    assert_eq!(claim(&store, &a, &k, [1; 32], t).await, Begin::Started);
    assert_eq!(claim(&store, &a, &k, [1; 32], t + Duration::seconds(59)).await, Begin::InProgress);
    assert_eq!(claim(&store, &a, &k, [1; 32], t + Duration::seconds(61)).await, Begin::Started, "the holder died");
    assert_eq!(claim(&store, &a, &k, [1; 32], t + Duration::seconds(62)).await, Begin::InProgress);
}

/// `abandon` releases a running claim (the next request runs); it never removes an answer, and
/// never another fingerprint's claim.
pub async fn an_abandoned_claim_lets_the_next_request_run_but_an_answer_is_never_abandoned(store: Store) {
    let (a, k) = (account(), key());
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Started);
    store.abandon(&a, &k, [2; 32]).await.expect("answered");
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::InProgress, "not the claim's fingerprint");
    store.abandon(&a, &k, [1; 32]).await.expect("released");
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Started);
    store.finish(&a, &k, [1; 32], &answer("{}"), now() + Duration::hours(24)).await.expect("kept");
    store.abandon(&a, &k, [1; 32]).await.expect("answered");
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Replay(answer("{}")));
    store.abandon(&account(), &key(), [1; 32]).await.expect("abandoning a missing claim is fine");
}

/// Two accounts may use the same key for different requests.
pub async fn keys_are_scoped_by_account(store: Store) {
    let (a, b, k) = (account(), account(), key());
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Started);
    assert_eq!(claim(&store, &b, &k, [2; 32], now()).await, Begin::Started);
    store.finish(&a, &k, [1; 32], &answer("a"), now() + Duration::hours(24)).await.expect("kept");
    store.finish(&b, &k, [2; 32], &answer("b"), now() + Duration::hours(24)).await.expect("kept");
    assert_eq!(claim(&store, &a, &k, [1; 32], now()).await, Begin::Replay(answer("a")));
    assert_eq!(claim(&store, &b, &k, [2; 32], now()).await, Begin::Replay(answer("b")));
}

/// After its window, a key is free again, even for another request.
pub async fn an_expired_answer_is_claimed_anew(store: Store) {
    let (a, k) = (account(), key());
    let t = now() - Duration::hours(25);
    assert_eq!(claim(&store, &a, &k, [1; 32], t).await, Begin::Started);
    store.finish(&a, &k, [1; 32], &answer("{}"), t + Duration::hours(24)).await.expect("kept");
    assert_eq!(claim(&store, &a, &k, [2; 32], now()).await, Begin::Started);
}

/// Twenty concurrent claims of one key: exactly one starts, the others see it running.
pub async fn of_many_concurrent_claims_of_one_key_exactly_one_starts(store: Store) {
    let (a, k) = (account(), key());
    let at = now();
    let claims = (0..20).map(|_| {
        let (store, a, k) = (store.clone(), a.clone(), k.clone());
        tokio::spawn(async move { claim(&store, &a, &k, [9; 32], at).await })
    });
    let results: Vec<Begin> =
        futures::future::join_all(claims).await.into_iter().map(|r| r.expect("no panic")).collect();
    assert_eq!(results.iter().filter(|r| **r == Begin::Started).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Begin::Started | Begin::InProgress)), "{results:?}");
}
