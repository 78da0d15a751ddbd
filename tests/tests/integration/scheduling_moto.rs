//! Scheduled sends on the serverless stack (moto): the send function creates one EventBridge
//! Scheduler one-time schedule per instant, whose target is the fan-out queue and whose input is a
//! small release message. moto never fires schedules, so the tests read each schedule back and
//! deliver its input to the queue themselves, as EventBridge Scheduler would at the instant.

use chrono::Utc;
use pushgate_api::Function;
use pushgate_aws::scheduler::schedule_name;
use pushgate_core::app::dispatch::QueueMessage;
use pushgate_core::app::ports::QueueBody;
use pushgate_core::domain::OperationId;
use pushgate_tests::lambda_rig::{AwsRig, failures};
use pushgate_tests::{fcm_token, receive_all};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn send_body(tokens: &[usize], send_at: &[chrono::DateTime<Utc>]) -> Value {
    let to: Vec<Value> = tokens.iter().map(|i| json!({"token": fcm_token(*i), "provider": "FCM"})).collect();
    let send_at: Vec<String> = send_at.iter().map(|t| t.to_rfc3339()).collect();
    json!({"to": to, "content": {"title": "later"}, "schedule": {"sendAt": send_at}})
}

async fn operation(rig: &AwsRig, id: &str) -> Value {
    let (status, op) =
        rig.call(Function::Operations, "GET", &format!("/v1/PushNotifications/Operations/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    op
}

async fn statuses(rig: &AwsRig, id: &str) -> Vec<String> {
    let (_, page) =
        rig.call(Function::List, "GET", &format!("/v1/PushNotifications?operationId={id}&pageSize=100"), None).await;
    let mut out: Vec<String> = page["pushNotifications"]
        .as_array()
        .expect("pushNotifications")
        .iter()
        .map(|n| n["status"].as_str().expect("status").to_owned())
        .collect();
    out.sort();
    out
}

/// Receives `count` messages and runs them through the dispatch handler.
async fn dispatch_next(rig: &AwsRig, count: usize) -> Vec<QueueMessage> {
    let messages = receive_all(&rig.sqs, &rig.queue_url, count, 30).await;
    assert_eq!(messages.len(), count, "{count} messages on the queue");
    assert!(failures(&rig.dispatch(&messages).await).is_empty());
    messages
}

/// The schedule of `instant`, or `None` once it is deleted.
async fn schedule(
    rig: &AwsRig,
    operation: OperationId,
    instant: u8,
) -> Option<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput> {
    rig.scheduler.get_schedule().group_name(&rig.group).name(schedule_name(operation, instant)).send().await.ok()
}

#[tokio::test]
async fn a_scheduled_send_on_moto_creates_one_schedule_per_instant_whose_input_delivers_that_instant() {
    let Some(rig) = AwsRig::new("sched", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let instants = [Utc::now() + chrono::Duration::minutes(2), Utc::now() + chrono::Duration::hours(1)];
    let (status, answer) =
        rig.call(Function::Send, "POST", "/v1/PushNotifications", Some(&send_body(&[1, 2], &instants))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["operationId"].as_str().expect("operationId").to_owned();
    let op_id = OperationId::parse(&id).expect("an operation id");
    assert_eq!(operation(&rig, &id).await["status"], "SCHEDULED");

    // The creation pass: every notification exists, SCHEDULED; nothing is sent.
    dispatch_next(&rig, 2).await;
    assert_eq!(statuses(&rig, &id).await, vec!["SCHEDULED"; 4]);
    assert_eq!(rig.fcm.received().len(), 0);

    // One schedule per instant, read back as EventBridge Scheduler holds it.
    let first = schedule(&rig, op_id, 0).await.expect("the first instant's schedule");
    let expected = format!("at({})", (instants[0] + chrono::Duration::milliseconds(999)).format("%Y-%m-%dT%H:%M:%S"));
    assert_eq!(first.schedule_expression(), Some(expected.as_str()));
    assert_eq!(first.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(first.action_after_completion().map(|a| a.as_str()), Some("DELETE"));
    let target = first.target().expect("a target");
    assert_eq!(Some(target.arn()), rig.config.schedules.as_ref().map(|s| s.queue_arn.as_str()));
    let input = target.input().expect("an input").to_owned();
    assert!(input.len() < 512, "the input is a small release, not the chunks: {input}");
    match serde_json::from_str::<QueueBody>(&input).expect("the input is a queue message") {
        QueueBody::Release { release } => assert_eq!((release.operation_id, release.instant), (op_id, 0)),
        other => panic!("not a release: {other:?}"),
    }
    assert!(schedule(&rig, op_id, 1).await.is_some(), "the second instant's schedule");

    // The instant: the test does what the schedule does, then the dispatcher runs.
    rig.sqs.send_message().queue_url(&rig.queue_url).message_body(&input).send().await.expect("sent");
    dispatch_next(&rig, 1).await; // the release puts the instant's chunk on the queue
    dispatch_next(&rig, 1).await; // the chunk is delivered
    assert_eq!(rig.fcm.delivered_count(), 2);
    assert_eq!(statuses(&rig, &id).await, vec!["SCHEDULED", "SCHEDULED", "SENT", "SENT"]);
    let op = operation(&rig, &id).await;
    assert_eq!((op["status"].clone(), op["stats"]["sent"].clone()), (json!("PROCESSING"), json!(2)), "{op}");

    // Canceling before the second instant: its schedule is deleted and its notifications canceled.
    let path = format!("/v1/PushNotifications/Operations/{id}");
    let (status, body) = rig.call(Function::Cancel, "PATCH", &path, Some(&json!({"status": "CANCELED"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(schedule(&rig, op_id, 1).await.is_none(), "the pending schedule is deleted");
    assert_eq!(statuses(&rig, &id).await, vec!["CANCELED", "CANCELED", "SENT", "SENT"]);
    let op = operation(&rig, &id).await;
    assert_eq!(op["status"], "CANCELED");
    assert_eq!((op["stats"]["canceled"].clone(), op["stats"]["scheduled"].clone()), (json!(2), json!(0)), "{op}");
    assert_eq!(rig.fcm.received().len(), 2, "nothing more was sent");
}

#[tokio::test]
async fn canceling_a_scheduled_send_on_moto_before_its_instant_deletes_the_schedule_and_sends_nothing() {
    let Some(rig) = AwsRig::new("schedcancel", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let instant = Utc::now() + chrono::Duration::minutes(2);
    let (status, answer) =
        rig.call(Function::Send, "POST", "/v1/PushNotifications", Some(&send_body(&[1, 2, 3], &[instant]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["operationId"].as_str().expect("operationId").to_owned();
    let op_id = OperationId::parse(&id).expect("an operation id");
    let input = schedule(&rig, op_id, 0).await.and_then(|s| s.target().and_then(|t| t.input().map(str::to_owned)));
    let input = input.expect("the schedule's input");

    let path = format!("/v1/PushNotifications/Operations/{id}");
    let (status, body) = rig.call(Function::Cancel, "PATCH", &path, Some(&json!({"status": "CANCELED"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(schedule(&rig, op_id, 0).await.is_none(), "the schedule is deleted");
    // The creation pass arrives after the cancel; a release that had already fired arrives too.
    dispatch_next(&rig, 1).await;
    rig.sqs.send_message().queue_url(&rig.queue_url).message_body(&input).send().await.expect("sent");
    dispatch_next(&rig, 1).await;
    assert!(receive_all(&rig.sqs, &rig.queue_url, 1, 2).await.is_empty(), "the release queued nothing");

    assert_eq!(rig.fcm.received().len(), 0, "nothing sent");
    assert_eq!(statuses(&rig, &id).await, vec!["CANCELED"; 3]);
    let op = operation(&rig, &id).await;
    assert_eq!(op["status"], "CANCELED");
    assert_eq!((op["stats"]["canceled"].clone(), op["stats"]["total"].clone()), (json!(3), json!(3)), "{op}");
}
