//! Adapters: implementations of the ports. `memory` runs the local process and the tests;
//! `apns` and `fcm` talk to the providers; `crypto` and `system` are the local secret box, clock
//! and id generator; `aws` (feature `aws`) holds the AWS adapters.

pub mod apns;
#[cfg(feature = "aws")]
pub mod aws;
pub mod crypto;
pub mod fcm;
pub mod gateway;
pub mod http;
pub mod memory;
pub mod system;
pub mod webhook;

use crate::app::ports::StoreError;

/// Decodes a keyset cursor this adapter produced (the app layer has checked its signature, so a
/// cursor that does not decode is a bug or a key change: `Unexpected`).
pub(crate) fn parse_cursor<T>(
    cursor: &Option<String>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    cursor.as_deref().map(|c| parse(c).ok_or_else(|| StoreError::Unexpected("malformed cursor".into()))).transpose()
}
