use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::ports::{Begin, IdempotencyStore, Replay, StoreError};
use pushgate_core::domain::{AccountId, Timestamp};

/// Records past this many are swept of expired ones on the next claim (the map never holds more
/// than a day of keys).
const SWEEP_AT: usize = 10_000;

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
        if records.len() >= SWEEP_AT {
            records.retain(|_, r| r.expires > now);
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
