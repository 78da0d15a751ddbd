//! Provider back-pressure per credential: when APNs or FCM answers "slow down" with a
//! `Retry-After` (a 429, or a 503 that names a time), every delivery with that credential in this
//! process waits it out — the rest of the chunk, the other chunks of the campaign and the other
//! operations of the account — instead of each request learning it on its own and adding to the
//! provider's load. FCM's quota (600,000 messages a minute) is per project, APNs's per
//! certificate/key: a credential is the unit both count.
//!
//! Per process: on AWS each dispatch instance learns a pause from its own first refused request
//! (at most one request per instance), which `DispatchMaxConcurrency` bounds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::CredentialId;

/// Longest pause one answer can impose (a provider asking for more is asked again then).
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// Credentials whose provider asked this process to wait, and until when.
#[derive(Debug, Default)]
pub struct Pacing {
    paused: Mutex<HashMap<CredentialId, Instant>>,
}

impl Pacing {
    /// How long deliveries with `credential` must still wait, if at all.
    pub fn paused_for(&self, credential: &CredentialId) -> Option<Duration> {
        let mut paused = self.paused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = *paused.get(credential)?;
        match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                paused.remove(credential);
                None
            }
        }
    }

    /// Lifts every pause: what the passing of time does. For tests that play a redelivery which
    /// SQS would make only after the provider's `Retry-After`.
    pub fn resume_all(&self) {
        self.paused.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// The provider asked to wait `wait` before the next delivery with `credential` (a later
    /// end of an existing pause is kept).
    pub fn pause(&self, credential: &CredentialId, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_PAUSE);
        let mut paused = self.paused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = paused.entry(credential.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_its_credential_only_and_the_longer_of_two_pauses_wins() {
        let pacing = Pacing::default();
        let (a, b) = (CredentialId::from_ulid(ulid::Ulid::generate()), CredentialId::from_ulid(ulid::Ulid::generate()));
        assert_eq!(pacing.paused_for(&a), None);
        pacing.pause(&a, Duration::from_secs(60));
        pacing.pause(&a, Duration::from_secs(1));
        assert!(pacing.paused_for(&a).is_some_and(|left| left > Duration::from_secs(30)));
        assert_eq!(pacing.paused_for(&b), None, "another credential");
        pacing.pause(&b, Duration::ZERO);
        assert_eq!(pacing.paused_for(&b), None, "a zero pause is none");
        pacing.pause(&b, Duration::from_secs(86_400));
        assert!(pacing.paused_for(&b).is_some_and(|left| left <= MAX_PAUSE));
    }
}
