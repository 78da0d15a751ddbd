//! The contract suite of the store ports: the same checks run against every adapter (memory
//! always; DynamoDB on the emulator tier).
//!
//! Each check is a `pub async fn` taking the store under test; every check uses its own random
//! account, so checks are independent and may share a store. [`push_store_contract_tests!`]
//! generates one `#[tokio::test]` per check from a store factory, so a new check runs against
//! every adapter by adding it to the macro's list.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use pushgate_core::app::ports::{
    Chunk, ChunkCount, ChunkKey, ChunkRecipient, ChunkTally, Finish, Lease, NotificationFilter, OperationFilter, Page,
    PageRequest, PushWriter, StoreError,
};
use pushgate_core::domain::{
    AccountId, Content, CredentialId, DeliveryError, Destination, ErrorCode, Notification, NotificationId,
    NotificationStatus, Operation, OperationId, OperationStatus, Priority, Provider, Senders, Stats, Timestamp, UserId,
};
use ulid::Ulid;

/// The store under test.
pub type Store = Arc<dyn PushWriter>;

/// Generates one `#[tokio::test]` per contract check, named after the check. `$factory` is an
/// `async fn() -> Option<Store>`; `None` skips (the emulator tier without an emulator).
///
/// `transaction_races: #[ignore = "why"]` puts attributes on the checks that race two
/// multi-item transactions on one record (an emulator that cannot do that, like moto, ignores
/// them; `--ignored` still runs them).
#[macro_export]
macro_rules! push_store_contract_tests {
    ($factory:path) => {
        $crate::push_store_contract_tests!($factory, transaction_races:);
    };
    ($factory:path, transaction_races: $(#[$race:meta])*) => {
        $crate::push_store_contract_tests!(@checks $factory; [];
            creates_an_operation_only_once,
            creates_a_notification_only_once_and_returns_the_stored_status,
            a_claim_is_exclusive_until_its_lease_expires,
            a_released_claim_can_be_taken_again,
            concurrent_claims_let_exactly_one_win,
            finish_moves_the_status_and_the_stats_and_completes_the_operation_with_the_last_one,
            finish_never_moves_a_final_or_missing_notification,
            finish_without_its_operation_fails_and_changes_nothing,
            another_account_sees_nothing_and_changes_nothing,
            notifications_are_listed_newest_first_in_pages_that_visit_each_once,
            notification_filters_combine_with_and,
            a_tags_filter_pages_exactly_through_matches_among_many_that_do_not_match,
            a_tags_filter_with_two_tags_keeps_only_notifications_carrying_both,
            a_tag_holding_separators_matches_only_itself,
            a_redelivered_create_does_not_duplicate_list_results,
            operations_are_listed_newest_first_with_filters_and_pages,
            operation_errors_list_the_failed_notifications_with_their_errors,
            a_discarded_operation_is_gone,
            a_malformed_cursor_is_refused,
            an_api_cancel_takes_an_unclaimed_notification_but_never_one_a_dispatcher_holds,
            a_canceled_operation_is_never_completed_and_cannot_be_canceled_twice,
            scheduled_chunks_are_kept_per_instant_and_deleted_by_instant_or_all_at_once,
            promote_moves_a_scheduled_notification_to_queued_once_and_starts_its_operation,
            a_scheduled_operation_whose_notifications_are_all_canceled_completes,
            a_chunk_lease_is_exclusive_until_it_expires_or_is_given_back_and_its_holder_renews_it,
            decided_notifications_are_stored_as_given_and_read_back_by_id,
            a_chunk_is_counted_once_into_its_operation_and_the_last_count_completes_it,
            a_notification_counted_with_its_chunk_moves_no_counter_when_canceled_or_finished,
            a_chunk_counts_only_for_its_lease_holder,
            tags_indexed_per_operation_and_per_notification_list_together_newest_first_in_exact_pages,
        );
        $crate::push_store_contract_tests!(@checks $factory; [$(#[$race])*];
            concurrent_finishes_move_a_notification_once,
            a_claim_and_an_api_cancel_racing_on_one_notification_let_exactly_one_win,
        );
    };
    (@checks $factory:path; $attrs:tt; $($check:ident),* $(,)?) => {
        $( $crate::push_store_contract_tests!(@check $factory; $attrs; $check); )*
    };
    (@check $factory:path; [$(#[$attr:meta])*]; $check:ident) => {
        #[tokio::test]
        $(#[$attr])*
        async fn $check() {
            if let Some(store) = $factory().await {
                $crate::contract::$check(store).await;
            }
        }
    };
}

fn account() -> AccountId {
    AccountId::from_bytes(rand::random())
}

/// Now, at millisecond precision (what a ULID timestamp holds).
fn now() -> Timestamp {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

fn page(size: usize, cursor: Option<String>) -> PageRequest {
    PageRequest { size, cursor }
}

fn senders() -> Senders {
    Senders {
        apn: Some(CredentialId::parse("comms_credential_aaaaaaaaaaaaaaaaaaaaaaaaaa").expect("valid")),
        fcm: Some(CredentialId::parse("comms_credential_bbbbbbbbbbbbbbbbbbbbbbbbbb").expect("valid")),
    }
}

fn user() -> UserId {
    UserId::from_ulid(Ulid::generate())
}

/// A PROCESSING operation created at `at` with `total` queued notifications.
fn operation(account: &AccountId, at: Timestamp, total: u64) -> Operation {
    Operation {
        id: OperationId::from_ulid(Ulid::from_parts(at.timestamp_millis() as u64, rand::random())),
        account_id: account.clone(),
        status: OperationStatus::Processing,
        stats: Stats { total, recipients: total, queued: total, ..Stats::default() },
        created_at: at,
        updated_at: at,
    }
}

/// Notification `slot` of `op`: APN on even slots, FCM on odd; tags `team` (`a` every third
/// slot, else `b`) and `slot`.
fn notification(op: &Operation, slot: u32) -> Notification {
    Notification {
        id: NotificationId::derive(op.id, slot),
        account_id: op.account_id.clone(),
        operation_id: op.id,
        to: Destination {
            token: format!("token-{slot}"),
            provider: if slot.is_multiple_of(2) { Provider::Apn } else { Provider::Fcm },
            user_id: None,
        },
        from: Senders::default(),
        content: Arc::new(Content {
            title: Some(format!("Hello {slot}")),
            body: Some("Body".into()),
            data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            badge: Some(slot),
            ..Content::default()
        }),
        priority: Priority::High,
        sound: Some("default".into()),
        status: NotificationStatus::Queued,
        tags: BTreeMap::from([
            ("team".to_owned(), if slot.is_multiple_of(3) { "a" } else { "b" }.to_owned()),
            ("slot".to_owned(), slot.to_string()),
        ]),
        scheduled_for: None,
        created_at: op.created_at,
        updated_at: op.created_at,
        error: None,
        completed_at: None,
    }
}

/// Notification `slot` of `op` carrying exactly `tags`.
fn tagged(op: &Operation, slot: u32, tags: &[(&str, &str)]) -> Notification {
    let mut n = notification(op, slot);
    n.tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    n
}

/// A filter on `tags` only.
fn by_tags(tags: &[(&str, &str)]) -> NotificationFilter {
    NotificationFilter {
        tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..Default::default()
    }
}

fn outcome(status: NotificationStatus, at: Timestamp) -> Finish {
    let error = (status == NotificationStatus::Failed)
        .then(|| DeliveryError::new(ErrorCode::InvalidToken, "the token is not valid", Some("Unregistered".into())));
    Finish::by_dispatcher(status, senders(), error, at)
}

/// Creates `op` and `count` notifications of it; returns them.
async fn seed(store: &Store, op: &Operation, count: u32) -> Vec<Notification> {
    store.create_operation(op).await.expect("operation created");
    let mut out = Vec::new();
    for slot in 0..count {
        let n = notification(op, slot);
        assert_eq!(store.create_notification(n.clone()).await.expect("created"), NotificationStatus::Queued);
        out.push(n);
    }
    out
}

/// Claims and finishes one notification.
async fn deliver(store: &Store, n: &Notification, status: NotificationStatus, at: Timestamp) -> Operation {
    store.claim(&n.account_id, n.id, at + Duration::seconds(30), at).await.expect("claimed");
    store.finish(&n.account_id, n.id, outcome(status, at)).await.expect("finished").operation
}

fn ids<'a>(items: impl IntoIterator<Item = &'a Notification>) -> Vec<NotificationId> {
    items.into_iter().map(|n| n.id).collect()
}

/// The ids of `items` that `keep` accepts, newest first.
fn expected<'a>(items: &'a [Notification], keep: impl Fn(&&'a Notification) -> bool) -> Vec<NotificationId> {
    let mut out = ids(items.iter().filter(keep));
    out.sort_by(|a, b| b.cmp(a));
    out
}

/// Follows every page of size `size`, checking that each page but the last is full and that no
/// item comes twice; returns the ids in order.
async fn walk(store: &Store, account: &AccountId, filter: &NotificationFilter, size: usize) -> Vec<NotificationId> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let Page { items, next } =
            store.list_notifications(account, filter, &page(size, cursor.take())).await.expect("listed");
        assert!(items.len() <= size, "a page holds at most pageSize items");
        out.extend(ids(&items));
        match next {
            Some(next) => {
                assert_eq!(items.len(), size, "a page followed by another is full");
                cursor = Some(next);
            }
            None => break,
        }
    }
    let unique: HashSet<_> = out.iter().collect();
    assert_eq!(unique.len(), out.len(), "no item is visited twice");
    out
}

/// Same for operations.
async fn walk_operations(
    store: &Store,
    account: &AccountId,
    filter: &OperationFilter,
    size: usize,
) -> Vec<OperationId> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let Page { items, next } =
            store.list_operations(account, filter, &page(size, cursor.take())).await.expect("listed");
        assert!(items.len() <= size);
        out.extend(items.iter().map(|op| op.id));
        match next {
            Some(next) => {
                assert_eq!(items.len(), size, "a page followed by another is full");
                cursor = Some(next);
            }
            None => break,
        }
    }
    out
}

/// A second create of the same operation is a `Conflict` and keeps the first record.
pub async fn creates_an_operation_only_once(store: Store) {
    let account = account();
    let op = operation(&account, now(), 3);
    store.create_operation(&op).await.expect("created");
    assert_eq!(store.get_operation(&account, op.id).await.expect("read"), Some(op.clone()));
    let mut again = op.clone();
    again.stats.total = 99;
    assert_eq!(store.create_operation(&again).await, Err(StoreError::Conflict));
    assert_eq!(store.get_operation(&account, op.id).await.expect("read"), Some(op), "the first record is kept");
}

/// A notification is stored as given; a second create returns the stored status and keeps the
/// first record.
pub async fn creates_a_notification_only_once_and_returns_the_stored_status(store: Store) {
    let account = account();
    let op = operation(&account, now(), 1);
    store.create_operation(&op).await.expect("created");
    let mut first = notification(&op, 0);
    first.to.user_id = Some(user());
    first.scheduled_for = Some(op.created_at + Duration::minutes(5));
    assert_eq!(store.create_notification(first.clone()).await.expect("created"), NotificationStatus::Queued);
    assert_eq!(store.get_notification(&account, first.id).await.expect("read"), Some(first.clone()));

    let mut second = first.clone();
    second.sound = Some("other".into());
    assert_eq!(store.create_notification(second.clone()).await.expect("idempotent"), NotificationStatus::Queued);
    deliver(&store, &first, NotificationStatus::Failed, op.created_at).await;
    assert_eq!(store.create_notification(second).await.expect("idempotent"), NotificationStatus::Failed);
    let stored = store.get_notification(&account, first.id).await.expect("read").expect("exists");
    assert_eq!(stored.sound, first.sound, "the first record is kept");
    assert_eq!(stored.status, NotificationStatus::Failed);
}

/// A claim holds until its lease expires; final and missing notifications cannot be claimed.
pub async fn a_claim_is_exclusive_until_its_lease_expires(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 1);
    let n = seed(&store, &op, 1).await.remove(0);
    let lease = t + Duration::seconds(60);
    store.claim(&account, n.id, lease, t).await.expect("first claim");
    assert_eq!(store.claim(&account, n.id, lease, t).await, Err(StoreError::Conflict));
    assert_eq!(
        store.claim(&account, n.id, lease, lease - Duration::seconds(1)).await,
        Err(StoreError::Conflict),
        "the lease still holds a second before it ends"
    );
    store
        .claim(&account, n.id, lease + Duration::seconds(60), lease + Duration::seconds(1))
        .await
        .expect("an expired lease can be taken over");
    let after = store.finish(&account, n.id, outcome(NotificationStatus::Sent, t)).await.expect("finished");
    assert_eq!(after.status, OperationStatus::Completed);
    assert_eq!(
        store.claim(&account, n.id, lease + Duration::days(1), lease + Duration::hours(1)).await,
        Err(StoreError::Conflict),
        "a final notification cannot be claimed"
    );
    let missing = NotificationId::derive(op.id, 7);
    assert_eq!(store.claim(&account, missing, lease, t).await, Err(StoreError::Conflict));
}

/// `release` gives a claim back; releasing a missing notification is fine.
pub async fn a_released_claim_can_be_taken_again(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 1);
    let n = seed(&store, &op, 1).await.remove(0);
    store.claim(&account, n.id, t + Duration::seconds(60), t).await.expect("claimed");
    store.release(&account, n.id).await.expect("released");
    store.claim(&account, n.id, t + Duration::seconds(60), t).await.expect("claimed again at once");
    store.release(&account, NotificationId::derive(op.id, 9)).await.expect("missing is fine");
    assert_eq!(store.get_notification(&account, NotificationId::derive(op.id, 9)).await.expect("read"), None);
    let stored = store.get_notification(&account, n.id).await.expect("read").expect("exists");
    assert_eq!(stored, n, "claims do not change the record");
}

/// `finish` moves the notification and the counters together and completes the operation with
/// the last final notification.
pub async fn finish_moves_the_status_and_the_stats_and_completes_the_operation_with_the_last_one(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 3);
    let ns = seed(&store, &op, 3).await;
    let t1 = t + Duration::seconds(1);
    let after = deliver(&store, &ns[0], NotificationStatus::Sent, t1).await;
    assert_eq!(after.status, OperationStatus::Processing);
    assert_eq!((after.stats.queued, after.stats.sent, after.stats.failed), (2, 1, 0));
    assert_eq!(after.updated_at, t1);
    let t2 = t + Duration::seconds(2);
    let after = deliver(&store, &ns[1], NotificationStatus::Failed, t2).await;
    assert_eq!(after.status, OperationStatus::Processing);
    assert_eq!((after.stats.queued, after.stats.sent, after.stats.failed), (1, 1, 1));
    let t3 = t + Duration::seconds(3);
    store.claim(&account, ns[2].id, t3 + Duration::seconds(30), t3).await.expect("claimed");
    let finished = store.finish(&account, ns[2].id, outcome(NotificationStatus::Sent, t3)).await.expect("finished");
    assert!(finished.completed, "the last finish reports that it completed the operation");
    let after = finished.operation;
    assert_eq!(after.status, OperationStatus::Completed);
    assert_eq!((after.stats.queued, after.stats.sent, after.stats.failed), (0, 2, 1));
    assert!(after.stats.adds_up());
    assert_eq!(after.updated_at, t3);
    assert_eq!(store.get_operation(&account, op.id).await.expect("read"), Some(after));

    let failed = store.get_notification(&account, ns[1].id).await.expect("read").expect("exists");
    let mut want = ns[1].clone();
    want.status = NotificationStatus::Failed;
    want.from = senders();
    want.error = outcome(NotificationStatus::Failed, t2).error;
    want.updated_at = t2;
    want.completed_at = Some(t2);
    assert_eq!(failed, want);
    let sent = store.get_notification(&account, ns[0].id).await.expect("read").expect("exists");
    assert_eq!((sent.status, sent.error, sent.completed_at), (NotificationStatus::Sent, None, Some(t1)));
}

/// A final notification never moves again, and the counters stay put; a missing one is a
/// `Conflict` too.
pub async fn finish_never_moves_a_final_or_missing_notification(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 2);
    let ns = seed(&store, &op, 2).await;
    let before = deliver(&store, &ns[0], NotificationStatus::Sent, t).await;
    for status in [NotificationStatus::Sent, NotificationStatus::Failed] {
        assert_eq!(store.finish(&account, ns[0].id, outcome(status, t)).await, Err(StoreError::Conflict));
    }
    let missing = NotificationId::derive(op.id, 5);
    assert_eq!(store.finish(&account, missing, outcome(NotificationStatus::Sent, t)).await, Err(StoreError::Conflict));
    assert_eq!(store.get_operation(&account, op.id).await.expect("read"), Some(before));
    let stored = store.get_notification(&account, ns[0].id).await.expect("read").expect("exists");
    assert_eq!(stored.status, NotificationStatus::Sent);
}

/// Another account's records are indistinguishable from missing ones, and it cannot touch them.
pub async fn another_account_sees_nothing_and_changes_nothing(store: Store) {
    let owner = account();
    let other = account();
    let t = now();
    let op = operation(&owner, t, 2);
    let ns = seed(&store, &op, 2).await;
    deliver(&store, &ns[1], NotificationStatus::Failed, t).await;

    assert_eq!(store.get_operation(&other, op.id).await.expect("read"), None);
    assert_eq!(store.get_notification(&other, ns[0].id).await.expect("read"), None);
    let all = NotificationFilter::default();
    assert!(store.list_notifications(&other, &all, &page(100, None)).await.expect("listed").items.is_empty());
    let by_op = NotificationFilter { operation_id: Some(op.id), ..Default::default() };
    assert!(store.list_notifications(&other, &by_op, &page(100, None)).await.expect("listed").items.is_empty());
    let ops = store.list_operations(&other, &OperationFilter::default(), &page(100, None)).await.expect("listed");
    assert!(ops.items.is_empty());
    assert!(store.list_operation_errors(&other, op.id, &page(100, None)).await.expect("listed").items.is_empty());

    assert_eq!(store.claim(&other, ns[0].id, t + Duration::seconds(9), t).await, Err(StoreError::Conflict));
    assert_eq!(store.finish(&other, ns[0].id, outcome(NotificationStatus::Sent, t)).await, Err(StoreError::Conflict));
    store.release(&other, ns[0].id).await.expect("a no-op");
    store.discard_operation(&other, op.id).await.expect("a no-op");

    let kept = store.get_operation(&owner, op.id).await.expect("read").expect("still there");
    assert_eq!((kept.stats.queued, kept.stats.failed, kept.status), (1, 1, OperationStatus::Processing));
    assert_eq!(store.get_notification(&owner, ns[0].id).await.expect("read"), Some(ns[0].clone()));
    // The owner's claim was never taken by the other account.
    store.claim(&owner, ns[0].id, t + Duration::seconds(9), t).await.expect("claimable by its owner");
}

/// Lists are newest first; every page size visits every item exactly once, in order.
pub async fn notifications_are_listed_newest_first_in_pages_that_visit_each_once(store: Store) {
    let account = account();
    let t = now();
    let older = operation(&account, t, 13);
    let newer = operation(&account, t + Duration::seconds(1), 12);
    let mut all = seed(&store, &older, 13).await;
    all.extend(seed(&store, &newer, 12).await);
    let newest_first = expected(&all, |_| true);
    assert_eq!(newest_first[0], NotificationId::derive(newer.id, 11));
    assert_eq!(newest_first[24], NotificationId::derive(older.id, 0));

    let everything = NotificationFilter::default();
    let first = store.list_notifications(&account, &everything, &page(1000, None)).await.expect("listed");
    assert_eq!(ids(&first.items), newest_first);
    assert_eq!(first.next, None, "a page that holds everything is the last");
    assert_eq!(first.items.iter().find(|n| n.id == all[3].id), Some(&all[3]), "items come back whole");
    for size in [1, 2, 3, 7, 25] {
        assert_eq!(walk(&store, &account, &everything, size).await, newest_first, "pageSize {size}");
    }
    // A sparse filter whose first match lies beyond the first items read.
    let slot_0 = NotificationFilter { tags: vec![("slot".into(), "0".into())], ..Default::default() };
    let want = vec![NotificationId::derive(newer.id, 0), NotificationId::derive(older.id, 0)];
    assert_eq!(walk(&store, &account, &slot_0, 1).await, want);
}

/// Filters combine with AND.
pub async fn notification_filters_combine_with_and(store: Store) {
    let account = account();
    let t = now();
    let op1 = operation(&account, t, 6);
    let op2 = operation(&account, t + Duration::seconds(1), 6);
    let someone = user();
    store.create_operation(&op1).await.expect("created");
    store.create_operation(&op2).await.expect("created");
    let mut all = Vec::new();
    for op in [&op1, &op2] {
        for slot in 0..6 {
            let mut n = notification(op, slot);
            if op.id == op2.id && (slot == 1 || slot == 4) {
                n.to.user_id = Some(someone);
            }
            if op.id == op1.id && slot == 2 {
                n.to.user_id = Some(user());
            }
            store.create_notification(n.clone()).await.expect("created");
            all.push(n);
        }
    }
    for (i, status) in [(0, NotificationStatus::Sent), (1, NotificationStatus::Failed), (8, NotificationStatus::Sent)] {
        deliver(&store, &all[i], status, t + Duration::seconds(5)).await;
        all[i].status = status;
    }
    let is = |op: &Operation| {
        let id = op.id;
        move |n: &&Notification| n.operation_id == id
    };
    let cases: Vec<(NotificationFilter, Vec<NotificationId>)> = vec![
        (NotificationFilter { operation_id: Some(op2.id), ..Default::default() }, expected(&all, is(&op2))),
        (
            NotificationFilter {
                operation_id: Some(op1.id),
                status: Some(NotificationStatus::Sent),
                ..Default::default()
            },
            vec![all[0].id],
        ),
        (
            NotificationFilter { status: Some(NotificationStatus::Sent), ..Default::default() },
            vec![all[8].id, all[0].id],
        ),
        (
            NotificationFilter { operation_id: Some(op1.id), provider: Some(Provider::Fcm), ..Default::default() },
            vec![all[5].id, all[3].id, all[1].id],
        ),
        (
            NotificationFilter { tags: vec![("team".into(), "a".into())], ..Default::default() },
            vec![all[9].id, all[6].id, all[3].id, all[0].id],
        ),
        (
            NotificationFilter {
                tags: vec![("team".into(), "a".into()), ("slot".into(), "3".into())],
                ..Default::default()
            },
            vec![all[9].id, all[3].id],
        ),
        (NotificationFilter { user: Some(someone), ..Default::default() }, vec![all[10].id, all[7].id]),
        (
            NotificationFilter { user: Some(someone), provider: Some(Provider::Apn), ..Default::default() },
            vec![all[10].id],
        ),
        (NotificationFilter { user: Some(someone), operation_id: Some(op1.id), ..Default::default() }, vec![]),
        (NotificationFilter { start: Some(t + Duration::seconds(1)), ..Default::default() }, expected(&all, is(&op2))),
        (NotificationFilter { end: Some(t), ..Default::default() }, expected(&all, is(&op1))),
        (NotificationFilter { start: Some(t), end: Some(t), ..Default::default() }, expected(&all, is(&op1))),
        (
            NotificationFilter {
                status: Some(NotificationStatus::Failed),
                provider: Some(Provider::Apn),
                ..Default::default()
            },
            vec![],
        ),
        (
            NotificationFilter { status: Some(NotificationStatus::Queued), ..Default::default() },
            expected(&all, |n| n.status == NotificationStatus::Queued),
        ),
    ];
    for (filter, want) in cases {
        let got = store.list_notifications(&account, &filter, &page(1000, None)).await.expect("listed");
        assert_eq!(ids(&got.items), want, "{filter:?}");
        assert_eq!(walk(&store, &account, &filter, 2).await, want, "paged by 2: {filter:?}");
    }
}

/// A `tags` filter pages exactly through matches spread among many notifications that do not
/// match (another value, a value the wanted one is a prefix of, no such tag, another operation):
/// every page but the last is full, the last has no `next`, a page that holds exactly the last
/// matches is the last, and candidates that fail the rest of the filter do not end a page early.
pub async fn a_tags_filter_pages_exactly_through_matches_among_many_that_do_not_match(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 45);
    let later = operation(&account, t + Duration::seconds(1), 3);
    store.create_operation(&op).await.expect("created");
    store.create_operation(&later).await.expect("created");
    let mut all = Vec::new();
    for slot in 0..45 {
        let mut n = notification(&op, slot);
        match slot % 3 {
            0 => n.tags.insert("flight".into(), "PG1".into()),
            1 => n.tags.insert("flight".into(), "PG10".into()),
            _ => None,
        };
        store.create_notification(n.clone()).await.expect("created");
        all.push(n);
    }
    for slot in 0..3 {
        let n = tagged(&later, slot, &[("flight", "PG1")]);
        store.create_notification(n.clone()).await.expect("created");
        all.push(n);
    }
    let pg1 = by_tags(&[("flight", "PG1")]);
    let want = expected(&all, |n| n.tags.get("flight").is_some_and(|v| v == "PG1"));
    assert_eq!(want.len(), 18);

    let (mut sizes, mut got, mut cursor) = (Vec::new(), Vec::new(), None);
    loop {
        let Page { items, next } =
            store.list_notifications(&account, &pg1, &page(4, cursor.take())).await.expect("listed");
        sizes.push(items.len());
        got.extend(ids(&items));
        match next {
            Some(next) if sizes.len() < 10 => cursor = Some(next),
            _ => break,
        }
    }
    assert_eq!(sizes, vec![4, 4, 4, 4, 2], "pageSize 4 is honoured and the last page has no next");
    assert_eq!(got, want);

    let exact = store.list_notifications(&account, &pg1, &page(18, None)).await.expect("listed");
    assert_eq!(ids(&exact.items), want);
    assert_eq!(exact.next, None, "a page that holds exactly the last matches is the last");
    assert_eq!(exact.items.iter().find(|n| n.id == all[3].id), Some(&all[3]), "items come back whole");
    let short = store.list_notifications(&account, &pg1, &page(17, None)).await.expect("listed");
    assert_eq!((short.items.len(), short.next.is_some()), (17, true), "one match left means a next page");
    let rest = store.list_notifications(&account, &pg1, &page(17, short.next)).await.expect("listed");
    assert_eq!((ids(&rest.items), rest.next), (vec![want[17]], None));
    for size in [1, 2, 7, 1000] {
        assert_eq!(walk(&store, &account, &pg1, size).await, want, "pageSize {size}");
    }
    let of_op = NotificationFilter { operation_id: Some(op.id), ..pg1.clone() };
    let want_of_op = expected(&all, |n| n.operation_id == op.id && n.tags.get("flight").is_some_and(|v| v == "PG1"));
    assert_eq!(walk(&store, &account, &of_op, 4).await, want_of_op, "within one operation");

    // Every PG1 notification but the newest and the oldest of `op` stays QUEUED: a page must read
    // past all of them to find the second match and to know there is none after it.
    for i in [0, 42, 1] {
        deliver(&store, &all[i], NotificationStatus::Sent, t + Duration::seconds(5)).await;
    }
    let sent = NotificationFilter { status: Some(NotificationStatus::Sent), ..pg1.clone() };
    assert_eq!(walk(&store, &account, &sent, 1).await, vec![all[42].id, all[0].id]);
    let pg10 = NotificationFilter { status: Some(NotificationStatus::Sent), ..by_tags(&[("flight", "PG10")]) };
    assert_eq!(walk(&store, &account, &pg10, 1).await, vec![all[1].id], "PG1 is not a prefix match");
}

/// Two tags are ANDed, whichever comes first: a notification must carry both.
pub async fn a_tags_filter_with_two_tags_keeps_only_notifications_carrying_both(store: Store) {
    let account = account();
    let op = operation(&account, now(), 13);
    store.create_operation(&op).await.expect("created");
    let mut all = Vec::new();
    for slot in 0..13 {
        let n = match slot {
            0 => tagged(&op, slot, &[("flight", "PG1")]),
            2 | 5 | 11 => tagged(&op, slot, &[("flight", "PG1"), ("gate", "B7"), ("slot", &slot.to_string())]),
            12 => tagged(&op, slot, &[("flight", "PG2"), ("gate", "B7")]),
            _ => tagged(&op, slot, &[("flight", "PG1"), ("gate", "C2")]),
        };
        store.create_notification(n.clone()).await.expect("created");
        all.push(n);
    }
    let both = vec![all[11].id, all[5].id, all[2].id];
    let cases = [
        (by_tags(&[("flight", "PG1"), ("gate", "B7")]), both.clone()),
        (by_tags(&[("gate", "B7"), ("flight", "PG1")]), both),
        (by_tags(&[("flight", "PG1"), ("gate", "B7"), ("slot", "5")]), vec![all[5].id]),
        (by_tags(&[("gate", "B7"), ("flight", "PG2")]), vec![all[12].id]),
        (by_tags(&[("flight", "PG2"), ("gate", "C2")]), vec![]),
        (by_tags(&[("flight", "PG1"), ("flight", "PG2")]), vec![]),
    ];
    for (filter, want) in cases {
        let got = store.list_notifications(&account, &filter, &page(1000, None)).await.expect("listed");
        assert_eq!((ids(&got.items), got.next), (want.clone(), None), "{filter:?}");
        assert_eq!(walk(&store, &account, &filter, 1).await, want, "paged by 1: {filter:?}");
    }
}

/// A tag matches only itself, whatever `=`, `:` or `#` its key and value hold (no two tags
/// are confused by where a separator falls, and a value is never matched by its prefix).
pub async fn a_tag_holding_separators_matches_only_itself(store: Store) {
    let account = account();
    let tags = [
        ("a", "b=c"),
        ("a=b", "c"),
        ("a", "b:c"),
        ("a:b", "c"),
        ("a#b", "c"),
        ("a", "b#c"),
        ("a", "b"),
        ("1:a", "b"),
        ("a", "1:a=b"),
    ];
    let op = operation(&account, now(), tags.len() as u64);
    store.create_operation(&op).await.expect("created");
    let mut all = Vec::new();
    for (slot, tag) in (0..).zip(tags) {
        let n = tagged(&op, slot, &[tag]);
        store.create_notification(n.clone()).await.expect("created");
        all.push(n);
    }
    for (n, tag) in all.iter().zip(tags) {
        let filter = by_tags(&[tag]);
        let got = store.list_notifications(&account, &filter, &page(1000, None)).await.expect("listed");
        assert_eq!(ids(&got.items), vec![n.id], "{tag:?}");
        assert_eq!(walk(&store, &account, &filter, 1).await, vec![n.id], "paged by 1: {tag:?}");
    }
    for tag in [("a", "b="), ("a=b=c", ""), ("a", "b=c#"), ("a:b", ""), ("a", "")] {
        let got = store.list_notifications(&account, &by_tags(&[tag]), &page(1000, None)).await.expect("listed");
        assert!(got.items.is_empty(), "{tag:?} matches nothing: {:?}", ids(&got.items));
    }
}

/// Creating the same notification again (a redelivered chunk), before and after it is final,
/// lists it once, with or without a `tags` filter, as it is stored.
pub async fn a_redelivered_create_does_not_duplicate_list_results(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 2);
    store.create_operation(&op).await.expect("created");
    let ns: Vec<_> = (0..2).map(|slot| tagged(&op, slot, &[("flight", "PG1"), ("gate", "B7")])).collect();
    for n in ns.iter().chain(&ns) {
        assert_eq!(store.create_notification(n.clone()).await.expect("created"), NotificationStatus::Queued);
    }
    let pg1 = by_tags(&[("flight", "PG1")]);
    let want = vec![ns[1].id, ns[0].id];
    for filter in [&pg1, &by_tags(&[("gate", "B7"), ("flight", "PG1")]), &NotificationFilter::default()] {
        let got = store.list_notifications(&account, filter, &page(1000, None)).await.expect("listed");
        assert_eq!((ids(&got.items), got.next), (want.clone(), None), "{filter:?}");
        assert_eq!(walk(&store, &account, filter, 1).await, want, "paged by 1: {filter:?}");
    }

    deliver(&store, &ns[0], NotificationStatus::Sent, t + Duration::seconds(1)).await;
    assert_eq!(store.create_notification(ns[0].clone()).await.expect("idempotent"), NotificationStatus::Sent);
    let got = store.list_notifications(&account, &pg1, &page(1000, None)).await.expect("listed");
    assert_eq!(ids(&got.items), want);
    assert_eq!(got.items[1].status, NotificationStatus::Sent, "the stored record is listed");
    let sent = NotificationFilter { status: Some(NotificationStatus::Sent), ..pg1.clone() };
    assert_eq!(walk(&store, &account, &sent, 1).await, vec![ns[0].id]);
    assert_eq!(walk(&store, &account, &NotificationFilter::default(), 1).await, want);
}

/// Operations are listed newest first, filtered by status and dates, in pages.
pub async fn operations_are_listed_newest_first_with_filters_and_pages(store: Store) {
    let account = account();
    let t = now();
    let mut ops = Vec::new();
    for i in 0..5 {
        let mut op = operation(&account, t + Duration::seconds(i), 1);
        op.status = match i {
            0 => OperationStatus::Completed,
            1 => OperationStatus::Scheduled,
            _ => OperationStatus::Processing,
        };
        store.create_operation(&op).await.expect("created");
        ops.push(op);
    }
    let id = |i: usize| ops[i].id;
    let all = store.list_operations(&account, &OperationFilter::default(), &page(1000, None)).await.expect("listed");
    assert_eq!(all.items.iter().map(|op| op.id).collect::<Vec<_>>(), vec![id(4), id(3), id(2), id(1), id(0)]);
    assert_eq!(all.items[4], ops[0], "items come back whole");
    assert_eq!(all.next, None);
    let cases = [
        (OperationFilter::default(), vec![id(4), id(3), id(2), id(1), id(0)]),
        (
            OperationFilter { status: Some(OperationStatus::Processing), ..Default::default() },
            vec![id(4), id(3), id(2)],
        ),
        (OperationFilter { status: Some(OperationStatus::Scheduled), ..Default::default() }, vec![id(1)]),
        (OperationFilter { start: Some(t + Duration::seconds(2)), ..Default::default() }, vec![id(4), id(3), id(2)]),
        (OperationFilter { end: Some(t + Duration::seconds(1)), ..Default::default() }, vec![id(1), id(0)]),
        (
            OperationFilter {
                status: Some(OperationStatus::Processing),
                start: Some(t + Duration::seconds(1)),
                end: Some(t + Duration::seconds(3)),
            },
            vec![id(3), id(2)],
        ),
        (OperationFilter { status: Some(OperationStatus::Canceled), ..Default::default() }, vec![]),
    ];
    for (filter, want) in cases {
        for size in [1, 2, 5, 1000] {
            assert_eq!(walk_operations(&store, &account, &filter, size).await, want, "pageSize {size}: {filter:?}");
        }
    }
}

/// The Errors list of an operation holds its FAILED notifications with their errors.
pub async fn operation_errors_list_the_failed_notifications_with_their_errors(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 5);
    let other = operation(&account, t, 2);
    let ns = seed(&store, &op, 5).await;
    let others = seed(&store, &other, 2).await;
    deliver(&store, &others[0], NotificationStatus::Failed, t).await;
    let t1 = t + Duration::seconds(1);
    for (i, status) in [(0, NotificationStatus::Failed), (1, NotificationStatus::Sent), (3, NotificationStatus::Failed)]
    {
        deliver(&store, &ns[i], status, t1).await;
    }
    let errors = store.list_operation_errors(&account, op.id, &page(1000, None)).await.expect("listed");
    assert_eq!(errors.next, None);
    let got: Vec<_> = errors.items.iter().map(|e| (e.notification_id, e.provider, e.occurred_at)).collect();
    assert_eq!(got, vec![(ns[3].id, Provider::Fcm, t1), (ns[0].id, Provider::Apn, t1)]);
    assert!(errors.items.iter().all(|e| Some(&e.error) == outcome(NotificationStatus::Failed, t1).error.as_ref()));
    let first = store.list_operation_errors(&account, op.id, &page(1, None)).await.expect("listed");
    assert_eq!(first.items.len(), 1);
    let second = store.list_operation_errors(&account, op.id, &page(1, first.next)).await.expect("listed");
    assert_eq!(second.items.iter().map(|e| e.notification_id).collect::<Vec<_>>(), vec![ns[0].id]);
    assert_eq!(second.next, None);
}

/// A discarded operation is gone; discarding a missing one is fine.
pub async fn a_discarded_operation_is_gone(store: Store) {
    let account = account();
    let op = operation(&account, now(), 1);
    let kept = operation(&account, now(), 1);
    store.create_operation(&op).await.expect("created");
    store.create_operation(&kept).await.expect("created");
    store.discard_operation(&account, op.id).await.expect("discarded");
    assert_eq!(store.get_operation(&account, op.id).await.expect("read"), None);
    store.discard_operation(&account, op.id).await.expect("discarding again is fine");
    let listed = store.list_operations(&account, &OperationFilter::default(), &page(10, None)).await.expect("listed");
    assert_eq!(listed.items, vec![kept.clone()]);
    store.create_operation(&op).await.expect("the id is free again");
}

/// A cursor that is not one of the store's is an error, not a silent first page.
pub async fn a_malformed_cursor_is_refused(store: Store) {
    let account = account();
    let bad = Some("not-a-cursor".to_owned());
    assert!(store.list_notifications(&account, &NotificationFilter::default(), &page(5, bad.clone())).await.is_err());
    assert!(store.list_operations(&account, &OperationFilter::default(), &page(5, bad)).await.is_err());
}

/// Two dispatchers claiming the same notification at once: exactly one gets it.
pub async fn concurrent_claims_let_exactly_one_win(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 1);
    let n = seed(&store, &op, 1).await.remove(0);
    let until = t + Duration::seconds(30);
    let (a, b) = tokio::join!(store.claim(&account, n.id, until, t), store.claim(&account, n.id, until, t));
    let mut results = [a, b];
    results.sort_by_key(Result::is_err);
    assert_eq!(results, [Ok(()), Err(StoreError::Conflict)]);
}

/// Two finishes of the same notification at once: one wins, the other is refused (`Conflict`,
/// or `Unavailable` where the store reports a transaction collision as retryable, after which a
/// retry sees the final status), and the counters move once.
pub async fn concurrent_finishes_move_a_notification_once(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 1);
    let n = seed(&store, &op, 1).await.remove(0);
    store.claim(&account, n.id, t + Duration::seconds(30), t).await.expect("claimed");
    let (a, b) = tokio::join!(
        store.finish(&account, n.id, outcome(NotificationStatus::Sent, t)),
        store.finish(&account, n.id, outcome(NotificationStatus::Failed, t))
    );
    let (won, lost) = match (a, b) {
        (Ok(op), Err(e)) | (Err(e), Ok(op)) => (op, e),
        other => panic!("exactly one finish must win: {other:?}"),
    };
    assert!(matches!(lost, StoreError::Conflict | StoreError::Unavailable(_)), "{lost:?}");
    let stored = store.get_operation(&account, op.id).await.expect("read").expect("exists");
    assert!(won.completed, "the winning finish completed the operation");
    assert_eq!(stored, won.operation);
    assert_eq!((stored.stats.queued, stored.stats.sent + stored.stats.failed), (0, 1));
    assert_eq!(stored.status, OperationStatus::Completed);
    let final_status = store.get_notification(&account, n.id).await.expect("read").expect("exists").status;
    assert_eq!(final_status == NotificationStatus::Sent, stored.stats.sent == 1, "the winner's status is stored");
}

/// A notification whose operation is gone cannot finish, and stays as it was (the status change
/// and the counters move together or not at all).
pub async fn finish_without_its_operation_fails_and_changes_nothing(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 1);
    let n = seed(&store, &op, 1).await.remove(0);
    store.discard_operation(&account, op.id).await.expect("discarded");
    let result = store.finish(&account, n.id, outcome(NotificationStatus::Sent, t)).await;
    assert!(matches!(result, Err(StoreError::Unexpected(_))), "{result:?}");
    assert_eq!(store.get_notification(&account, n.id).await.expect("read"), Some(n));
}

/// An API cancel.
fn cancel(at: Timestamp) -> Finish {
    Finish { status: NotificationStatus::Canceled, from: Senders::default(), error: None, at, unclaimed: true }
}

/// An API cancel moves an unclaimed (or expired-claim) QUEUED notification to CANCELED with its
/// counters; one a dispatcher holds is a `Conflict` and stays as it was.
pub async fn an_api_cancel_takes_an_unclaimed_notification_but_never_one_a_dispatcher_holds(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 3);
    let ns = seed(&store, &op, 3).await;
    store.claim(&account, ns[0].id, t + Duration::seconds(30), t).await.expect("claimed");
    assert_eq!(store.finish(&account, ns[0].id, cancel(t)).await, Err(StoreError::Conflict));
    let held = store.get_notification(&account, ns[0].id).await.expect("read").expect("exists");
    assert_eq!(held.status, NotificationStatus::Queued);

    let after = store.finish(&account, ns[1].id, cancel(t)).await.expect("canceled");
    assert_eq!((after.stats.queued, after.stats.canceled, after.status), (2, 1, OperationStatus::Processing));
    assert_eq!(store.claim(&account, ns[1].id, t + Duration::seconds(30), t).await, Err(StoreError::Conflict));
    assert_eq!(store.finish(&account, ns[1].id, cancel(t)).await, Err(StoreError::Conflict), "final already");

    // A claim whose lease ran out no longer protects the notification.
    store.claim(&account, ns[2].id, t + Duration::seconds(1), t).await.expect("claimed");
    store.finish(&account, ns[2].id, cancel(t + Duration::seconds(2))).await.expect("the lease expired");
    let stored = store.get_notification(&account, ns[2].id).await.expect("read").expect("exists");
    assert_eq!(stored.status, NotificationStatus::Canceled);
}

/// A CANCELED operation stays CANCELED when its last notification finishes; canceling it again,
/// canceling a COMPLETED one, or one whose notifications are all final is a `Conflict`; a
/// missing one is `None`.
pub async fn a_canceled_operation_is_never_completed_and_cannot_be_canceled_twice(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 2);
    let ns = seed(&store, &op, 2).await;
    let canceled = store.cancel_operation(&account, op.id, t).await.expect("canceled").expect("exists");
    assert_eq!((canceled.status, canceled.stats.queued), (OperationStatus::Canceled, 2));
    assert_eq!(store.cancel_operation(&account, op.id, t).await, Err(StoreError::Conflict));
    deliver(&store, &ns[0], NotificationStatus::Sent, t).await;
    let last = store.finish(&account, ns[1].id, cancel(t)).await.expect("canceled");
    assert_eq!(last.status, OperationStatus::Canceled);
    assert_eq!((last.stats.sent, last.stats.canceled, last.stats.queued), (1, 1, 0));
    assert!(last.stats.adds_up());

    let done = operation(&account, t, 1);
    let n = seed(&store, &done, 1).await.remove(0);
    assert_eq!(deliver(&store, &n, NotificationStatus::Sent, t).await.status, OperationStatus::Completed);
    assert_eq!(store.cancel_operation(&account, done.id, t).await, Err(StoreError::Conflict));

    let missing = OperationId::from_ulid(Ulid::generate());
    assert_eq!(store.cancel_operation(&account, missing, t).await, Ok(None));
    assert_eq!(store.cancel_operation(&AccountId::from_bytes(rand::random()), op.id, t).await, Ok(None));
}

/// A dispatcher's claim and an API cancel at the same instant, 20 times: each time exactly one
/// wins, and the loser changed nothing.
pub async fn a_claim_and_an_api_cancel_racing_on_one_notification_let_exactly_one_win(store: Store) {
    let account = account();
    for _ in 0..20 {
        let t = now();
        let op = operation(&account, t, 1);
        let n = seed(&store, &op, 1).await.remove(0);
        let (claimed, canceled) = tokio::join!(
            store.claim(&account, n.id, t + Duration::seconds(30), t),
            store.finish(&account, n.id, cancel(t))
        );
        let stored = store.get_notification(&account, n.id).await.expect("read").expect("exists");
        match (claimed, canceled) {
            (Ok(()), Err(StoreError::Conflict)) => assert_eq!(stored.status, NotificationStatus::Queued),
            (Err(StoreError::Conflict), Ok(op)) => {
                assert_eq!(stored.status, NotificationStatus::Canceled);
                assert_eq!((op.stats.canceled, op.stats.queued), (1, 0));
            }
            other => panic!("exactly one of claim and cancel must win: {other:?}"),
        }
    }
}

/// A chunk of `op` for instant `at` holding `recipients` recipients (tokens `t{i}`).
fn scheduled_chunk(op: &Operation, at: Timestamp, recipients: u32) -> Chunk {
    Chunk {
        v: Chunk::VERSION,
        account_id: op.account_id.clone(),
        operation_id: op.id,
        created_at: op.created_at,
        content: std::sync::Arc::new(Content { title: Some("{{ name }}".into()), ..Content::default() }),
        tags: BTreeMap::new(),
        priority: Priority::High,
        sound: None,
        senders: senders(),
        app: None,
        recipients: (0..recipients)
            .map(|i| ChunkRecipient {
                slot: i,
                token: format!("t{i}"),
                provider: Provider::Fcm,
                variables: Default::default(),
                user_id: None,
            })
            .collect(),
        scheduled_for: Some(at),
        released: false,
    }
}

/// Stored chunks come back per instant in order (a chunk of ~190 KiB included); deleting one
/// instant or all of them reports which instants had chunks; another account sees none.
pub async fn scheduled_chunks_are_kept_per_instant_and_deleted_by_instant_or_all_at_once(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 4);
    store.create_operation(&op).await.expect("created");
    let mut big = scheduled_chunk(&op, t + Duration::hours(1), 1);
    big.recipients[0].token = "x".repeat(190 * 1024);
    let first = vec![scheduled_chunk(&op, t + Duration::hours(1), 2), big];
    let second = vec![scheduled_chunk(&op, t + Duration::hours(2), 3)];
    store.put_scheduled_chunks(&account, op.id, 0, &first).await.expect("stored");
    store.put_scheduled_chunks(&account, op.id, 1, &second).await.expect("stored");
    assert_eq!(store.scheduled_chunks(&account, op.id, 0).await.expect("read"), first);
    assert_eq!(store.scheduled_chunks(&account, op.id, 1).await.expect("read"), second);
    assert_eq!(store.scheduled_chunks(&account, op.id, 2).await.expect("read"), vec![]);
    let other = AccountId::from_bytes(rand::random());
    assert_eq!(store.scheduled_chunks(&other, op.id, 0).await.expect("read"), vec![]);
    assert_eq!(store.delete_scheduled_chunks(&other, op.id, None).await.expect("deleted"), Vec::<u8>::new());

    assert_eq!(store.delete_scheduled_chunks(&account, op.id, Some(0)).await.expect("deleted"), vec![0]);
    assert_eq!(store.scheduled_chunks(&account, op.id, 0).await.expect("read"), vec![]);
    assert_eq!(store.scheduled_chunks(&account, op.id, 1).await.expect("read"), second);
    assert_eq!(store.delete_scheduled_chunks(&account, op.id, None).await.expect("deleted"), vec![1]);
    assert_eq!(store.delete_scheduled_chunks(&account, op.id, None).await.expect("deleted"), Vec::<u8>::new());
}

/// A SCHEDULED operation with SCHEDULED notifications.
async fn seed_scheduled(
    store: &Store,
    account: &AccountId,
    t: Timestamp,
    count: u32,
) -> (Operation, Vec<Notification>) {
    let mut op = operation(account, t, count as u64);
    op.status = OperationStatus::Scheduled;
    op.stats.queued = 0;
    op.stats.scheduled = count as u64;
    store.create_operation(&op).await.expect("created");
    let mut out = Vec::new();
    for slot in 0..count {
        let mut n = notification(&op, slot);
        n.status = NotificationStatus::Scheduled;
        n.scheduled_for = Some(t + Duration::hours(1));
        assert_eq!(store.create_notification(n.clone()).await.expect("created"), NotificationStatus::Scheduled);
        out.push(n);
    }
    (op, out)
}

/// `promote` moves SCHEDULED → QUEUED and `scheduled` → `queued` once (a second promote is a
/// `Conflict`), and the operation goes from SCHEDULED to PROCESSING.
pub async fn promote_moves_a_scheduled_notification_to_queued_once_and_starts_its_operation(store: Store) {
    let account = account();
    let t = now();
    let (op, ns) = seed_scheduled(&store, &account, t, 2).await;
    store.promote(&account, ns[0].id, t).await.expect("promoted");
    assert_eq!(store.promote(&account, ns[0].id, t).await, Err(StoreError::Conflict));
    let stored = store.get_operation(&account, op.id).await.expect("read").expect("exists");
    assert_eq!((stored.status, stored.stats.scheduled, stored.stats.queued), (OperationStatus::Processing, 1, 1));
    let n = store.get_notification(&account, ns[0].id).await.expect("read").expect("exists");
    assert_eq!(n.status, NotificationStatus::Queued);
    // The promoted one is delivered; the operation completes only when the other is final too.
    assert_eq!(deliver(&store, &ns[0], NotificationStatus::Sent, t).await.status, OperationStatus::Processing);
    store.promote(&account, ns[1].id, t).await.expect("promoted");
    assert_eq!(deliver(&store, &ns[1], NotificationStatus::Sent, t).await.status, OperationStatus::Completed);
}

/// A SCHEDULED operation whose every notification is canceled one by one completes (nothing is
/// left to release).
pub async fn a_scheduled_operation_whose_notifications_are_all_canceled_completes(store: Store) {
    let account = account();
    let t = now();
    let (_, ns) = seed_scheduled(&store, &account, t, 2).await;
    let after = store.finish(&account, ns[0].id, cancel(t)).await.expect("canceled");
    assert_eq!((after.status, after.stats.scheduled), (OperationStatus::Scheduled, 1));
    let last = store.finish(&account, ns[1].id, cancel(t)).await.expect("canceled");
    assert_eq!((last.status, last.stats.canceled), (OperationStatus::Completed, 2));
    assert!(last.stats.adds_up());
}

/// The chunk of `op` starting at `first_slot`.
fn chunk_of(op: &Operation, first_slot: u32) -> ChunkKey {
    ChunkKey { operation: op.id, first_slot }
}

/// `n` as decided: `status`, from the test's senders, at `at`.
fn decided(mut n: Notification, status: NotificationStatus, at: Timestamp) -> Notification {
    let finish = outcome(status, at);
    n.status = status;
    n.from = finish.from;
    n.error = finish.error;
    n.updated_at = at;
    n.completed_at = status.is_final().then_some(at);
    n
}

/// A tally of `sent`, `failed` and `canceled` notifications.
fn tally(sent: u64, failed: u64, canceled: u64) -> ChunkTally {
    ChunkTally { notifications: sent + failed + canceled, sent, failed, canceled }
}

/// The count of a chunk's only pass: everything final.
fn last(sent: u64, failed: u64, canceled: u64) -> ChunkCount {
    ChunkCount { before: ChunkTally::default(), after: tally(sent, failed, canceled), last: true }
}

/// A lease as it is first held.
const FRESH: Lease =
    Lease::Held { fresh: true, counted: ChunkTally { notifications: 0, sent: 0, failed: 0, canceled: 0 } };

/// A lease held again, after passes that counted `counted`.
fn again(counted: ChunkTally) -> Lease {
    Lease::Held { fresh: false, counted }
}

/// The first lease of a chunk is fresh; another holder finds it busy until it expires or is
/// given back; its own holder renews it (not fresh); a counted chunk answers `Counted` to all.
pub async fn a_chunk_lease_is_exclusive_until_it_expires_or_is_given_back_and_its_holder_renews_it(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 4);
    store.create_operation(&op).await.expect("created");
    let (chunk, other_chunk) = (chunk_of(&op, 0), chunk_of(&op, 2));
    let lease = t + Duration::seconds(60);
    assert_eq!(store.lease_chunk(&account, chunk, "a", lease, t).await, Ok(FRESH));
    assert_eq!(store.lease_chunk(&account, chunk, "b", lease, t).await, Ok(Lease::Busy { until: lease }));
    assert_eq!(
        store.lease_chunk(&account, other_chunk, "b", lease, t).await,
        Ok(FRESH),
        "chunks are leased independently"
    );
    let renewed = lease + Duration::seconds(30);
    assert_eq!(store.lease_chunk(&account, chunk, "a", renewed, t).await, Ok(again(ChunkTally::default())));
    assert_eq!(store.lease_chunk(&account, chunk, "b", lease, lease).await, Ok(Lease::Busy { until: renewed }));
    let after = renewed + Duration::seconds(1);
    assert_eq!(
        store.lease_chunk(&account, chunk, "b", after + Duration::seconds(60), after).await,
        Ok(again(ChunkTally::default())),
        "an expired lease is taken over"
    );
    store.release_chunk(&account, chunk, "a").await.expect("a no longer holds it: nothing happens");
    assert!(matches!(store.lease_chunk(&account, chunk, "c", lease, after).await, Ok(Lease::Busy { .. })));
    store.release_chunk(&account, chunk, "b").await.expect("given back");
    assert_eq!(store.lease_chunk(&account, chunk, "c", lease, after).await, Ok(again(ChunkTally::default())));
    store.count_chunk(&account, chunk, "c", last(2, 0, 0), after).await.expect("counted");
    assert_eq!(store.lease_chunk(&account, chunk, "c", lease, after).await, Ok(Lease::Counted));
    assert_eq!(store.lease_chunk(&account, chunk, "d", lease, after).await, Ok(Lease::Counted));
}

/// What `store_decided` stores is what reads return, final or QUEUED; a second store of the
/// same id replaces the first; `get_notifications` leaves missing ids out.
pub async fn decided_notifications_are_stored_as_given_and_read_back_by_id(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 3);
    store.create_operation(&op).await.expect("created");
    let sent = decided(notification(&op, 0), NotificationStatus::Sent, t);
    let waiting = decided(notification(&op, 1), NotificationStatus::Queued, t);
    store.store_decided(vec![sent.clone(), waiting.clone()], false).await.expect("stored");
    let missing = NotificationId::derive(op.id, 2);
    let mut read = store.get_notifications(&account, &[waiting.id, missing, sent.id]).await.expect("read");
    read.sort_by_key(|n| n.id);
    assert_eq!(read, vec![sent.clone(), waiting.clone()]);
    let failed = decided(notification(&op, 1), NotificationStatus::Failed, t + Duration::seconds(1));
    store.store_decided(vec![failed.clone()], false).await.expect("stored again");
    assert_eq!(store.get_notification(&account, failed.id).await.expect("read"), Some(failed.clone()));
    let by_tag = store.list_notifications(&account, &by_tags(&[("slot", "0")]), &page(10, None)).await.expect("listed");
    assert_eq!(ids(&by_tag.items), vec![sent.id], "decided notifications are in the tag index");
    assert_eq!(store.get_notifications(&account, &[]).await.expect("nothing asked"), Vec::new());
    let stranger = store.get_notifications(&self::account(), &[sent.id]).await.expect("read");
    assert!(stranger.is_empty(), "another account reads nothing");
}

/// Counting a chunk moves its notifications out of `queued` into their final counters, once;
/// the count that leaves nothing queued completes the operation (and only that one says so).
pub async fn a_chunk_is_counted_once_into_its_operation_and_the_last_count_completes_it(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 5);
    store.create_operation(&op).await.expect("created");
    let lease = t + Duration::seconds(60);
    let (first, second) = (chunk_of(&op, 0), chunk_of(&op, 3));
    for chunk in [first, second] {
        store.lease_chunk(&account, chunk, "h", lease, t).await.expect("leased");
    }
    let counted = store.count_chunk(&account, first, "h", last(1, 1, 1), t).await.expect("counted");
    assert!(!counted.completed);
    let s = counted.operation.stats;
    assert_eq!((s.queued, s.sent, s.failed, s.canceled), (2, 1, 1, 1));
    assert_eq!(counted.operation.status, OperationStatus::Processing);
    assert_eq!(store.count_chunk(&account, first, "h", last(1, 1, 1), t).await, Err(StoreError::Conflict));
    // The second chunk in two passes: one sent and one waiting, then that one failed too.
    let partial = ChunkCount { before: ChunkTally::default(), after: tally(1, 0, 0), last: false };
    let progress = store.count_chunk(&account, second, "h", partial, t).await.expect("counted so far");
    assert!(!progress.completed);
    assert_eq!((progress.operation.stats.queued, progress.operation.stats.sent), (1, 2));
    store.release_chunk(&account, second, "h").await.expect("given back");
    let held = store.lease_chunk(&account, second, "h2", lease, t).await.expect("leased again");
    assert_eq!(held, again(tally(1, 0, 0)), "the lease says what was counted");
    let rest = ChunkCount { before: tally(1, 0, 0), after: tally(1, 1, 0), last: true };
    let last = store.count_chunk(&account, second, "h2", rest, t).await.expect("counted");
    assert!(last.completed, "the last count completes the operation");
    assert_eq!(last.operation.status, OperationStatus::Completed);
    let s = last.operation.stats;
    assert_eq!((s.queued, s.sent, s.failed, s.canceled), (0, 2, 2, 1));
    assert!(s.adds_up());
    let stored = store.get_operation(&account, op.id).await.expect("read").expect("exists");
    assert_eq!(stored.stats, s);
}

/// A notification stored QUEUED by a chunk's holder can be canceled (the API's conditional
/// cancel) or claimed and finished, but its operation's counters stay for the chunk's count.
pub async fn a_notification_counted_with_its_chunk_moves_no_counter_when_canceled_or_finished(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 2);
    store.create_operation(&op).await.expect("created");
    let waiting: Vec<_> = (0..2).map(|slot| decided(notification(&op, slot), NotificationStatus::Queued, t)).collect();
    store.store_decided(waiting.clone(), false).await.expect("stored");
    let canceled = store.finish(&account, waiting[0].id, cancel(t)).await.expect("canceled");
    assert_eq!(canceled.operation.stats, op.stats, "no counter moved");
    assert!(!canceled.completed);
    store.claim(&account, waiting[1].id, t + Duration::seconds(30), t).await.expect("claimed");
    assert_eq!(store.finish(&account, waiting[0].id, cancel(t)).await, Err(StoreError::Conflict));
    let sent = store.finish(&account, waiting[1].id, outcome(NotificationStatus::Sent, t)).await.expect("finished");
    assert_eq!(sent.operation.stats, op.stats, "no counter moved");
    let statuses: Vec<_> = store
        .get_notifications(&account, &ids(&waiting))
        .await
        .expect("read")
        .into_iter()
        .map(|n| (n.id, n.status))
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&(waiting[0].id, NotificationStatus::Canceled)));
    assert!(statuses.contains(&(waiting[1].id, NotificationStatus::Sent)));
    let chunk = chunk_of(&op, 0);
    store.lease_chunk(&account, chunk, "h", t + Duration::seconds(60), t).await.expect("leased");
    let counted = store.count_chunk(&account, chunk, "h", last(1, 0, 1), t).await.expect("counted");
    assert!(counted.completed);
    assert_eq!((counted.operation.stats.sent, counted.operation.stats.canceled), (1, 1));
}

/// Only the holder of a chunk's lease counts it: one whose lease was taken over cannot.
pub async fn a_chunk_counts_only_for_its_lease_holder(store: Store) {
    let account = account();
    let t = now();
    let op = operation(&account, t, 1);
    store.create_operation(&op).await.expect("created");
    let chunk = chunk_of(&op, 0);
    store.lease_chunk(&account, chunk, "old", t + Duration::seconds(1), t).await.expect("leased");
    let later = t + Duration::seconds(2);
    store.lease_chunk(&account, chunk, "new", later + Duration::seconds(60), later).await.expect("taken over");
    assert_eq!(store.count_chunk(&account, chunk, "old", last(1, 0, 0), later).await, Err(StoreError::Conflict));
    let stored = store.get_operation(&account, op.id).await.expect("read").expect("exists");
    assert_eq!(stored.stats, op.stats);
    let counted = store.count_chunk(&account, chunk, "new", last(1, 0, 0), later).await.expect("counted");
    assert!(counted.completed);
}

/// Notifications whose operation's tags are indexed once ([`PushWriter::index_operation_tags`])
/// and notifications indexed one by one (created, or decided with their own tags) list together
/// under a `tags` filter: newest first, each once, pages of exactly the size asked, with the
/// other filters applied — also for two operations created in the same millisecond.
pub async fn tags_indexed_per_operation_and_per_notification_list_together_newest_first_in_exact_pages(store: Store) {
    let account = account();
    let t = now();
    let at = |ms: i64| t + Duration::milliseconds(ms);
    let team = |name: &str| BTreeMap::from([("team".to_owned(), name.to_owned())]);
    let mut expected_ids = Vec::new();
    // Oldest: created one by one (the scheduled path), every other one in team x.
    let created = operation(&account, at(0), 4);
    store.create_operation(&created).await.expect("created");
    for slot in 0..4 {
        let mut n = notification(&created, slot);
        n.tags = team(if slot % 2 == 0 { "x" } else { "y" });
        store.create_notification(n.clone()).await.expect("created");
        if slot % 2 == 0 {
            expected_ids.push(n.id);
        }
    }
    // Two operations of one millisecond, each with its tags indexed once: all in team x, and
    // their notifications decided in batches, some QUEUED.
    for _ in 0..2 {
        let op = operation(&account, at(1), 5);
        store.create_operation(&op).await.expect("created");
        store.index_operation_tags(&account, op.id, &team("x")).await.expect("indexed");
        let decided_ones: Vec<_> = (0..5)
            .map(|slot| {
                let status = if slot == 3 { NotificationStatus::Queued } else { NotificationStatus::Sent };
                let mut n = decided(notification(&op, slot), status, at(1));
                n.tags = team("x");
                n
            })
            .collect();
        store.store_decided(decided_ones.clone(), true).await.expect("stored");
        expected_ids.extend(ids(&decided_ones));
    }
    // An operation whose tags are indexed once but in team y: never listed for team x.
    let other = operation(&account, at(2), 2);
    store.create_operation(&other).await.expect("created");
    store.index_operation_tags(&account, other.id, &team("y")).await.expect("indexed");
    let others: Vec<_> = (0..2)
        .map(|slot| {
            let mut n = decided(notification(&other, slot), NotificationStatus::Sent, at(2));
            n.tags = team("y");
            n
        })
        .collect();
    store.store_decided(others, true).await.expect("stored");
    // Newest: decided with tags of their own (templated tags), alternating teams.
    let own = operation(&account, at(3), 4);
    store.create_operation(&own).await.expect("created");
    let owned: Vec<_> = (0..4)
        .map(|slot| {
            let mut n = decided(notification(&own, slot), NotificationStatus::Failed, at(3));
            n.tags = team(if slot % 2 == 0 { "x" } else { "y" });
            n
        })
        .collect();
    store.store_decided(owned.clone(), false).await.expect("stored");
    expected_ids.extend(owned.iter().filter(|n| n.tags == team("x")).map(|n| n.id));
    expected_ids.sort_by(|a, b| b.cmp(a));

    let filter = by_tags(&[("team", "x")]);
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let found = store.list_notifications(&account, &filter, &page(3, cursor.take())).await.expect("listed");
        assert!(found.items.len() == 3 || found.next.is_none(), "pages are full until the last");
        listed.extend(ids(&found.items));
        match found.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, expected_ids, "every team x notification once, newest first");

    let queued = NotificationFilter { status: Some(NotificationStatus::Queued), ..by_tags(&[("team", "x")]) };
    let found = store.list_notifications(&account, &queued, &page(10, None)).await.expect("listed");
    // The two waiting ones of the operation-indexed sends, and the two created (QUEUED) in team x.
    assert_eq!(found.items.len(), 4, "the other filters apply to operation-indexed notifications");
    assert!(found.items.iter().all(|n| n.status == NotificationStatus::Queued));
}
