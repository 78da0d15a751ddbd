//! Hostile and careless input (issue 9): templates that tried to escape their bounds, filters that
//! panicked inside liquid-lib, content that could never be delivered. Each must be refused with a
//! 400 or fail its own notification, and never take a worker, the process, or anyone else's
//! delivery with it.

use pushgate_tests::commands;
use std::sync::Arc;

use async_trait::async_trait;
use pushgate_core::app::dispatch::{ChunkResult, process_chunk};
use pushgate_core::app::ports::{Delivery, DeliveryOutcome, PushGateway};

use pushgate_core::domain::NotificationStatus;
use pushgate_tests::{ManualQueue, ProviderRig, TestApp, apn_token, fcm_token, provider_rig};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_apn_credential("app").await;
    app.create_fcm_credential("app").await;
    app
}

fn send_body(title: &str, variables: Value) -> Value {
    json!({"to": [{"token": apn_token(1), "provider": "APN", "variables": variables}], "content": {"title": title}})
}

/// Sends a plain one-recipient notification and asserts it is SENT: delivery still works.
async fn delivery_still_works(app: &TestApp) {
    let id = app.send(&send_body("still here", json!({}))).await;
    let op = app.settle(&id).await;
    assert_eq!(op["stats"]["sent"], 1, "an ordinary send after the hostile ones: {op}");
}

#[tokio::test]
async fn templates_that_slipped_past_the_old_text_scan_are_refused_with_a_400() {
    let app = app().await;
    for title in [
        // A line break inside the tag.
        "{% for i in\n(1..1000000000) %}{% endfor %}",
        // `raw` inside a string literal.
        "{{ \"{% raw %}\" }}{% for i in (1..1000000000) %}{% endfor %}",
        // An `endfor` inside a comment or a string, to hide a third level of nesting.
        "{% for a in x %}{% comment %}{% endfor %}{% endcomment %}{% for b in y %}{% for c in z %}{% endfor %}{% endfor %}{% endfor %}",
        "{% for a in x %}{{ \"{% endfor %}\" }}{% for b in y %}{% for c in z %}{% endfor %}{% endfor %}{% endfor %}",
        // A block that buffers its body outside the output cap.
        "{% ifchanged %}{{ x }}{% endifchanged %}",
    ] {
        let (status, body) = app.post("/v1/PushNotifications", &send_body(title, json!({}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{title:?}: {body}");
        assert_eq!(body["errors"][0]["field"], "content.title", "{body}");
    }
}

#[tokio::test]
async fn a_range_of_a_billion_from_variables_fails_its_notification_quickly_and_delivery_goes_on() {
    let app = app().await;
    let body = send_body("{% for i in (1..n) %}{% endfor %}done", json!({"n": 1_000_000_000i64}));
    let id = app.send(&body).await;
    let op = app.settle(&id).await;
    assert_eq!(op["stats"]["failed"], 1, "{op}");
    let failed = app.notifications_of(&id).await;
    let (_, one) = app.get(&format!("/v1/PushNotifications/{}", failed[0]["id"].as_str().expect("id"))).await;
    assert_eq!(one["error"]["code"], 30422, "{one}");
    assert!(one["error"]["message"].as_str().is_some_and(|m| m.contains("iterations")), "{one}");
    delivery_still_works(&app).await;
}

#[tokio::test]
async fn filters_that_panic_inside_liquid_fail_their_notification_and_every_worker_survives() {
    let app = app().await;
    // More hostile operations than there are fan-out workers (the test configuration has 2).
    let mut ids = Vec::new();
    for filter in ["divided_by", "modulo", "divided_by", "modulo"] {
        let title = format!("{{{{ n | {filter}: m }}}}");
        ids.push(app.send(&send_body(&title, json!({"n": i64::MIN, "m": -1}))).await);
    }
    for id in &ids {
        let op = app.settle(id).await;
        assert_eq!((op["status"].as_str(), op["stats"]["failed"].as_u64()), (Some("COMPLETED"), Some(1)), "{op}");
        let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{id}/Errors")).await;
        assert_eq!(errors["errors"][0]["code"], 30422, "{errors}");
        assert!(errors["errors"][0]["message"].as_str().is_some_and(|m| m.contains("overflow")), "{errors}");
    }
    delivery_still_works(&app).await;
}

#[tokio::test]
async fn a_panic_inside_rendering_fails_that_notification_with_a_clear_error() {
    let app = app().await;
    let body = json!({
        "to": [
            {"token": apn_token(1), "provider": "APN", "variables": {"boom": true}},
            {"token": apn_token(2), "provider": "APN", "variables": {"boom": false}},
        ],
        "content": {"title": "{% if boom %}{{ 'x' | pushgate_test_panic }}{% endif %}hello"},
    });
    let id = app.send(&body).await;
    let op = app.settle(&id).await;
    assert_eq!((op["stats"]["sent"].as_u64(), op["stats"]["failed"].as_u64()), (Some(1), Some(1)), "{op}");
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{id}/Errors")).await;
    assert_eq!(errors["errors"][0]["code"], 30422, "{errors}");
    assert!(errors["errors"][0]["message"].as_str().is_some_and(|m| m.contains("failed unexpectedly")), "{errors}");
    delivery_still_works(&app).await;
}

#[tokio::test]
async fn large_static_data_to_two_thousand_recipients_is_refused_before_anything_is_stored() {
    let app = app().await;
    // 1.5 MiB of static data: it could never fit a 4 KiB notification.
    let data: serde_json::Map<String, Value> =
        (0..96).map(|i| (format!("k{i}"), Value::from("d".repeat(16 * 1024 - 8)))).collect();
    let to: Vec<Value> = (0..2000).map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    let (status, body) = app.post("/v1/PushNotifications", &json!({"to": to, "content": {"data": data}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "content", "{body}");
    let (_, ops) = app.get("/v1/PushNotifications/Operations").await;
    assert_eq!(ops["operations"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn content_that_can_never_fit_a_notification_is_refused_naming_the_field() {
    let app = app().await;
    let cases = [
        ("content", json!({"body": "b".repeat(4100)})),
        ("content", json!({"title": "t", "data": {"a": "x".repeat(3000), "b": "y".repeat(1500)}})),
        ("content.fcm", json!({"title": "t", "fcm": {"android": {"notification": {"tag": "z".repeat(4100)}}}})),
        (
            "content.data",
            json!({"data": (0..101).map(|i| (format!("k{i}"), Value::from(""))).collect::<serde_json::Map<_, _>>()}),
        ),
    ];
    for (field, content) in cases {
        let body = json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": content});
        let (status, answer) = app.post("/v1/PushNotifications", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["errors"].as_array().is_some_and(|e| e.iter().any(|e| e["field"] == field)),
            "{field}: {answer}"
        );
    }
    // Templated fields may be large in source as long as the fixed parts fit.
    let title = format!("{{% if false %}}{}{{% endif %}}ok", "x".repeat(8000));
    let id = app.send(&send_body(&title, json!({}))).await;
    assert_eq!(app.settle(&id).await["stats"]["sent"], 1);
}

#[tokio::test]
async fn oversized_variables_are_refused_naming_the_recipient() {
    let app = app().await;
    let body = send_body("hi {{ v }}", json!({"v": "v".repeat(17 * 1024)}));
    let (status, answer) = app.post("/v1/PushNotifications", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "to[0].variables", "{answer}");
}

/// A gateway that panics for one device token and delivers the rest through the real one.
struct PanicsFor {
    token: String,
    inner: Arc<dyn PushGateway>,
}

#[async_trait]
impl PushGateway for PanicsFor {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryOutcome {
        if delivery.token == self.token {
            panic!("a provider client bug");
        }
        self.inner.deliver(delivery).await
    }
}

#[tokio::test]
async fn a_panic_while_delivering_one_recipient_fails_it_alone_and_the_chunk_is_done() {
    let queue = Arc::new(ManualQueue::default());
    let ProviderRig { mut deps, account, apns, .. } = provider_rig(queue.clone(), |_| {}).await;
    deps.gateway = Arc::new(PanicsFor { token: apn_token(2), inner: deps.gateway.clone() });
    let to: Vec<Value> = (1..=3).map(|i| json!({"token": apn_token(i), "provider": "APN"})).collect();
    let id = commands::send(&deps, &account, json!({"to": to, "content": {"title": "t"}})).await.expect("accepted");
    for chunk in queue.take() {
        assert_eq!(process_chunk(&deps, &chunk, 1).await, ChunkResult::Done, "nothing to redeliver");
    }
    assert_eq!(apns.delivered_count(), 2);
    let op = deps.push.get_operation(&account, id).await.expect("read").expect("exists");
    assert_eq!(
        (op.stats.sent, op.stats.failed, op.status),
        (2, 1, pushgate_core::domain::OperationStatus::Completed),
        "{op:?}"
    );
    let failed = deps
        .push
        .get_notification(&account, pushgate_core::domain::NotificationId::derive(id, 1))
        .await
        .expect("read")
        .expect("created");
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert_eq!(failed.error.as_ref().map(|e| e.code), Some(30500), "{failed:?}");
}

#[tokio::test]
async fn nested_loops_of_ten_thousand_fail_every_recipient_within_the_budget_instead_of_running() {
    let app = app().await;
    // Two nested loops of 10,000 with an empty body: 10^8 iterations without the budget.
    let title = "{% for a in (1..10000) %}{% for b in (1..10000) %}{% endfor %}{% endfor %}";
    let to: Vec<Value> = (0..50).map(|i| json!({"token": apn_token(i), "provider": "APN"})).collect();
    let id = app.send(&json!({"to": to, "content": {"title": title}})).await;
    // `settle` waits at most 30 s: without the budget this would run for hours.
    let op = app.settle(&id).await;
    assert_eq!(op["stats"]["failed"], 50, "{op}");
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{id}/Errors")).await;
    assert!(errors["errors"][0]["message"].as_str().is_some_and(|m| m.contains("iterations")), "{errors}");
}

#[tokio::test]
async fn an_account_over_its_cap_of_live_notifications_gets_429_until_some_are_final() {
    let app = TestApp::spawn_with(pushgate_fakes::FakeApns::start_h2c().await, |c| {
        c.settings.max_live_notifications = Some(5);
    })
    .await;
    app.create_apn_credential("app").await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = |n: usize| {
        let to: Vec<Value> = (0..n).map(|i| json!({"token": apn_token(i), "provider": "APN"})).collect();
        json!({"to": to, "content": {"title": "later"}, "schedule": {"sendAt": [in_an_hour]}})
    };
    let first = app.send(&scheduled(3)).await;
    app.settle(&first).await;
    let response = app.request(reqwest::Method::POST, "/v1/PushNotifications").json(&scheduled(3)).send().await;
    let response = response.expect("answered");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("30"));
    let body: Value = response.json().await.expect("Twilio-shaped JSON");
    assert_eq!((body["code"].as_u64(), body["status"].as_u64()), (Some(20429), Some(429)), "{body}");
    let (_, ops) = app.get("/v1/PushNotifications/Operations").await;
    assert_eq!(ops["operations"].as_array().map(Vec::len), Some(1), "nothing stored for the refused send");
    // Two more fit; canceling the scheduled ones frees the rest.
    app.send(&scheduled(2)).await;
    let (status, _) =
        app.patch(&format!("/v1/PushNotifications/Operations/{first}"), &json!({"status": "CANCELED"})).await;
    assert_eq!(status, StatusCode::OK);
    app.send(&scheduled(3)).await;
}

#[test]
fn the_live_notification_cap_is_configurable_and_can_be_lifted() {
    use pushgate_local::LocalConfig;
    let read = |value: &'static str| {
        LocalConfig::from_vars(move |name| (name == "PUSHGATE_MAX_LIVE_NOTIFICATIONS").then(|| value.to_owned()))
    };
    assert_eq!(read("250").expect("valid").settings.max_live_notifications, Some(250));
    assert_eq!(read("none").expect("valid").settings.max_live_notifications, None);
    let error = read("-3").expect_err("refused");
    assert_eq!(error.var, "PUSHGATE_MAX_LIVE_NOTIFICATIONS");
    let default = LocalConfig::from_vars(|_| None).expect("defaults");
    assert_eq!(default.settings.max_live_notifications, Some(pushgate_core::app::DEFAULT_MAX_LIVE_NOTIFICATIONS));
}

#[tokio::test]
async fn another_accounts_live_notifications_do_not_count_against_the_cap() {
    let app = TestApp::spawn_with(pushgate_fakes::FakeApns::start_h2c().await, |c| {
        c.settings.max_live_notifications = Some(3);
    })
    .await;
    app.create_apn_credential("app").await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let to: Vec<Value> = (0..3).map(|i| json!({"token": apn_token(i), "provider": "APN"})).collect();
    let scheduled = json!({"to": to, "content": {"title": "later"}, "schedule": {"sendAt": [in_an_hour]}});
    // The other account fills its own cap…
    let (sid, token) = app.add_account();
    let other = |body: &Value| {
        app.client.post(format!("{}/v1/PushNotifications", app.base)).basic_auth(&sid, Some(&token)).json(body).send()
    };
    assert_eq!(other(&scheduled).await.expect("answered").status(), StatusCode::ACCEPTED);
    assert_eq!(other(&scheduled).await.expect("answered").status(), StatusCode::TOO_MANY_REQUESTS);
    // …and this account still has all of its own.
    app.send(&scheduled).await;
}
