//! Operation events posted to the account's webhook: `operation.scheduled`,
//! `operation.processing`, `operation.completed`, signed with HMAC-SHA256, retried with backoff,
//! never holding up sending. Locally (in-process delivery) and through the Lambda handlers on
//! moto (events travel the fan-out queue to the dispatch function).

use std::time::{Duration, Instant};

use chrono::Utc;
use pushgate_api::Function;
use pushgate_core::domain::AccountId;
use pushgate_fakes::FakeApns;
use pushgate_glue::cloud::{WebhookSetting, ports};
use pushgate_providers::webhook::Webhook;
use pushgate_tests::lambda_rig::{AwsRig, failures};
use pushgate_tests::webhook::{WebhookReceiver, signature_is_valid};
use pushgate_tests::{TestApp, fcm_token, receive_all};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "a-webhook-secret-of-some-length";

async fn app_with_webhook(url: &str) -> TestApp {
    let webhook = Webhook { url: url.to_owned(), secret: SECRET.to_owned() };
    let app = TestApp::spawn_with(FakeApns::start_h2c().await, |c| c.webhook = Some(webhook)).await;
    app.create_fcm_credential("app").await;
    app
}

fn send_body(tokens: &[usize]) -> Value {
    let to: Vec<Value> = tokens.iter().map(|i| json!({"token": fcm_token(*i), "provider": "FCM"})).collect();
    json!({"to": to, "content": {"title": "x"}})
}

fn types(received: &[pushgate_tests::webhook::Received]) -> Vec<String> {
    received.iter().map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn an_immediate_send_posts_processing_then_completed_signed_with_the_accounts_secret() {
    let hook = WebhookReceiver::start().await;
    let app = app_with_webhook(&hook.url).await;
    let op = app.send(&send_body(&[1, 2])).await;
    app.settle(&op).await;
    let delivered = hook.wait_delivered(2, 10).await;
    let mut kinds = types(&delivered);
    kinds.sort();
    assert_eq!(kinds, vec!["operation.completed", "operation.processing"]);

    let completed = delivered.iter().find(|r| r.json()["type"] == "operation.completed").expect("completed");
    let body = completed.json();
    assert_eq!(body["id"], format!("{op}.operation.completed"));
    assert_eq!(body["operationId"], op);
    assert_eq!(body["accountId"], app.account.to_string());
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!((body["stats"]["total"].clone(), body["stats"]["sent"].clone()), (json!(2), json!(2)), "{body}");
    assert!(body["occurredAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    assert_eq!(completed.header("x-pushgate-event").as_deref(), Some("operation.completed"));
    assert_eq!(completed.header("content-type").as_deref(), Some("application/json"));
    for r in &delivered {
        let signature = r.header("x-pushgate-signature").expect("a signature header");
        assert!(signature_is_valid(&signature, SECRET, &r.body), "{signature}");
        assert!(!signature_is_valid(&signature, "another-secret-entirely", &r.body));
        let t: i64 = signature.trim_start_matches("t=").split(',').next().and_then(|t| t.parse().ok()).expect("t=");
        assert!((Utc::now().timestamp() - t).abs() < 60, "a fresh timestamp");
    }
    // The secret never travels in clear.
    assert!(delivered.iter().all(|r| !String::from_utf8_lossy(&r.body).contains(SECRET)));
}

#[tokio::test]
async fn a_scheduled_send_posts_scheduled_at_once_then_processing_and_completed_at_its_instant() {
    let hook = WebhookReceiver::start().await;
    let app = app_with_webhook(&hook.url).await;
    let instant = Utc::now() + chrono::Duration::seconds(2);
    let mut body = send_body(&[1]);
    body["schedule"] = json!({"sendAt": [instant.to_rfc3339()]});
    let op = app.send(&body).await;
    let first = hook.wait_delivered(1, 5).await;
    assert_eq!(types(&first), vec!["operation.scheduled"]);
    assert_eq!(first[0].json()["stats"]["scheduled"], 1);
    assert!(Utc::now() < instant + chrono::Duration::milliseconds(500), "announced right away");

    let all = hook.wait_delivered(3, 15).await;
    assert_eq!(types(&all), vec!["operation.scheduled", "operation.processing", "operation.completed"]);
    assert!(all.iter().all(|r| r.json()["operationId"] == op));
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_and_never_holds_up_sending() {
    let hook = WebhookReceiver::start().await;
    hook.script(&[500, 503, 500]);
    let app = app_with_webhook(&hook.url).await;
    let started = Instant::now();
    let op = app.send(&send_body(&[1, 2, 3])).await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["status"], "COMPLETED");
    assert!(started.elapsed() < Duration::from_secs(2), "sending did not wait for the webhook");

    let delivered = hook.wait_delivered(2, 30).await;
    let mut kinds = types(&delivered);
    kinds.sort();
    assert_eq!(kinds, vec!["operation.completed", "operation.processing"], "both delivered in the end");
    let received = hook.received();
    assert_eq!(received.len(), 5, "three failures, then each event once");
    assert!(started.elapsed() >= Duration::from_millis(500), "retries waited (backoff)");
    // Every attempt of an event carries the same id (receivers dedupe on it).
    let ids: std::collections::BTreeSet<String> =
        received.iter().map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn a_webhook_that_is_unreachable_changes_nothing_for_the_send_and_other_accounts_get_no_events() {
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", listener.local_addr().expect("addr"))
    };
    let app = app_with_webhook(&closed).await;
    let op = app.send(&send_body(&[1, 2])).await;
    let operation = app.settle(&op).await;
    assert_eq!((operation["status"].clone(), operation["stats"]["sent"].clone()), (json!("COMPLETED"), json!(2)));

    let hook = WebhookReceiver::start().await;
    let app = app_with_webhook(&hook.url).await;
    let (other, token) = app.add_account();
    let fcm = pushgate_tests::fcm_credential_body(&app.fcm_account, "app");
    let client = &app.client;
    let post = |path: &str, body: &Value| {
        client.post(format!("{}{path}", app.base)).basic_auth(&other, Some(&token)).json(body).send()
    };
    assert_eq!(post("/v1/PushNotifications/Credentials", &fcm).await.expect("answered").status(), StatusCode::ACCEPTED);
    let response = post("/v1/PushNotifications", &send_body(&[3])).await.expect("answered");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let op: Value = response.json().await.expect("json");
    app.queue.wait_idle(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook.received().is_empty(), "{} has no webhook: {:?}", op["operationId"], types(&hook.received()));
}

#[tokio::test]
async fn on_moto_events_travel_the_fanout_queue_and_the_dispatch_function_posts_them() {
    let hook = WebhookReceiver::start().await;
    let url = hook.url.clone();
    let Some(rig) = AwsRig::new("hooks", |_| {}).await else { return };
    // As the template configures it: the account's webhook, its key generated in Secrets Manager
    // and read by the function at cold start.
    let arn = pushgate_tests::lambda_rig::create_secret(&rig.sdk, "hooks", SECRET).await;
    let mut config = rig.config.clone();
    config.webhook =
        Some(WebhookSetting { account: rig.caller.account.clone(), url, secret: None, secret_arn: Some(arn) });
    let config = config.resolved::<{ ports::ALL }>(&rig.sdk).await.expect("the key is read");
    let rig = rig.rewired(config);
    rig.create_credentials("main").await;

    let body = send_body(&[1, 2]);
    let (status, answer) = rig.call(Function::Send, "POST", "/v1/PushNotifications", Some(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(hook.received().is_empty(), "the send function does not post: it queues");
    // One chunk and the processing event; then the completion event the dispatcher queues.
    let messages = receive_all(&rig.sqs, &rig.queue_url, 2, 30).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages.iter().filter(|m| m.body.starts_with("{\"event\"")).count(), 1, "one event message");
    assert!(failures(&rig.dispatch(&messages).await).is_empty());
    let completion = receive_all(&rig.sqs, &rig.queue_url, 1, 30).await;
    assert!(completion[0].body.contains("operation.completed"), "{}", completion[0].body);

    // The webhook fails once: the message is a batch item failure, redelivered, then posted.
    hook.script(&[500, 500, 500]);
    assert_eq!(failures(&rig.dispatch(&completion).await), vec![completion[0].id.clone()]);
    let again: Vec<_> = completion
        .iter()
        .map(|m| pushgate_core::app::dispatch::QueueMessage { receive_count: 2, ..m.clone() })
        .collect();
    assert!(failures(&rig.dispatch(&again).await).is_empty());
    let delivered = hook.delivered();
    let mut kinds = types(&delivered);
    kinds.sort();
    assert_eq!(kinds, vec!["operation.completed", "operation.processing"]);
    for r in &delivered {
        assert!(signature_is_valid(&r.header("x-pushgate-signature").expect("signed"), SECRET, &r.body));
    }
    let _ = AccountId::parse(delivered[0].json()["accountId"].as_str().expect("accountId")).expect("an account id");
}
