//! The DynamoDB adapters: one file per store ([`push`]: notifications and operations;
//! [`config`]: accounts, credentials, provider tokens; [`directory`]: users and device
//! registrations; [`idempotency`]: idempotency records of POSTs), each with its item design at its top; [`tables`]: the three tables'
//! definitions (`template.yaml` is checked against them); [`items`] and [`batch`]: the
//! single-item and batch helpers they share.
//!
//! Stored records have their own item types (`records`: notifications with their content,
//! operations, credential books with their Apps and credentials, users, device registrations),
//! with explicit attribute names and leaf values in their canonical string forms, converted
//! from and to the domain types. The domain's serde derives serve the wire formats and never
//! reach a table, so renaming a domain field cannot change what is stored. The format is the
//! one these stores have always written; `stored_format` (unit tests) pins every kind of item
//! attribute by attribute, and a change that breaks it is a migration (items live 7 days).
//!
//! SDK errors: a lost condition → `Conflict`; throttling, 5xx, timeouts and dispatch failures →
//! `Unavailable`; anything else → `Unexpected`. No SDK type leaves this crate.

mod batch;
pub mod config;
pub mod directory;
pub mod idempotency;
mod items;
pub mod push;
mod records;
#[cfg(test)]
mod stored_format;
pub mod tables;

pub use config::{DynamoAccountStore, DynamoCredentialStore, DynamoTokenCache};
pub use directory::DynamoDirectoryStore;
pub use idempotency::{DynamoIdempotency, DynamoSendBudget};
pub use push::{DynamoPushStore, notification_pk};
pub use tables::{TableDefinition, create_tables, table_definitions};

pub(crate) use batch::batch_get_items;
pub(crate) use items::{Item, codec_error, delete_item, get_item, key, n, s, store_error};
