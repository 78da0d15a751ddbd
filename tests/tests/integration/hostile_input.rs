//! Issue 9, classes 5–8: hostile input never misdirects pushgate. It is refused at the edge
//! (credential create, send, device registration) before anything is stored, and what was
//! stored or queued before these rules existed sends nothing where it does not belong.

use pushgate_tests::commands;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pushgate_core::app::dispatch::process_chunk;
use pushgate_core::app::ports::PageRequest;
use pushgate_core::app::queries;
use pushgate_core::domain::credential::CredentialBook;
use pushgate_core::domain::{AccountId, Credential, CredentialId, CredentialSecret, CredentialType, OperationId};
use pushgate_fakes::keys::{apns_signing_key, fcm_service_account, p384_private_key_pem};
use pushgate_fakes::{CannedReply, CannedServer};
use pushgate_tests::{
    ManualQueue, ProviderRig, Providers, TestApp, apn_credential_body, apn_token, capture_logs, captured_logs,
    fcm_credential_body, fcm_token, memory_deps, provider_rig,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `field`s of a 400's errors.
fn fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect()
}

/// An FCM credential-create body for the test app's service account with another `token_uri`.
fn fcm_body_with_token_uri(app: &TestApp, token_uri: &str) -> Value {
    let mut account = app.fcm_account.clone();
    account.token_uri = token_uri.to_owned();
    fcm_credential_body(&account, "main")
}

/// The provider ports configured the way an operator configures them (through the environment
/// of a function), with `token_uris` as the allowed OAuth token endpoints.
fn gateway(apns: &str, fcm: &str, token_uris: &str) -> Providers {
    let env = [
        ("PUSHGATE_PUSH_TABLE", "push"),
        ("PUSHGATE_CONFIG_TABLE", "config"),
        ("PUSHGATE_DIRECTORY_TABLE", "directory"),
        ("APNS_ENDPOINT", apns),
        ("FCM_ENDPOINT", fcm),
        ("PUSHGATE_FCM_TOKEN_URIS", token_uris),
    ];
    let config = pushgate_glue::cloud::CloudConfig::from_lookup(|name| {
        env.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    })
    .expect("the configuration reads");
    Providers::from_config(&config.providers)
}

/// Stores an FCM credential without the create use case, as one stored before today's rules:
/// sealed secret plus an entry in the credential book.
async fn store_fcm_credential(
    deps: &pushgate_core::app::Deps,
    account: &AccountId,
    secret: CredentialSecret,
) -> String {
    let now = chrono::Utc::now();
    let id = CredentialId::from_ulid(ulid::Ulid::generate());
    let plain = serde_json::to_vec(&secret).expect("serializes");
    let sealed = deps.secrets.seal(&plain, format!("{account}/{id}").as_bytes()).await.expect("sealed");
    deps.credentials.put_secret(account, &id, sealed).await.expect("stored");
    let (mut book, version): (CredentialBook, u64) = deps.credentials.load_book(account).await.expect("book");
    let credential = Credential {
        id: id.clone(),
        account_id: account.clone(),
        credential_type: CredentialType::Fcm,
        app_name: pushgate_core::domain::AppName::parse("stored").expect("name"),
        is_default: false,
        created_at: now,
        updated_at: now,
    };
    book.add(credential, false).expect("added");
    deps.credentials.save_book(account, &book, version).await.expect("saved");
    id.to_string()
}

/// Sends `body`, processes every queued chunk once, and returns the operation's notifications.
async fn send_and_dispatch(
    deps: &pushgate_core::app::Deps,
    account: &AccountId,
    queue: &ManualQueue,
    body: Value,
) -> (OperationId, Vec<pushgate_core::domain::Notification>) {
    let op = commands::send(deps, account, body).await.expect("accepted");
    for chunk in queue.take() {
        process_chunk(deps, &chunk, 1).await;
    }
    let filter = pushgate_core::app::ports::NotificationFilter { operation_id: Some(op), ..Default::default() };
    let page = PageRequest { size: 100, cursor: None };
    let listed = queries::list_notifications(deps, account, &filter, &page).await.expect("listed");
    let mut notifications = Vec::new();
    for n in listed.items {
        notifications.push(queries::fetch_notification(deps, account, n.id).await.expect("fetched"));
    }
    (op, notifications)
}

#[tokio::test]
async fn a_service_account_whose_token_uri_points_at_loopback_or_the_metadata_address_is_refused_at_create() {
    let app = TestApp::spawn().await;
    let listener = CannedServer::start(vec![(
        "/token",
        CannedReply::json(200, &json!({"access_token": "stolen", "expires_in": 3600})),
    )])
    .await;
    for token_uri in [
        listener.url("/token"),
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token".to_owned(),
        "http://[::1]:8080/token".to_owned(),
        "https://oauth2.googleapis.com.attacker.test/token".to_owned(),
        "https://oauth2.googleapis.com/token?next=http://169.254.169.254/".to_owned(),
    ] {
        let (status, body) =
            app.post("/v1/PushNotifications/Credentials", &fcm_body_with_token_uri(&app, &token_uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{token_uri}: {body}");
        assert_eq!(fields(&body), ["content.privateKey"], "{token_uri}: {body}");
        assert!(body.to_string().contains("token_uri"), "the message names token_uri: {body}");
    }
    let (_, listed) = app.get("/v1/PushNotifications/Credentials").await;
    assert_eq!(listed["credentials"], json!([]), "nothing was stored");
    assert!(listener.received().is_empty(), "nothing was asked of the loopback listener");
}

#[tokio::test]
async fn a_credential_stored_with_a_token_uri_off_the_allowlist_makes_no_request_at_dispatch() {
    let queue = Arc::new(ManualQueue::default());
    let ProviderRig { deps, account, fcm, .. } = provider_rig(queue.clone(), |_| {}).await;
    let listener = CannedServer::start(vec![(
        "/token",
        CannedReply::json(200, &json!({"access_token": "stolen", "expires_in": 3600})),
    )])
    .await;
    let sa = fcm_service_account("pushgate-test", &listener.url("/token"));
    let secret = CredentialSecret::Fcm {
        project_id: sa.project_id.clone(),
        client_email: sa.client_email.clone(),
        private_key_pem: sa.private_key_pem.clone(),
        token_uri: sa.token_uri.clone(),
    };
    let id = store_fcm_credential(&deps, &account, secret).await;

    let body =
        json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}, "from": {"fcm": id}});
    let (_, notifications) = send_and_dispatch(&deps, &account, &queue, body).await;

    assert!(listener.received().is_empty(), "no OAuth request left for the stored token_uri");
    assert!(fcm.received().is_empty(), "nothing was sent");
    assert_eq!(notifications.len(), 1);
    let error = notifications[0].error.as_ref().expect("FAILED with an error");
    assert_eq!(error.code, 30404, "{error:?}");
}

#[tokio::test]
async fn a_redirect_from_the_token_endpoint_is_not_followed() {
    let target = CannedServer::start(vec![(
        "/token",
        CannedReply::json(200, &json!({"access_token": "stolen", "expires_in": 3600})),
    )])
    .await;
    let redirector = CannedServer::start(vec![("/token", CannedReply::redirect(&target.url("/token")))]).await;
    let fcm = pushgate_fakes::FakeFcm::start_h2c().await;
    let queue = Arc::new(ManualQueue::default());
    let (deps, account, _) = memory_deps(gateway("", &fcm.base_url(), &redirector.url("/token")), queue.clone());
    let sa = fcm_service_account("pushgate-test", &redirector.url("/token"));
    let id = commands::create_credential(&deps, &account, &fcm_credential_body(&sa, "main"))
        .await
        .expect("the redirector is an allowed token endpoint")
        .id;

    let body = json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}, "from": {"fcm": id.to_string()}});
    let (_, notifications) = send_and_dispatch(&deps, &account, &queue, body).await;

    assert_eq!(redirector.received().len(), 1, "one OAuth request, to the allowed endpoint");
    assert!(target.received().is_empty(), "the redirect target received nothing");
    let error = notifications[0].error.as_ref().expect("FAILED with an error");
    assert_eq!((error.code, error.provider_reason.as_deref()), (30404, Some("HTTP 302")), "{error:?}");
}

#[tokio::test]
async fn remote_error_text_never_reaches_a_notification_or_the_operation_errors() {
    capture_logs();
    const HOSTILE: &str = "HOSTILE-<script>alert(1)</script>";
    let apns_path = format!("/3/device/{}", apn_token(1));
    let hostile = CannedServer::start(vec![
        ("/oauth-refuses", CannedReply::json(400, &json!({"error": HOSTILE, "error_description": HOSTILE}))),
        ("/oauth-ok", CannedReply::json(200, &json!({"access_token": "at", "expires_in": 3600}))),
        (
            "/v1/projects/pushgate-test/messages:send",
            CannedReply::json(
                400,
                &json!({"error": {"code": 400, "status": HOSTILE, "message": HOSTILE, "details": [{"errorCode": HOSTILE}]}}),
            ),
        ),
        (apns_path.as_str(), CannedReply::json(400, &json!({"reason": HOSTILE}))),
    ])
    .await;
    let allowed = format!("{},{}", hostile.url("/oauth-refuses"), hostile.url("/oauth-ok"));
    let queue = Arc::new(ManualQueue::default());
    let (deps, account, _) = memory_deps(gateway(&hostile.base_url(), &hostile.base_url(), &allowed), queue.clone());
    let create = |body: Value| {
        let (deps, account) = (deps.clone(), account.clone());
        async move { commands::create_credential(&deps, &account, &body).await.expect("created").id.to_string() }
    };
    let apn = create(apn_credential_body(&apns_signing_key("KEY1234567", "TEAM123456"), "main")).await;
    let refused =
        create(fcm_credential_body(&fcm_service_account("pushgate-test", &hostile.url("/oauth-refuses")), "main"))
            .await;
    let ok =
        create(fcm_credential_body(&fcm_service_account("pushgate-test", &hostile.url("/oauth-ok")), "main")).await;

    let mut errors = Vec::new();
    for (provider, token, from) in [
        ("APN", apn_token(1), json!({"apn": apn})),
        ("FCM", fcm_token(1), json!({"fcm": refused})),
        ("FCM", fcm_token(2), json!({"fcm": ok})),
    ] {
        let body = json!({"to": [{"token": token, "provider": provider}], "content": {"title": "x"}, "from": from});
        let (op, notifications) = send_and_dispatch(&deps, &account, &queue, body).await;
        assert_eq!(notifications.len(), 1);
        let error = notifications[0].error.clone().expect("FAILED with an error");
        let page = PageRequest { size: 10, cursor: None };
        let listed = queries::list_operation_errors(&deps, &account, op, &page).await.expect("listed");
        errors.push((provider, error, listed.items));
    }

    assert_eq!(hostile.received().len(), 4, "the APNs request, two OAuth requests and one FCM send were made");
    for (provider, error, listed) in &errors {
        let shown = format!("{} {:?} {:?}", error.message, error.provider_reason, listed);
        assert!(!shown.contains("HOSTILE"), "{provider}: remote text reached the tenant: {shown}");
        let reason = error.provider_reason.as_deref().expect("a provider reason");
        assert!(reason == "HTTP 400" || reason.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{reason}");
    }
    assert!(!captured_logs().contains("HOSTILE"), "remote text was not logged either");
}

#[tokio::test]
async fn a_provider_reply_is_read_only_up_to_64_kib() {
    let padding = "x".repeat(1 << 20);
    let apns_path = format!("/3/device/{}", apn_token(1));
    let apns = CannedServer::start(vec![(
        apns_path.as_str(),
        CannedReply::json(400, &json!({"pad": padding, "reason": "BadTopic"})),
    )])
    .await;
    let queue = Arc::new(ManualQueue::default());
    let (deps, account, _) = memory_deps(gateway(&apns.base_url(), "", ""), queue.clone());
    commands::create_credential(
        &deps,
        &account,
        &apn_credential_body(&apns_signing_key("KEY1234567", "TEAM123456"), "main"),
    )
    .await
    .expect("created");

    let body = json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "x"}});
    let (_, notifications) = send_and_dispatch(&deps, &account, &queue, body).await;

    let error = notifications[0].error.as_ref().expect("FAILED with an error");
    assert_eq!(
        (error.code, error.provider_reason.as_deref()),
        (30400, Some("HTTP 400")),
        "a reason past the first 64 KiB is never read: {error:?}"
    );
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
    let op = commands::send(
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
async fn an_apn_token_credential_whose_key_is_not_p256_is_refused_at_create() {
    let app = TestApp::spawn().await;
    let garbage =
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
    for (what, pem) in [
        ("an RSA key", app.fcm_account.private_key_pem.clone()),
        ("a P-384 key", p384_private_key_pem()),
        ("garbage", garbage.to_owned()),
    ] {
        let mut body = apn_credential_body(&app.apns_key, "main");
        body["content"]["privateKey"] = json!(STANDARD.encode(&pem));
        let (status, answer) = app.post("/v1/PushNotifications/Credentials", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(fields(&answer), ["content.privateKey"], "{what}: {answer}");
    }
}

#[tokio::test]
async fn an_fcm_service_account_whose_key_is_not_rsa_is_refused_at_create() {
    let app = TestApp::spawn().await;
    let mut account = app.fcm_account.clone();
    account.private_key_pem = app.apns_key.private_key_pem.clone();
    let (status, body) = app.post("/v1/PushNotifications/Credentials", &fcm_credential_body(&account, "main")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fields(&body), ["content.privateKey"], "{body}");
}

#[tokio::test]
async fn the_webhook_client_does_not_follow_redirects() {
    use pushgate_core::domain::{EventType, OperationEvent, OperationStatus, Stats};
    use pushgate_providers::webhook::{Webhook, WebhookClient};
    let target = CannedServer::start(vec![("/hook", CannedReply::json(200, &json!({})))]).await;
    let redirector = CannedServer::start(vec![("/hook", CannedReply::redirect(&target.url("/hook")))]).await;
    let account = AccountId::from_bytes([9; 16]);
    let hook = Webhook { url: redirector.url("/hook"), secret: "a-webhook-secret-of-some-length".into() };
    let client = WebhookClient::new([(account.clone(), hook)].into()).expect("client");
    let operation_id = OperationId::from_ulid(ulid::Ulid::generate());
    let event = OperationEvent {
        id: format!("{operation_id}.operation.completed"),
        kind: EventType::Completed,
        account_id: account,
        operation_id,
        status: OperationStatus::Completed,
        stats: Stats::default(),
        occurred_at: chrono::Utc::now(),
    };

    let posted = client.post(&event).await;

    assert!(posted.is_err(), "a redirect is not a delivery");
    assert_eq!(redirector.received().len(), 1);
    assert!(target.received().is_empty(), "the redirect target received nothing");
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
