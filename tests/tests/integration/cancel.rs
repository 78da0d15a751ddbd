//! Cancel: `PATCH` a notification or an operation with `{"status": "CANCELED"}`.
//! Use cases driven by hand over the memory stores and the fake providers (chunks held in a
//! manual queue, so the tests decide when dispatch runs), and the HTTP surface of the local
//! process.

use pushgate_tests::commands;
use std::sync::Arc;

use pushgate_core::app::AppError;
use pushgate_core::app::cancel::{self, NOT_CANCELABLE};
use pushgate_core::app::dispatch::{ChunkResult, process_chunk};
use pushgate_core::app::ports::Chunk;
use pushgate_core::domain::{NotificationId, NotificationStatus, OperationId, OperationStatus};
use pushgate_fakes::{ApnsReply, FcmReply};
use pushgate_tests::{ManualQueue, ProviderRig, TestApp, apn_token, fcm_token, provider_rig};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Rig {
    rig: ProviderRig,
    queue: Arc<ManualQueue>,
}

async fn rig() -> Rig {
    let queue = Arc::new(ManualQueue::default());
    Rig { rig: provider_rig(queue.clone(), |_| {}).await, queue }
}

fn canceled() -> Value {
    json!({"status": "CANCELED"})
}

fn fcm_send(tokens: impl IntoIterator<Item = usize>) -> Value {
    let to: Vec<Value> = tokens.into_iter().map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    json!({"to": to, "content": {"title": "x"}})
}

impl Rig {
    async fn send(&self, body: Value) -> (OperationId, Vec<Chunk>) {
        let op = commands::send(&self.rig.deps, &self.rig.account, body).await.expect("accepted");
        (op, self.queue.take())
    }

    async fn status(&self, op: OperationId, slot: u32) -> NotificationStatus {
        let id = NotificationId::derive(op, slot);
        self.rig.deps.push.get_notification(&self.rig.account, id).await.expect("read").expect("exists").status
    }

    async fn operation(&self, op: OperationId) -> pushgate_core::domain::Operation {
        self.rig.deps.push.get_operation(&self.rig.account, op).await.expect("read").expect("exists")
    }
}

fn is_not_cancelable(result: &Result<impl std::fmt::Debug, AppError>) -> bool {
    matches!(result, Err(AppError::NotAllowed { code, .. }) if *code == NOT_CANCELABLE)
}

#[tokio::test]
async fn canceling_an_operation_before_its_chunks_are_dispatched_cancels_every_notification_and_sends_nothing() {
    let r = rig().await;
    let (op, chunks) = r.send(fcm_send(0..120)).await;
    assert!(chunks.len() > 1, "several chunks still on the queue");
    let canceled = cancel::cancel_operation(&r.rig.deps, &r.rig.account, op).await.expect("canceled");
    assert_eq!(canceled.status, OperationStatus::Canceled);

    for chunk in &chunks {
        assert_eq!(process_chunk(&r.rig.deps, chunk, 1).await, ChunkResult::Done);
    }
    assert_eq!(r.rig.fcm.received().len(), 0, "nothing reached the provider");
    let operation = r.operation(op).await;
    assert_eq!(operation.status, OperationStatus::Canceled);
    assert_eq!((operation.stats.canceled, operation.stats.queued, operation.stats.total), (120, 0, 120));
    assert!(operation.stats.adds_up());
    for slot in [0, 57, 119] {
        assert_eq!(r.status(op, slot).await, NotificationStatus::Canceled);
    }
}

#[tokio::test]
async fn a_queued_notification_waiting_for_a_retry_is_canceled_and_its_redelivered_chunk_sends_nothing() {
    let r = rig().await;
    r.rig.fcm.script(&fcm_token(1), vec![FcmReply::QuotaExceeded { retry_after_secs: Some(60) }]);
    let (op, chunks) = r.send(fcm_send([1, 2])).await;
    assert!(matches!(process_chunk(&r.rig.deps, &chunks[0], 1).await, ChunkResult::RetryAfter(_)));
    assert_eq!(r.status(op, 0).await, NotificationStatus::Queued);

    let id = NotificationId::derive(op, 0);
    cancel::cancel_notification(&r.rig.deps, &r.rig.account, id).await.expect("canceled");
    assert_eq!(process_chunk(&r.rig.deps, &chunks[0], 2).await, ChunkResult::Done);
    assert_eq!(r.rig.fcm.received().iter().filter(|q| q.device_token == fcm_token(1)).count(), 1, "only the 429");
    assert_eq!(r.status(op, 0).await, NotificationStatus::Canceled);
    let operation = r.operation(op).await;
    assert_eq!(operation.status, OperationStatus::Completed);
    assert_eq!((operation.stats.sent, operation.stats.canceled), (1, 1));

    // Final now: canceling again, or canceling the SENT one, is refused with 30409.
    assert!(is_not_cancelable(&cancel::cancel_notification(&r.rig.deps, &r.rig.account, id).await));
    let sent = NotificationId::derive(op, 1);
    assert!(is_not_cancelable(&cancel::cancel_notification(&r.rig.deps, &r.rig.account, sent).await));
    assert!(is_not_cancelable(&cancel::cancel_operation(&r.rig.deps, &r.rig.account, op).await));
}

/// The concurrency check: a dispatcher redelivering a chunk and a client canceling its
/// one notification, started together on a multi-threaded runtime, 100 times. Each time exactly
/// one wins: the cancel answers OK and nothing is sent, or it answers 30409 and the
/// notification is SENT, delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_dispatch_racing_on_one_notification_have_exactly_one_outcome_100_times_in_a_row() {
    let r = Arc::new(rig().await);
    let (mut cancels_won, mut sends_won) = (0, 0);
    for round in 0..100 {
        let token = apn_token(10_000 + round);
        r.rig.apns.script(&token, vec![ApnsReply::TooManyRequests { retry_after_secs: Some(60) }]);
        let (op, chunks) =
            r.send(json!({"to": [{"token": token, "provider": "APN"}], "content": {"title": "x"}})).await;
        let chunk = Arc::new(chunks.into_iter().next().expect("one chunk"));
        assert!(matches!(process_chunk(&r.rig.deps, &chunk, 1).await, ChunkResult::RetryAfter(_)));
        let id = NotificationId::derive(op, 0);
        // The redelivery comes after Apple's Retry-After: the credential's pause is over.
        r.rig.deps.pacing.resume_all();

        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let dispatch = tokio::spawn({
            let (r, chunk, barrier) = (r.clone(), chunk.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                process_chunk(&r.rig.deps, &chunk, 2).await
            }
        });
        let cancel = tokio::spawn({
            let (r, barrier) = (r.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                cancel::cancel_notification(&r.rig.deps, &r.rig.account, id).await
            }
        });
        let (dispatched, canceled) = (dispatch.await.expect("dispatch ran"), cancel.await.expect("cancel ran"));
        assert_eq!(dispatched, ChunkResult::Done, "round {round}");
        let delivered = r.rig.apns.delivered().iter().filter(|d| d.device_token == token).count();
        let status = r.status(op, 0).await;
        let operation = r.operation(op).await;
        match canceled {
            Ok(()) => {
                cancels_won += 1;
                assert_eq!((status, delivered), (NotificationStatus::Canceled, 0), "round {round}");
                assert_eq!(operation.stats.canceled, 1, "round {round}");
            }
            ref refused if is_not_cancelable(refused) => {
                sends_won += 1;
                assert_eq!((status, delivered), (NotificationStatus::Sent, 1), "round {round}");
                assert_eq!(operation.stats.sent, 1, "round {round}");
            }
            other => panic!("round {round}: unexpected cancel answer {other:?}"),
        }
        assert_eq!(operation.status, OperationStatus::Completed, "round {round}");
        assert!(operation.stats.adds_up(), "round {round}");
    }
    eprintln!("cancel won {cancels_won} times, dispatch won {sends_won} times");
    assert_eq!(cancels_won + sends_won, 100);
}

/// An operation canceled while its chunks are being dispatched (one dispatcher, chunk after
/// chunk, each delivery taking 20 ms): whatever was handed to the provider before the cancel
/// answered finishes; at most one chunk's concurrent deliveries were in flight then; nothing
/// else is sent; every notification ends final and the stats add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_delivery_starts_after_an_operation_cancel_has_answered() {
    let r = Arc::new(rig().await);
    for i in 0..300 {
        r.rig.fcm.script(&fcm_token(i), vec![FcmReply::Delay(std::time::Duration::from_millis(20))]);
    }
    let (op, chunks) = r.send(fcm_send(0..300)).await;
    assert!(chunks.len() > 2, "several chunks");
    let worker = tokio::spawn({
        let r = r.clone();
        async move {
            for chunk in &chunks {
                assert_eq!(process_chunk(&r.rig.deps, chunk, 1).await, ChunkResult::Done);
            }
        }
    });
    while r.rig.fcm.delivered_count() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    cancel::cancel_operation(&r.rig.deps, &r.rig.account, op).await.expect("canceled");
    let answered = r.rig.fcm.received().len();
    worker.await.expect("the dispatcher ran");
    let received = r.rig.fcm.received().len();
    let in_flight = r.rig.deps.settings.delivery_concurrency;
    assert!(received <= answered + in_flight, "{received} received, {answered} when the cancel answered");
    let operation = r.operation(op).await;
    assert_eq!(operation.status, OperationStatus::Canceled);
    assert_eq!(operation.stats.queued, 0);
    assert_eq!(operation.stats.sent as usize, r.rig.fcm.delivered_count());
    assert!(operation.stats.canceled >= 150 && operation.stats.sent >= 20, "{:?}", operation.stats);
    assert!(operation.stats.adds_up());
}

#[tokio::test]
async fn the_cancel_routes_answer_200_with_a_location_and_refuse_what_cannot_be_canceled_with_30409() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("app").await;
    let op = app.send(&fcm_send([1])).await;
    app.settle(&op).await;
    let id = app.notifications_of(&op).await[0]["id"].as_str().expect("id").to_owned();

    let (status, body) = app.patch(&format!("/v1/PushNotifications/{id}"), &canceled()).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!(30409)), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("SENT")), "{body}");
    let (status, body) = app.patch(&format!("/v1/PushNotifications/Operations/{op}"), &canceled()).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!(30409)), "{body}");

    let (status, body) = app.patch(&format!("/v1/PushNotifications/{id}"), &json!({"status": "SENT"})).await;
    assert_eq!((status, body["errors"][0]["field"].clone()), (StatusCode::BAD_REQUEST, json!("status")), "{body}");
    let (status, body) =
        app.patch(&format!("/v1/PushNotifications/{id}"), &json!({"status": "CANCELED", "priority": "LOW"})).await;
    assert_eq!((status, body["errors"][0]["field"].clone()), (StatusCode::BAD_REQUEST, json!("priority")), "{body}");
    let missing = "comms_pushnotification_01h9krwprkeee8fzqspvwy6nq8";
    let (status, _) = app.patch(&format!("/v1/PushNotifications/{missing}"), &canceled()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.patch("/v1/PushNotifications/Operations/comms_operation_nope", &canceled()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another account cannot cancel this account's operation.
    let (other, token) = app.add_account();
    let (status, _) = pushgate_tests::send_json(
        app.client
            .patch(format!("{}/v1/PushNotifications/Operations/{op}", app.base))
            .basic_auth(&other, Some(&token))
            .json(&canceled()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An operation still delivering is canceled: 200 with a Location.
    app.fcm.script(&fcm_token(2), vec![FcmReply::QuotaExceeded { retry_after_secs: Some(60) }]);
    let op = app.send(&fcm_send([2, 3])).await;
    let response = app
        .request(reqwest::Method::PATCH, &format!("/v1/PushNotifications/Operations/{op}"))
        .json(&canceled())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(location.is_some_and(|l| l.ends_with(&format!("/v1/PushNotifications/Operations/{op}"))));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["resourceId"], op);
    // No settling: the notification waiting out its Retry-After is canceled at once (by the
    // cancel's sweep, or by its dispatcher right after it gave the claim back), not in 60 s.
    let path = format!("/v1/PushNotifications/Operations/{op}");
    let mut operation = Value::Null;
    for _ in 0..100 {
        operation = app.get(&path).await.1;
        if operation["stats"]["queued"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(operation["status"], "CANCELED", "{operation}");
    let stat = |name: &str| operation["stats"][name].as_u64().unwrap_or(99);
    assert_eq!(stat("queued"), 0, "{operation}");
    assert!(stat("canceled") >= 1 && stat("canceled") + stat("sent") == 2, "{operation}");
}
