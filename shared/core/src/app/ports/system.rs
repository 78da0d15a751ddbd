//! Time and ids.

use crate::domain::Timestamp;

/// Current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// New ULIDs for resource ids.
pub trait IdGenerator: Send + Sync {
    /// A fresh ULID at `now`.
    fn ulid(&self, now: Timestamp) -> ulid::Ulid;
}
