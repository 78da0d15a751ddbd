//! Users and DeviceRegistrations: who has which devices in which App, and the rules of
//! a registration's device list as pure functions.

use sha2::{Digest, Sha256};

use super::ids::{AccountId, AppName, DeviceRegistrationId, UserId};
use super::model::{Provider, Timestamp};

/// Most devices one registration holds; registering one more evicts the least recently
/// registered.
pub const MAX_DEVICES: usize = 50;

/// A push User: the person a registration's devices belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Owner.
    pub account_id: AccountId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When it was deleted (its registrations are gone; it can no longer register devices).
    pub deleted_at: Option<Timestamp>,
}

impl User {
    /// A new User.
    pub fn new(id: UserId, account_id: AccountId, now: Timestamp) -> Self {
        Self { id, account_id, created_at: now, updated_at: now, deleted_at: None }
    }

    /// Marks the User deleted (once: deleting again keeps the first time).
    pub fn delete(&mut self, now: Timestamp) {
        if self.deleted_at.is_none() {
            self.deleted_at = Some(now);
            self.updated_at = now;
        }
    }
}

/// One device of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The provider's device token (see [`super::device_token`]).
    pub token: String,
    pub provider: Provider,
    /// When it was (last) registered.
    pub created_at: Timestamp,
}

impl Device {
    /// Is this the device `(token, provider)`?
    pub fn is(&self, token: &str, provider: Provider) -> bool {
        self.provider == provider && self.token == token
    }
}

/// The devices of one User in one App (at most one registration per (User, App)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRegistration {
    pub id: DeviceRegistrationId,
    /// Owner.
    pub account_id: AccountId,
    pub app_name: AppName,
    pub user_id: UserId,
    /// 1–50 devices, unique by (token, provider), least recently registered first.
    pub devices: Vec<Device>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl DeviceRegistration {
    /// A new registration without devices (register one before storing it).
    pub fn new(
        id: DeviceRegistrationId,
        account_id: AccountId,
        app_name: AppName,
        user_id: UserId,
        now: Timestamp,
    ) -> Self {
        Self { id, account_id, app_name, user_id, devices: Vec::new(), created_at: now, updated_at: now }
    }

    /// Registers `(token, provider)` at `now`: a device already held is refreshed (it becomes the
    /// most recently registered); a new one is added, and when that makes 51 the least recently
    /// registered is evicted. Returns the evicted devices.
    pub fn register(&mut self, token: &str, provider: Provider, now: Timestamp) -> Vec<Device> {
        self.devices.retain(|d| !d.is(token, provider));
        self.devices.push(Device { token: token.to_owned(), provider, created_at: now });
        self.updated_at = now;
        let excess = self.devices.len().saturating_sub(MAX_DEVICES);
        self.devices.drain(..excess).collect()
    }

    /// Removes `(token, provider)`; `true` if it was there.
    pub fn remove(&mut self, token: &str, provider: Provider, now: Timestamp) -> bool {
        let before = self.devices.len();
        self.devices.retain(|d| !d.is(token, provider));
        let removed = self.devices.len() != before;
        if removed {
            self.updated_at = now;
        }
        removed
    }

    /// Does it hold `(token, provider)`?
    pub fn holds(&self, token: &str, provider: Provider) -> bool {
        self.devices.iter().any(|d| d.is(token, provider))
    }
}

/// The SHA-256 (lowercase hex) of a device token: what store keys hold instead of the token (a
/// token may be 4 KiB; DynamoDB keys may not).
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn registration() -> DeviceRegistration {
        DeviceRegistration::new(
            DeviceRegistrationId::from_ulid(ulid::Ulid::generate()),
            AccountId::from_bytes([1; 16]),
            AppName::parse("app").expect("valid"),
            UserId::from_ulid(ulid::Ulid::generate()),
            Utc::now(),
        )
    }

    #[test]
    fn the_same_token_with_another_provider_is_another_device() {
        let mut r = registration();
        r.register("t", Provider::Apn, Utc::now());
        r.register("t", Provider::Fcm, Utc::now());
        assert_eq!(r.devices.len(), 2);
    }

    #[test]
    fn re_registering_a_held_device_refreshes_it_instead_of_adding_it() {
        let mut r = registration();
        let t0 = Utc::now();
        r.register("a", Provider::Apn, t0);
        r.register("b", Provider::Apn, t0);
        let later = t0 + Duration::seconds(5);
        assert!(r.register("a", Provider::Apn, later).is_empty());
        assert_eq!(r.devices.len(), 2);
        assert_eq!(r.devices.last().map(|d| (d.token.as_str(), d.created_at)), Some(("a", later)));
    }

    #[test]
    fn a_51st_device_evicts_the_least_recently_registered() {
        let mut r = registration();
        let t0 = Utc::now();
        for i in 0..MAX_DEVICES {
            assert!(r.register(&format!("t{i}"), Provider::Fcm, t0 + Duration::seconds(i as i64)).is_empty());
        }
        // Refreshing t0 makes t1 the least recently registered.
        r.register("t0", Provider::Fcm, t0 + Duration::seconds(100));
        let evicted = r.register("new", Provider::Fcm, t0 + Duration::seconds(101));
        assert_eq!(evicted.iter().map(|d| d.token.as_str()).collect::<Vec<_>>(), ["t1"]);
        assert_eq!(r.devices.len(), MAX_DEVICES);
        assert!(r.holds("t0", Provider::Fcm) && r.holds("new", Provider::Fcm));
    }

    #[test]
    fn removing_a_device_reports_whether_it_was_held() {
        let mut r = registration();
        r.register("a", Provider::Apn, Utc::now());
        assert!(!r.remove("a", Provider::Fcm, Utc::now()));
        assert!(r.remove("a", Provider::Apn, Utc::now()));
        assert!(r.devices.is_empty());
    }

    #[test]
    fn a_token_hash_is_64_hex_chars_whatever_the_token_length() {
        assert_eq!(token_hash(&"x".repeat(4096)).len(), 64);
        assert_ne!(token_hash("a"), token_hash("b"));
    }

    #[test]
    fn deleting_a_user_twice_keeps_the_first_time() {
        let t0 = Utc::now();
        let mut u = User::new(UserId::from_ulid(ulid::Ulid::generate()), AccountId::from_bytes([1; 16]), t0);
        u.delete(t0 + Duration::seconds(1));
        u.delete(t0 + Duration::seconds(2));
        assert_eq!(u.deleted_at, Some(t0 + Duration::seconds(1)));
    }
}
