use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::RwLock;

use async_trait::async_trait;

use pushgate_core::app::paging::parse_cursor;
use pushgate_core::app::ports::{
    Chunk, ChunkCount, ChunkKey, ChunkTally, Finish, Finished, Lease, NotificationFilter, OperationFilter, Page,
    PageRequest, PushReader, PushWriter, StoreError,
};
use pushgate_core::domain::{
    AccountId, Notification, NotificationId, NotificationStatus, Operation, OperationId, OperationStatus,
};

#[derive(Default)]
struct Inner {
    notifications: BTreeMap<(AccountId, NotificationId), Notification>,
    operations: BTreeMap<(AccountId, OperationId), Operation>,
    claims: HashMap<(AccountId, NotificationId), pushgate_core::domain::Timestamp>,
    scheduled: HashMap<(AccountId, OperationId), BTreeMap<u8, Vec<Chunk>>>,
    /// Notifications stored by `store_decided`: counted with their chunk.
    chunk_counted: HashSet<(AccountId, NotificationId)>,
    /// Chunk leases: holder, until, counted.
    leases: HashMap<(AccountId, ChunkKey), ChunkLease>,
}

struct ChunkLease {
    holder: String,
    until: pushgate_core::domain::Timestamp,
    /// Added to the operation so far.
    tally: ChunkTally,
    /// Done.
    counted: bool,
}

/// Completes `op` if it is open and nothing is left; returns whether this did.
fn complete_if_done(op: &mut Operation) -> bool {
    let completed =
        matches!(op.status, OperationStatus::Scheduled | OperationStatus::Processing) && op.stats.all_final();
    if completed {
        op.status = OperationStatus::Completed;
    }
    completed
}

/// Notifications and operations held in memory, keyed by (account, id) so every query is
/// tenant-scoped and ordered by id (ids are time-ordered ULIDs).
#[derive(Default)]
pub struct MemoryPushStore {
    inner: RwLock<Inner>,
}

/// Collects up to `size` items newest-first from `iter`, and the cursor of the next page.
fn take_page<'a, T: 'a + Clone, K: ToString>(
    iter: impl Iterator<Item = (K, &'a T)>,
    mut keep: impl FnMut(&T) -> bool,
    size: usize,
) -> Page<T> {
    let mut items = Vec::new();
    let mut last = None;
    for (key, item) in iter {
        if !keep(item) {
            continue;
        }
        if items.len() == size {
            return Page { items, next: last };
        }
        last = Some(key.to_string());
        items.push(item.clone());
    }
    Page { items, next: None }
}

impl MemoryPushStore {
    /// Forgets notifications and operations created before `cutoff` (the 7-day retention that
    /// DynamoDB TTL gives on AWS). Returns how many records went.
    pub fn purge_created_before(&self, cutoff: pushgate_core::domain::Timestamp) -> Result<usize, StoreError> {
        let mut guard = super::write(&self.inner)?;
        let inner = &mut *guard;
        let before = inner.notifications.len() + inner.operations.len();
        inner.notifications.retain(|_, n| n.created_at >= cutoff);
        inner.operations.retain(|_, op| op.created_at >= cutoff);
        let notifications = &inner.notifications;
        inner.claims.retain(|key, _| notifications.contains_key(key));
        inner.chunk_counted.retain(|key| notifications.contains_key(key));
        let operations = &inner.operations;
        inner.scheduled.retain(|key, _| operations.contains_key(key));
        inner.leases.retain(|(account, chunk), _| operations.contains_key(&(account.clone(), chunk.operation)));
        Ok(before - inner.notifications.len() - inner.operations.len())
    }
}

#[async_trait]
impl PushReader for MemoryPushStore {
    async fn live_notifications(&self, account: &AccountId) -> Result<Option<u64>, StoreError> {
        let inner = super::read(&self.inner)?;
        let live = inner
            .operations
            .range((account.clone(), OperationId::min())..=(account.clone(), OperationId::max()))
            .filter(|(_, op)| matches!(op.status, OperationStatus::Scheduled | OperationStatus::Processing))
            .map(|(_, op)| op.stats.queued + op.stats.scheduled)
            .sum();
        Ok(Some(live))
    }

    async fn get_notification(
        &self,
        account: &AccountId,
        id: NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        Ok(super::read(&self.inner)?.notifications.get(&(account.clone(), id)).cloned())
    }

    async fn list_notifications(
        &self,
        account: &AccountId,
        filter: &NotificationFilter,
        page: &PageRequest,
    ) -> Result<Page<Notification>, StoreError> {
        let cursor = parse_cursor(&page.cursor, |c| NotificationId::parse(c).ok())?;
        let inner = super::read(&self.inner)?;
        // An operation's notification ids all carry its timestamp: scan just that slice.
        let (low, high) = NotificationId::range_of(filter.operation_id);
        let upper = match cursor {
            Some(c) => Bound::Excluded((account.clone(), c)),
            None => Bound::Included((account.clone(), high)),
        };
        let range = inner.notifications.range((Bound::Included((account.clone(), low)), upper)).rev();
        Ok(take_page(range.map(|((_, id), n)| (id, n)), |n| filter.matches(n), page.size))
    }

    async fn get_notifications(
        &self,
        account: &AccountId,
        ids: &[NotificationId],
    ) -> Result<Vec<Notification>, StoreError> {
        let inner = super::read(&self.inner)?;
        Ok(ids.iter().filter_map(|id| inner.notifications.get(&(account.clone(), *id)).cloned()).collect())
    }

    async fn get_operation(&self, account: &AccountId, id: OperationId) -> Result<Option<Operation>, StoreError> {
        Ok(super::read(&self.inner)?.operations.get(&(account.clone(), id)).cloned())
    }

    async fn list_operations(
        &self,
        account: &AccountId,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, StoreError> {
        let cursor = parse_cursor(&page.cursor, |c| OperationId::parse(c).ok())?;
        let inner = super::read(&self.inner)?;
        let low = Bound::Included((account.clone(), OperationId::min()));
        let bounds = match cursor {
            Some(c) => (low, Bound::Excluded((account.clone(), c))),
            None => (low, Bound::Included((account.clone(), OperationId::max()))),
        };
        let keep = |op: &Operation| filter.matches(op.status, op.created_at);
        Ok(take_page(inner.operations.range(bounds).rev().map(|((_, id), op)| (id, op)), keep, page.size))
    }
}

#[async_trait]
impl PushWriter for MemoryPushStore {
    async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        let mut inner = super::write(&self.inner)?;
        let key = (op.account_id.clone(), op.id);
        if inner.operations.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        inner.operations.insert(key, op.clone());
        Ok(())
    }

    async fn discard_operation(&self, account: &AccountId, id: OperationId) -> Result<(), StoreError> {
        super::write(&self.inner)?.operations.remove(&(account.clone(), id));
        Ok(())
    }

    async fn create_notification(&self, n: Notification) -> Result<NotificationStatus, StoreError> {
        let mut inner = super::write(&self.inner)?;
        Ok(inner.notifications.entry((n.account_id.clone(), n.id)).or_insert(n).status)
    }

    async fn claim(
        &self,
        account: &AccountId,
        id: NotificationId,
        until: pushgate_core::domain::Timestamp,
        now: pushgate_core::domain::Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = super::write(&self.inner)?;
        let status = inner.notifications.get(&(account.clone(), id)).map(|n| n.status).ok_or(StoreError::Conflict)?;
        let held = inner.claims.get(&(account.clone(), id)).is_some_and(|until| *until > now);
        if status != NotificationStatus::Queued || held {
            return Err(StoreError::Conflict);
        }
        inner.claims.insert((account.clone(), id), until);
        Ok(())
    }

    async fn release(&self, account: &AccountId, id: NotificationId) -> Result<(), StoreError> {
        super::write(&self.inner)?.claims.remove(&(account.clone(), id));
        Ok(())
    }

    async fn finish(&self, account: &AccountId, id: NotificationId, finish: Finish) -> Result<Finished, StoreError> {
        let mut guard = super::write(&self.inner)?;
        let inner = &mut *guard;
        let n = inner.notifications.get_mut(&(account.clone(), id)).ok_or(StoreError::Conflict)?;
        let from = n.status;
        let to = from.transition(finish.status).map_err(|_| StoreError::Conflict)?;
        if finish.unclaimed && inner.claims.get(&(account.clone(), id)).is_some_and(|until| *until > finish.at) {
            return Err(StoreError::Conflict);
        }
        let op = inner
            .operations
            .get_mut(&(account.clone(), n.operation_id))
            .ok_or_else(|| StoreError::Unexpected("notification without its operation".into()))?;
        n.status = to;
        n.from = finish.from;
        n.error = finish.error;
        n.updated_at = finish.at;
        n.completed_at = Some(finish.at);
        inner.claims.remove(&(account.clone(), id));
        if inner.chunk_counted.contains(&(account.clone(), id)) {
            return Ok(Finished { operation: op.clone(), completed: false });
        }
        op.stats.apply(from, to);
        op.updated_at = finish.at;
        let completed = complete_if_done(op);
        Ok(Finished { operation: op.clone(), completed })
    }

    async fn lease_chunk(
        &self,
        account: &AccountId,
        chunk: ChunkKey,
        holder: &str,
        until: pushgate_core::domain::Timestamp,
        now: pushgate_core::domain::Timestamp,
    ) -> Result<Lease, StoreError> {
        let mut inner = super::write(&self.inner)?;
        match inner.leases.entry((account.clone(), chunk)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(ChunkLease { holder: holder.to_owned(), until, tally: ChunkTally::default(), counted: false });
                Ok(Lease::Held { fresh: true, counted: ChunkTally::default() })
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let lease = o.get_mut();
                if lease.counted {
                    Ok(Lease::Counted)
                } else if lease.until <= now || lease.holder == holder {
                    (lease.holder, lease.until) = (holder.to_owned(), until);
                    Ok(Lease::Held { fresh: false, counted: lease.tally })
                } else {
                    Ok(Lease::Busy { until: lease.until })
                }
            }
        }
    }

    async fn release_chunk(&self, account: &AccountId, chunk: ChunkKey, holder: &str) -> Result<(), StoreError> {
        let mut inner = super::write(&self.inner)?;
        if let Some(lease) = inner.leases.get_mut(&(account.clone(), chunk))
            && lease.holder == holder
        {
            lease.until = chrono::DateTime::UNIX_EPOCH;
        }
        Ok(())
    }

    /// Lists filter by the tags on each notification here: no index to keep.
    async fn index_operation_tags(
        &self,
        _account: &AccountId,
        _operation: OperationId,
        _tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn store_decided(
        &self,
        notifications: Vec<Notification>,
        _tags_by_operation: bool,
    ) -> Result<(), StoreError> {
        let mut inner = super::write(&self.inner)?;
        for n in notifications {
            let key = (n.account_id.clone(), n.id);
            inner.claims.remove(&key);
            inner.chunk_counted.insert(key.clone());
            inner.notifications.insert(key, n);
        }
        Ok(())
    }

    async fn count_chunk(
        &self,
        account: &AccountId,
        chunk: ChunkKey,
        holder: &str,
        count: ChunkCount,
        at: pushgate_core::domain::Timestamp,
    ) -> Result<Finished, StoreError> {
        let mut guard = super::write(&self.inner)?;
        let inner = &mut *guard;
        let lease = inner.leases.get_mut(&(account.clone(), chunk)).ok_or(StoreError::Conflict)?;
        if lease.counted || lease.holder != holder {
            return Err(StoreError::Conflict);
        }
        let op = inner
            .operations
            .get_mut(&(account.clone(), chunk.operation))
            .ok_or_else(|| StoreError::Unexpected("chunk without its operation".into()))?;
        (lease.tally, lease.counted) = (count.after, count.last);
        count.apply(&mut op.stats);
        op.updated_at = at;
        let completed = count.last && complete_if_done(op);
        Ok(Finished { operation: op.clone(), completed })
    }

    async fn cancel_operation(
        &self,
        account: &AccountId,
        id: OperationId,
        at: pushgate_core::domain::Timestamp,
    ) -> Result<Option<Operation>, StoreError> {
        let mut inner = super::write(&self.inner)?;
        let Some(op) = inner.operations.get_mut(&(account.clone(), id)) else { return Ok(None) };
        let open = matches!(op.status, OperationStatus::Scheduled | OperationStatus::Processing);
        if !open || op.stats.scheduled + op.stats.queued == 0 {
            return Err(StoreError::Conflict);
        }
        op.status = OperationStatus::Canceled;
        op.updated_at = at;
        Ok(Some(op.clone()))
    }

    async fn promote(
        &self,
        account: &AccountId,
        id: NotificationId,
        at: pushgate_core::domain::Timestamp,
    ) -> Result<bool, StoreError> {
        let mut guard = super::write(&self.inner)?;
        let inner = &mut *guard;
        let n = inner.notifications.get_mut(&(account.clone(), id)).ok_or(StoreError::Conflict)?;
        if n.status != NotificationStatus::Scheduled {
            return Err(StoreError::Conflict);
        }
        let op = inner
            .operations
            .get_mut(&(account.clone(), n.operation_id))
            .ok_or_else(|| StoreError::Unexpected("notification without its operation".into()))?;
        n.status = NotificationStatus::Queued;
        n.updated_at = at;
        op.stats.apply(NotificationStatus::Scheduled, NotificationStatus::Queued);
        let started = op.status == OperationStatus::Scheduled;
        if started {
            op.status = OperationStatus::Processing;
        }
        op.updated_at = at;
        Ok(started)
    }

    async fn put_scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: u8,
        chunks: &[Chunk],
    ) -> Result<(), StoreError> {
        let mut inner = super::write(&self.inner)?;
        inner.scheduled.entry((account.clone(), operation)).or_default().insert(instant, chunks.to_vec());
        Ok(())
    }

    async fn scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: u8,
    ) -> Result<Vec<Chunk>, StoreError> {
        let inner = super::read(&self.inner)?;
        Ok(inner
            .scheduled
            .get(&(account.clone(), operation))
            .and_then(|by_instant| by_instant.get(&instant))
            .cloned()
            .unwrap_or_default())
    }

    async fn delete_scheduled_chunks(
        &self,
        account: &AccountId,
        operation: OperationId,
        instant: Option<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut inner = super::write(&self.inner)?;
        let key = (account.clone(), operation);
        let Some(by_instant) = inner.scheduled.get_mut(&key) else { return Ok(Vec::new()) };
        let deleted = match instant {
            Some(i) => by_instant.remove(&i).map(|_| vec![i]).unwrap_or_default(),
            None => std::mem::take(by_instant).into_keys().collect(),
        };
        if by_instant.is_empty() {
            inner.scheduled.remove(&key);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_core::domain::{Content, Destination, Priority, Provider, Senders, Stats};
    use ulid::Ulid;

    fn op(account: &AccountId, created: pushgate_core::domain::Timestamp) -> Operation {
        Operation {
            id: OperationId::from_ulid(Ulid::from_parts(created.timestamp_millis() as u64, 1)),
            account_id: account.clone(),
            status: OperationStatus::Processing,
            stats: Stats { total: 1, queued: 1, ..Stats::default() },
            created_at: created,
            updated_at: created,
        }
    }

    fn notification(op: &Operation) -> Notification {
        Notification {
            id: NotificationId::derive(op.id, 0),
            account_id: op.account_id.clone(),
            operation_id: op.id,
            to: Destination { token: "t".into(), provider: Provider::Fcm, user_id: None },
            from: Senders::default(),
            content: Content::default().into(),
            priority: Priority::High,
            sound: None,
            status: NotificationStatus::Queued,
            tags: Default::default(),
            scheduled_for: None,
            created_at: op.created_at,
            updated_at: op.created_at,
            error: None,
            completed_at: None,
        }
    }

    #[tokio::test]
    async fn records_older_than_the_retention_are_forgotten() {
        let store = MemoryPushStore::default();
        let account = AccountId::from_bytes([5; 16]);
        let now = chrono::Utc::now();
        let old = op(&account, now - chrono::Duration::days(8));
        let new = op(&account, now);
        for o in [&old, &new] {
            store.create_operation(o).await.expect("created");
            store.create_notification(notification(o)).await.expect("created");
        }
        assert_eq!(store.purge_created_before(now - pushgate_core::domain::RETENTION).expect("purged"), 2);
        assert_eq!(store.get_operation(&account, old.id).await.expect("read"), None);
        assert!(store.get_operation(&account, new.id).await.expect("read").is_some());
    }

    #[tokio::test]
    async fn a_claimed_notification_cannot_be_claimed_again_until_its_lease_expires() {
        let store = MemoryPushStore::default();
        let account = AccountId::from_bytes([5; 16]);
        let now = chrono::Utc::now();
        let o = op(&account, now);
        store.create_operation(&o).await.expect("created");
        let n = notification(&o);
        store.create_notification(n.clone()).await.expect("created");
        let lease = now + chrono::Duration::seconds(60);
        store.claim(&account, n.id, lease, now).await.expect("first claim");
        assert_eq!(store.claim(&account, n.id, lease, now).await, Err(StoreError::Conflict));
        store
            .claim(&account, n.id, lease + chrono::Duration::seconds(60), lease + chrono::Duration::seconds(1))
            .await
            .expect("expired lease");
        let finish = Finish::by_dispatcher(NotificationStatus::Sent, Senders::default(), None, now);
        let after = store.finish(&account, n.id, finish.clone()).await.expect("finished");
        assert_eq!(after.status, OperationStatus::Completed);
        assert_eq!(store.finish(&account, n.id, finish).await, Err(StoreError::Conflict), "a final status never moves");
        assert_eq!(store.claim(&account, n.id, lease, now).await, Err(StoreError::Conflict));
    }

    #[tokio::test]
    async fn creating_a_notification_twice_keeps_the_first_record() {
        let store = MemoryPushStore::default();
        let account = AccountId::from_bytes([5; 16]);
        let o = op(&account, chrono::Utc::now());
        store.create_operation(&o).await.expect("created");
        let first = notification(&o);
        store.create_notification(first.clone()).await.expect("created");
        store
            .claim(&account, first.id, first.created_at + chrono::Duration::seconds(9), first.created_at)
            .await
            .expect("claimed");
        let finish = Finish::by_dispatcher(NotificationStatus::Failed, Senders::default(), None, first.created_at);
        store.finish(&account, first.id, finish).await.expect("finished");
        let mut second = notification(&o);
        second.sound = Some("other".into());
        assert_eq!(store.create_notification(second).await.expect("idempotent"), NotificationStatus::Failed);
        let stored = store.get_notification(&account, first.id).await.expect("read").expect("exists");
        assert_eq!(stored.sound, None, "the first record is kept");
    }
}
