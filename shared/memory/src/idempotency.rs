use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::ports::{Begin, IdempotencyStore, Replay, StoreError};
use pushgate_core::domain::{AccountId, Timestamp};

/// Expired records are swept once per this many claims (amortised: a sweep walks every record).
const SWEEP_EVERY: usize = 10_000;

/// Most records kept: past it (after the sweep) the tenth that expires first goes, so a client
/// inventing keys cannot grow the process's memory without bound (each record is at most a key
/// and a small answer; 200,000 of them are tens of MB).
pub const MAX_RECORDS: usize = 200_000;

#[derive(Clone)]
struct Record {
    fingerprint: [u8; 32],
    answer: Option<Replay>,
    lease_until: Timestamp,
    expires: Timestamp,
}

/// Idempotency records held in memory.
#[derive(Default)]
pub struct MemoryIdempotency {
    records: RwLock<HashMap<(AccountId, String), Record>>,
    claims: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn begin(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: Timestamp,
        lease_until: Timestamp,
        expires: Timestamp,
    ) -> Result<Begin, StoreError> {
        let mut records = super::write(&self.records)?;
        if self.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            records.retain(|_, r| r.expires > now);
        }
        if records.len() >= MAX_RECORDS {
            let mut expiries: Vec<Timestamp> = records.values().map(|r| r.expires).collect();
            let tenth = MAX_RECORDS / 10;
            let (_, cut, _) = expiries.select_nth_unstable(tenth);
            let cut = *cut;
            records.retain(|_, r| r.expires > cut);
        }
        let id = (account.clone(), key.to_owned());
        if let Some(found) = records.get(&id).filter(|r| r.expires > now) {
            if found.fingerprint != fingerprint {
                return Ok(Begin::Mismatch);
            }
            match &found.answer {
                Some(answer) => return Ok(Begin::Replay(answer.clone())),
                None if found.lease_until > now => return Ok(Begin::InProgress),
                None => {}
            }
        }
        records.insert(id, Record { fingerprint, answer: None, lease_until, expires });
        Ok(Begin::Started)
    }

    async fn finish(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: [u8; 32],
        replay: &Replay,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        let record = Record { fingerprint, answer: Some(replay.clone()), lease_until: expires, expires };
        super::write(&self.records)?.insert((account.clone(), key.to_owned()), record);
        Ok(())
    }

    async fn abandon(&self, account: &AccountId, key: &str, fingerprint: [u8; 32]) -> Result<(), StoreError> {
        let mut records = super::write(&self.records)?;
        let id = (account.clone(), key.to_owned());
        if records.get(&id).is_some_and(|r| r.answer.is_none() && r.fingerprint == fingerprint) {
            records.remove(&id);
        }
        Ok(())
    }
}

/// Notifications accepted per account and minute, held in memory.
#[derive(Default)]
pub struct MemorySendBudget {
    minutes: RwLock<HashMap<AccountId, (i64, u64)>>,
}

#[async_trait]
impl pushgate_core::app::ports::SendBudget for MemorySendBudget {
    async fn admit(
        &self,
        account: &AccountId,
        at: Timestamp,
        notifications: u64,
        per_minute: u64,
    ) -> Result<bool, StoreError> {
        let minute = at.timestamp().div_euclid(60);
        let mut minutes = super::write(&self.minutes)?;
        let (counted_minute, count) = minutes.entry(account.clone()).or_insert((minute, 0));
        if *counted_minute != minute {
            (*counted_minute, *count) = (minute, 0);
        }
        if count.saturating_add(notifications) > per_minute {
            return Ok(false);
        }
        *count += notifications;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    #[tokio::test]
    async fn invented_keys_never_grow_the_records_past_their_cap() {
        let store = MemoryIdempotency::default();
        let account = AccountId::from_bytes([1; 16]);
        let t = Utc.timestamp_opt(1_800_000_000, 0).single().expect("a time");
        for i in 0..MAX_RECORDS + 10 {
            let at = t + Duration::milliseconds(i as i64);
            let begun = store.begin(&account, &format!("k{i}"), [0; 32], at, at, at + Duration::hours(24)).await;
            assert_eq!(begun, Ok(Begin::Started));
        }
        let kept = super::super::read(&store.records).expect("readable").len();
        assert!(kept <= MAX_RECORDS, "{kept}");
        let newest = format!("k{}", MAX_RECORDS + 9);
        let at = t + Duration::seconds(1);
        assert_eq!(
            store.begin(&account, &newest, [0; 32], at, at + Duration::seconds(60), at + Duration::hours(24)).await,
            Ok(Begin::InProgress),
            "the newest records stay"
        );
    }
}
