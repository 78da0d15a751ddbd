//! Per-account limits: API requests per second (429 + Retry-After, then recovery), notifications
//! per minute (one store write per send, never per notification), live notifications; the
//! send budget's store contract on memory and DynamoDB.

use std::sync::Arc;

use chrono::{Timelike, Utc};
use pushgate_api::Function;
use pushgate_aws::dynamodb::DynamoSendBudget;
use pushgate_core::app::ports::SendBudget;
use pushgate_core::domain::{AccountId, AccountLimits};
use pushgate_memory::MemorySendBudget;
use pushgate_tests::lambda_rig::{AwsRig, metered};
use pushgate_tests::{TestApp, apn_token, fresh_table};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Gives the app's account `limits`.
async fn limit(app: &TestApp, limits: AccountLimits) {
    use pushgate_core::app::ports::AccountStore as _;
    let mut account = app.accounts.get_account(&app.account).await.expect("read").expect("the app's account");
    account.limits = limits;
    app.accounts.insert(account).expect("saved");
}

fn send_body(recipients: usize) -> Value {
    let to: Vec<Value> = (0..recipients).map(|i| json!({ "token": apn_token(i), "provider": "APN" })).collect();
    json!({ "to": to, "content": { "title": "Gate change" } })
}

/// Waits while the current minute has fewer than 5 seconds left (a check that spans two minutes
/// would see two budgets).
async fn not_at_the_end_of_a_minute() {
    while Utc::now().second() >= 55 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_account_past_its_requests_per_second_gets_429_with_retry_after_and_recovers() {
    let app = TestApp::spawn().await;
    let other = app.add_account();
    limit(&app, AccountLimits { requests_per_second: Some(1), request_burst: Some(3), ..Default::default() }).await;
    let path = "/v1/PushNotifications/Operations";
    for i in 0..3 {
        assert_eq!(app.get(path).await.0, StatusCode::OK, "request {i} is within the burst");
    }
    let refused = app.request(reqwest::Method::GET, path).send().await.expect("answer");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!((body["code"].as_u64(), body["status"].as_u64()), (Some(20429), Some(429)), "{body}");

    let (id, token) = other;
    let stranger = reqwest::Client::new().get(format!("{}{path}", app.base)).basic_auth(id, Some(token));
    assert_eq!(stranger.send().await.expect("answer").status(), StatusCode::OK, "another account has its own bucket");

    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(app.get(path).await.0, StatusCode::OK, "recovered after Retry-After");
}

#[tokio::test]
async fn a_send_past_the_accounts_notifications_per_minute_gets_429_and_one_larger_than_a_minute_400() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("limits").await;
    limit(&app, AccountLimits { notifications_per_minute: Some(5), ..Default::default() }).await;
    not_at_the_end_of_a_minute().await;
    app.send(&send_body(4)).await;
    let (status, body) = app.post("/v1/PushNotifications", &send_body(2)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], 20429);
    let (status, _) = app.post("/v1/PushNotifications", &send_body(1)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the refused send took nothing from the budget");
    let (status, body) = app.post("/v1/PushNotifications", &send_body(6)).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(20430)), "{body}");
    let (_, listed) = app.get("/v1/PushNotifications/Operations").await;
    assert_eq!(listed["operations"].as_array().map(Vec::len), Some(2), "refused sends store nothing");
}

#[tokio::test]
async fn an_accounts_own_live_notifications_limit_wins_over_the_deployments() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("limits").await;
    limit(&app, AccountLimits { live_notifications: Some(2), ..Default::default() }).await;
    let mut body = send_body(3);
    body["schedule"] = json!({ "sendAt": [(Utc::now() + chrono::Duration::hours(1)).to_rfc3339()] });
    let (status, answer) = app.post("/v1/PushNotifications", &body).await;
    assert_eq!((status, answer["code"].as_u64()), (StatusCode::TOO_MANY_REQUESTS, Some(20429)), "{answer}");
}

// ---- the send budget store: the same checks on memory and DynamoDB ----

async fn budget_checks(budget: Arc<dyn SendBudget>) {
    let (a, b) = (AccountId::from_bytes(rand::random()), AccountId::from_bytes(rand::random()));
    let minute = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time (the start of a minute)");
    assert!(budget.admit(&a, minute, 6, 10).await.expect("answer"));
    assert!(!budget.admit(&a, minute, 5, 10).await.expect("answer"), "6 + 5 > 10");
    assert!(
        budget.admit(&a, minute + chrono::Duration::seconds(59), 4, 10).await.expect("answer"),
        "nothing was added"
    );
    assert!(!budget.admit(&a, minute, 1, 10).await.expect("answer"), "full");
    assert!(budget.admit(&b, minute, 10, 10).await.expect("answer"), "another account");
    assert!(budget.admit(&a, minute + chrono::Duration::seconds(60), 10, 10).await.expect("answer"), "a new minute");
    assert!(!budget.admit(&a, minute, 11, 10).await.expect("answer"), "never more than a minute's budget");

    let c = AccountId::from_bytes(rand::random());
    let admits = (0..20).map(|_| {
        let (budget, c) = (budget.clone(), c.clone());
        tokio::spawn(async move { budget.admit(&c, minute, 1, 10).await.expect("answer") })
    });
    let admitted =
        futures::future::join_all(admits).await.into_iter().filter(|r| *r.as_ref().expect("no panic")).count();
    assert_eq!(admitted, 10, "concurrent sends never pass the budget together");
}

#[tokio::test]
async fn the_memory_send_budget_admits_up_to_a_minutes_limit_per_account() {
    budget_checks(Arc::new(MemorySendBudget::default())).await;
}

#[tokio::test]
async fn the_dynamodb_send_budget_admits_up_to_a_minutes_limit_per_account() {
    let Some((client, table)) = fresh_table("ConfigTable").await else { return };
    budget_checks(Arc::new(DynamoSendBudget::new(client, table))).await;
}

/// Emulator tier: the limiter costs one config-table write per send, whatever its size.
#[tokio::test]
async fn a_send_of_200_recipients_writes_the_config_table_once() {
    let Some(rig) = AwsRig::new("budget", |_| {}).await else { return };
    let (rig, proxy) = metered(rig).await;
    rig.create_credentials("budget").await;
    let _ = proxy.meter.take();
    let (status, answer) = rig.call(Function::Send, "POST", "/v1/PushNotifications", Some(&send_body(200))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let config_writes: Vec<String> = proxy
        .meter
        .take()
        .dynamo
        .into_iter()
        .filter(|c| c.tables.iter().any(|t| t.ends_with("config")) && c.wru() > 0.0)
        .map(|c| c.api)
        .collect();
    assert_eq!(config_writes, vec!["UpdateItem".to_owned()], "one budget write, nothing per notification");
}
