//! Emulator tier: the fan-out over SQS (moto), from the send use case to the dispatch of the
//! messages as SQS delivers them. Skipped by plain `cargo test`; run by `tests/run`.

use pushgate_tests::commands;
use std::sync::Arc;
use std::time::Duration;

use pushgate_aws::sqs::SqsQueue;
use pushgate_core::app::AppError;
use pushgate_core::app::dispatch::process_messages;
use pushgate_core::app::ports::{OperationFilter, PageRequest};
use pushgate_core::domain::OperationStatus;
use pushgate_fakes::{ApnsReply, FakeApns, FakeFcm};
use pushgate_tests::{ProviderRig, apn_token, emulator, fcm_token, provider_rig, receive_all, test_queue};
use serde_json::{Value, json};

struct Rig {
    deps: pushgate_core::app::Deps,
    account: pushgate_core::domain::AccountId,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    apns: FakeApns,
    fcm: FakeFcm,
}

async fn rig(purpose: &str, tweak: impl FnOnce(&mut pushgate_core::app::Settings)) -> Option<Rig> {
    let config = emulator().await?;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = test_queue(&sqs, purpose).await;
    let queue = Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone()));
    let ProviderRig { deps, account, apns, fcm, .. } = provider_rig(queue, tweak).await;
    Some(Rig { deps, account, sqs, queue_url, apns, fcm })
}

fn mixed(n: usize) -> Value {
    let to: Vec<Value> = (0..n)
        .map(|i| {
            let vars = json!({"name": format!("User {i}"), "seat": format!("{}{}", i % 40, ["A", "C", "F"][i % 3])});
            if i % 2 == 0 {
                json!({"token": apn_token(i), "provider": "APN", "variables": vars})
            } else {
                json!({"token": fcm_token(i), "provider": "FCM", "variables": vars})
            }
        })
        .collect();
    json!({"to": to, "content": {"title": "Hi {{ name }}", "body": "Seat {{ seat }}"}})
}

#[tokio::test]
async fn a_send_through_sqs_is_delivered_by_processing_the_received_messages_and_redelivery_sends_nothing_twice() {
    let Some(rig) = rig("fanout", |_| {}).await else { return };
    let op = commands::send(&rig.deps, &rig.account, mixed(600)).await.expect("accepted");
    // Test settings: 50 recipients per chunk → 12 messages in 2 batches.
    let messages = receive_all(&rig.sqs, &rig.queue_url, 12, 1).await;
    assert_eq!(messages.len(), 12);
    assert!(process_messages(&rig.deps, &messages).await.is_empty(), "no batch item failures");
    assert_eq!(rig.apns.delivered_count() + rig.fcm.delivered_count(), 600);
    let delivered = rig.apns.delivered();
    let first = delivered.iter().find(|r| r.device_token == apn_token(0)).expect("recipient 0");
    assert_eq!(first.payload["aps"]["alert"]["title"], "Hi User 0");

    // SQS redelivers the same messages (visibility timeout): nothing is sent twice. Wait out
    // the 1 s visibility of the last message received (processing may take less than that).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = receive_all(&rig.sqs, &rig.queue_url, 12, 30).await;
    assert_eq!(again.len(), 12, "the messages were not deleted, so SQS delivers them again");
    assert!(again.iter().all(|m| m.receive_count >= 2));
    assert!(process_messages(&rig.deps, &again).await.is_empty());
    assert_eq!(rig.apns.received().len() + rig.fcm.received().len(), 600);
    let operation = rig.deps.push.get_operation(&rig.account, op).await.expect("read").expect("exists");
    assert_eq!(operation.status, OperationStatus::Completed);
    assert_eq!(operation.stats.sent, 600);
    assert!(operation.stats.adds_up());
}

#[tokio::test]
async fn ten_thousand_recipients_with_variables_fit_in_sqs_messages() {
    let Some(rig) = rig("big", |s| {
        let defaults = pushgate_core::app::Settings::default();
        s.chunk_size = defaults.chunk_size;
        s.chunk_bytes = defaults.chunk_bytes;
    })
    .await
    else {
        return;
    };
    let mut body = mixed(10_000);
    for r in body["to"].as_array_mut().expect("recipients") {
        r["variables"]["note"] = json!("x".repeat(300));
    }
    commands::send(&rig.deps, &rig.account, body).await.expect("accepted: every chunk fits an SQS message");
    let messages = receive_all(&rig.sqs, &rig.queue_url, usize::MAX, 30).await;
    assert!(messages.len() >= 20, "{} messages", messages.len());
    assert!(messages.iter().all(|m| m.body.len() <= pushgate_aws::sqs::MAX_BATCH_BYTES));
    let recipients: usize = messages
        .iter()
        .map(|m| serde_json::from_str::<pushgate_core::app::ports::Chunk>(&m.body).expect("a chunk").recipients.len())
        .sum();
    assert_eq!(recipients, 10_000);
}

#[tokio::test]
async fn a_retryable_provider_failure_is_a_batch_item_failure_and_succeeds_on_redelivery() {
    let Some(rig) = rig("retry", |s| s.max_attempts = 1).await else { return };
    rig.apns.script(&apn_token(0), vec![ApnsReply::ServiceUnavailable]);
    commands::send(&rig.deps, &rig.account, mixed(4)).await.expect("accepted");
    let messages = receive_all(&rig.sqs, &rig.queue_url, 1, 1).await;
    assert_eq!(messages.len(), 1);
    let failures = process_messages(&rig.deps, &messages).await;
    assert_eq!(failures, vec![messages[0].id.clone()]);
    assert_eq!(rig.apns.delivered_count() + rig.fcm.delivered_count(), 3);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let redelivered = receive_all(&rig.sqs, &rig.queue_url, 1, 30).await;
    assert_eq!(redelivered.len(), 1);
    assert!(process_messages(&rig.deps, &redelivered).await.is_empty());
    assert_eq!(rig.apns.delivered_count() + rig.fcm.delivered_count(), 4);
    assert_eq!(rig.apns.received().len() + rig.fcm.received().len(), 5, "only the failed one was sent again");
}

#[tokio::test]
async fn an_unreachable_queue_gives_503_and_leaves_no_operation_behind() {
    let Some(rig) = rig("missing", |_| {}).await else { return };
    let missing = format!("{}-does-not-exist", rig.queue_url);
    let (mut deps, account) = (rig.deps.clone(), rig.account.clone());
    deps.queue = Arc::new(SqsQueue::new(rig.sqs.clone(), missing));
    let err = commands::send(&deps, &account, mixed(3)).await.expect_err("refused");
    assert!(matches!(err, AppError::Unavailable { .. }), "{err:?}");
    let ops =
        deps.push.list_operations(&account, &OperationFilter::default(), &PageRequest { size: 5, cursor: None }).await;
    assert!(ops.expect("listed").items.is_empty());
}

#[tokio::test]
async fn a_message_that_is_not_a_chunk_is_left_for_the_dead_letter_queue() {
    let Some(rig) = rig("garbage", |_| {}).await else { return };
    rig.sqs.send_message().queue_url(&rig.queue_url).message_body("{\"not\": \"a chunk\"}").send().await.expect("sent");
    let messages = receive_all(&rig.sqs, &rig.queue_url, 1, 1).await;
    assert_eq!(process_messages(&rig.deps, &messages).await, vec![messages[0].id.clone()]);
}
