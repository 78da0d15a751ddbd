//! `Idempotency-Key` on POSTs: a retried request gets its first answer and nothing happens
//! twice; a key reused for another request is 422; concurrent requests with one key make one
//! Operation (memory, and the send function on moto).

use pushgate_api::Function;
use pushgate_tests::lambda_rig::{AwsRig, http_api_event};
use pushgate_tests::{TestApp, apn_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn send_body(recipients: usize) -> Value {
    let to: Vec<Value> = (0..recipients).map(|i| json!({ "token": apn_token(i), "provider": "APN" })).collect();
    json!({ "to": to, "content": { "title": "Doors close in 5 minutes" } })
}

/// POSTs `body` to `path` with `key`; status, `Idempotent-Replayed`, `Location` and body.
async fn post_keyed(
    app: &TestApp,
    path: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Option<String>, Option<String>, Value) {
    let response = app
        .request(reqwest::Method::POST, path)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (replayed, location) = (header("idempotent-replayed"), header("location"));
    (response.status(), replayed, location, response.json().await.unwrap_or(Value::Null))
}

async fn operation_count(app: &TestApp) -> usize {
    let (status, page) = app.get("/v1/PushNotifications/Operations?pageSize=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["operations"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_retried_send_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing_again() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("idem").await;
    let body = send_body(3);
    let first = post_keyed(&app, "/v1/PushNotifications", "order-4711", &body).await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{}", first.3);
    assert_eq!(first.1, None, "a first answer is not marked replayed");
    let operation = first.3["operationId"].as_str().expect("operationId").to_owned();
    app.settle(&operation).await;

    let retry = post_keyed(&app, "/v1/PushNotifications", "order-4711", &body).await;
    assert_eq!(retry.0, StatusCode::ACCEPTED);
    assert_eq!(retry.1.as_deref(), Some("true"));
    assert_eq!(retry.2, first.2, "the same Location");
    assert_eq!(retry.3, first.3, "the same body: the same operationId");
    app.settle(&operation).await;
    assert_eq!(operation_count(&app).await, 1);
    assert_eq!(app.apns.delivered_count(), 3, "each recipient notified once");

    let other = post_keyed(&app, "/v1/PushNotifications", "order-4712", &body).await;
    assert_ne!(other.3["operationId"], first.3["operationId"], "a new key is a new send");
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_422_in_the_twilio_error_shape_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("idem").await;
    let first = post_keyed(&app, "/v1/PushNotifications", "k-1", &send_body(1)).await;
    assert_eq!(first.0, StatusCode::ACCEPTED);
    let (status, _, _, error) = post_keyed(&app, "/v1/PushNotifications", "k-1", &send_body(2)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!((error["code"].as_u64(), error["status"].as_u64()), (Some(20422), Some(422)));
    assert!(error["message"].as_str().is_some_and(|m| m.contains("Idempotency-Key")));
    assert!(error["moreInfo"].is_string());
    let credential = post_keyed(&app, "/v1/PushNotifications/Credentials", "k-1", &json!({})).await;
    assert_eq!(credential.0, StatusCode::UNPROCESSABLE_ENTITY, "another path is another request");
    assert_eq!(operation_count(&app).await, 1);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400_and_nothing_is_sent() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("idem").await;
    for key in ["k".repeat(256), "two words".to_owned()] {
        let (status, _, _, error) = post_keyed(&app, "/v1/PushNotifications", &key, &send_body(1)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {error}");
        assert_eq!(error["errors"][0]["field"], "Idempotency-Key");
    }
    assert_eq!(operation_count(&app).await, 0);
}

#[tokio::test]
async fn a_refused_request_is_replayed_as_refused_and_a_keyed_credential_create_makes_one_credential() {
    let app = TestApp::spawn().await;
    let invalid = json!({ "to": [] });
    let first = post_keyed(&app, "/v1/PushNotifications", "bad-1", &invalid).await;
    assert_eq!(first.0, StatusCode::BAD_REQUEST);
    let again = post_keyed(&app, "/v1/PushNotifications", "bad-1", &invalid).await;
    assert_eq!((again.0, again.1.as_deref()), (StatusCode::BAD_REQUEST, Some("true")));
    assert_eq!(again.3, first.3);

    let body = pushgate_tests::apn_credential_body(&app.apns_key, "idem");
    let created = post_keyed(&app, "/v1/PushNotifications/Credentials", "cred-1", &body).await;
    let retried = post_keyed(&app, "/v1/PushNotifications/Credentials", "cred-1", &body).await;
    assert_eq!(created.0, StatusCode::ACCEPTED, "{}", created.3);
    assert_eq!(retried.3["resourceId"], created.3["resourceId"]);
    let (_, listed) = app.get("/v1/PushNotifications/Credentials").await;
    assert_eq!(listed["credentials"].as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn one_hundred_concurrent_identical_posts_with_one_key_make_one_operation_and_one_hundred_identical_202s() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("idem").await;
    let body = send_body(5);
    let posts = (0..100).map(|_| post_keyed(&app, "/v1/PushNotifications", "the-one-key", &body));
    let answers = futures::future::join_all(posts).await;
    assert!(
        answers.iter().all(|a| a.0 == StatusCode::ACCEPTED),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|a| a.3 == answers[0].3), "every answer names the same Operation");
    assert_eq!(answers.iter().filter(|a| a.1.is_none()).count(), 1, "one request ran; 99 were replayed");
    let operation = answers[0].3["operationId"].as_str().expect("operationId").to_owned();
    app.settle(&operation).await;
    assert_eq!(operation_count(&app).await, 1);
    assert_eq!(app.apns.delivered_count(), 5);
}

/// Emulator tier: the same race against the send function on DynamoDB (conditional put).
#[tokio::test]
async fn one_hundred_concurrent_identical_posts_to_the_send_function_on_dynamodb_make_one_operation() {
    let Some(rig) = AwsRig::new("idem", |_| {}).await else { return };
    rig.create_credentials("idem").await;
    let body = send_body(5);
    let event = http_api_event("POST", "/v1/PushNotifications", "$default", &rig.caller, Some(&body));
    let mut event: Value = serde_json::from_str(&event).expect("an event is JSON");
    event["headers"]["idempotency-key"] = json!("moto-race");
    let event = event.to_string();
    let answers = futures::future::join_all((0..100).map(|_| rig.invoke(Function::Send, &event))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0.as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    assert!(answers.iter().all(|a| a.2 == answers[0].2), "one operationId");
    assert_eq!(answers.iter().filter(|a| !a.1.contains_key("idempotent-replayed")).count(), 1);
    let (status, page) = rig.call(Function::Operations, "GET", "/v1/PushNotifications/Operations", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["operations"].as_array().map(Vec::len), Some(1), "{page}");
}
