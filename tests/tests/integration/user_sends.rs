//! Sends to Users: a user recipient reaches every device of the User in the
//! resolved App, one PushNotification per device; Users without devices are unaddressable; dead
//! tokens leave their registration. Through the local process, against the fake APNs and FCM.

use pushgate_fakes::{ApnsReply, FcmReply};
use pushgate_tests::{TestApp, apn_token, fcm_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REGISTRATIONS: &str = "/v1/PushNotifications/DeviceRegistrations";

/// Registers `token` for `user` (a new User when `None`) in `app`; returns the User id.
async fn register(app: &TestApp, app_name: &str, user: Option<&str>, token: &str, provider: &str) -> String {
    let mut body = json!({"appName": app_name, "token": token, "provider": provider});
    if let Some(user) = user {
        body["userId"] = json!(user);
    }
    let (status, created) = app.post(REGISTRATIONS, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["resourceId"].as_str().expect("resourceId");
    let (_, registration) = app.get(&format!("{REGISTRATIONS}/{id}")).await;
    registration["userId"].as_str().expect("userId").to_owned()
}

/// The tokens of `user`'s registrations, sorted.
async fn registered_tokens(app: &TestApp, user: &str) -> Vec<String> {
    let (status, list) = app.get(&format!("{REGISTRATIONS}?userId={user}")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let mut tokens: Vec<String> = list["deviceRegistrations"]
        .as_array()
        .expect("deviceRegistrations")
        .iter()
        .flat_map(|r| r["devices"].as_array().cloned().unwrap_or_default())
        .map(|d| d["token"].as_str().expect("token").to_owned())
        .collect();
    tokens.sort();
    tokens
}

fn stat(operation: &Value, name: &str) -> u64 {
    operation["stats"][name].as_u64().unwrap_or_else(|| panic!("stats.{name} in {operation}"))
}

#[tokio::test]
async fn a_send_to_a_user_with_three_devices_reaches_all_three_and_forgets_the_dead_one() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("app").await;
    app.create_fcm_credential("app").await;
    let user = register(&app, "app", None, &apn_token(1), "APN").await;
    register(&app, "app", Some(&user), &apn_token(2), "APN").await;
    register(&app, "app", Some(&user), &fcm_token(3), "FCM").await;
    app.apns.script(&apn_token(2), vec![ApnsReply::Unregistered]);

    let op = app
        .send(&json!({"to": [{"userId": user, "variables": {"name": "Ada"}}], "content": {"title": "Hi {{ name }}"}}))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["status"], "COMPLETED");
    let counts: Vec<u64> = ["recipients", "total", "unaddressable", "sent", "failed", "queued"]
        .iter()
        .map(|s| stat(&operation, s))
        .collect();
    assert_eq!(counts, vec![1, 3, 0, 2, 1, 0], "{operation}");

    // The fakes received one rendered notification per live device.
    let apns = app.apns.delivered();
    assert_eq!(apns.iter().map(|r| r.device_token.clone()).collect::<Vec<_>>(), vec![apn_token(1)]);
    assert_eq!(apns[0].payload["aps"]["alert"]["title"], "Hi Ada");
    let fcm = app.fcm.delivered();
    assert_eq!(fcm.iter().map(|r| r.device_token.clone()).collect::<Vec<_>>(), vec![fcm_token(3)]);
    assert_eq!(fcm[0].message["notification"]["title"], "Hi Ada");

    // Each notification shows the User, the token and the provider.
    let mut to: Vec<Value> = app.notifications_of(&op).await.iter().map(|n| n["to"].clone()).collect();
    to.sort_by_key(|t| t["token"].as_str().map(str::to_owned));
    assert_eq!(
        to,
        vec![
            json!({"userId": user, "token": apn_token(1), "provider": "APN"}),
            json!({"userId": user, "token": apn_token(2), "provider": "APN"}),
            json!({"userId": user, "token": fcm_token(3), "provider": "FCM"}),
        ]
    );

    // The dead token is gone from the registration; the live ones stay.
    let mut live = vec![apn_token(1), fcm_token(3)];
    live.sort();
    assert_eq!(registered_tokens(&app, &user).await, live);
}

#[tokio::test]
async fn listing_by_user_returns_only_that_users_notifications() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("app").await;
    let ada = register(&app, "app", None, &fcm_token(1), "FCM").await;
    register(&app, "app", Some(&ada), &fcm_token(2), "FCM").await;
    let bob = register(&app, "app", None, &fcm_token(3), "FCM").await;
    let op = app
        .send(&json!({
            "to": [{"userId": ada}, {"userId": bob}, {"token": fcm_token(4), "provider": "FCM"}],
            "content": {"title": "x"}
        }))
        .await;
    assert_eq!(stat(&app.settle(&op).await, "sent"), 4);
    for (user, expected) in [(&ada, vec![fcm_token(1), fcm_token(2)]), (&bob, vec![fcm_token(3)])] {
        let (status, page) = app.get(&format!("/v1/PushNotifications?user={user}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["pushNotifications"].as_array().expect("pushNotifications");
        assert!(items.iter().all(|n| n["to"]["userId"] == json!(user)), "{page}");
        let mut tokens: Vec<String> = items.iter().map(|n| n["to"]["token"].as_str().expect("token").into()).collect();
        tokens.sort();
        assert_eq!(tokens, expected);
    }
}

#[tokio::test]
async fn users_without_a_device_in_the_resolved_app_are_unaddressable_and_get_no_attempt() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("main").await;
    app.create_fcm_credential("other").await;
    let elsewhere = register(&app, "other", None, &fcm_token(1), "FCM").await;
    let deleted = register(&app, "main", None, &fcm_token(2), "FCM").await;
    let (status, _) = app.delete(&format!("/v1/PushNotifications/Users/{deleted}")).await;
    assert_eq!(status, StatusCode::OK);
    let unknown = "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8";
    let reached = register(&app, "main", None, &fcm_token(3), "FCM").await;

    let op = app
        .send(&json!({
            "to": [{"userId": elsewhere}, {"userId": deleted}, {"userId": unknown}, {"userId": reached}],
            "content": {"title": "x"}
        }))
        .await;
    let operation = app.settle(&op).await;
    let counts: Vec<u64> =
        ["recipients", "total", "unaddressable", "sent"].iter().map(|s| stat(&operation, s)).collect();
    assert_eq!(counts, vec![4, 1, 3, 1], "{operation}");
    assert_eq!(app.fcm.received().iter().map(|r| r.device_token.clone()).collect::<Vec<_>>(), vec![fcm_token(3)]);

    // Only unaddressable recipients: nothing to do, COMPLETED at once.
    let op = app.send(&json!({"to": [{"userId": unknown}], "content": {"title": "x"}})).await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["status"], "COMPLETED");
    assert_eq!((stat(&operation, "total"), stat(&operation, "unaddressable")), (0, 1));
}

#[tokio::test]
async fn user_recipients_are_reached_through_the_app_the_sender_resolves_to() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("main").await;
    let other_fcm = app.create_fcm_credential("other").await;
    let other_apn = app.create_apn_credential("other").await;
    let main_apn = app.create_apn_credential("main").await;
    let user = register(&app, "main", None, &fcm_token(1), "FCM").await;
    register(&app, "other", Some(&user), &fcm_token(2), "FCM").await;
    let to = json!([{"userId": user}]);

    let reached = async |from: Value| {
        let op = app.send(&json!({"to": to, "content": {"title": "x"}, "from": from})).await;
        app.settle(&op).await;
        app.notifications_of(&op)
            .await
            .iter()
            .map(|n| n["to"]["token"].as_str().expect("token").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(reached(Value::Null).await, vec![fcm_token(1)], "the default App");
    assert_eq!(reached(json!({"appName": "other"})).await, vec![fcm_token(2)], "the named App");
    assert_eq!(reached(json!({"fcm": other_fcm})).await, vec![fcm_token(2)], "the App of the credential");
    assert_eq!(reached(json!({"fcm": other_fcm, "apn": other_apn})).await, vec![fcm_token(2)], "one App");

    let (status, body) = app
        .post(
            "/v1/PushNotifications",
            &json!({"to": to, "content": {"title": "x"}, "from": {"fcm": other_fcm, "apn": main_apn}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "from");
    // Direct recipients do not need one App.
    let (status, body) = app
        .post(
            "/v1/PushNotifications",
            &json!({"to": [{"token": fcm_token(9), "provider": "FCM"}], "content": {"title": "x"}, "from": {"fcm": other_fcm, "apn": main_apn}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_registered_token_that_fcm_reports_unregistered_in_a_direct_send_leaves_its_registration() {
    let app = TestApp::spawn().await;
    app.create_fcm_credential("app").await;
    let user = register(&app, "app", None, &fcm_token(1), "FCM").await;
    register(&app, "app", Some(&user), &fcm_token(2), "FCM").await;
    app.fcm.script(&fcm_token(1), vec![FcmReply::Unregistered]);
    let op = app.send(&json!({"to": [{"token": fcm_token(1), "provider": "FCM"}], "content": {"title": "x"}})).await;
    let operation = app.settle(&op).await;
    assert_eq!(stat(&operation, "failed"), 1);
    assert_eq!(registered_tokens(&app, &user).await, vec![fcm_token(2)]);

    // The token is free again: another User can register it.
    let other = register(&app, "app", None, &fcm_token(1), "FCM").await;
    assert_eq!(registered_tokens(&app, &other).await, vec![fcm_token(1)]);
    assert_eq!(registered_tokens(&app, &user).await, vec![fcm_token(2)]);
}

#[tokio::test]
async fn a_users_last_device_reported_dead_takes_its_registration_with_it() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("app").await;
    let user = register(&app, "app", None, &apn_token(1), "APN").await;
    app.apns.script(&apn_token(1), vec![ApnsReply::Unregistered]);
    let op = app.send(&json!({"to": [{"userId": user}], "content": {"title": "x"}})).await;
    assert_eq!(stat(&app.settle(&op).await, "failed"), 1);
    assert_eq!(registered_tokens(&app, &user).await, Vec::<String>::new());
    // The next send to the User finds no device.
    let op = app.send(&json!({"to": [{"userId": user}], "content": {"title": "x"}})).await;
    let operation = app.settle(&op).await;
    assert_eq!((stat(&operation, "total"), stat(&operation, "unaddressable")), (0, 1));
}
