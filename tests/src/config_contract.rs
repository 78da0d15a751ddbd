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
    Account, AccountId, AppName, AuthToken, Credential, CredentialId, CredentialType, Timestamp,
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
    Account { id: account(), token_hash: AuthToken::new(token).hash() }
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
    assert!(found.verify(&AuthToken::new("the-right-token")));
    assert!(!found.verify(&AuthToken::new("the-wrong-token")));
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
    let rotated = Account { id: a.id.clone(), token_hash: AuthToken::new("token-a2").hash() };
    store.put(&rotated).await.expect("replaced");
    assert_eq!(found(store.get_account(&a.id).await.expect("read")), rotated.token_hash);
}
