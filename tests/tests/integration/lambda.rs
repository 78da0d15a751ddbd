//! The Lambda entry points, fed the events AWS sends: API Gateway REST (v1) and HTTP API (v2)
//! JSON for the HTTP functions, SQS events for dispatch. The first tests run on memory deps; the
//! end-to-end ones run the AWS adapters on moto (skipped by plain `cargo test`, run by
//! `tests/run`).

use std::sync::Arc;

use http::StatusCode;
use pushgate_api::Function;
use pushgate_core::app::dispatch::QueueMessage;
use pushgate_fakes::{ApnsReply, FakeApns, FakeFcm, FcmReply};
use pushgate_tests::lambda_rig::{AwsRig, Caller, failures, http_api_event, invoke, rest_api_event};
use pushgate_tests::{ManualQueue, apn_token, fcm_credential_body, fcm_token, gateway_for, memory_deps, receive_all};
use serde_json::{Value, json};

async fn memory_caller() -> (pushgate_core::app::Deps, Caller) {
    let (apns, fcm) = (FakeApns::start_h2c().await, FakeFcm::start_h2c().await);
    let (deps, account, token) = memory_deps(gateway_for(&apns, &fcm), Arc::new(ManualQueue::default()));
    (deps, Caller { account, token })
}

#[tokio::test]
async fn a_rest_api_event_with_the_stage_in_front_of_the_path_reaches_its_route() {
    let (deps, caller) = memory_caller().await;
    let event = rest_api_event("GET", "/v1/PushNotifications/Operations?pageSize=5", "prod", &caller, None);
    let (status, _, body) = invoke(&deps, Function::Operations, &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["operations"], json!([]));
    // The query string reaches the handler too: a bad filter is refused.
    let event = rest_api_event("GET", "/v1/PushNotifications/Operations?status=BOGUS", "prod", &caller, None);
    let (status, _, body) = invoke(&deps, Function::Operations, &event).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn an_http_api_event_on_a_named_stage_reaches_its_route() {
    let (deps, caller) = memory_caller().await;
    let event = http_api_event("GET", "/v1/PushNotifications/Apps", "staging", &caller, None);
    let (status, _, body) = invoke(&deps, Function::Apps, &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["apps"].is_array(), "{body}");
}

#[tokio::test]
async fn a_function_answers_only_its_own_routes_in_twilio_error_shape() {
    let (deps, caller) = memory_caller().await;
    let event = http_api_event("GET", "/v1/PushNotifications/Credentials", "$default", &caller, None);
    assert_eq!(invoke(&deps, Function::Credentials, &event).await.0, StatusCode::OK);
    let (status, _, body) = invoke(&deps, Function::Send, &event).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], json!(404), "Twilio-shaped: {body}");
    assert!(body["code"].is_number() && body["message"].is_string(), "{body}");
}

/// The router a function's binary builds (chosen at compile time there; listed here).
fn compiled_router(function: Function, deps: pushgate_core::app::Deps) -> axum::Router {
    use pushgate_api::{ApiConfig, functions};
    let build = match function {
        Function::Send => functions::send,
        Function::Fetch => functions::fetch,
        Function::List => functions::list,
        Function::Operations => functions::operations,
        Function::Credentials => functions::credentials,
        Function::Apps => functions::apps,
        Function::DeviceRegistrations => functions::device_registrations,
        Function::Users => functions::users,
        Function::Cancel => functions::cancel,
    };
    build(deps, ApiConfig::default())
}

/// Without credentials: `401` where a route exists (auth runs in the handler), else the
/// router's own `404` (no such path) or `405` (path of another method).
async fn status_of(router: &axum::Router, method: &str, path: &str) -> StatusCode {
    use tower::ServiceExt;
    let request = http::Request::builder().method(method).uri(path).body(axum::body::Body::empty()).expect("a request");
    router.clone().oneshot(request).await.expect("infallible").status()
}

#[tokio::test]
async fn each_functions_own_router_serves_exactly_its_entries_of_the_route_table() {
    let (deps, _) = memory_caller().await;
    let concrete = |template: &str| {
        template
            .split('/')
            .map(|part| if part.starts_with('{') { "comms_x".to_owned() } else { part.to_owned() })
            .collect::<Vec<_>>()
            .join("/")
    };
    let everything = pushgate_api::router(deps.clone(), pushgate_api::ApiConfig::default());
    for function in Function::ALL {
        let router = compiled_router(function, deps.clone());
        for route in pushgate_api::ROUTES {
            let path = concrete(route.path);
            let status = status_of(&router, route.method, &path).await;
            if route.function == function {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{function:?} serves {} {}", route.method, route.path);
            } else {
                // `/v1/PushNotifications/Operations` is also a notification id to the fetch route.
                let matches = |template: &str| {
                    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
                    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
                };
                let own_pattern = pushgate_api::ROUTES
                    .iter()
                    .any(|r| r.function == function && r.method == route.method && matches(r.path));
                assert!(
                    own_pattern || matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED),
                    "{function:?} must not serve {} {} (got {status})",
                    route.method,
                    route.path
                );
            }
            let all = status_of(&everything, route.method, &path).await;
            assert_eq!(all, StatusCode::UNAUTHORIZED, "the local router serves {} {}", route.method, route.path);
        }
    }
}

#[tokio::test]
async fn a_send_through_an_http_api_event_is_accepted_with_a_location() {
    let (deps, caller) = memory_caller().await;
    let body = json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "hi"}});
    let event = http_api_event("POST", "/v1/PushNotifications", "$default", &caller, Some(&body));
    let (status, headers, answer) = invoke(&deps, Function::Send, &event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let operation_id = answer["operationId"].as_str().expect("operationId");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).expect("Location header");
    assert!(location.ends_with(&format!("/v1/PushNotifications/Operations/{operation_id}")), "{location}");
}

#[tokio::test]
async fn a_request_without_credentials_is_refused_before_any_route_runs() {
    let (deps, _) = memory_caller().await;
    let stranger = Caller {
        account: pushgate_core::domain::AccountId::from_bytes([9; 16]),
        token: pushgate_core::domain::AuthToken::new("x".repeat(32)),
    };
    let event = http_api_event("GET", "/v1/PushNotifications", "$default", &stranger, None);
    let (status, _, body) = invoke(&deps, Function::List, &event).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_device_registration_through_an_http_api_event_is_accepted_and_fetched_by_its_function() {
    let (apns, fcm) = (FakeApns::start_h2c().await, FakeFcm::start_h2c().await);
    let (deps, account, token) = memory_deps(gateway_for(&apns, &fcm), Arc::new(ManualQueue::default()));
    let caller = Caller { account, token };
    let sa = pushgate_fakes::keys::fcm_service_account("pushgate-test", &fcm.token_uri());
    pushgate_tests::commands::create_credential(&deps, &caller.account, &fcm_credential_body(&sa, "app"))
        .await
        .expect("credential");
    let body = json!({"appName": "app", "token": fcm_token(1), "provider": "FCM"});
    let event = http_api_event("POST", "/v1/PushNotifications/DeviceRegistrations", "$default", &caller, Some(&body));
    let (status, headers, answer) = invoke(&deps, Function::DeviceRegistrations, &event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["resourceId"].as_str().expect("resourceId");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).expect("Location header");
    assert!(location.ends_with(&format!("/v1/PushNotifications/DeviceRegistrations/{id}")), "{location}");
    let path = format!("/v1/PushNotifications/DeviceRegistrations/{id}");
    let event = http_api_event("GET", &path, "$default", &caller, None);
    let (status, _, registration) = invoke(&deps, Function::DeviceRegistrations, &event).await;
    assert_eq!(status, StatusCode::OK, "{registration}");
    assert_eq!(registration["devices"][0]["token"], fcm_token(1));
    // The users function does not serve registrations.
    assert_eq!(invoke(&deps, Function::Users, &event).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_user_deleted_through_an_http_api_event_on_the_users_function_loses_its_registrations() {
    let (apns, fcm) = (FakeApns::start_h2c().await, FakeFcm::start_h2c().await);
    let (deps, account, token) = memory_deps(gateway_for(&apns, &fcm), Arc::new(ManualQueue::default()));
    let caller = Caller { account, token };
    let sa = pushgate_fakes::keys::fcm_service_account("pushgate-test", &fcm.token_uri());
    pushgate_tests::commands::create_credential(&deps, &caller.account, &fcm_credential_body(&sa, "app"))
        .await
        .expect("credential");
    let body = json!({"appName": "app", "token": fcm_token(1), "provider": "FCM"});
    let registration = pushgate_tests::commands::register(&deps, &caller.account, &body).await.expect("registered");
    let user = format!("/v1/PushNotifications/Users/{}", registration.user_id);
    let (status, _, listed) =
        invoke(&deps, Function::Users, &http_api_event("GET", "/v1/PushNotifications/Users", "prod", &caller, None))
            .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["users"][0]["id"], registration.user_id.to_string());
    let (status, _, deleted) =
        invoke(&deps, Function::Users, &http_api_event("DELETE", &user, "prod", &caller, None)).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (status, _, fetched) =
        invoke(&deps, Function::Users, &http_api_event("GET", &user, "prod", &caller, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched["deletedAt"].is_string(), "{fetched}");
    let path = format!("/v1/PushNotifications/DeviceRegistrations/{}", registration.id);
    let event = http_api_event("GET", &path, "prod", &caller, None);
    assert_eq!(invoke(&deps, Function::DeviceRegistrations, &event).await.0, StatusCode::NOT_FOUND);
}

// ---- end to end on moto ----

pub(super) fn mixed_send(apns: &[usize], fcms: &[usize]) -> Value {
    let to: Vec<Value> = apns
        .iter()
        .map(|i| json!({"token": apn_token(*i), "provider": "APN", "variables": {"name": format!("A{i}")}}))
        .chain(
            fcms.iter()
                .map(|i| json!({"token": fcm_token(*i), "provider": "FCM", "variables": {"name": format!("F{i}")}})),
        )
        .collect();
    json!({"to": to, "content": {"title": "Hi {{ name }}", "body": "gate B"}, "tags": {"flight": "PG1"}})
}

/// The same messages as SQS delivers them again (one more receive).
pub(super) fn redelivered(messages: &[QueueMessage]) -> Vec<QueueMessage> {
    messages.iter().map(|m| QueueMessage { receive_count: m.receive_count + 1, ..m.clone() }).collect()
}

pub(super) async fn send_and_receive(rig: &AwsRig, body: &Value, chunks: usize) -> (String, Vec<QueueMessage>) {
    let (status, answer) = rig.call(Function::Send, "POST", "/v1/PushNotifications", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let operation_id = answer["operationId"].as_str().expect("operationId").to_owned();
    let messages = receive_all(&rig.sqs, &rig.queue_url, chunks, 30).await;
    assert_eq!(messages.len(), chunks, "the send queued its chunks on SQS");
    (operation_id, messages)
}

#[tokio::test]
async fn a_send_travels_send_handler_to_sqs_to_dispatch_handler_to_the_providers_and_shows_in_every_read() {
    let Some(rig) = AwsRig::new("e2e", |_| {}).await else { return };
    rig.create_credentials("main").await;
    rig.apns.script(&apn_token(2), vec![ApnsReply::Unregistered]);
    rig.fcm.script(&fcm_token(4), vec![FcmReply::Unregistered]);
    let (operation_id, messages) = send_and_receive(&rig, &mixed_send(&[1, 2], &[3, 4, 5]), 1).await;

    let response = rig.dispatch(&messages).await;
    assert!(failures(&response).is_empty(), "nothing to retry: {:?}", failures(&response));
    assert_eq!(rig.apns.delivered_count(), 1);
    assert_eq!(rig.fcm.delivered_count(), 2);
    assert_eq!(rig.apns.delivered()[0].payload["aps"]["alert"]["title"], "Hi A1");

    let path = format!("/v1/PushNotifications/Operations/{operation_id}");
    let (status, operation) = rig.call(Function::Operations, "GET", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{operation}");
    assert_eq!(operation["status"], "COMPLETED");
    assert_eq!(operation["stats"]["total"], 5);
    assert_eq!(operation["stats"]["sent"], 3);
    assert_eq!(operation["stats"]["failed"], 2);
    assert_eq!(operation["stats"]["queued"], 0);

    let (status, errors) = rig.call(Function::Operations, "GET", &format!("{path}/Errors"), None).await;
    assert_eq!(status, StatusCode::OK, "{errors}");
    assert_eq!(errors["errors"].as_array().map(Vec::len), Some(2), "{errors}");

    let list = format!("/v1/PushNotifications?operationId={operation_id}&status=SENT&pageSize=2");
    let (status, page) = rig.call(Function::List, "GET", &list, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let sent = page["pushNotifications"].as_array().cloned().unwrap_or_default();
    assert_eq!(sent.len(), 2, "{page}");
    let next = page["pagination"]["next"].as_str().expect("a next page");
    let (_, rest) = rig.call(Function::List, "GET", &format!("{list}&pageToken={next}"), None).await;
    let rest_len = rest["pushNotifications"].as_array().map(Vec::len);
    assert_eq!(rest_len, Some(1), "the page token from one instance works on another: {rest}");

    let id = sent[0]["id"].as_str().expect("id");
    let (status, one) = rig.call(Function::Fetch, "GET", &format!("/v1/PushNotifications/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["status"], "SENT");
    assert_eq!(one["tags"]["flight"], "PG1");
}

#[tokio::test]
async fn a_function_configured_from_the_lambda_environment_alone_reaches_dynamodb() {
    let Some(rig) = AwsRig::new("lambda-env", |_| {}).await else { return };
    let sdk = pushgate_glue::cloud::lambda_sdk_config(|name| std::env::var(name).ok()).expect("tests/run sets them");
    let router = pushgate_glue::functions::fetch(&rig.config, &sdk).expect("fetch wires");
    let missing =
        format!("/v1/PushNotifications/comms_pushnotification_{}", ulid::Ulid::generate().to_string().to_lowercase());
    let event = http_api_event("GET", &missing, "$default", &rig.caller, None);
    let (status, _, body) = pushgate_tests::lambda_rig::invoke_router(router, &event).await;
    // 404, not 401 or 503: the account was read from the config table and the notification
    // looked up in the push table, with the SDK configured as a deployed function configures it.
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_send_to_a_user_on_moto_reaches_each_device_and_the_dispatcher_forgets_the_dead_one() {
    let Some(rig) = AwsRig::new("users", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let register = async |user: Option<&str>, token: String, provider: &str| {
        let mut body = json!({"appName": "main", "token": token, "provider": provider});
        if let Some(user) = user {
            body["userId"] = json!(user);
        }
        let path = "/v1/PushNotifications/DeviceRegistrations";
        let (status, created) = rig.call(Function::DeviceRegistrations, "POST", path, Some(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        let id = created["resourceId"].as_str().expect("resourceId").to_owned();
        let (_, registration) = rig.call(Function::DeviceRegistrations, "GET", &format!("{path}/{id}"), None).await;
        registration
    };
    let user = register(None, apn_token(1), "APN").await["userId"].as_str().expect("userId").to_owned();
    register(Some(&user), apn_token(2), "APN").await;
    register(Some(&user), fcm_token(3), "FCM").await;
    rig.fcm.script(&fcm_token(3), vec![FcmReply::Unregistered]);
    let body = json!({"to": [{"userId": user}, {"userId": "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8"}], "content": {"title": "x"}});
    let (operation_id, messages) = send_and_receive(&rig, &body, 1).await;
    assert!(failures(&rig.dispatch(&messages).await).is_empty());
    assert_eq!((rig.apns.delivered_count(), rig.fcm.received().len()), (2, 1));

    let path = format!("/v1/PushNotifications/Operations/{operation_id}");
    let (_, operation) = rig.call(Function::Operations, "GET", &path, None).await;
    let stats = &operation["stats"];
    assert_eq!(
        [&stats["recipients"], &stats["total"], &stats["unaddressable"], &stats["sent"], &stats["failed"]],
        [&json!(2), &json!(3), &json!(1), &json!(2), &json!(1)],
        "{operation}"
    );
    let list = format!("/v1/PushNotifications?user={user}");
    let (_, page) = rig.call(Function::List, "GET", &list, None).await;
    assert_eq!(page["pushNotifications"].as_array().map(Vec::len), Some(3), "the byUser index finds all three: {page}");

    let path = format!("/v1/PushNotifications/DeviceRegistrations?userId={user}");
    let (_, registrations) = rig.call(Function::DeviceRegistrations, "GET", &path, None).await;
    let mut tokens: Vec<&str> = registrations["deviceRegistrations"][0]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["token"].as_str())
        .collect();
    tokens.sort();
    assert_eq!(tokens, vec![apn_token(1), apn_token(2)], "the dead FCM token is gone");
}

#[tokio::test]
async fn an_operation_canceled_through_the_cancel_function_on_moto_sends_nothing_when_its_chunk_arrives() {
    let Some(rig) = AwsRig::new("cancel", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let (operation_id, messages) = send_and_receive(&rig, &mixed_send(&[1, 2], &[3]), 1).await;
    let path = format!("/v1/PushNotifications/Operations/{operation_id}");
    let body = json!({"status": "CANCELED"});
    let (status, answer) = rig.call(Function::Cancel, "PATCH", &path, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["resourceId"], operation_id);

    assert!(failures(&rig.dispatch(&messages).await).is_empty());
    assert_eq!(rig.apns.received().len() + rig.fcm.received().len(), 0, "nothing reached a provider");
    let (_, operation) = rig.call(Function::Operations, "GET", &path, None).await;
    assert_eq!(operation["status"], "CANCELED", "{operation}");
    assert_eq!((operation["stats"]["canceled"].clone(), operation["stats"]["queued"].clone()), (json!(3), json!(0)));
    let list = format!("/v1/PushNotifications?operationId={operation_id}");
    let (_, page) = rig.call(Function::List, "GET", &list, None).await;
    let items = page["pushNotifications"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{page}");
    let id = items[0]["id"].as_str().expect("id");
    let (status, refused) =
        rig.call(Function::Cancel, "PATCH", &format!("/v1/PushNotifications/{id}"), Some(&body)).await;
    assert_eq!((status, refused["code"].clone()), (StatusCode::BAD_REQUEST, json!(30409)), "{refused}");
    let (status, refused) = rig.call(Function::Cancel, "PATCH", &path, Some(&body)).await;
    assert_eq!((status, refused["code"].clone()), (StatusCode::BAD_REQUEST, json!(30409)), "{refused}");
}

#[tokio::test]
async fn the_same_sqs_batch_processed_twice_sends_nothing_twice() {
    let Some(rig) = AwsRig::new("redeliver", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let (operation_id, messages) = send_and_receive(&rig, &mixed_send(&[1, 2, 3], &[4, 5]), 1).await;

    assert!(failures(&rig.dispatch(&messages).await).is_empty());
    let again = redelivered(&messages);
    assert!(failures(&rig.dispatch(&again).await).is_empty());

    assert_eq!(rig.apns.received().len(), 3, "each APNs notification was sent once");
    assert_eq!(rig.fcm.received().len(), 2, "each FCM notification was sent once");
    let (_, operation) =
        rig.call(Function::Operations, "GET", &format!("/v1/PushNotifications/Operations/{operation_id}"), None).await;
    assert_eq!(operation["stats"]["sent"], 5);
    assert_eq!(operation["stats"]["total"], 5);
}

#[tokio::test]
async fn a_retryable_provider_failure_is_a_batch_item_failure_and_succeeds_on_redelivery() {
    let Some(rig) = AwsRig::new("retry", |_| {}).await else { return };
    rig.create_credentials("main").await;
    // Apple asks to come back in a minute: longer than a dispatcher waits inline.
    rig.apns.script(&apn_token(1), vec![ApnsReply::TooManyRequests { retry_after_secs: Some(60) }]);
    let (operation_id, messages) = send_and_receive(&rig, &mixed_send(&[1], &[2]), 1).await;

    let first = rig.dispatch(&messages).await;
    assert_eq!(failures(&first), vec![messages[0].id.clone()], "the chunk goes back to the queue");
    let path = format!("/v1/PushNotifications/Operations/{operation_id}");
    let (_, operation) = rig.call(Function::Operations, "GET", &path, None).await;
    assert_eq!(operation["status"], "PROCESSING");
    assert_eq!(operation["stats"]["queued"], 1, "{operation}");

    let again = redelivered(&messages);
    // SQS redelivers after Apple's Retry-After: the credential's pause is over by then.
    rig.dispatch_deps.pacing.resume_all();
    assert!(failures(&rig.dispatch(&again).await).is_empty());
    let (_, operation) = rig.call(Function::Operations, "GET", &path, None).await;
    assert_eq!(operation["status"], "COMPLETED");
    assert_eq!(operation["stats"]["sent"], 2);
    assert_eq!(rig.fcm.received().len(), 1, "the FCM notification was not resent");
}

#[tokio::test]
async fn an_unreadable_sqs_message_is_reported_so_it_ends_in_the_dead_letter_queue() {
    let Some(rig) = AwsRig::new("garbage", |_| {}).await else { return };
    let garbage = QueueMessage { id: "m-1".into(), body: "{not a chunk".into(), receive_count: 1 };
    assert_eq!(failures(&rig.dispatch(&[garbage]).await), vec!["m-1".to_owned()]);
}

#[tokio::test]
async fn a_queue_failure_during_send_is_a_503_with_retry_after_and_leaves_no_operation() {
    let Some(rig) = AwsRig::new("noqueue", |c| {
        c.queue_url = Some("http://127.0.0.1:1/000000000000/missing-queue".into());
    })
    .await
    else {
        return;
    };
    rig.create_credentials("main").await;
    let event = http_api_event("POST", "/v1/PushNotifications", "$default", &rig.caller, Some(&mixed_send(&[1], &[2])));
    let (status, headers, body) = rig.invoke(Function::Send, &event).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key("retry-after"), "Retry-After tells the client when to come back");
    assert_eq!(body["status"], 503);
    let (_, operations) = rig.call(Function::Operations, "GET", "/v1/PushNotifications/Operations", None).await;
    assert_eq!(operations["operations"], json!([]), "no operation was left behind: {operations}");
}

#[tokio::test]
async fn a_storage_failure_during_send_is_a_503_with_retry_after_and_queues_nothing() {
    let Some(rig) = AwsRig::new("nostore", |_| {}).await else { return };
    rig.create_credentials("main").await;
    // The same stack, but DynamoDB is unreachable for the push store (credentials still load).
    let unreachable = aws_sdk_dynamodb::config::Builder::from(&rig.sdk)
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let store = pushgate_aws::dynamodb::DynamoPushStore::new(
        aws_sdk_dynamodb::Client::from_conf(unreachable),
        rig.config.push_table.clone(),
    );
    let deps = pushgate_core::app::Deps { push: Arc::new(store), ..rig.deps.clone() };
    let event = http_api_event("POST", "/v1/PushNotifications", "$default", &rig.caller, Some(&mixed_send(&[1], &[2])));
    let (status, headers, body) = invoke(&deps, Function::Send, &event).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key("retry-after"));
    let queued = receive_all(&rig.sqs, &rig.queue_url, 1, 0).await;
    assert!(queued.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn registrations_on_moto_move_between_users_and_go_with_their_app() {
    let Some(rig) = AwsRig::new("directory", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let registrations = "/v1/PushNotifications/DeviceRegistrations";
    let rig = &rig;
    let register = |body: Value| async move {
        let (status, answer) = rig.call(Function::DeviceRegistrations, "POST", registrations, Some(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let path = format!("{registrations}/{}", answer["resourceId"].as_str().expect("resourceId"));
        let (status, fetched) = rig.call(Function::DeviceRegistrations, "GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{fetched}");
        fetched
    };
    let alice = register(json!({"appName": "main", "token": apn_token(1), "provider": "APN"})).await;
    let alice_user = alice["userId"].as_str().expect("userId").to_owned();
    register(json!({"appName": "main", "token": fcm_token(2), "provider": "FCM", "userId": alice_user})).await;
    let bob = register(json!({"appName": "main", "token": apn_token(1), "provider": "APN"})).await;
    let (_, alice_now) =
        rig.call(Function::DeviceRegistrations, "GET", &format!("{registrations}?userId={alice_user}"), None).await;
    let devices = &alice_now["deviceRegistrations"][0]["devices"];
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{alice_now}");
    assert_eq!(devices[0]["token"], fcm_token(2), "the APN token moved to Bob");

    let bob_user = format!("/v1/PushNotifications/Users/{}", bob["userId"].as_str().expect("userId"));
    let (status, user) = rig.call(Function::Users, "GET", &bob_user, None).await;
    assert_eq!((status, user["deletedAt"].clone()), (StatusCode::OK, Value::Null), "{user}");

    // Deleting the App's credentials deletes the App and its registrations.
    let (_, credentials) = rig.call(Function::Credentials, "GET", "/v1/PushNotifications/Credentials", None).await;
    for c in credentials["credentials"].as_array().cloned().unwrap_or_default() {
        let path = format!("/v1/PushNotifications/Credentials/{}", c["id"].as_str().expect("id"));
        assert_eq!(rig.call(Function::Credentials, "DELETE", &path, None).await.0, StatusCode::OK);
    }
    for r in [&alice, &bob] {
        let path = format!("{registrations}/{}", r["id"].as_str().expect("id"));
        assert_eq!(rig.call(Function::DeviceRegistrations, "GET", &path, None).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_token_on_moto_leave_it_in_exactly_one_registration() {
    let Some(rig) = AwsRig::new("contest", |_| {}).await else { return };
    rig.create_credentials("main").await;
    pushgate_tests::directory_contract::concurrent_registrations_of_one_token_leave_it_in_exactly_one_registration(
        &rig.deps,
        &rig.caller.account,
        "main",
        8,
    )
    .await;
}

#[tokio::test]
async fn a_chunk_that_panics_in_rendering_fails_alone_in_a_batch_with_healthy_chunks_of_another_operation() {
    let Some(rig) = AwsRig::new("poison", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let (healthy, mut messages) = send_and_receive(&rig, &mixed_send(&[1, 2], &[3]), 1).await;
    // One recipient panics inside liquid-lib (i64::MIN / -1), one in a filter that always
    // panics (debug builds only), one renders fine.
    let poison = json!({
        "to": [
            {"token": apn_token(10), "provider": "APN", "variables": {"boom": true}},
            {"token": apn_token(11), "provider": "APN", "variables": {"n": i64::MIN, "m": -1}},
            {"token": apn_token(12), "provider": "APN", "variables": {"n": 10, "m": 2}},
        ],
        "content": {"title": "{% if boom %}{{ 'x' | pushgate_test_panic }}{% endif %}{{ n | divided_by: m }}"},
    });
    let (poisoned, more) = send_and_receive(&rig, &poison, 1).await;
    messages.extend(more);

    let response = rig.dispatch(&messages).await;
    assert!(failures(&response).is_empty(), "no message of the batch comes back: {:?}", failures(&response));
    let operation = async |id: &str| {
        let (status, op) =
            rig.call(Function::Operations, "GET", &format!("/v1/PushNotifications/Operations/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{op}");
        op
    };
    let op = operation(&healthy).await;
    assert_eq!((op["status"].as_str(), op["stats"]["sent"].as_u64()), (Some("COMPLETED"), Some(3)), "{op}");
    let op = operation(&poisoned).await;
    assert_eq!(op["status"], "COMPLETED", "{op}");
    assert_eq!((op["stats"]["sent"].as_u64(), op["stats"]["failed"].as_u64()), (Some(1), Some(2)), "{op}");
    let path = format!("/v1/PushNotifications/Operations/{poisoned}/Errors");
    let (_, errors) = rig.call(Function::Operations, "GET", &path, None).await;
    let errors = errors["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert_eq!(e["code"], 30422, "{e}");
        assert!(e["message"].as_str().is_some_and(|m| m.contains("template rendering failed")), "{e}");
    }
    assert!(
        errors.iter().any(|e| e["message"].as_str().is_some_and(|m| m.contains("overflow"))),
        "the arithmetic one says why: {errors:?}"
    );
    // The same batch again (SQS redelivers): nothing is sent twice, nothing comes back.
    let delivered = rig.apns.delivered_count() + rig.fcm.delivered_count();
    let response = rig.dispatch(&redelivered(&messages)).await;
    assert!(failures(&response).is_empty(), "no redelivery loop: {:?}", failures(&response));
    assert_eq!(rig.apns.delivered_count() + rig.fcm.delivered_count(), delivered);
}

/// `event` with its `Host` header replaced by a client's `evil.example`.
fn with_hostile_host(event: &str) -> String {
    let mut event: Value = serde_json::from_str(event).expect("an event");
    for (headers, value) in [("headers", json!("evil.example")), ("multiValueHeaders", json!(["evil.example"]))] {
        if let Some(headers) = event[headers].as_object_mut() {
            for name in ["Host", "host"] {
                if headers.contains_key(name) {
                    headers.insert(name.to_owned(), value.clone());
                }
            }
        }
    }
    event.to_string()
}

#[tokio::test]
async fn a_location_is_built_from_the_api_gateway_domain_and_stage_never_from_the_host_header() {
    let (deps, caller) = memory_caller().await;
    let body = json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "hi"}});
    let domain = "https://abc123.execute-api.us-east-1.amazonaws.com";
    for (event, base) in [
        (rest_api_event("POST", "/v1/PushNotifications", "prod", &caller, Some(&body)), format!("{domain}/prod")),
        (http_api_event("POST", "/v1/PushNotifications", "staging", &caller, Some(&body)), format!("{domain}/staging")),
        (http_api_event("POST", "/v1/PushNotifications", "$default", &caller, Some(&body)), domain.to_owned()),
    ] {
        let (status, headers, answer) = invoke(&deps, Function::Send, &with_hostile_host(&event)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let id = answer["operationId"].as_str().expect("operationId");
        let expected = format!("{base}/v1/PushNotifications/Operations/{id}");
        assert_eq!(answer["operationLocation"], expected.as_str());
        assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some(expected.as_str()));
    }
}

/// Readiness reads the stores: with a push table that does not exist it answers 503 in the
/// Twilio error shape (with `Retry-After`), while liveness still answers 200.
#[tokio::test]
async fn readiness_is_503_when_a_store_cannot_be_read_and_liveness_stays_200() {
    let Some(rig) = AwsRig::new("ready", |_| {}).await else { return };
    let mut config = rig.config.clone();
    config.push_table = "pushgate-no-such-table".into();
    let broken = rig.rewired(config);
    let router = pushgate_api::router(broken.deps.clone(), pushgate_api::ApiConfig::default());
    let (status, _, body) = pushgate_tests::lambda_rig::invoke_router(
        router.clone(),
        &http_api_event("GET", "/health/ready", "$default", &broken.caller, None),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], 20503);
    let (status, _, _) = pushgate_tests::lambda_rig::invoke_router(
        router,
        &http_api_event("GET", "/health", "$default", &broken.caller, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
