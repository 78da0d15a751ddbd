//! Ports: the capabilities the use cases need, implemented by adapters (`pushgate-memory`; DynamoDB,
//! SQS and Scheduler on AWS). Every store method is scoped by account: a record of another
//! account is indistinguishable from a missing one.
//!
//! One module per capability: [`push`] (notifications and operations), [`config`] (accounts,
//! credentials, secrets, provider tokens), [`directory`] (users and devices), [`queue`] (the
//! fan-out queue, the scheduler and the versioned messages they carry), [`events`], [`gateway`]
//! (the providers), [`requests`] (idempotency records), [`system`] (time and ids). Everything is re-exported here.

mod config;
mod directory;
mod events;
mod gateway;
mod push;
mod queue;
mod requests;
mod system;

pub use config::*;
pub use directory::*;
pub use events::*;
pub use gateway::*;
pub use push::*;
pub use queue::*;
pub use requests::*;
pub use system::*;

/// What a store can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the record exists, or is not in the expected state/version.
    #[error("conflict")]
    Conflict,
    /// The store is temporarily unavailable (throttled, timed out): retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("store failure: {0}")]
    Unexpected(String),
}

/// A page request: at most `size` items after the keyset `cursor` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items wanted (1–1000).
    pub size: usize,
    /// Where the previous page ended (an adapter-defined key), or `None` for the first page.
    pub cursor: Option<String>,
}

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page, `None` on the last page.
    pub next: Option<String>,
}
