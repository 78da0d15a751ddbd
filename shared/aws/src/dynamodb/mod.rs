//! The DynamoDB adapters: one file per store ([`push`]: notifications and operations;
//! [`config`]: accounts, credentials, provider tokens; [`directory`]: users and device
//! registrations), each with its item design at its top; [`tables`]: the three tables'
//! definitions (`template.yaml` is checked against them); [`items`] and [`batch`]: the
//! single-item and batch helpers they share.
//!
//! SDK errors: a lost condition → `Conflict`; throttling, 5xx, timeouts and dispatch failures →
//! `Unavailable`; anything else → `Unexpected`. No SDK type leaves this crate.

mod batch;
pub mod config;
pub mod directory;
mod items;
pub mod push;
#[cfg(test)]
mod stored_format;
pub mod tables;

pub use config::{DynamoAccountStore, DynamoCredentialStore, DynamoTokenCache};
pub use directory::DynamoDirectoryStore;
pub use push::DynamoPushStore;
pub use tables::{TableDefinition, create_tables, table_definitions};

pub(crate) use batch::batch_get_items;
pub(crate) use items::{Item, codec_error, delete_item, get_item, key, n, s, store_error};
