//! End-to-end delivery through the local service to the fake APNs and FCM servers.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pushgate_fakes::{ApnsReply, FakeApns, FcmReply};
use pushgate_tests::{TestApp, apn_token, captured_logs, fcm_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_mixed_send_completes_with_rendered_payloads_headers_and_valid_provider_tokens() {
    let app = TestApp::spawn().await;
    let apn_credential = app.create_apn_credential("main").await;
    let fcm_credential = app.create_fcm_credential("main").await;
    app.apns.script(&apn_token(3), vec![ApnsReply::Unregistered]);
    app.fcm.script(&fcm_token(6), vec![FcmReply::Unregistered]);
    let to: Vec<Value> = (1..=3)
        .map(|i| json!({"token": apn_token(i), "provider": "APN", "variables": {"name": format!("Ada {i}"), "seat": format!("{i}A")}}))
        .chain((4..=6).map(|i| json!({"token": fcm_token(i), "provider": "FCM", "variables": {"name": format!("Bob {i}"), "seat": format!("{i}F")}})))
        .collect();
    let op = app
        .send(&json!({
            "to": to,
            "content": {
                "title": "Hi {{ name }}",
                "body": "Your seat is {{ seat | upcase }}",
                "data": {"seat": "{{ seat }}"},
                "badge": 2,
                "collapseKey": "boarding",
                "ttl": 600
            },
            "priority": "LOW",
            "sound": "ring",
            "tags": {"seat": "{{ seat }}"}
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["status"], "COMPLETED");
    let stats = &operation["stats"];
    assert_eq!(stats["total"], 6);
    assert_eq!(stats["recipients"], 6);
    assert_eq!(stats["sent"], 4);
    assert_eq!(stats["failed"], 2);
    assert_eq!(stats["queued"], 0);

    // APNs got rendered payloads with Apple's headers and a JWT it verified.
    let apns = app.apns.delivered();
    assert_eq!(apns.len(), 2);
    let first = apns.iter().find(|r| r.device_token == apn_token(1)).expect("token 1 delivered");
    assert_eq!(first.payload["aps"]["alert"]["title"], "Hi Ada 1");
    assert_eq!(first.payload["aps"]["alert"]["body"], "Your seat is 1A");
    assert_eq!(first.payload["aps"]["badge"], 2);
    assert_eq!(first.payload["aps"]["sound"], "ring");
    assert_eq!(first.payload["seat"], "1A");
    assert_eq!(first.headers.get("apns-topic").map(String::as_str), Some("com.example.app"));
    assert_eq!(first.headers.get("apns-push-type").map(String::as_str), Some("alert"));
    assert_eq!(first.headers.get("apns-priority").map(String::as_str), Some("5"));
    assert_eq!(first.headers.get("apns-collapse-id").map(String::as_str), Some("boarding"));
    assert!(
        first
            .headers
            .get("apns-expiration")
            .and_then(|e| e.parse::<i64>().ok())
            .is_some_and(|e| e > chrono::Utc::now().timestamp())
    );
    assert_eq!(first.jwt_claims.as_ref().map(|c| c["iss"].clone()), Some(json!("TEAM123456")));
    assert_eq!(first.http_version, "HTTP/2.0");
    assert_eq!(app.apns.distinct_jwts(), 1, "one provider token per key, reused");

    // FCM got rendered messages with the OAuth token it minted.
    let fcm = app.fcm.delivered();
    assert_eq!(fcm.len(), 2);
    let four = fcm.iter().find(|r| r.device_token == fcm_token(4)).expect("token 4 delivered");
    assert_eq!(four.project_id, "pushgate-test");
    assert_eq!(four.message["notification"]["title"], "Hi Bob 4");
    assert_eq!(four.message["data"]["seat"], "4F");
    assert_eq!(four.message["android"]["priority"], "NORMAL");
    assert_eq!(four.message["android"]["ttl"], "600s");
    assert_eq!(four.message["android"]["collapse_key"], "boarding");
    assert_eq!(four.message["android"]["notification"]["sound"], "ring");
    assert_eq!(four.http_version, "HTTP/2.0");
    assert_eq!(app.fcm.oauth_token_requests(), 1, "the access token is cached");

    // The records say what happened, per recipient.
    let notifications = app.notifications_of(&op).await;
    assert_eq!(notifications.len(), 6);
    for n in &notifications {
        let token = n["to"]["token"].as_str().expect("token");
        let dead = token == apn_token(3) || token == fcm_token(6);
        assert_eq!(n["status"], if dead { "FAILED" } else { "SENT" }, "{n}");
        assert_eq!(n["operationId"], op.as_str());
        if dead {
            assert_eq!(n["error"]["code"], 30410, "{n}");
        } else {
            assert_eq!(n["error"], Value::Null);
        }
    }
    let sent_apn = notifications.iter().find(|n| n["to"]["token"] == apn_token(2).as_str()).expect("apn 2");
    let (status, full) = app.get(&format!("/v1/PushNotifications/{}", sent_apn["id"].as_str().expect("id"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["content"]["title"], "Hi Ada 2");
    assert_eq!(full["from"], json!({"apn": apn_credential}));
    assert_eq!(full["tags"], json!({"seat": "2A"}));
    assert_eq!(full["priority"], "LOW");
    assert_eq!(full["sound"], "ring");
    assert_eq!(full["scheduledFor"], Value::Null);
    let sent_fcm =
        notifications.iter().find(|n| n["to"]["provider"] == "FCM" && n["status"] == "SENT").expect("fcm sent");
    assert_eq!(sent_fcm["from"], json!({"fcm": fcm_credential}));
}

#[tokio::test]
async fn retryable_answers_are_retried_honouring_retry_after_until_sent() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("retry").await;
    app.create_fcm_credential("retry").await;
    app.apns.script(
        &apn_token(1),
        vec![ApnsReply::TooManyRequests { retry_after_secs: Some(1) }, ApnsReply::InternalServerError],
    );
    app.fcm.script(&fcm_token(2), vec![FcmReply::Unavailable]);
    let started = std::time::Instant::now();
    let op = app
        .send(&json!({
            "to": [{"token": apn_token(1), "provider": "APN"}, {"token": fcm_token(2), "provider": "FCM"}],
            "content": {"body": "retry me"}
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["stats"]["sent"], 2, "{operation}");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(app.apns.received().iter().filter(|r| r.device_token == apn_token(1)).count(), 3);
    assert_eq!(app.fcm.received().iter().filter(|r| r.device_token == fcm_token(2)).count(), 2);
}

#[tokio::test]
async fn a_provider_that_stays_unavailable_fails_the_notification_after_bounded_redeliveries() {
    let app = TestApp::spawn_with(FakeApns::start_h2c().await, |c| {
        c.settings.max_attempts = 2;
        c.settings.max_receives = 2;
    })
    .await;
    app.create_apn_credential("down").await;
    app.apns.script(&apn_token(1), vec![ApnsReply::ServiceUnavailable; 10]);
    let op = app.send(&json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"body": "x"}})).await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["status"], "COMPLETED");
    assert_eq!(operation["stats"]["failed"], 1);
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{op}/Errors")).await;
    assert_eq!(errors["errors"][0]["code"], 30503, "{errors}");
    assert_eq!(errors["errors"][0]["providerReason"], "ServiceUnavailable");
    assert_eq!(app.apns.received().len(), 4, "2 attempts on each of 2 receives");
}

#[tokio::test]
async fn a_rendered_payload_over_4096_bytes_fails_only_that_notification() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("big").await;
    app.create_fcm_credential("big").await;
    let long = "x".repeat(3000);
    let op = app
        .send(&json!({
            "to": [
                {"token": apn_token(1), "provider": "APN", "variables": {"a": long, "b": long}},
                {"token": fcm_token(2), "provider": "FCM", "variables": {"a": long, "b": long}},
                {"token": apn_token(3), "provider": "APN", "variables": {"a": "short", "b": "short"}}
            ],
            "content": {"title": "{{ a }}", "body": "{{ b }}"}
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["stats"]["sent"], 1);
    assert_eq!(operation["stats"]["failed"], 2);
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{op}/Errors")).await;
    let codes: Vec<&Value> = errors["errors"].as_array().expect("errors").iter().map(|e| &e["code"]).collect();
    assert_eq!(codes, [&json!(30413), &json!(30413)]);
    assert_eq!(app.apns.delivered().len(), 1);
}

#[tokio::test]
async fn a_template_that_renders_too_much_fails_that_recipient_with_a_render_error() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("render").await;
    let items: Vec<u32> = (0..1000).collect();
    let op = app
        .send(&json!({
            "to": [
                {"token": fcm_token(1), "provider": "FCM", "variables": {"items": items}},
                {"token": fcm_token(2), "provider": "FCM", "variables": {"items": [1, 2]}}
            ],
            "content": {"body": "{% for i in items %}{{ i }}------{% endfor %}"}
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["stats"]["sent"], 1);
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{op}/Errors")).await;
    assert_eq!(errors["errors"][0]["code"], 30422);
    assert!(errors["errors"][0]["message"].as_str().is_some_and(|m| m.contains("exceeds 4096 bytes")), "{errors}");
}

#[tokio::test]
async fn certificate_credentials_authenticate_with_the_client_certificate_over_tls() {
    let apns = FakeApns::start_tls().await;
    let cert = apns.issue_client_certificate("com.example.certapp");
    let app = TestApp::spawn_with(apns, |_| {}).await;
    app.create_credential(&json!({
        "credentialType": "APN_SANDBOX",
        "appName": "certs",
        "content": {"certificate": STANDARD.encode(&cert.certificate_pem), "privateKey": STANDARD.encode(&cert.private_key_pem)}
    }))
    .await;
    let op = app.send(&json!({"to": [{"token": apn_token(7), "provider": "APN"}], "content": {"title": "cert"}})).await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["stats"]["sent"], 1, "{operation}");
    let delivered = app.apns.delivered();
    assert!(delivered[0].client_certificate);
    assert!(delivered[0].jwt_claims.is_none());
    assert_eq!(delivered[0].headers.get("apns-topic").map(String::as_str), Some("com.example.certapp"));
}

#[tokio::test]
async fn a_recipient_without_a_resolvable_credential_fails_clearly_and_user_recipients_are_unaddressable() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("fcm_only").await;
    let op = app
        .send(&json!({
            "to": [
                {"token": apn_token(1), "provider": "APN"},
                {"token": fcm_token(2), "provider": "FCM"},
                {"userId": "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8"}
            ],
            "content": {"title": "x"}
        }))
        .await;
    let operation = app.settle(&op).await;
    let stats = &operation["stats"];
    assert_eq!(
        (stats["recipients"].clone(), stats["total"].clone(), stats["unaddressable"].clone()),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!((stats["sent"].clone(), stats["failed"].clone()), (json!(1), json!(1)));
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{op}/Errors")).await;
    assert_eq!(errors["errors"][0]["code"], 30404);
    assert!(errors["errors"][0]["message"].as_str().is_some_and(|m| m.contains("no APN credential")), "{errors}");
}

#[tokio::test]
async fn explicit_from_and_app_senders_pick_their_credentials() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("default_app").await;
    let other = app.create_fcm_credential("other_app").await;
    let op = app.send(&json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}, "from": {"appName": "other_app"}})).await;
    app.settle(&op).await;
    let n = &app.notifications_of(&op).await[0];
    assert_eq!(n["from"], json!({"fcm": other}));
    let op = app.send(&json!({"to": [{"token": fcm_token(2), "provider": "FCM"}], "content": {"title": "x"}, "from": {"fcm": other}})).await;
    app.settle(&op).await;
    assert_eq!(app.notifications_of(&op).await[0]["from"], json!({"fcm": other}));
    let (status, body) = app.post("/v1/PushNotifications", &json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}, "from": {"appName": "missing"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "from.appName");
    let (status, body) = app
        .post(
            "/v1/PushNotifications",
            &json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}, "from": {"apn": other}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an FCM credential named as the APN sender");
    assert_eq!(body["errors"][0]["field"], "from.apn");
}

#[tokio::test]
async fn no_secret_appears_in_any_response_or_log_line() {
    let app = TestApp::spawn().await;
    let credential = app.create_apn_credential("secrets").await;
    app.create_fcm_credential("secrets").await;
    let op = app
        .send(&json!({"to": [{"token": apn_token(1), "provider": "APN"}, {"token": fcm_token(2), "provider": "FCM"}], "content": {"title": "x"}}))
        .await;
    app.settle(&op).await;
    let mut responses = String::new();
    for path in [
        format!("/v1/PushNotifications/Credentials/{credential}"),
        "/v1/PushNotifications/Credentials".to_owned(),
        "/v1/PushNotifications/Apps".to_owned(),
        format!("/v1/PushNotifications?operationId={op}"),
        format!("/v1/PushNotifications/Operations/{op}"),
    ] {
        responses.push_str(&app.get(&path).await.1.to_string());
    }
    let jwt = app.apns.delivered()[0].headers.get("authorization").cloned().expect("bearer jwt");
    let access_token = app.fcm.delivered()[0].headers.get("authorization").cloned().expect("bearer token");
    let key_line = |pem: &str| pem.lines().nth(1).expect("a base64 line").to_owned();
    let secrets = [
        app.token.clone(),
        key_line(&app.apns_key.private_key_pem),
        key_line(&app.fcm_account.private_key_pem),
        STANDARD.encode(&app.apns_key.private_key_pem)[..40].to_owned(),
        jwt.trim_start_matches("bearer ").to_owned(),
        access_token.trim_start_matches("Bearer ").to_owned(),
    ];
    let logs = captured_logs();
    assert!(!logs.is_empty(), "logs are captured");
    for secret in secrets {
        assert!(!responses.contains(&secret), "a response leaked {secret}");
        assert!(!logs.contains(&secret), "a log line leaked {secret}");
    }
}

/// A provider's "slow down" (429 + Retry-After) holds back every delivery with that credential in
/// the process — here another operation's — instead of each learning it with its own request.
#[tokio::test]
async fn a_providers_retry_after_pauses_every_delivery_with_that_credential_not_only_the_refused_one() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("paced").await;
    app.apns.script(&apn_token(1), vec![ApnsReply::TooManyRequests { retry_after_secs: Some(60) }]);
    let first = app.send(&json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"body": "a"}})).await;
    let queued = |op: String| {
        let app = &app;
        async move {
            for _ in 0..200 {
                if app.notifications_of(&op).await.iter().any(|n| n["status"] == "QUEUED") {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(queued(first.clone()).await, "the refused notification waits for its retry");
    let second = app.send(&json!({"to": [{"token": apn_token(2), "provider": "APN"}], "content": {"body": "b"}})).await;
    assert!(queued(second.clone()).await, "the other operation's notification waits too");
    assert_eq!(app.apns.received().iter().filter(|r| r.device_token == apn_token(2)).count(), 0, "never asked");
    assert_eq!(app.apns.received().len(), 1, "one request reached the provider: the refused one");
}

/// An unreachable provider host is one warning naming the host and the cause — not one line per
/// notification and attempt — and the log never carries a device token.
#[tokio::test]
async fn an_unreachable_provider_is_one_warning_naming_its_host_and_cause() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let app = TestApp::spawn_with(FakeApns::start_h2c().await, |c| {
        c.providers.apns_endpoint = Some(format!("http://127.0.0.1:{closed}"));
        c.settings.max_receives = 1;
        c.settings.max_attempts = 2;
    })
    .await;
    app.create_apn_credential("down").await;
    let to: Vec<Value> = (0..5).map(|i| json!({"token": apn_token(500 + i), "provider": "APN"})).collect();
    let op = app.send(&json!({"to": to, "content": {"body": "x"}})).await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["stats"]["failed"], 5, "{operation}");
    let logs = captured_logs();
    let host = format!("127.0.0.1:{closed}");
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&host)).collect();
    assert_eq!(lines.len(), 1, "one warning for 5 notifications × 2 attempts: {lines:#?}");
    assert!(lines[0].contains("provider unreachable") && lines[0].contains("connection failed"), "{}", lines[0]);
    assert!((0..5).all(|i| !logs.contains(&apn_token(500 + i))), "no device token in the log");
}

#[tokio::test]
async fn an_operation_links_to_the_errors_that_explain_its_failed_notifications() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("links").await;
    app.apns.script(&apn_token(2), vec![ApnsReply::Unregistered]);
    let op = app
        .send(&json!({
            "to": [{"token": apn_token(1), "provider": "APN"}, {"token": apn_token(2), "provider": "APN"}],
            "content": {"body": "x"}
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["stats"]["failed"], 1, "{operation}");
    let link = operation["links"]["errors"].as_str().expect("links.errors is a string");
    assert_eq!(link, format!("{}/v1/PushNotifications/Operations/{op}/Errors", app.base));
    let (status, errors) = app.get(link.strip_prefix(&app.base).expect("absolute URL of this pushgate")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(errors["errors"][0]["code"], 30410, "{errors}");
    let (_, listed) = app.get("/v1/PushNotifications/Operations?pageSize=1").await;
    assert_eq!(listed["operations"][0]["links"]["errors"], link, "the list shows the same link: {listed}");
}
