//! The contract suite of the [`DirectoryStore`] port (Users, DeviceRegistrations, token claims):
//! the same checks run against every adapter (memory always; DynamoDB on the emulator tier).
//!
//! Each check is a `pub async fn` taking the store under test and uses its own random accounts,
//! so checks are independent and may share a store. [`directory_store_contract_tests!`]
//! generates one `#[tokio::test]` per check from a store factory.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pushgate_core::app::ports::{DirectoryStore, PageRequest, StoreError};
use pushgate_core::domain::{
    AccountId, AppName, DeviceRegistration, DeviceRegistrationId, Provider, Timestamp, User, UserId,
};
use ulid::Ulid;

/// The directory store under test.
pub type Directory = Arc<dyn DirectoryStore>;

/// Generates one `#[tokio::test]` per contract check, named after the check. `$factory` is an
/// `async fn() -> Option<Directory>`; `None` skips (the emulator tier without an emulator).
#[macro_export]
macro_rules! directory_store_contract_tests {
    ($factory:path) => {
        $crate::directory_store_contract_tests!(@checks $factory;
            a_created_user_is_found_and_creating_it_again_is_a_conflict,
            users_are_scoped_by_account,
            users_list_newest_first_in_pages_that_end_with_no_next,
            a_saved_user_replaces_the_stored_one_and_saving_a_missing_one_is_a_conflict,
            a_created_registration_is_found_by_user_and_app_and_by_id_at_version_1,
            a_second_registration_for_the_same_user_and_app_is_a_conflict,
            a_registration_saved_against_a_stale_version_is_a_conflict,
            registrations_are_listed_by_user_and_by_app,
            the_registrations_of_many_users_in_one_app_are_read_in_one_call,
            a_deleted_registration_is_gone_and_a_stale_delete_is_a_conflict,
            registrations_are_scoped_by_account,
            the_first_claim_wins_and_a_claim_naming_the_holder_moves_the_token,
            claims_are_per_app_and_provider_and_hold_4kib_tokens,
            a_release_by_a_registration_that_no_longer_holds_the_token_changes_nothing,
            of_concurrent_claims_on_one_token_exactly_one_wins,
        );
    };
    (@checks $factory:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if let Some(store) = $factory().await {
                    $crate::directory_contract::$check(store).await;
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

fn app(name: &str) -> AppName {
    AppName::parse(name).expect("a valid App name")
}

fn user(account: &AccountId) -> User {
    User::new(UserId::from_ulid(Ulid::generate()), account.clone(), now())
}

fn registration(account: &AccountId, user: UserId, app_name: &str, tokens: &[&str]) -> DeviceRegistration {
    let mut r = DeviceRegistration::new(
        DeviceRegistrationId::from_ulid(Ulid::generate()),
        account.clone(),
        app(app_name),
        user,
        now(),
    );
    for t in tokens {
        r.register(t, Provider::Apn, now());
    }
    r
}

/// A created User is found as stored; creating it again is a `Conflict`.
pub async fn a_created_user_is_found_and_creating_it_again_is_a_conflict(store: Directory) {
    let account = account();
    let u = user(&account);
    store.create_user(&u).await.expect("created");
    assert_eq!(store.get_user(&account, u.id).await, Ok(Some(u.clone())));
    assert_eq!(store.create_user(&u).await, Err(StoreError::Conflict));
    assert_eq!(store.get_user(&account, UserId::from_ulid(Ulid::generate())).await, Ok(None));
}

/// Another account neither finds nor lists a User.
pub async fn users_are_scoped_by_account(store: Directory) {
    let (a, b) = (account(), account());
    let u = user(&a);
    store.create_user(&u).await.expect("created");
    assert_eq!(store.get_user(&b, u.id).await, Ok(None));
    let page = store.list_users(&b, &PageRequest { size: 10, cursor: None }).await.expect("listed");
    assert!(page.items.is_empty() && page.next.is_none());
}

/// Users list newest first; pages follow the cursor and the last has no `next`.
pub async fn users_list_newest_first_in_pages_that_end_with_no_next(store: Directory) {
    let account = account();
    let base = Utc::now().timestamp_millis() as u64;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = UserId::from_ulid(Ulid::from_parts(base + i, rand::random()));
        store.create_user(&User::new(id, account.clone(), now())).await.expect("created");
        ids.push(id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    for expected_len in [2, 2, 1] {
        let page = store.list_users(&account, &PageRequest { size: 2, cursor: cursor.clone() }).await.expect("page");
        assert_eq!(page.items.len(), expected_len);
        seen.extend(page.items.iter().map(|u| u.id));
        cursor = page.next;
    }
    assert_eq!(cursor, None, "the last page has no next");
    assert_eq!(seen, ids);
    let exact = store.list_users(&account, &PageRequest { size: 5, cursor: None }).await.expect("page");
    assert_eq!((exact.items.len(), exact.next), (5, None), "a page that ends exactly at the end has no next");
}

/// `save_user` replaces a stored User; a User never created cannot be saved.
pub async fn a_saved_user_replaces_the_stored_one_and_saving_a_missing_one_is_a_conflict(store: Directory) {
    let account = account();
    let mut u = user(&account);
    store.create_user(&u).await.expect("created");
    u.delete(now());
    store.save_user(&u).await.expect("saved");
    assert_eq!(store.get_user(&account, u.id).await.expect("read").and_then(|u| u.deleted_at), u.deleted_at);
    assert_eq!(store.save_user(&user(&account)).await, Err(StoreError::Conflict));
}

/// A created registration reads back (with its devices) by (User, App) and by id, at version 1.
pub async fn a_created_registration_is_found_by_user_and_app_and_by_id_at_version_1(store: Directory) {
    let account = account();
    let long = "t".repeat(4096);
    let r = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &["a", &long]);
    store.save_registration(&r, 0).await.expect("created");
    assert_eq!(store.registration(&account, r.user_id, &app("app")).await, Ok(Some((r.clone(), 1))));
    assert_eq!(store.registration_by_id(&account, &r.id).await, Ok(Some((r.clone(), 1))));
    assert_eq!(store.registration(&account, r.user_id, &app("other")).await, Ok(None));
    let unknown = DeviceRegistrationId::from_ulid(Ulid::generate());
    assert_eq!(store.registration_by_id(&account, &unknown).await, Ok(None));
}

/// One registration per (User, App): creating another one is a `Conflict` and the loser's id
/// names nothing.
pub async fn a_second_registration_for_the_same_user_and_app_is_a_conflict(store: Directory) {
    let account = account();
    let user = UserId::from_ulid(Ulid::generate());
    let first = registration(&account, user, "app", &["a"]);
    let second = registration(&account, user, "app", &["b"]);
    store.save_registration(&first, 0).await.expect("created");
    assert_eq!(store.save_registration(&second, 0).await, Err(StoreError::Conflict));
    assert_eq!(store.registration_by_id(&account, &second.id).await, Ok(None));
    assert_eq!(store.registration(&account, user, &app("app")).await, Ok(Some((first, 1))));
}

/// Updates need the stored version; each save moves it by one.
pub async fn a_registration_saved_against_a_stale_version_is_a_conflict(store: Directory) {
    let account = account();
    let mut r = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &["a"]);
    store.save_registration(&r, 0).await.expect("created");
    r.register("b", Provider::Fcm, now());
    store.save_registration(&r, 1).await.expect("updated");
    assert_eq!(store.save_registration(&r, 1).await, Err(StoreError::Conflict));
    let (stored, version) = store.registration_by_id(&account, &r.id).await.expect("read").expect("found");
    assert_eq!((stored.devices.len(), version), (2, 2));
}

/// A User's registrations (all Apps) and an App's registrations (all Users) are listed.
pub async fn registrations_are_listed_by_user_and_by_app(store: Directory) {
    let account = account();
    let (u1, u2) = (UserId::from_ulid(Ulid::generate()), UserId::from_ulid(Ulid::generate()));
    let a = registration(&account, u1, "one", &["a"]);
    let b = registration(&account, u1, "two", &["b"]);
    let c = registration(&account, u2, "one", &["c"]);
    for r in [&a, &b, &c] {
        store.save_registration(r, 0).await.expect("created");
    }
    let ids = |found: Vec<(DeviceRegistration, u64)>| {
        let mut ids: Vec<_> = found.into_iter().map(|(r, _)| r.id.to_string()).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        ids(store.registrations_of_user(&account, u1).await.expect("listed")),
        sorted(vec![a.id.to_string(), b.id.to_string()])
    );
    assert_eq!(
        ids(store.registrations_in_app(&account, &app("one")).await.expect("listed")),
        sorted(vec![a.id.to_string(), c.id.to_string()])
    );
}

/// A send's user recipients are resolved in one call: the registrations in the App of each
/// listed User (150 Users: more than one `BatchGetItem`), none of another App, another account or
/// an unlisted User; Users without one are left out.
pub async fn the_registrations_of_many_users_in_one_app_are_read_in_one_call(store: Directory) {
    let (account, other) = (account(), account());
    let users: Vec<UserId> = (0..150).map(|_| UserId::from_ulid(Ulid::generate())).collect();
    let mut expected = Vec::new();
    for (i, user) in users.iter().enumerate() {
        if i % 3 == 2 {
            continue; // no registration in "one"
        }
        let r = registration(&account, *user, "one", &[&format!("tok{i}")]);
        store.save_registration(&r, 0).await.expect("created");
        expected.push(r.id.to_string());
    }
    for r in [
        registration(&account, users[0], "two", &["elsewhere"]),
        registration(&other, users[1], "one", &["foreign"]),
        registration(&account, UserId::from_ulid(Ulid::generate()), "one", &["unlisted"]),
    ] {
        store.save_registration(&r, 0).await.expect("created");
    }
    let found = store.registrations_of_users(&account, &app("one"), &users).await.expect("read");
    let mut ids: Vec<_> = found.iter().map(|r| r.id.to_string()).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(found.iter().all(|r| r.devices.len() == 1 && r.app_name == app("one")));
    assert_eq!(store.registrations_of_users(&account, &app("one"), &[]).await, Ok(vec![]));
}

/// A deleted registration is gone by every key; a delete at a stale version is a `Conflict`;
/// deleting it again is fine.
pub async fn a_deleted_registration_is_gone_and_a_stale_delete_is_a_conflict(store: Directory) {
    let account = account();
    let mut r = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &["a"]);
    store.save_registration(&r, 0).await.expect("created");
    r.register("b", Provider::Apn, now());
    store.save_registration(&r, 1).await.expect("updated");
    assert_eq!(store.delete_registration(&r, 1).await, Err(StoreError::Conflict));
    store.delete_registration(&r, 2).await.expect("deleted");
    assert_eq!(store.registration_by_id(&account, &r.id).await, Ok(None));
    assert_eq!(store.registration(&account, r.user_id, &r.app_name).await, Ok(None));
    assert_eq!(store.registrations_in_app(&account, &r.app_name).await, Ok(vec![]));
    store.delete_registration(&r, 2).await.expect("deleting again is fine");
}

/// Another account finds no registration and no claim.
pub async fn registrations_are_scoped_by_account(store: Directory) {
    let (a, b) = (account(), account());
    let r = registration(&a, UserId::from_ulid(Ulid::generate()), "app", &["tok"]);
    store.save_registration(&r, 0).await.expect("created");
    store.claim_token(&r, Provider::Apn, "tok", None).await.expect("claimed");
    assert_eq!(store.registration_by_id(&b, &r.id).await, Ok(None));
    assert_eq!(store.registration(&b, r.user_id, &r.app_name).await, Ok(None));
    assert_eq!(store.registrations_of_user(&b, r.user_id).await, Ok(vec![]));
    assert_eq!(store.registrations_in_app(&b, &r.app_name).await, Ok(vec![]));
    assert_eq!(store.token_holder(&b, &r.app_name, Provider::Apn, "tok").await, Ok(None));
}

/// The first claim needs no holder; a second claim must name the current holder to move it.
pub async fn the_first_claim_wins_and_a_claim_naming_the_holder_moves_the_token(store: Directory) {
    let account = account();
    let r1 = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &["tok"]);
    let r2 = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &["tok"]);
    let holder = || store.token_holder(&account, &r1.app_name, Provider::Apn, "tok");
    assert_eq!(holder().await, Ok(None));
    store.claim_token(&r1, Provider::Apn, "tok", None).await.expect("first claim");
    assert_eq!(store.claim_token(&r2, Provider::Apn, "tok", None).await, Err(StoreError::Conflict));
    assert_eq!(store.claim_token(&r2, Provider::Apn, "tok", Some(&r2.id)).await, Err(StoreError::Conflict));
    assert_eq!(holder().await, Ok(Some(r1.id.clone())));
    store.claim_token(&r2, Provider::Apn, "tok", Some(&r1.id)).await.expect("moved");
    assert_eq!(holder().await, Ok(Some(r2.id.clone())));
}

/// A claim is per (App, provider, token), and tokens of 4,096 characters are claimed (stores
/// key them by a hash).
pub async fn claims_are_per_app_and_provider_and_hold_4kib_tokens(store: Directory) {
    let account = account();
    let long = "é".repeat(4096);
    let r = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &[]);
    store.claim_token(&r, Provider::Fcm, &long, None).await.expect("claimed");
    assert_eq!(store.token_holder(&account, &app("app"), Provider::Fcm, &long).await, Ok(Some(r.id.clone())));
    assert_eq!(store.token_holder(&account, &app("app"), Provider::Apn, &long).await, Ok(None));
    assert_eq!(store.token_holder(&account, &app("other"), Provider::Fcm, &long).await, Ok(None));
    let mut shorter = long.clone();
    shorter.pop();
    assert_eq!(store.token_holder(&account, &app("app"), Provider::Fcm, &shorter).await, Ok(None));
}

/// Releasing a claim only works for its holder; releasing a missing claim is fine.
pub async fn a_release_by_a_registration_that_no_longer_holds_the_token_changes_nothing(store: Directory) {
    let account = account();
    let r1 = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &[]);
    let r2 = registration(&account, UserId::from_ulid(Ulid::generate()), "app", &[]);
    store.claim_token(&r1, Provider::Apn, "tok", None).await.expect("claimed");
    store.claim_token(&r2, Provider::Apn, "tok", Some(&r1.id)).await.expect("moved");
    store.release_token(&account, &r1.app_name, Provider::Apn, "tok", &r1.id).await.expect("no-op");
    assert_eq!(store.token_holder(&account, &r1.app_name, Provider::Apn, "tok").await, Ok(Some(r2.id.clone())));
    store.release_token(&account, &r2.app_name, Provider::Apn, "tok", &r2.id).await.expect("released");
    assert_eq!(store.token_holder(&account, &r1.app_name, Provider::Apn, "tok").await, Ok(None));
    store.release_token(&account, &r2.app_name, Provider::Apn, "tok", &r2.id).await.expect("missing is fine");
}

/// Ten registrations claim one unclaimed token at once: exactly one wins and holds it.
pub async fn of_concurrent_claims_on_one_token_exactly_one_wins(store: Directory) {
    let account = account();
    let contenders: Vec<_> =
        (0..10).map(|_| registration(&account, UserId::from_ulid(Ulid::generate()), "app", &[])).collect();
    let tasks: Vec<_> = contenders
        .iter()
        .cloned()
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move { (r.id.clone(), store.claim_token(&r, Provider::Apn, "contested", None).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (id, result) = task.await.expect("the task ran");
        match result {
            Ok(()) => winners.push(id),
            Err(e) => assert_eq!(e, StoreError::Conflict),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    assert_eq!(store.token_holder(&account, &app("app"), Provider::Apn, "contested").await, Ok(winners.pop()));
}

/// Use-case check (both runtimes): `contenders` new Users register one token in `app` at once;
/// afterwards exactly one registration holds it, and the token's claim names that registration.
pub async fn concurrent_registrations_of_one_token_leave_it_in_exactly_one_registration(
    deps: &pushgate_core::app::Deps,
    account: &AccountId,
    app_name: &str,
    contenders: usize,
) {
    let body = serde_json::json!({"appName": app_name, "token": "contested", "provider": "FCM"});
    let tasks: Vec<_> = (0..contenders)
        .map(|_| {
            let (deps, account, body) = (deps.clone(), account.clone(), body.clone());
            tokio::spawn(async move { crate::commands::register(&deps, &account, &body).await })
        })
        .collect();
    let mut users = Vec::new();
    for task in tasks {
        let registration = task.await.expect("the task ran").expect("registered");
        users.push(registration.user_id);
    }
    let mut holders = Vec::new();
    for user in users {
        for (r, _) in deps.directory.registrations_of_user(account, user).await.expect("listed") {
            if r.holds("contested", Provider::Fcm) {
                holders.push(r.id);
            }
        }
    }
    assert_eq!(holders.len(), 1, "exactly one registration holds the token: {holders:?}");
    let claimed = deps.directory.token_holder(account, &app(app_name), Provider::Fcm, "contested").await;
    assert_eq!(claimed, Ok(holders.pop()));
}
