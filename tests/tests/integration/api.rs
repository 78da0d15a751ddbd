//! The Twilio wire contract: auth, errors, ids, paging, filters, tenant isolation.

use pushgate_tests::{TestApp, apn_token, fcm_token, send_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Twilio's documented example request. Its APN token is Twilio's placeholder (`utJXX2Tr9wN…`, not hex), so a
/// well-formed 32-byte token stands in for it; the FCM placeholder is FCM-shaped as is.
fn twilio_example_request() -> Value {
    json!({
        "from": {"fcm": "comms_credential_01h9krwprkeee8fzqspvwy6nq8", "apn": "comms_credential_8qn6ywvpsqzf8eeekrpwrk9h10"},
        "to": [
            {"token": "dqWD7WEC83K41WHyufTS7:APA91bFcrVaOLqKeJfSiEutJXX2Tr9wN_tYOwYd8rFA6mYUMBFqdz9n6k3v5EpFA_ukXD89hGqG3OarzbVfdjGnLOIAQfwbQcqJkjQWMrhwElrtU1y3JLDPfnjc0eTJLxzhyYvDFopEh", "provider": "FCM"},
            {"token": "5d4a1b0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b", "provider": "APN"}
        ],
        "content": {"title": "Boarding time @ TLL", "body": "Dear customer, you have 1 hour until boarding time at the Tallinn airport"},
        "priority": "HIGH",
        "sound": "ring"
    })
}

fn matches_operation_pattern(id: &str) -> bool {
    id.strip_prefix("comms_operation_").is_some_and(|rest| {
        rest.len() == 26
            && rest.starts_with(|c: char| ('0'..='7').contains(&c))
            && rest.chars().all(|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && !"ilou".contains(c)))
    })
}

#[tokio::test]
async fn twilios_documented_example_request_is_accepted_with_location_and_an_operation_id() {
    let app = TestApp::spawn().await;
    let response =
        app.request(Method::POST, "/v1/PushNotifications").json(&twilio_example_request()).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = response.json().await.expect("json");
    let id = body["operationId"].as_str().expect("operationId");
    assert!(matches_operation_pattern(id), "{id}");
    let expected = format!("{}/v1/PushNotifications/Operations/{id}", app.base);
    assert_eq!(body["operationLocation"], expected.as_str());
    assert_eq!(location.as_deref(), Some(expected.as_str()));

    // The made-up credential ids resolve to nothing: both recipients fail clearly, nothing is lost.
    let op = app.settle(id).await;
    assert_eq!(op["status"], "COMPLETED");
    assert_eq!(op["stats"]["failed"], 2);
    let notifications = app.notifications_of(id).await;
    assert!(notifications.iter().all(|n| n["error"]["code"] == 30404), "{notifications:?}");
}

/// `GET /health` (liveness) and `GET /health/ready` (readiness: the stores answer) need no
/// credentials and say nothing about any account.
#[tokio::test]
async fn health_and_readiness_answer_without_credentials_and_show_no_data() {
    let app = TestApp::spawn().await;
    for (path, status) in [("/health", "ok"), ("/health/ready", "ready")] {
        let response = app.client.get(format!("{}{path}", app.base)).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body, serde_json::json!({"status": status}), "{path}");
    }
    let response = app.client.post(format!("{}/health", app.base)).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Every answer — a success, an error of the guard, one without credentials — carries its own
/// `Twilio-Request-Id` (`RQ` + 32 hex, as Twilio's), and the log lines of that request carry it
/// too, so a support ticket quoting the header finds the request's lines.
#[tokio::test]
async fn every_response_carries_its_own_request_id_and_the_requests_log_lines_carry_it() {
    pushgate_tests::capture_logs();
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/PushNotifications", app.base);
    let requests = [
        app.request(reqwest::Method::GET, "/v1/PushNotifications/Operations"),
        app.client.get(&url),
        app.request(reqwest::Method::GET, "/v1/PushNotifications/nope/nope"),
        app.request(reqwest::Method::POST, "/v1/PushNotifications").header("content-type", "text/plain").body("x"),
    ];
    let mut seen = std::collections::HashSet::new();
    for request in requests {
        let response = request.send().await.expect("sent");
        let status = response.status();
        let id = response
            .headers()
            .get("twilio-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("a {status} answer without a Twilio-Request-Id"))
            .to_owned();
        assert!(
            id.len() == 34
                && id.starts_with("RQ")
                && id[2..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        assert!(seen.insert(id.clone()), "each request has its own id");
        let logs = pushgate_tests::captured_logs();
        assert!(
            logs.lines().any(|line| line.contains(&id) && line.contains(&format!("status={}", status.as_u16()))),
            "the request's log line carries {id}"
        );
    }
}

#[tokio::test]
async fn requests_without_valid_basic_auth_get_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/PushNotifications", app.base);
    let cases = [
        app.client.get(&url),
        app.client.get(&url).basic_auth(&app.account, Some("wrong-token")),
        app.client.get(&url).basic_auth("ACnotanaccount", Some(&app.token)),
        app.client.get(&url).header("authorization", "Bearer abc"),
        app.client.get(&url).header("authorization", "Basic !!!"),
    ];
    for request in cases {
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"pushgate\"")
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], 401);
        assert_eq!(body["code"], 20003);
        assert!(body["moreInfo"].is_string());
    }
}

#[tokio::test]
async fn a_non_json_body_gets_415_and_malformed_json_gets_400() {
    let app = TestApp::spawn().await;
    let (status, body) =
        send_json(app.request(Method::POST, "/v1/PushNotifications").header("content-type", "text/plain").body("{}"))
            .await;
    assert_eq!((status, body["code"].clone()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!(20415)));
    let (status, body) = send_json(
        app.request(Method::POST, "/v1/PushNotifications")
            .header("content-type", "application/json")
            .body("{\"to\": ["),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("malformed JSON")), "{body}");
}

#[tokio::test]
async fn a_body_over_the_configured_limit_gets_413() {
    let app = TestApp::spawn_with(pushgate_fakes::FakeApns::start_h2c().await, |c| c.api.max_body_bytes = 1024).await;
    let big = json!({"to": [{"token": "x".repeat(2000), "provider": "FCM"}], "content": {"title": "x"}});
    let (status, body) = app.post("/v1/PushNotifications", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], 20413);
}

#[tokio::test]
async fn validation_errors_list_every_field_in_a_twilio_shaped_body() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post("/v1/PushNotifications", &json!({"to": [{"token": "", "provider": "SMS"}], "priority": "URGENT"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 20001);
    assert_eq!(body["status"], 400);
    assert_eq!(body["message"], "Request validation failed");
    let fields: Vec<&str> =
        body["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    for field in ["to[0].token", "to[0].provider", "content", "priority"] {
        assert!(fields.contains(&field), "missing {field} in {fields:?}");
    }
}

/// `"ttl": 706.0` and `"badge": 1.0` are integers by JSON Schema (the contract's language), so a
/// client whose JSON library writes every number with a fraction is served; `1.5` is a 400 naming
/// the field.
#[tokio::test]
async fn an_integer_field_sent_with_a_zero_fraction_is_accepted_and_one_with_a_fraction_is_a_400() {
    let app = TestApp::spawn().await;
    let body = |ttl: &str, badge: &str| {
        format!(
            r#"{{"to": [{{"token": "{}", "provider": "APN"}}], "content": {{"title": "x", "ttl": {ttl}, "badge": {badge}}}}}"#,
            apn_token(1)
        )
    };
    let post = |text: String| {
        app.request(Method::POST, "/v1/PushNotifications").header("content-type", "application/json").body(text)
    };
    let (status, accepted) = send_json(post(body("706.0", "1.0"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, accepted) = send_json(post(body("7.06e2", "0"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");

    let (status, refused) = send_json(post(body("1.5", "2.5"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], 20001);
    let fields: Vec<&str> =
        refused["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["content.badge", "content.ttl"], "{refused}");
}

#[tokio::test]
async fn a_template_syntax_error_is_a_400_naming_the_field_and_a_hostile_loop_is_refused_quickly() {
    let app = TestApp::spawn().await;
    let started = std::time::Instant::now();
    let (status, body) = app
        .post(
            "/v1/PushNotifications",
            &json!({
                "to": [{"token": apn_token(1), "provider": "APN"}],
                "content": {"title": "Hi {{ name ", "body": "{% for i in (1..100000000) %}x{% endfor %}"}
            }),
        )
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> =
        body["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["content.title", "content.body"]);
}

#[tokio::test]
async fn malformed_path_ids_get_400_and_unknown_ones_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/PushNotifications/comms_pushnotification_NOPE",
        "/v1/PushNotifications/Operations/op_123",
        "/v1/PushNotifications/Credentials/comms_credential_X",
        "/v1/PushNotifications/Apps/Bad-Name",
        "/v1/PushNotifications/comms_pushnotification_01h9krwprkeee8fzqspvwy6nq8zzz",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    for path in [
        "/v1/PushNotifications/comms_pushnotification_01h9krwprkeee8fzqspvwy6nq8",
        "/v1/PushNotifications/Operations/comms_operation_01h9krwprkeee8fzqspvwy6nq8",
        "/v1/PushNotifications/Operations/comms_operation_01h9krwprkeee8fzqspvwy6nq8/Errors",
        "/v1/PushNotifications/Credentials/comms_credential_01h9krwprkeee8fzqspvwy6nq8",
        "/v1/PushNotifications/Apps/nope",
        "/v1/Nothing",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["status"], 404);
    }
}

#[tokio::test]
async fn a_wrong_method_gets_405_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.delete("/v1/PushNotifications").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], 20405);
}

#[tokio::test]
async fn another_accounts_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let credential = app.create_fcm_credential("main_app").await;
    let op = app.send(&json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}})).await;
    app.settle(&op).await;
    let notification = app.notifications_of(&op).await[0]["id"].as_str().expect("id").to_owned();

    let (other, other_token) = app.add_account();
    let as_other = |method: Method, path: String| {
        app.client.request(method, format!("{}{path}", app.base)).basic_auth(&other, Some(&other_token))
    };
    for path in [
        format!("/v1/PushNotifications/{notification}"),
        format!("/v1/PushNotifications/Operations/{op}"),
        format!("/v1/PushNotifications/Operations/{op}/Errors"),
        format!("/v1/PushNotifications/Credentials/{credential}"),
        "/v1/PushNotifications/Apps/main_app".to_owned(),
    ] {
        let (status, _) = send_json(as_other(Method::GET, path.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) =
        send_json(as_other(Method::DELETE, format!("/v1/PushNotifications/Credentials/{credential}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send_json(
        as_other(Method::PATCH, "/v1/PushNotifications/Apps/main_app".into()).json(&json!({"isDefault": true})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The other account's lists are empty.
    let (_, list) = send_json(as_other(Method::GET, "/v1/PushNotifications".into())).await;
    assert_eq!(list["pushNotifications"], json!([]));
    let (_, list) = send_json(as_other(Method::GET, "/v1/PushNotifications/Credentials".into())).await;
    assert_eq!(list["credentials"], json!([]));
    // And the owner still sees everything.
    assert_eq!(app.get(&format!("/v1/PushNotifications/Credentials/{credential}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn lists_page_newest_first_with_stable_opaque_tokens() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("paging").await;
    let to: Vec<Value> = (0..7).map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    let op = app.send(&json!({"to": to, "content": {"title": "x"}, "tags": {"batch": "b1"}})).await;
    app.settle(&op).await;

    let mut seen = Vec::new();
    let mut path = "/v1/PushNotifications?pageSize=3&tags=batch:b1;".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["pushNotifications"].as_array().expect("items").clone();
        assert!(items.len() <= 3);
        assert!(items.iter().all(|n| n.get("content").is_none()), "list items are metadata only");
        seen.extend(items.iter().map(|n| n["id"].as_str().expect("id").to_owned()));
        assert!(page["pagination"]["self"].is_string());
        // A new send between pages does not disturb the keyset.
        app.send(&json!({"to": [{"token": fcm_token(99), "provider": "FCM"}], "content": {"title": "y"}, "tags": {"batch": "b1"}}))
            .await;
        match page["pagination"]["next"].as_str() {
            Some(next) => path = format!("/v1/PushNotifications?pageSize=3&tags=batch:b1;&pageToken={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
}

#[tokio::test]
async fn page_sizes_out_of_range_and_forged_or_foreign_tokens_get_400() {
    let app = TestApp::spawn().await;
    for query in [
        "pageSize=0",
        "pageSize=1001",
        "pageSize=abc",
        "pageSize=%ZZ",
        "pageToken=forged",
        "status=sent",
        "provider=WEB",
        "tags=a:b",
        "startDate=yesterday",
        "color=red",
    ] {
        let (status, body) = app.get(&format!("/v1/PushNotifications?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], 20001, "{query}: {body}");
    }
    app.create_fcm_credential("tokens").await;
    let to: Vec<Value> = (0..3).map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    let op = app.send(&json!({"to": to, "content": {"title": "x"}})).await;
    app.settle(&op).await;
    let (_, page) = app.get("/v1/PushNotifications?pageSize=1&provider=FCM").await;
    let next = page["pagination"]["next"].as_str().expect("a next page").to_owned();
    // The token is bound to its filters and its account.
    let (status, _) = app.get(&format!("/v1/PushNotifications?pageSize=1&provider=APN&pageToken={next}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (other, other_token) = app.add_account();
    let (status, _) = send_json(
        app.client
            .get(format!("{}/v1/PushNotifications?pageSize=1&provider=FCM&pageToken={next}", app.base))
            .basic_auth(other, Some(other_token)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get(&format!("/v1/PushNotifications?pageSize=1&provider=FCM&pageToken={next}")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn notification_filters_combine_with_and() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("filters").await;
    app.create_fcm_credential("filters").await;
    app.apns.script(&apn_token(2), vec![pushgate_fakes::ApnsReply::Unregistered]);
    let op = app
        .send(&json!({
            "to": [
                {"token": apn_token(1), "provider": "APN", "variables": {"tier": "gold"}},
                {"token": apn_token(2), "provider": "APN", "variables": {"tier": "gold"}},
                {"token": fcm_token(3), "provider": "FCM", "variables": {"tier": "silver"}}
            ],
            "content": {"title": "x"},
            "tags": {"tier": "{{ tier }}", "campaign": "c1"}
        }))
        .await;
    app.settle(&op).await;
    let count = |q: String| {
        let app = &app;
        async move {
            let (status, page) = app.get(&format!("/v1/PushNotifications?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {page}");
            page["pushNotifications"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(count(format!("operationId={op}")).await, 3);
    assert_eq!(count("provider=APN".into()).await, 2);
    assert_eq!(count("provider=APN&status=SENT".into()).await, 1);
    assert_eq!(count("status=FAILED".into()).await, 1);
    assert_eq!(count("tags=tier:gold;campaign:c1;".into()).await, 2);
    assert_eq!(count("tags=tier:silver;".into()).await, 1);
    assert_eq!(count("startDate=2000-01-01T00:00:00Z&endDate=2000-01-02T00:00:00Z".into()).await, 0);
    assert_eq!(count("user=comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8".into()).await, 0);

    let (_, ops) = app.get("/v1/PushNotifications/Operations?status=COMPLETED").await;
    assert_eq!(ops["operations"].as_array().map(Vec::len), Some(1));
    let (_, errors) = app.get(&format!("/v1/PushNotifications/Operations/{op}/Errors")).await;
    let errors = errors["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["provider"], "APN");
    assert_eq!(errors[0]["providerReason"], "Unregistered");
    assert_eq!(errors[0]["code"], 30410);
}

#[tokio::test]
async fn credentials_and_apps_follow_the_default_and_limit_rules() {
    let app = TestApp::spawn().await;
    let first = app.create_apn_credential("alpha").await;
    let second = app.create_apn_credential("alpha").await;
    let (_, c1) = app.get(&format!("/v1/PushNotifications/Credentials/{first}")).await;
    assert_eq!(c1["isDefault"], true);
    assert_eq!(c1["credentialType"], "APN");
    assert_eq!(c1["appName"], "alpha");
    assert!(c1.get("content").is_none());

    let (status, patched) =
        app.patch(&format!("/v1/PushNotifications/Credentials/{second}"), &json!({"isDefault": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["resourceId"], second.as_str());
    let (_, c1) = app.get(&format!("/v1/PushNotifications/Credentials/{first}")).await;
    assert_eq!(c1["isDefault"], false);
    let (_, alpha) = app.get("/v1/PushNotifications/Apps/alpha").await;
    assert_eq!(alpha["isDefault"], true);
    assert_eq!(alpha["defaultCredentials"], json!([{"credentialType": "APN", "credentialId": second}]));

    app.create_fcm_credential("beta").await;
    let (status, _) = app.patch("/v1/PushNotifications/Apps/beta", &json!({"isDefault": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, apps) = app.get("/v1/PushNotifications/Apps?isDefault=true").await;
    assert_eq!(
        apps["apps"].as_array().map(|a| a.iter().map(|a| a["name"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("beta")])
    );

    let (_, filtered) = app.get("/v1/PushNotifications/Credentials?appName=alpha&credentialType=APN").await;
    assert_eq!(filtered["credentials"].as_array().map(Vec::len), Some(2));

    // Deleting an App's last credential deletes the App.
    let (status, _) = app.delete(&format!("/v1/PushNotifications/Credentials/{first}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.delete(&format!("/v1/PushNotifications/Credentials/{second}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/v1/PushNotifications/Apps/alpha").await.0, StatusCode::NOT_FOUND);

    // Ten credentials per App at most.
    for _ in 0..9 {
        app.create_fcm_credential("beta").await;
    }
    let (status, body) = app
        .post(
            "/v1/PushNotifications/Credentials",
            &json!({"credentialType": "FCM", "appName": "beta", "content": {"privateKey": base64_sa(&app)}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("at most 10")));
}

fn base64_sa(app: &TestApp) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(app.fcm_account.to_json())
}

#[tokio::test]
async fn credential_creation_reports_every_problem_and_never_echoes_content() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/v1/PushNotifications/Credentials",
            &json!({"credentialType": "WEB", "appName": "Bad Name", "isDefault": "yes"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> =
        body["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["credentialType", "appName", "isDefault", "content"]);

    let (status, body) = app
        .post(
            "/v1/PushNotifications/Credentials",
            &json!({"credentialType": "APN", "appName": "a", "content": {"keyId": "KEY1234567", "teamId": "TEAM123456", "bundleId": "b", "privateKey": "bm90IGEgcGVt"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "content.privateKey");
    assert!(!body.to_string().contains("bm90IGEgcGVt"));
}
