//! Users and DeviceRegistrations: register, list, fetch, delete; Users list, fetch,
//! delete; and the cascade when an App is deleted.
//!
//! Decisions where the contract is silent:
//! - `appName` must name an App of the account's credential book, else `400` (field `appName`).
//! - Without `userId` a new User is created. A `userId` that does not exist (or is another
//!   account's) is `404` like any unknown id; a deleted User is `400` (field `userId`): it keeps
//!   answering fetches with its `deletedAt`, but takes no devices any more.
//! - A registration holds 1–50 devices: the last device moved away or evicted takes its
//!   registration with it.
//! - Deleting a User keeps the User (fetch shows `deletedAt`; lists include it) and deletes its
//!   registrations. Deleting it again changes nothing.
//!
//! How a token stays in one registration per App: a registration is saved with a version check
//! (one per (User, App): creating a second one is a `Conflict`), then the registration claims the
//! token with a conditional write naming the holder it saw (`previous`). Of concurrent claims only
//! one wins; the others re-read the holder and claim again, so the last registration to claim
//! holds the token and every claim that took it over removes it from the previous holder.

use tracing::{instrument, warn};

use crate::domain::directory::Device;
use crate::domain::{AccountId, AppName, DeviceRegistration, DeviceRegistrationId, Provider, Timestamp, User, UserId};

use super::paging::page_newest_first;
use super::ports::{Page, PageRequest, StoreError};
use super::{AppError, Deps};

/// How often an optimistic write is retried when another writer got there first.
const RETRIES: usize = 8;
/// How often a token claim is retried: every concurrent registration of one token may take it
/// over once, so this bounds how many can race before one answers 503.
const CLAIM_RETRIES: usize = 32;

fn exhausted() -> AppError {
    AppError::Unavailable { retry_after: 1 }
}

/// What `POST /DeviceRegistrations` asks for: the device `(token, provider)` in the App
/// `app_name`, for the User `user_id` (a new User when `None`).
pub struct RegisterDevice {
    pub app_name: AppName,
    /// A token already checked against its provider's format.
    pub token: String,
    pub provider: Provider,
    pub user_id: Option<UserId>,
}

/// Registers a device (`{appName, token, provider, userId?}`): into the User's registration in
/// the App (created if needed), taking the device over from any other registration of the App.
#[instrument(skip_all, fields(account_id = %account))]
pub async fn register(
    deps: &Deps,
    account: &AccountId,
    request: RegisterDevice,
) -> Result<DeviceRegistration, AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    if book.app(&request.app_name).is_none() {
        return Err(AppError::field(
            "appName",
            format!("App {} does not exist: create a credential in it first", request.app_name),
        ));
    }
    let now = deps.clock.now();
    let user = match request.user_id {
        Some(id) => {
            let user = deps.directory.get_user(account, id).await?.ok_or(AppError::NotFound("User"))?;
            if user.deleted_at.is_some() {
                return Err(AppError::field("userId", "belongs to a deleted User"));
            }
            user.id
        }
        None => {
            let user = User::new(UserId::from_ulid(deps.ids.ulid(now)), account.clone(), now);
            deps.directory.create_user(&user).await?;
            user.id
        }
    };
    let new_id = DeviceRegistrationId::from_ulid(deps.ids.ulid(now));
    for _ in 0..RETRIES {
        let (mut registration, version) = match deps.directory.registration(account, user, &request.app_name).await? {
            Some(found) => found,
            None => (DeviceRegistration::new(new_id.clone(), account.clone(), request.app_name.clone(), user, now), 0),
        };
        let evicted = registration.register(&request.token, request.provider, now);
        match deps.directory.save_registration(&registration, version).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        release_all(deps, &registration, &evicted).await?;
        match claim(deps, &registration, request.provider, &request.token).await {
            Ok(Some(previous)) => {
                remove_device(deps, account, &previous, request.provider, &request.token, now).await?;
            }
            Ok(None) => {}
            Err(e) => {
                // Not the holder: the device must not stay here too (nothing was changed: 503).
                let rollback =
                    remove_device(deps, account, &registration.id, request.provider, &request.token, now).await;
                if let Err(rollback) = rollback {
                    warn!(error = %rollback, "could not take back a device whose token could not be claimed");
                }
                return Err(e);
            }
        }
        return Ok(registration);
    }
    Err(exhausted())
}

/// Makes `registration` the holder of `(token, provider)` in its App; returns the registration
/// that held it before (the device must be removed from it), if another.
async fn claim(
    deps: &Deps,
    registration: &DeviceRegistration,
    provider: Provider,
    token: &str,
) -> Result<Option<DeviceRegistrationId>, AppError> {
    let store = &deps.directory;
    for _ in 0..CLAIM_RETRIES {
        let previous = store.token_holder(&registration.account_id, &registration.app_name, provider, token).await?;
        if previous.as_ref() == Some(&registration.id) {
            return Ok(None);
        }
        match store.claim_token(registration, provider, token, previous.as_ref()).await {
            Ok(()) => return Ok(previous),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(exhausted())
}

/// Removes `(token, provider)` from the registration `id` (deleting it when it was the last).
async fn remove_device(
    deps: &Deps,
    account: &AccountId,
    id: &DeviceRegistrationId,
    provider: Provider,
    token: &str,
    now: Timestamp,
) -> Result<(), AppError> {
    for _ in 0..RETRIES {
        let Some((mut registration, version)) = deps.directory.registration_by_id(account, id).await? else {
            return Ok(());
        };
        if !registration.remove(token, provider, now) {
            return Ok(());
        }
        let result = if registration.devices.is_empty() {
            deps.directory.delete_registration(&registration, version).await
        } else {
            deps.directory.save_registration(&registration, version).await
        };
        match result {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(exhausted())
}

/// Forgets a device its provider reported dead (APNs 410/BadDeviceToken, FCM UNREGISTERED):
/// removes it from the registration of `app` that holds it (the last device takes the
/// registration with it) and releases the claim. A token nobody holds changes nothing.
#[instrument(skip_all, fields(account_id = %account, app = %app))]
pub async fn forget_dead_device(
    deps: &Deps,
    account: &AccountId,
    app: &AppName,
    provider: Provider,
    token: &str,
) -> Result<(), AppError> {
    let Some(holder) = deps.directory.token_holder(account, app, provider, token).await? else {
        return Ok(());
    };
    remove_device(deps, account, &holder, provider, token, deps.clock.now()).await?;
    deps.directory.release_token(account, app, provider, token, &holder).await?;
    Ok(())
}

/// Releases the claims `registration` has on `devices`.
async fn release_all(deps: &Deps, registration: &DeviceRegistration, devices: &[Device]) -> Result<(), AppError> {
    for d in devices {
        deps.directory
            .release_token(&registration.account_id, &registration.app_name, d.provider, &d.token, &registration.id)
            .await?;
    }
    Ok(())
}

/// Deletes a registration read at `version` and releases its claims.
async fn remove_registration(deps: &Deps, registration: &DeviceRegistration, version: u64) -> Result<(), StoreError> {
    deps.directory.delete_registration(registration, version).await?;
    for d in &registration.devices {
        deps.directory
            .release_token(&registration.account_id, &registration.app_name, d.provider, &d.token, &registration.id)
            .await?;
    }
    Ok(())
}

/// Deletes every registration `read` returns, re-reading after a lost race.
async fn remove_each<F, Fut>(deps: &Deps, read: F) -> Result<(), AppError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<(DeviceRegistration, u64)>, StoreError>>,
{
    for _ in 0..RETRIES {
        let mut lost = false;
        for (registration, version) in read().await? {
            match remove_registration(deps, &registration, version).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => lost = true,
                Err(e) => return Err(e.into()),
            }
        }
        if !lost {
            return Ok(());
        }
    }
    Err(exhausted())
}

/// A User's registrations (optionally in one App), newest first.
pub async fn list_registrations(
    deps: &Deps,
    account: &AccountId,
    user: UserId,
    app: Option<&AppName>,
    page: &PageRequest,
) -> Result<Page<DeviceRegistration>, AppError> {
    let items = deps.directory.registrations_of_user(account, user).await?;
    let items = items
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| app.is_none_or(|a| &r.app_name == a))
        .map(|r| (r.id.to_string(), r))
        .collect();
    Ok(page_newest_first(items, page))
}

/// One registration.
pub async fn fetch_registration(
    deps: &Deps,
    account: &AccountId,
    id: &DeviceRegistrationId,
) -> Result<DeviceRegistration, AppError> {
    let found = deps.directory.registration_by_id(account, id).await?;
    found.map(|(r, _)| r).ok_or(AppError::NotFound("DeviceRegistration"))
}

/// Deletes a registration (its devices are released).
#[instrument(skip_all, fields(account_id = %account))]
pub async fn delete_registration(
    deps: &Deps,
    account: &AccountId,
    id: &DeviceRegistrationId,
) -> Result<DeviceRegistration, AppError> {
    for _ in 0..RETRIES {
        let Some((registration, version)) = deps.directory.registration_by_id(account, id).await? else {
            return Err(AppError::NotFound("DeviceRegistration"));
        };
        match remove_registration(deps, &registration, version).await {
            Ok(()) => return Ok(registration),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(exhausted())
}

/// The account's Users, newest first.
pub async fn list_users(deps: &Deps, account: &AccountId, page: &PageRequest) -> Result<Page<User>, AppError> {
    Ok(deps.directory.list_users(account, page).await?)
}

/// One User (a deleted one shows its `deletedAt`).
pub async fn fetch_user(deps: &Deps, account: &AccountId, id: UserId) -> Result<User, AppError> {
    deps.directory.get_user(account, id).await?.ok_or(AppError::NotFound("User"))
}

/// Deletes a User: it is marked deleted, then its registrations are deleted.
#[instrument(skip_all, fields(account_id = %account))]
pub async fn delete_user(deps: &Deps, account: &AccountId, id: UserId) -> Result<User, AppError> {
    let mut user = fetch_user(deps, account, id).await?;
    if user.deleted_at.is_none() {
        user.delete(deps.clock.now());
        deps.directory.save_user(&user).await?;
    }
    remove_each(deps, || deps.directory.registrations_of_user(account, id)).await?;
    Ok(user)
}

/// The App deletion cascade: deletes every registration in `app`.
#[instrument(skip_all, fields(account_id = %account, app = %app))]
pub async fn delete_app_registrations(deps: &Deps, account: &AccountId, app: &AppName) -> Result<(), AppError> {
    remove_each(deps, || deps.directory.registrations_in_app(account, app)).await
}
