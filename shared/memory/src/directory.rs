use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::paging::parse_cursor;
use pushgate_core::app::ports::{DirectoryStore, Page, PageRequest, StoreError};
use pushgate_core::domain::{AccountId, AppName, DeviceRegistration, DeviceRegistrationId, Provider, User, UserId};

type RegistrationKey = (AccountId, UserId, AppName);
type ClaimKey = (AccountId, AppName, Provider, String);

#[derive(Default)]
struct State {
    users: HashMap<AccountId, BTreeMap<UserId, User>>,
    registrations: HashMap<RegistrationKey, (DeviceRegistration, u64)>,
    by_id: HashMap<(AccountId, DeviceRegistrationId), (UserId, AppName)>,
    claims: HashMap<ClaimKey, DeviceRegistrationId>,
}

/// Users, DeviceRegistrations and token claims held in memory, with the DynamoDB adapter's
/// semantics (versioned registrations, one per (User, App), conditional claims).
#[derive(Default)]
pub struct MemoryDirectory {
    state: RwLock<State>,
}

fn registration_key(r: &DeviceRegistration) -> RegistrationKey {
    (r.account_id.clone(), r.user_id, r.app_name.clone())
}

#[async_trait]
impl DirectoryStore for MemoryDirectory {
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut state = super::write(&self.state)?;
        let users = state.users.entry(user.account_id.clone()).or_default();
        if users.contains_key(&user.id) {
            return Err(StoreError::Conflict);
        }
        users.insert(user.id, user.clone());
        Ok(())
    }

    async fn get_user(&self, account: &AccountId, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(super::read(&self.state)?.users.get(account).and_then(|u| u.get(&id)).cloned())
    }

    async fn list_users(&self, account: &AccountId, page: &PageRequest) -> Result<Page<User>, StoreError> {
        let cursor = parse_cursor(&page.cursor, |c| UserId::parse(c).ok())?;
        let state = super::read(&self.state)?;
        let Some(users) = state.users.get(account) else { return Ok(Page { items: Vec::new(), next: None }) };
        let mut items: Vec<User> = match cursor {
            Some(c) => users.range(..c).rev().take(page.size + 1).map(|(_, u)| u.clone()).collect(),
            None => users.values().rev().take(page.size + 1).cloned().collect(),
        };
        let next = if items.len() > page.size {
            items.truncate(page.size);
            items.last().map(|u| u.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn save_user(&self, user: &User) -> Result<(), StoreError> {
        let mut state = super::write(&self.state)?;
        match state.users.get_mut(&user.account_id).and_then(|u| u.get_mut(&user.id)) {
            Some(stored) => {
                *stored = user.clone();
                Ok(())
            }
            None => Err(StoreError::Conflict),
        }
    }

    async fn registration(
        &self,
        account: &AccountId,
        user: UserId,
        app: &AppName,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError> {
        Ok(super::read(&self.state)?.registrations.get(&(account.clone(), user, app.clone())).cloned())
    }

    async fn registration_by_id(
        &self,
        account: &AccountId,
        id: &DeviceRegistrationId,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError> {
        let state = super::read(&self.state)?;
        let Some((user, app)) = state.by_id.get(&(account.clone(), id.clone())) else { return Ok(None) };
        Ok(state.registrations.get(&(account.clone(), *user, app.clone())).filter(|(r, _)| &r.id == id).cloned())
    }

    async fn registrations_of_user(
        &self,
        account: &AccountId,
        user: UserId,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError> {
        let state = super::read(&self.state)?;
        Ok(state
            .registrations
            .iter()
            .filter(|((a, u, _), _)| a == account && *u == user)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn registrations_of_users(
        &self,
        account: &AccountId,
        app: &AppName,
        users: &[UserId],
    ) -> Result<Vec<DeviceRegistration>, StoreError> {
        let state = super::read(&self.state)?;
        Ok(users
            .iter()
            .filter_map(|user| state.registrations.get(&(account.clone(), *user, app.clone())))
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn registrations_in_app(
        &self,
        account: &AccountId,
        app: &AppName,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError> {
        let state = super::read(&self.state)?;
        Ok(state
            .registrations
            .iter()
            .filter(|((a, _, n), _)| a == account && n == app)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn save_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError> {
        let mut state = super::write(&self.state)?;
        let key = registration_key(registration);
        let stored = state.registrations.get(&key).map(|(r, v)| (r.id.clone(), *v));
        match (stored, expected) {
            (None, 0) => {}
            (Some((id, version)), _) if expected != 0 && version == expected && id == registration.id => {}
            _ => return Err(StoreError::Conflict),
        }
        state.by_id.insert(
            (registration.account_id.clone(), registration.id.clone()),
            (registration.user_id, registration.app_name.clone()),
        );
        state.registrations.insert(key, (registration.clone(), expected + 1));
        Ok(())
    }

    async fn delete_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError> {
        let mut state = super::write(&self.state)?;
        let key = registration_key(registration);
        match state.registrations.get(&key) {
            Some((r, v)) if r.id == registration.id && *v == expected => {}
            Some((r, _)) if r.id == registration.id => return Err(StoreError::Conflict),
            _ => return Ok(()),
        }
        state.registrations.remove(&key);
        state.by_id.remove(&(registration.account_id.clone(), registration.id.clone()));
        Ok(())
    }

    async fn token_holder(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
    ) -> Result<Option<DeviceRegistrationId>, StoreError> {
        let key = (account.clone(), app.clone(), provider, token.to_owned());
        Ok(super::read(&self.state)?.claims.get(&key).cloned())
    }

    async fn claim_token(
        &self,
        holder: &DeviceRegistration,
        provider: Provider,
        token: &str,
        previous: Option<&DeviceRegistrationId>,
    ) -> Result<(), StoreError> {
        let mut state = super::write(&self.state)?;
        let key = (holder.account_id.clone(), holder.app_name.clone(), provider, token.to_owned());
        if state.claims.get(&key) != previous {
            return Err(StoreError::Conflict);
        }
        state.claims.insert(key, holder.id.clone());
        Ok(())
    }

    async fn release_token(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
        holder: &DeviceRegistrationId,
    ) -> Result<(), StoreError> {
        let mut state = super::write(&self.state)?;
        let key = (account.clone(), app.clone(), provider, token.to_owned());
        if state.claims.get(&key) == Some(holder) {
            state.claims.remove(&key);
        }
        Ok(())
    }
}
