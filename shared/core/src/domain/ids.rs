//! Resource ids: a fixed prefix plus a lowercase ULID (Crockford base32), as Twilio does.
//!
//! Every id is a newtype with a parsing constructor; a string that does not match its pattern
//! never becomes an id. Account ids follow Twilio's `AC` + 32 lowercase hex shape.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;

/// The id did not match the resource's pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must match {pattern}")]
pub struct InvalidId {
    /// The pattern the id must match, as the contract (`openapi.json`) writes it.
    pub pattern: &'static str,
}

/// Is `s` a lowercase Crockford base32 ULID body of 26 chars (first char 0–7)?
fn is_lower_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes().enumerate().all(|(i, b)| {
            let allowed =
                matches!(b, b'0'..=b'9' | b'a'..=b'h' | b'j' | b'k' | b'm' | b'n' | b'p'..=b't' | b'v'..=b'z');
            allowed && (i != 0 || (b'0'..=b'7').contains(&b))
        })
}

/// Is every char of `s` lowercase Crockford base32?
fn is_lower_base32_chars(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'h' | b'j' | b'k' | b'm' | b'n' | b'p'..=b't' | b'v'..=b'z'))
}

/// Is `s` 26–34 chars of lowercase Crockford base32?
fn is_lower_base32(s: &str) -> bool {
    (26..=34).contains(&s.len()) && is_lower_base32_chars(s)
}

macro_rules! base32_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $pattern:literal) => {
        $(#[$meta])*
        ///
        /// The pattern allows 26–34 base32 chars (not only ULIDs), so ids minted elsewhere parse.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// The id prefix on the wire.
            pub const PREFIX: &'static str = $prefix;
            /// The pattern from the API contract.
            pub const PATTERN: &'static str = $pattern;

            /// Parses the wire form.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let body = s.strip_prefix($prefix).ok_or(InvalidId { pattern: $pattern })?;
                if !is_lower_base32(body) {
                    return Err(InvalidId { pattern: $pattern });
                }
                Ok(Self(s.into()))
            }

            /// A new id from a ULID.
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(format!("{}{}", $prefix, ulid.to_string().to_ascii_lowercase()).into())
            }

            /// The wire form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! ulid_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $pattern:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The id prefix on the wire.
            pub const PREFIX: &'static str = $prefix;
            /// The pattern from the API contract.
            pub const PATTERN: &'static str = $pattern;

            /// Parses the wire form (`prefix` + 26-char lowercase ULID): exactly the strings
            /// [`Self::PATTERN`] matches.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let body = s.strip_prefix($prefix).ok_or(InvalidId { pattern: $pattern })?;
                if !is_lower_ulid(body) {
                    return Err(InvalidId { pattern: $pattern });
                }
                Ulid::from_string(body).map(Self).map_err(|_| InvalidId { pattern: $pattern })
            }

            /// Wraps a ULID (from an `IdGenerator`).
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            /// The ULID inside.
            pub fn ulid(&self) -> Ulid {
                self.0
            }

            /// The smallest id (keyset lower bound).
            pub fn min() -> Self {
                Self(Ulid::nil())
            }

            /// The largest id (keyset upper bound).
            pub fn max() -> Self {
                Self(Ulid::from_parts(u64::MAX >> 16, u128::MAX))
            }

            /// Milliseconds since the epoch encoded in the ULID.
            pub fn timestamp_ms(&self) -> u64 {
                self.0.timestamp_ms()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0.to_string().to_ascii_lowercase())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

ulid_id!(
    /// A PushNotification (`comms_pushnotification_…`).
    NotificationId,
    "comms_pushnotification_",
    "^comms_pushnotification_[0-7][a-hjkmnpqrstv-z0-9]{25}$"
);
ulid_id!(
    /// An Operation: everything one send request created (`comms_operation_…`).
    OperationId,
    "comms_operation_",
    "^comms_operation_[0-7][a-hjkmnpqrstv-z0-9]{25}$"
);
base32_id!(
    /// A provider Credential (`comms_credential_…`).
    CredentialId,
    "comms_credential_",
    "^comms_credential_[a-hjkmnpqrstv-z0-9]{26,34}$"
);
base32_id!(
    /// A DeviceRegistration (`comms_device_registration_…`).
    DeviceRegistrationId,
    "comms_device_registration_",
    "^comms_device_registration_[a-hjkmnpqrstv-z0-9]{26,34}$"
);
ulid_id!(
    /// A push User (`comms_pushnotificationuser_…`).
    UserId,
    "comms_pushnotificationuser_",
    "^comms_pushnotificationuser_[0-7][a-hjkmnpqrstv-z0-9]{25}$"
);

impl NotificationId {
    /// The inclusive id range holding every notification of `operation` (all derived ids carry
    /// its timestamp; other operations of the same millisecond share it and are filtered out),
    /// or the whole id space.
    pub fn range_of(operation: Option<OperationId>) -> (Self, Self) {
        match operation {
            Some(op) => {
                (Self(Ulid::from_parts(op.timestamp_ms(), 0)), Self(Ulid::from_parts(op.timestamp_ms(), u128::MAX)))
            }
            None => (Self::min(), Self::max()),
        }
    }

    /// The deterministic id of the notification for `slot` of `operation`.
    ///
    /// Redelivered chunks must find the record they created the first time, so the id is derived,
    /// not generated: the operation's timestamp (ids stay time-ordered), 48 bits of a hash of the
    /// operation id (unique across operations created in the same millisecond) and the 32-bit
    /// slot (recipient index, device and instant), which keeps an operation's notifications in
    /// recipient order.
    pub fn derive(operation: OperationId, slot: u32) -> Self {
        let digest = Sha256::digest(operation.to_string().as_bytes());
        let mut high = [0u8; 8];
        high[2..].copy_from_slice(&digest[..6]);
        let random = (u128::from(u64::from_be_bytes(high)) << 32) | u128::from(slot);
        Self(Ulid::from_parts(operation.timestamp_ms(), random))
    }
}

/// A Twilio-style account id: `AC` followed by 32 lowercase hex chars. Shared, so the clones
/// every tenant-scoped key needs are cheap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(std::sync::Arc<str>);

impl AccountId {
    /// The account id pattern.
    pub const PATTERN: &'static str = "^AC[0-9a-f]{32}$";

    /// Parses `AC` + 32 lowercase hex.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = s.len() == 34 && s.starts_with("AC") && s[2..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok { Ok(Self(s.into())) } else { Err(InvalidId { pattern: Self::PATTERN }) }
    }

    /// Builds an account id from 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("AC{hex}").into())
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An App's name, which is also its id: `^[a-z0-9_]+$`, 1–64 chars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    /// The App name pattern.
    pub const PATTERN: &'static str = "^[a-z0-9_]{1,64}$";

    /// Parses an App name.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        if ok { Ok(Self(s.to_owned())) } else { Err(InvalidId { pattern: Self::PATTERN }) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AppName {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AppName> for String {
    fn from(n: AppName) -> Self {
        n.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_wire_form() {
        let id = OperationId::from_ulid(Ulid::generate());
        let wire = id.to_string();
        assert!(wire.starts_with("comms_operation_"));
        assert_eq!(wire, wire.to_ascii_lowercase());
        assert_eq!(OperationId::parse(&wire), Ok(id));
    }

    #[test]
    fn ids_with_the_wrong_prefix_case_or_alphabet_are_rejected() {
        let body = "01h9krwprkeee8fzqspvwy6nq8";
        assert!(NotificationId::parse(&format!("comms_pushnotification_{body}")).is_ok());
        for bad in [
            format!("comms_operation_{body}"),
            format!("comms_pushnotification_{}", body.to_ascii_uppercase()),
            "comms_pushnotification_81h9krwprkeee8fzqspvwy6nq8".to_owned(),
            "comms_pushnotification_01h9krwprkeee8fzqspvwy6nqi".to_owned(),
            "comms_pushnotification_01h9krwprkeee8fzqspvwy6nq".to_owned(),
            String::new(),
        ] {
            assert!(NotificationId::parse(&bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn an_operations_notifications_fall_inside_its_id_range_and_others_outside() {
        let op = OperationId::from_ulid(Ulid::from_parts(1_800_000_000_000, 5));
        let later = OperationId::from_ulid(Ulid::from_parts(1_800_000_000_001, 5));
        let (low, high) = NotificationId::range_of(Some(op));
        for slot in [0, 1, u32::MAX] {
            let id = NotificationId::derive(op, slot);
            assert!(low <= id && id <= high);
            assert!(NotificationId::derive(later, slot) > high);
        }
        assert_eq!(NotificationId::range_of(None), (NotificationId::min(), NotificationId::max()));
    }

    #[test]
    fn derived_notification_ids_are_stable_unique_and_ordered_by_slot() {
        let op = OperationId::from_ulid(Ulid::generate());
        let other = OperationId::from_ulid(Ulid::generate());
        assert_eq!(NotificationId::derive(op, 7), NotificationId::derive(op, 7));
        assert_ne!(NotificationId::derive(op, 7), NotificationId::derive(other, 7));
        assert!(NotificationId::derive(op, 1) < NotificationId::derive(op, 2));
        let wire = NotificationId::derive(op, 9).to_string();
        assert!(NotificationId::parse(&wire).is_ok());
    }

    #[test]
    fn credential_ids_accept_twilios_documented_examples_which_are_not_ulids() {
        assert!(CredentialId::parse("comms_credential_8qn6ywvpsqzf8eeekrpwrk9h10").is_ok());
        assert!(CredentialId::parse("comms_credential_01h9krwprkeee8fzqspvwy6nq8").is_ok());
        assert!(CredentialId::parse("comms_credential_01h9krwprkeee8fzqspvwy6nq").is_err());
        assert!(CredentialId::parse("comms_credential_01H9KRWPRKEEE8FZQSPVWY6NQ8").is_err());
    }

    #[test]
    fn account_ids_and_app_names_follow_their_patterns() {
        assert!(AccountId::parse("AC0123456789abcdef0123456789abcdef").is_ok());
        assert!(AccountId::parse("AC0123456789ABCDEF0123456789abcdef").is_err());
        assert!(AccountId::parse("AC123").is_err());
        assert!(AppName::parse("my_app_2").is_ok());
        assert!(AppName::parse("My-App").is_err());
        assert!(AppName::parse("").is_err());
        assert!(AppName::parse(&"a".repeat(65)).is_err());
    }
}
