//! The real clock and id generator.

use rand::Rng;
use ulid::Ulid;

use crate::app::ports::{Clock, IdGenerator};
use crate::domain::Timestamp;

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// ULIDs from the given time plus 80 random bits.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn ulid(&self, now: Timestamp) -> Ulid {
        let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let random: u128 = rand::thread_rng().r#gen::<u128>() & ((1u128 << 80) - 1);
        Ulid::from_parts(ms, random)
    }
}
