//! Issue 9, classes 5–8: hostile input never misdirects pushgate. It is refused at the edge
//! (credential create, send, device registration) before anything is stored, and what was
//! stored or queued before these rules existed sends nothing where it does not belong.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use pushgate::app::dispatch::process_chunk;
use pushgate::app::ports::PageRequest;
use pushgate::app::{queries, send};
use pushgate_tests::{
    ManualQueue, ProviderRig, TestApp, apn_credential_body, apn_token, fcm_credential_body, fcm_token, provider_rig,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `field`s of a 400's errors.
fn fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect()
}

const PATH_CLIMB: &str = "../../../admin?x=1";

#[tokio::test]
async fn device_tokens_that_are_not_their_providers_format_are_refused_at_send() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("main").await;
    let bad: Vec<(String, &str)> = vec![
        (PATH_CLIMB.to_owned(), "APN"),
        ("ab".to_owned(), "APN"),
        ("abc".to_owned(), "APN"),
        ("zz".repeat(32), "APN"),
        (format!("{}/x", "ab".repeat(32)), "APN"),
        ("fcm token with spaces".to_owned(), "FCM"),
        ("tok\r\nx-evil: 1".to_owned(), "FCM"),
        ("../x?y=1".to_owned(), "FCM"),
        ("x".repeat(4097), "FCM"),
    ];
    let to: Vec<Value> = bad.iter().map(|(token, provider)| json!({"token": token, "provider": provider})).collect();
    let (status, body) = app.post("/v1/PushNotifications", &json!({"to": to, "content": {"title": "x"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let expected: Vec<String> = (0..bad.len()).map(|i| format!("to[{i}].token")).collect();
    assert_eq!(fields(&body), expected, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert!(errors[0]["message"].as_str().is_some_and(|m| m.contains("hex")), "{body}");
    assert!(errors[5]["message"].as_str().is_some_and(|m| m.contains("A-Z a-z 0-9")), "{body}");
    assert!(app.apns.received().is_empty() && app.fcm.received().is_empty());
}

#[tokio::test]
async fn a_path_climbing_apns_token_is_refused_at_registration() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("main").await;
    for (token, provider) in [(PATH_CLIMB, "APN"), ("not/an:fcm?token", "FCM")] {
        let (status, body) = app
            .post(
                "/v1/PushNotifications/DeviceRegistrations",
                &json!({"appName": "main", "token": token, "provider": provider}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(fields(&body), ["token"], "{body}");
    }
    let (_, users) = app.get("/v1/PushNotifications/Users").await;
    assert_eq!(users["users"], json!([]), "no User was created for a refused registration");
}

#[tokio::test]
async fn a_queued_chunk_holding_a_path_climbing_apns_token_sends_nothing() {
    let queue = Arc::new(ManualQueue::default());
    let ProviderRig { deps, account, apns, .. } = provider_rig(queue.clone(), |_| {}).await;
    let op = send::send(
        &deps,
        &account,
        json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "x"}}),
    )
    .await
    .expect("accepted");
    for mut chunk in queue.take() {
        // As if queued before tokens were checked.
        chunk.recipients[0].token = PATH_CLIMB.to_owned();
        process_chunk(&deps, &chunk, 1).await;
    }
    assert!(apns.received().is_empty(), "no request reached the APNs host: {:?}", apns.received());
    let page = PageRequest { size: 10, cursor: None };
    let errors = queries::list_operation_errors(&deps, &account, op, &page).await.expect("listed");
    assert_eq!(errors.items.len(), 1);
    assert_eq!(errors.items[0].error.code, 30410, "{:?}", errors.items[0]);
}

#[tokio::test]
async fn content_fcm_may_not_readdress_the_message() {
    let app = TestApp::spawn().await;
    let fcm = json!({"token": fcm_token(99), "topic": "everyone", "condition": "'a' in topics", "fid": "f", "android": {"priority": "NORMAL"}});
    let (status, body) = app
        .post(
            "/v1/PushNotifications",
            &json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x", "fcm": fcm}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut got = fields(&body);
    got.sort();
    assert_eq!(got, ["content.fcm.condition", "content.fcm.fid", "content.fcm.token", "content.fcm.topic"], "{body}");
}

#[tokio::test]
async fn content_apn_and_content_fcm_are_bounded_in_depth_and_size() {
    let app = TestApp::spawn().await;
    let mut deep = json!("leaf");
    for _ in 0..9 {
        deep = json!({ "a": deep });
    }
    let big = json!({"x": "y".repeat(4096)});
    for (name, value) in [("apn", deep.clone()), ("fcm", json!({"android": deep})), ("apn", big.clone()), ("fcm", big)]
    {
        let (status, body) = app
            .post(
                "/v1/PushNotifications",
                &json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "x", name: value}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(fields(&body), [format!("content.{name}")], "{body}");
    }
}

#[tokio::test]
async fn header_and_url_fields_of_an_apn_token_credential_are_refused_when_malformed() {
    let app = TestApp::spawn().await;
    for (field, value) in [
        ("bundleId", "com.example.app\r\nx-evil: 1"),
        ("bundleId", "com.example.app\u{0}"),
        ("bundleId", "com/example"),
        ("keyId", "KEY\n123456"),
        ("keyId", "KEY12345678"),
        ("teamId", "TEAM 12345"),
    ] {
        let mut body = apn_credential_body(&app.apns_key, "main");
        body["content"][field] = json!(value);
        let (status, answer) = app.post("/v1/PushNotifications/Credentials", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}={value:?}: {answer}");
        assert_eq!(fields(&answer), [format!("content.{field}")], "{answer}");
    }
}

#[tokio::test]
async fn an_fcm_project_id_that_is_not_a_gcp_project_id_is_refused_at_create() {
    let app = TestApp::spawn().await;
    for project in ["p/../../x", "pushgate-test\n", "UPPER-case-1", "a"] {
        let mut account = app.fcm_account.clone();
        account.project_id = project.to_owned();
        let (status, body) =
            app.post("/v1/PushNotifications/Credentials", &fcm_credential_body(&account, "main")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{project:?}: {body}");
        assert_eq!(fields(&body), ["content.privateKey"], "{body}");
        assert!(body.to_string().contains("project_id"), "{body}");
    }
}

#[tokio::test]
async fn control_characters_in_a_static_collapse_key_are_refused_at_send() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/v1/PushNotifications",
            &json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "x", "collapseKey": "a\r\nx-evil: 1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fields(&body), ["content.collapseKey"], "{body}");
}

#[tokio::test]
async fn a_collapse_key_that_renders_control_characters_fails_that_notification_with_30422() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("main").await;
    let op = app
        .send(&json!({
            "to": [
                {"token": apn_token(1), "provider": "APN", "variables": {"k": "a\r\nx-evil: 1"}},
                {"token": apn_token(2), "provider": "APN", "variables": {"k": "fine"}},
            ],
            "content": {"title": "x", "collapseKey": "{{ k }}"},
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!((operation["stats"]["sent"].as_u64(), operation["stats"]["failed"].as_u64()), (Some(1), Some(1)));
    let notifications = app.notifications_of(&op).await;
    let failed = notifications.iter().find(|n| n["status"] == "FAILED").expect("one FAILED");
    assert_eq!(failed["error"]["code"], 30422, "{failed}");
    assert!(failed["error"]["message"].as_str().is_some_and(|m| m.contains("content.collapseKey")), "{failed}");
    assert_eq!(app.apns.received().len(), 1, "only the fine one was sent");
}

#[tokio::test]
async fn a_certificate_whose_uid_is_not_a_bundle_id_is_refused_at_create() {
    let app = TestApp::spawn().await;
    let cert = pushgate_fakes::keys::apns_client_certificate("com.example.app\r\nx-evil: 1");
    let (status, body) = app
        .post(
            "/v1/PushNotifications/Credentials",
            &json!({
                "credentialType": "APN",
                "appName": "main",
                "content": {"certificate": STANDARD.encode(&cert.certificate_pem), "privateKey": STANDARD.encode(&cert.private_key_pem)},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fields(&body), ["content.certificate"], "{body}");
}
