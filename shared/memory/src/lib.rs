//! pushgate's in-memory adapters: real, thread-safe implementations with the same semantics as
//! the AWS ones (conditional transitions, idempotent creates, keyset paging), the fair local
//! queue, in-process scheduler timers and the AES-GCM secret box ([`crypto`]). They back
//! `pushgate-local` and the tests.
//!
//! May import: the core only (and its I/O-free dependencies).

mod accounts;
mod credentials;
pub mod crypto;
mod directory;
mod idempotency;
mod push;
mod queue;
mod scheduler;
mod tokens;

pub use accounts::MemoryAccounts;
pub use credentials::MemoryCredentials;
pub use directory::MemoryDirectory;
pub use idempotency::{MemoryIdempotency, MemorySendBudget};
pub use push::MemoryPushStore;
pub use queue::{CHUNKS_PER_OPERATION, MemoryQueue, QueueWorkers};
pub use scheduler::{MemoryScheduler, run_releases};
pub use tokens::MemoryTokenCache;

use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

use pushgate_core::app::ports::StoreError;

fn poisoned<T>(_: PoisonError<T>) -> StoreError {
    StoreError::Unexpected("a store lock was poisoned by a panic".into())
}

type ReadResult<'a, T> = Result<RwLockReadGuard<'a, T>, StoreError>;
type WriteResult<'a, T> = Result<RwLockWriteGuard<'a, T>, StoreError>;

fn read<T>(lock: &std::sync::RwLock<T>) -> ReadResult<'_, T> {
    lock.read().map_err(poisoned)
}

fn write<T>(lock: &std::sync::RwLock<T>) -> WriteResult<'_, T> {
    lock.write().map_err(poisoned)
}
