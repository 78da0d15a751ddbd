//! The contract suite of the configuration ports ([`CredentialStore`] and [`AccountStore`]): the
//! same checks run against every adapter (memory always; DynamoDB on the emulator tier).
//!
//! Each check is a `pub async fn` taking the store under test and uses its own random accounts,
//! so checks are independent and may share a store. [`config_store_contract_tests!`] generates
//! one `#[tokio::test]` per check from two store factories, so a new check runs against every
//! adapter by adding it to the macro's list.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pushgate_aws::dynamodb::DynamoAccountStore;
use pushgate_core::app::ports::{AccountStore, CredentialStore, StoreError};
use pushgate_core::domain::credential::CredentialBook;
use pushgate_core::domain::{
    Account, AccountId, AccountLimits, ApiKey, ApiKeySid, AppName, AuthToken, Credential, CredentialId, CredentialType,
    Timestamp,
};
use pushgate_memory::MemoryAccounts;
use ulid::Ulid;

/// The credential store under test.
pub type Credentials = Arc<dyn CredentialStore>;

/// The account store under test.
pub type Accounts = Arc<dyn AccountFixture>;

/// An account store the checks can add accounts to (each adapter has its own way to do that:
/// accounts are not created through the API).
#[async_trait]
pub trait AccountFixture: AccountStore {
    /// Adds (or replaces) an account.
    async fn put(&self, account: &Account) -> Result<(), StoreError>;
}

#[async_trait]
impl AccountFixture for MemoryAccounts {
    async fn put(&self, account: &Account) -> Result<(), StoreError> {
        self.insert(account.clone())
    }
}

#[async_trait]
impl AccountFixture for DynamoAccountStore {
    async fn put(&self, account: &Account) -> Result<(), StoreError> {
        self.put_account(account).await
    }
}

/// Generates one `#[tokio::test]` per contract check, named after the check. `credentials` is an
/// `async fn() -> Option<Credentials>` and `accounts` an `async fn() -> Option<Accounts>`; `None`
/// skips (the emulator tier without an emulator).
#[macro_export]
macro_rules! config_store_contract_tests {
    (credentials: $credentials:path, accounts: $accounts:path $(,)?) => {
        $crate::config_store_contract_tests!(@checks $credentials;
            an_account_without_a_book_has_an_empty_one_at_version_0,
            a_saved_book_loads_back_at_the_next_version,
            a_book_saved_against_a_stale_version_is_a_conflict,
            of_two_first_saves_only_one_wins,
            books_are_scoped_by_account,
            secrets_round_trip_and_are_replaced,
            secrets_are_scoped_by_account,
            a_deleted_secret_is_gone_and_deleting_a_missing_one_is_fine,
        );
        $crate::config_store_contract_tests!(@checks $accounts;
            a_missing_account_is_none,
            a_stored_account_is_found_with_its_token_hash,
            accounts_are_scoped_by_id,
            an_account_is_created_once_and_a_second_create_of_its_id_is_a_conflict,
            a_saved_account_keeps_its_rotated_token_grace_period_and_limits,
            saving_a_deleted_account_is_a_conflict_and_never_brings_it_back,
            an_api_key_is_found_by_its_sid_and_listed_under_its_account_only,
            an_api_key_for_a_missing_account_is_refused,
            a_revoked_api_key_is_gone_at_once_and_another_account_cannot_revoke_it,
            deleting_an_account_deletes_its_api_keys,
        );
    };
    (@checks $factory:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if let Some(store) = $factory().await {
                    $crate::config_contract::$check(store).await;
                }
            }
        )*
    };
}

fn account() -> AccountId {
    AccountId::from_bytes(rand::random())
}

/// Now, at millisecond precision.
fn now() -> Timestamp {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

fn credential_id() -> CredentialId {
    CredentialId::from_ulid(Ulid::generate())
}

/// A book of `account` with one App holding an APN and an FCM credential.
fn book(account: &AccountId, app: &str) -> CredentialBook {
    let mut book = CredentialBook::default();
    for credential_type in [CredentialType::Apn, CredentialType::Fcm] {
        let credential = Credential {
            id: credential_id(),
            account_id: account.clone(),
            credential_type,
            app_name: AppName::parse(app).expect("a valid App name"),
            is_default: false,
            created_at: now(),
            updated_at: now(),
        };
        book.add(credential, false).expect("within limits");
    }
    book
}

fn hash_of(token: &str) -> Account {
    Account::new(account(), AuthToken::new(token).hash())
}

/// An account that never saved a book has an empty one at version 0.
pub async fn an_account_without_a_book_has_an_empty_one_at_version_0(store: Credentials) {
    assert_eq!(store.load_book(&account()).await, Ok((CredentialBook::default(), 0)));
}

/// A saved book loads back as saved, one version later, and saves again against that version.
pub async fn a_saved_book_loads_back_at_the_next_version(store: Credentials) {
    let account = account();
    let first = book(&account, "app_a");
    store.save_book(&account, &first, 0).await.expect("first save");
    assert_eq!(store.load_book(&account).await, Ok((first.clone(), 1)));
    let mut second = first.clone();
    second.add(book(&account, "app_b").credentials.remove(0), false).expect("within limits");
    store.save_book(&account, &second, 1).await.expect("second save");
    assert_eq!(store.load_book(&account).await, Ok((second, 2)));
}

/// Saving against a version that is no longer current is a conflict and changes nothing.
pub async fn a_book_saved_against_a_stale_version_is_a_conflict(store: Credentials) {
    let account = account();
    let first = book(&account, "app_a");
    store.save_book(&account, &first, 0).await.expect("first save");
    store.save_book(&account, &first, 1).await.expect("second save");
    let other = book(&account, "app_b");
    assert_eq!(store.save_book(&account, &other, 1).await, Err(StoreError::Conflict));
    assert_eq!(store.save_book(&account, &other, 3).await, Err(StoreError::Conflict), "a future version");
    assert_eq!(store.load_book(&account).await, Ok((first, 2)), "the stored book is kept");
}

/// Two saves that both expect no book: the second is a conflict and the first book is kept.
pub async fn of_two_first_saves_only_one_wins(store: Credentials) {
    let account = account();
    let first = book(&account, "app_a");
    store.save_book(&account, &first, 0).await.expect("first save");
    assert_eq!(store.save_book(&account, &book(&account, "app_b"), 0).await, Err(StoreError::Conflict));
    assert_eq!(store.load_book(&account).await, Ok((first, 1)));
}

/// Another account's book is not seen, and its versions are its own.
pub async fn books_are_scoped_by_account(store: Credentials) {
    let (a, b) = (account(), account());
    store.save_book(&a, &book(&a, "app_a"), 0).await.expect("saved");
    assert_eq!(store.load_book(&b).await, Ok((CredentialBook::default(), 0)));
    store.save_book(&b, &book(&b, "app_b"), 0).await.expect("the other account starts at version 0");
}

/// A sealed secret comes back byte for byte; putting it again replaces it.
pub async fn secrets_round_trip_and_are_replaced(store: Credentials) {
    let (account, id) = (account(), credential_id());
    let sealed: Vec<u8> = (0..=255).collect();
    store.put_secret(&account, &id, sealed.clone()).await.expect("stored");
    assert_eq!(store.get_secret(&account, &id).await, Ok(Some(sealed)));
    store.put_secret(&account, &id, vec![1, 2, 3]).await.expect("replaced");
    assert_eq!(store.get_secret(&account, &id).await, Ok(Some(vec![1, 2, 3])));
    assert_eq!(store.get_secret(&account, &credential_id()).await, Ok(None), "another id");
}

/// Another account's secret is not found and not deleted, even under the same credential id.
pub async fn secrets_are_scoped_by_account(store: Credentials) {
    let (a, b, id) = (account(), account(), credential_id());
    store.put_secret(&a, &id, vec![1]).await.expect("stored");
    assert_eq!(store.get_secret(&b, &id).await, Ok(None));
    store.delete_secret(&b, &id).await.expect("deleting a missing secret is fine");
    assert_eq!(store.get_secret(&a, &id).await, Ok(Some(vec![1])), "the owner's secret is kept");
}

/// A deleted secret is gone; deleting it again (or one never stored) succeeds.
pub async fn a_deleted_secret_is_gone_and_deleting_a_missing_one_is_fine(store: Credentials) {
    let (account, id) = (account(), credential_id());
    store.put_secret(&account, &id, vec![9; 64]).await.expect("stored");
    store.delete_secret(&account, &id).await.expect("deleted");
    assert_eq!(store.get_secret(&account, &id).await, Ok(None));
    store.delete_secret(&account, &id).await.expect("deleting again is fine");
    store.delete_secret(&account, &credential_id()).await.expect("deleting a never-stored secret is fine");
}

/// An account that was never stored is `None`.
pub async fn a_missing_account_is_none(store: Accounts) {
    assert!(store.get_account(&account()).await.expect("read").is_none());
}

/// A stored account is found with its token hash: its token verifies, another does not.
pub async fn a_stored_account_is_found_with_its_token_hash(store: Accounts) {
    let stored = hash_of("the-right-token");
    store.put(&stored).await.expect("stored");
    let found = store.get_account(&stored.id).await.expect("read").expect("found");
    assert_eq!(found.id, stored.id);
    assert_eq!(found.token_hash, stored.token_hash);
    assert!(found.verify(&AuthToken::new("the-right-token"), now()));
    assert!(!found.verify(&AuthToken::new("the-wrong-token"), now()));
}

/// Each account is found under its own id only, with its own hash; putting again replaces it.
pub async fn accounts_are_scoped_by_id(store: Accounts) {
    let (a, b) = (hash_of("token-a"), hash_of("token-b"));
    store.put(&a).await.expect("stored");
    assert!(store.get_account(&b.id).await.expect("read").is_none());
    store.put(&b).await.expect("stored");
    let found = |account: Option<Account>| account.expect("found").token_hash;
    assert_eq!(found(store.get_account(&a.id).await.expect("read")), a.token_hash);
    assert_eq!(found(store.get_account(&b.id).await.expect("read")), b.token_hash);
    let rotated = Account::new(a.id.clone(), AuthToken::new("token-a2").hash());
    store.put(&rotated).await.expect("replaced");
    assert_eq!(found(store.get_account(&a.id).await.expect("read")), rotated.token_hash);
}

fn api_key(account: &AccountId, name: &str) -> (ApiKey, AuthToken) {
    let secret = AuthToken::generate();
    let key = ApiKey {
        sid: ApiKeySid::generate(),
        account: account.clone(),
        secret_hash: secret.hash(),
        friendly_name: name.into(),
        created: now(),
    };
    (key, secret)
}

/// `create_account` adds a new account; a second create of the same id is a `Conflict` and
/// leaves the first untouched.
pub async fn an_account_is_created_once_and_a_second_create_of_its_id_is_a_conflict(store: Accounts) {
    let first = hash_of("first");
    store.create_account(&first).await.expect("created");
    let second = Account::new(first.id.clone(), AuthToken::new("second").hash());
    assert_eq!(store.create_account(&second).await, Err(StoreError::Conflict));
    let found = store.get_account(&first.id).await.expect("read").expect("found");
    assert!(found.verify(&AuthToken::new("first"), now()));
    assert!(!found.verify(&AuthToken::new("second"), now()));
}

/// What a rotation and the operator's limits change survives a save and a read.
pub async fn a_saved_account_keeps_its_rotated_token_grace_period_and_limits(store: Accounts) {
    let mut account = hash_of("old");
    store.create_account(&account).await.expect("created");
    let until = now() + chrono::Duration::hours(1);
    account.rotate(&AuthToken::new("new"), now(), until);
    account.limits = AccountLimits {
        requests_per_second: Some(5),
        request_burst: None,
        notifications_per_minute: Some(1000),
        live_notifications: None,
    };
    store.save_account(&account).await.expect("saved");
    let found = store.get_account(&account.id).await.expect("read").expect("found");
    assert_eq!(found, account);
    assert!(found.verify(&AuthToken::new("old"), now()) && found.verify(&AuthToken::new("new"), now()));
    assert!(!found.verify(&AuthToken::new("old"), until));
}

/// `save_account` only replaces: a deleted account stays deleted.
pub async fn saving_a_deleted_account_is_a_conflict_and_never_brings_it_back(store: Accounts) {
    let account = hash_of("t");
    assert_eq!(store.save_account(&account).await, Err(StoreError::Conflict), "never created");
    store.create_account(&account).await.expect("created");
    store.delete_account(&account.id).await.expect("deleted");
    assert_eq!(store.save_account(&account).await, Err(StoreError::Conflict));
    assert!(store.get_account(&account.id).await.expect("read").is_none());
    store.delete_account(&account.id).await.expect("deleting a missing account is fine");
}

/// An API key is found by its sid alone, with its account, hash and name; each account lists
/// only its own keys, oldest first; a second key with the same sid is a `Conflict`.
pub async fn an_api_key_is_found_by_its_sid_and_listed_under_its_account_only(store: Accounts) {
    let (a, b) = (hash_of("a"), hash_of("b"));
    store.create_account(&a).await.expect("created");
    store.create_account(&b).await.expect("created");
    let (first, secret) = api_key(&a.id, "ci");
    store.create_api_key(&first).await.expect("created");
    let (mut second, _) = api_key(&a.id, "");
    second.created = first.created + chrono::Duration::milliseconds(1);
    store.create_api_key(&second).await.expect("created");
    let (of_b, _) = api_key(&b.id, "b's");
    store.create_api_key(&of_b).await.expect("created");

    let found = store.get_api_key(&first.sid).await.expect("read").expect("found");
    assert_eq!(found, first);
    assert!(found.verify(&secret) && !found.verify(&AuthToken::new("guess")));
    let sids = |keys: Vec<ApiKey>| keys.into_iter().map(|k| k.sid).collect::<Vec<_>>();
    assert_eq!(sids(store.list_api_keys(&a.id).await.expect("listed")), vec![first.sid.clone(), second.sid.clone()]);
    assert_eq!(sids(store.list_api_keys(&b.id).await.expect("listed")), vec![of_b.sid.clone()]);
    let (mut clash, _) = api_key(&b.id, "clash");
    clash.sid = first.sid.clone();
    assert_eq!(store.create_api_key(&clash).await, Err(StoreError::Conflict));
    assert_eq!(store.get_api_key(&first.sid).await.expect("read").expect("found").account, a.id);
    assert!(store.get_api_key(&ApiKeySid::generate()).await.expect("read").is_none());
}

/// A key is never created for an account that does not exist (deleted meanwhile).
pub async fn an_api_key_for_a_missing_account_is_refused(store: Accounts) {
    let (key, _) = api_key(&account(), "orphan");
    assert_eq!(store.create_api_key(&key).await, Err(StoreError::Conflict));
    assert!(store.get_api_key(&key.sid).await.expect("read").is_none());
}

/// Revoking deletes the key at once (the next read misses it); only its own account can
/// revoke it, and revoking it twice says `false`.
pub async fn a_revoked_api_key_is_gone_at_once_and_another_account_cannot_revoke_it(store: Accounts) {
    let (a, b) = (hash_of("a"), hash_of("b"));
    store.create_account(&a).await.expect("created");
    store.create_account(&b).await.expect("created");
    let (key, _) = api_key(&a.id, "k");
    store.create_api_key(&key).await.expect("created");
    assert!(!store.delete_api_key(&b.id, &key.sid).await.expect("answered"), "not b's key");
    assert!(store.get_api_key(&key.sid).await.expect("read").is_some());
    assert!(store.delete_api_key(&a.id, &key.sid).await.expect("revoked"));
    assert!(store.get_api_key(&key.sid).await.expect("read").is_none());
    assert!(store.list_api_keys(&a.id).await.expect("listed").is_empty());
    assert!(!store.delete_api_key(&a.id, &key.sid).await.expect("answered"), "already gone");
}

/// Deleting an account deletes every key it had; other accounts keep theirs.
pub async fn deleting_an_account_deletes_its_api_keys(store: Accounts) {
    let (a, b) = (hash_of("a"), hash_of("b"));
    store.create_account(&a).await.expect("created");
    store.create_account(&b).await.expect("created");
    let keys: Vec<ApiKey> = (0..3).map(|i| api_key(&a.id, &format!("k{i}")).0).collect();
    for key in &keys {
        store.create_api_key(key).await.expect("created");
    }
    let (kept, _) = api_key(&b.id, "kept");
    store.create_api_key(&kept).await.expect("created");
    store.delete_account(&a.id).await.expect("deleted");
    for key in &keys {
        assert!(store.get_api_key(&key.sid).await.expect("read").is_none());
    }
    assert!(store.get_account(&a.id).await.expect("read").is_none());
    assert!(store.get_api_key(&kept.sid).await.expect("read").is_some());
}
