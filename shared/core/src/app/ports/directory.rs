//! Users and device registrations.

use async_trait::async_trait;

use crate::domain::{AccountId, AppName, DeviceRegistration, DeviceRegistrationId, Provider, User, UserId};

use super::{Page, PageRequest, StoreError};

/// Users, DeviceRegistrations and the token claims that keep a device in one registration of an
/// App. Registrations carry a version for optimistic concurrency (like the credential book); the
/// use cases in `app::directory` apply the rules and retry on `Conflict`.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Stores a new User. `Conflict` if its id exists.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    /// The User (deleted ones too), or `None` if missing or another account's.
    async fn get_user(&self, account: &AccountId, id: UserId) -> Result<Option<User>, StoreError>;
    /// The account's Users, newest first.
    async fn list_users(&self, account: &AccountId, page: &PageRequest) -> Result<Page<User>, StoreError>;
    /// Replaces a stored User (to record its deletion). `Conflict` if it does not exist.
    async fn save_user(&self, user: &User) -> Result<(), StoreError>;
    /// The User's registration in `app` and its version, or `None`.
    async fn registration(
        &self,
        account: &AccountId,
        user: UserId,
        app: &AppName,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError>;
    /// A registration by id and its version, or `None` if missing or another account's.
    async fn registration_by_id(
        &self,
        account: &AccountId,
        id: &DeviceRegistrationId,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError>;
    /// Every registration of a User (at most one per App), in no particular order.
    async fn registrations_of_user(
        &self,
        account: &AccountId,
        user: UserId,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError>;
    /// The registrations in `app` of each of `users` (a send's user recipients; up to 10,000
    /// ids, distinct), read consistently, in no particular order; Users without one are left
    /// out.
    async fn registrations_of_users(
        &self,
        account: &AccountId,
        app: &AppName,
        users: &[UserId],
    ) -> Result<Vec<DeviceRegistration>, StoreError>;
    /// Every registration in an App (for the App deletion cascade), in no particular order.
    async fn registrations_in_app(
        &self,
        account: &AccountId,
        app: &AppName,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError>;
    /// Stores `registration` at version `expected + 1`. `expected` 0 creates it: `Conflict` if
    /// its (User, App) already has one. Otherwise `Conflict` unless the stored version is
    /// `expected`.
    async fn save_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError>;
    /// Deletes a registration if its version is still `expected` (`Conflict` otherwise; a missing
    /// one is fine). Its token claims are not touched: release them with [`Self::release_token`].
    async fn delete_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError>;
    /// The registration of `app` that holds `(token, provider)`, or `None`.
    async fn token_holder(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
    ) -> Result<Option<DeviceRegistrationId>, StoreError>;
    /// Makes `holder` the registration of its App that holds `(token, provider)`, if the current
    /// holder is still `previous` (`None`: nobody). `Conflict` otherwise: at most one of two
    /// concurrent claims with the same `previous` wins.
    async fn claim_token(
        &self,
        holder: &DeviceRegistration,
        provider: Provider,
        token: &str,
        previous: Option<&DeviceRegistrationId>,
    ) -> Result<(), StoreError>;
    /// Forgets the claim on `(token, provider)` in `app` if `holder` still holds it (otherwise,
    /// or if there is none, nothing happens).
    async fn release_token(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
        holder: &DeviceRegistrationId,
    ) -> Result<(), StoreError>;
}
