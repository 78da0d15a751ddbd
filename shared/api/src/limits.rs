//! API requests per second per account: one token bucket (GCRA, `governor`) per account in this
//! process, sized by the account's limits. Checked right after authentication, before any work;
//! an empty bucket is 429 with `Retry-After`.
//!
//! Locally the one process sees every request, so the limit is exact. On AWS each Lambda
//! instance keeps its own buckets (no DynamoDB write per request); the HTTP API's stage
//! throttling (`template.yaml`) bounds the total, and the per-minute notification budget (one
//! DynamoDB write per send) bounds what sends cost across instances.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use pushgate_core::app::{AppError, Limits};
use pushgate_core::domain::AccountId;

struct Bucket {
    /// (per second, burst) it was made for: a changed limit makes a new bucket.
    made_for: (u32, u32),
    limiter: DefaultDirectRateLimiter,
}

/// Every account's bucket in this process.
#[derive(Default)]
pub(crate) struct RequestLimits {
    buckets: Mutex<HashMap<AccountId, Bucket>>,
}

impl RequestLimits {
    /// Takes one request from the account's bucket: `Limit` (429, `Retry-After` = the seconds
    /// until a request fits again) when it is empty.
    pub(crate) fn check(&self, account: &AccountId, limits: &Limits) -> Result<(), AppError> {
        let made_for = (limits.requests_per_second.max(1), limits.request_burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(account.clone()).or_insert_with(|| Bucket::new(made_for));
        if bucket.made_for != made_for {
            *bucket = Bucket::new(made_for);
        }
        match bucket.limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                pushgate_core::app::metrics::rate_limited("requests");
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(AppError::Limit {
                    message: format!(
                        "Too many requests: this account may make {} a second (bursts of {}); retry after the \
                         Retry-After seconds",
                        made_for.0, made_for.1
                    ),
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }
}

impl Bucket {
    fn new((per_second, burst): (u32, u32)) -> Self {
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst));
        Self { made_for: (per_second, burst), limiter: RateLimiter::direct(quota) }
    }
}
