//! Retry pauses: exponential backoff with jitter, the one policy every retry loop uses (provider
//! deliveries, webhook posts, DynamoDB batch leftovers).

use std::time::Duration;

use rand::Rng;

/// Up to `attempts` tries; before try `n + 1`, a pause uniform in [c/2, c] where
/// c = `base` · 2^(n−1), at most `max`. The random half spreads out clients that failed together
/// (a throttled partition, a provider's 429) instead of sending them back in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries in all (the first included).
    pub attempts: u32,
    /// The ceiling of the first pause; doubles each time.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// `attempts` tries, pauses from `base` doubling up to `max`.
    pub const fn new(attempts: u32, base: Duration, max: Duration) -> Self {
        Self { attempts, base, max }
    }

    /// The pause after `failures` (≥ 1) failed tries, before the next one.
    pub fn wait(&self, failures: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(self.max);
        let half = ceiling / 2;
        half + Duration::from_millis(rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64))
    }

    /// Whether another try follows `failures` failed ones.
    pub fn retries_after(&self, failures: u32) -> bool {
        failures < self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_the_base_up_to_the_cap_and_stay_within_half_and_all_of_their_ceiling() {
        let backoff = Backoff::new(8, Duration::from_millis(100), Duration::from_millis(1_000));
        for (failures, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1_000), (30, 1_000)] {
            for _ in 0..50 {
                let wait = backoff.wait(failures).as_millis();
                assert!((ceiling / 2..=ceiling + 1).contains(&wait), "after {failures}: {wait} ms, ceiling {ceiling}");
            }
        }
        assert!(backoff.retries_after(7) && !backoff.retries_after(8));
    }
}
