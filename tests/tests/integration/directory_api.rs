//! DeviceRegistrations and Users through the HTTP API of the local process: every
//! route and rule, on the memory adapters.

use pushgate_tests::{TestApp, apn_token, fcm_token, send_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REGISTRATIONS: &str = "/v1/PushNotifications/DeviceRegistrations";
const USERS: &str = "/v1/PushNotifications/Users";

/// An app with an APN credential in App `app`.
async fn app_with_an_app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_apn_credential("app").await;
    app
}

/// Registers and expects 202; returns the registration as fetched.
async fn register(app: &TestApp, body: Value) -> Value {
    let (status, created) = app.post(REGISTRATIONS, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["resourceId"].as_str().expect("resourceId");
    let (status, fetched) = app.get(&format!("{REGISTRATIONS}/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    fetched
}

fn tokens(registration: &Value) -> Vec<String> {
    registration["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["token"].as_str().expect("token").to_owned())
        .collect()
}

async fn registrations_of(app: &TestApp, user: &str) -> Vec<Value> {
    let (status, list) = app.get(&format!("{REGISTRATIONS}?userId={user}")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["deviceRegistrations"].as_array().cloned().expect("deviceRegistrations")
}

#[tokio::test]
async fn a_registration_without_a_user_id_creates_a_user_and_answers_202_with_a_location() {
    let app = app_with_an_app().await;
    let (status, created) =
        app.post(REGISTRATIONS, &json!({"appName": "app", "token": apn_token(1), "provider": "APN"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["resourceId"].as_str().expect("resourceId");
    assert!(id.starts_with("comms_device_registration_"), "{id}");
    let location = created["resourceLocation"].as_str().expect("resourceLocation");
    assert_eq!(location, format!("{}{REGISTRATIONS}/{id}", app.base));

    let (status, registration) = app.get(&format!("{REGISTRATIONS}/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<_> = registration.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, ["id", "appName", "userId", "devices", "createdAt", "updatedAt"]);
    assert_eq!(registration["appName"], "app");
    assert_eq!(registration["devices"][0]["token"], apn_token(1));
    assert_eq!(registration["devices"][0]["provider"], "APN");
    assert!(registration["devices"][0]["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let user = registration["userId"].as_str().expect("userId");
    assert!(user.starts_with("comms_pushnotificationuser_"), "{user}");
    let (status, fetched) = app.get(&format!("{USERS}/{user}")).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["id"], user);
    assert_eq!(fetched["deletedAt"], Value::Null);
    let keys: Vec<_> = fetched.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, ["id", "createdAt", "updatedAt", "deletedAt"]);
}

#[tokio::test]
async fn registering_needs_an_existing_app_and_reports_every_field_problem() {
    let app = app_with_an_app().await;
    let (status, body) =
        app.post(REGISTRATIONS, &json!({"appName": "nope", "token": apn_token(1), "provider": "APN"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 20001);
    assert_eq!(body["errors"][0]["field"], "appName");

    let (status, body) =
        app.post(REGISTRATIONS, &json!({"appName": "Bad-Name", "token": "", "provider": "WEB", "userId": 7})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: Vec<_> = body["errors"].as_array().expect("errors").iter().map(|e| e["field"].clone()).collect();
    assert_eq!(fields, [json!("appName"), json!("token"), json!("provider"), json!("userId")]);

    let (status, body) =
        app.post(REGISTRATIONS, &json!({"appName": "app", "token": "x".repeat(4097), "provider": "FCM"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "token");
    // Nothing was created by the refused requests.
    let (_, users) = app.get(USERS).await;
    assert_eq!(users["users"], json!([]));
}

#[tokio::test]
async fn an_unknown_user_id_is_404_and_a_deleted_users_id_is_400() {
    let app = app_with_an_app().await;
    let unknown = "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8";
    let (status, body) = app
        .post(REGISTRATIONS, &json!({"appName": "app", "token": apn_token(1), "provider": "APN", "userId": unknown}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let user = register(&app, json!({"appName": "app", "token": apn_token(1), "provider": "APN"})).await["userId"]
        .as_str()
        .expect("userId")
        .to_owned();
    assert_eq!(app.delete(&format!("{USERS}/{user}")).await.0, StatusCode::OK);
    let (status, body) = app
        .post(REGISTRATIONS, &json!({"appName": "app", "token": apn_token(2), "provider": "APN", "userId": user}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "userId");
}

#[tokio::test]
async fn one_registration_per_user_and_app_holds_devices_unique_by_token_and_provider() {
    let app = app_with_an_app().await;
    app.create_fcm_credential("other").await;
    let first = register(&app, json!({"appName": "app", "token": apn_token(101), "provider": "APN"})).await;
    let user = first["userId"].as_str().expect("userId");
    let again = |token: &str, provider: &str, app_name: &str| json!({"appName": app_name, "token": token, "provider": provider, "userId": user});
    let second = register(&app, again(&apn_token(101), "APN", "app")).await;
    assert_eq!(second["id"], first["id"], "the same registration");
    assert_eq!(tokens(&second), [apn_token(101)], "re-registering refreshes, it does not duplicate");
    let third = register(&app, again(&apn_token(101), "FCM", "app")).await;
    assert_eq!(third["devices"].as_array().map(Vec::len), Some(2), "another provider is another device");
    let in_other = register(&app, again(&apn_token(101), "APN", "other")).await;
    assert_ne!(in_other["id"], first["id"], "another App is another registration");

    assert_eq!(registrations_of(&app, user).await.len(), 2);
    let (status, only) = app.get(&format!("{REGISTRATIONS}?userId={user}&appName=other")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(only["deviceRegistrations"].as_array().map(Vec::len), Some(1));
    assert_eq!(only["deviceRegistrations"][0]["id"], in_other["id"]);
    // In the other App the token stays with its own registration.
    let (_, fetched) = app.get(&format!("{REGISTRATIONS}/{}", first["id"].as_str().expect("id"))).await;
    assert_eq!(fetched["devices"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_token_registered_by_another_user_of_the_app_moves_to_them() {
    let app = app_with_an_app().await;
    let alice = register(&app, json!({"appName": "app", "token": apn_token(102), "provider": "APN"})).await;
    let alice_user = alice["userId"].as_str().expect("userId");
    register(&app, json!({"appName": "app", "token": apn_token(103), "provider": "APN", "userId": alice_user})).await;
    let bob = register(&app, json!({"appName": "app", "token": apn_token(102), "provider": "APN"})).await;
    assert_eq!(tokens(&bob), [apn_token(102)]);
    let (_, alice_now) = app.get(&format!("{REGISTRATIONS}/{}", alice["id"].as_str().expect("id"))).await;
    assert_eq!(tokens(&alice_now), [apn_token(103)], "the token left Alice's registration");

    // Moving Bob's only device back to Alice leaves Bob without a registration (1–50 devices).
    register(&app, json!({"appName": "app", "token": apn_token(102), "provider": "APN", "userId": alice_user})).await;
    let bob_user = bob["userId"].as_str().expect("userId");
    assert_eq!(registrations_of(&app, bob_user).await, Vec::<Value>::new());
    assert_eq!(app.get(&format!("{REGISTRATIONS}/{}", bob["id"].as_str().expect("id"))).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_51st_device_evicts_the_least_recently_registered() {
    let app = app_with_an_app().await;
    let first = register(&app, json!({"appName": "app", "token": fcm_token(0), "provider": "FCM"})).await;
    let user = first["userId"].as_str().expect("userId").to_owned();
    for i in 1..50 {
        let body = json!({"appName": "app", "token": fcm_token(i), "provider": "FCM", "userId": user});
        assert_eq!(app.post(REGISTRATIONS, &body).await.0, StatusCode::ACCEPTED);
    }
    // Refresh device 0: device 1 is now the least recently registered.
    register(&app, json!({"appName": "app", "token": fcm_token(0), "provider": "FCM", "userId": user})).await;
    let full =
        register(&app, json!({"appName": "app", "token": fcm_token(51), "provider": "FCM", "userId": user})).await;
    let held = tokens(&full);
    assert_eq!(held.len(), 50);
    assert!(!held.contains(&fcm_token(1)), "the oldest device was evicted");
    assert!(held.contains(&fcm_token(0)) && held.contains(&fcm_token(51)));

    // The evicted token is free: another User takes it without touching this registration.
    register(&app, json!({"appName": "app", "token": fcm_token(1), "provider": "FCM"})).await;
    let (_, after) = app.get(&format!("{REGISTRATIONS}/{}", full["id"].as_str().expect("id"))).await;
    assert_eq!(tokens(&after).len(), 50);
}

#[tokio::test]
async fn listing_registrations_requires_a_user_id_and_pages() {
    let app = app_with_an_app().await;
    let (status, body) = app.get(REGISTRATIONS).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "userId");
    let (status, body) = app.get(&format!("{REGISTRATIONS}?appName=app&pageSize=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: Vec<_> = body["errors"].as_array().expect("errors").iter().map(|e| e["field"].clone()).collect();
    assert!(fields.contains(&json!("userId")) && fields.contains(&json!("pageSize")), "{body}");
    let (status, _) = app.get(&format!("{REGISTRATIONS}?userId=nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    app.create_apn_credential("second").await;
    let r1 = register(&app, json!({"appName": "app", "token": apn_token(104), "provider": "APN"})).await;
    let user = r1["userId"].as_str().expect("userId");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let r2 =
        register(&app, json!({"appName": "second", "token": apn_token(104), "provider": "APN", "userId": user})).await;
    let (status, page) = app.get(&format!("{REGISTRATIONS}?userId={user}&pageSize=1")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["deviceRegistrations"][0]["id"], r2["id"], "newest first");
    let next = page["pagination"]["next"].as_str().expect("a next page");
    let (_, page) = app.get(&format!("{REGISTRATIONS}?userId={user}&pageSize=1&pageToken={next}")).await;
    assert_eq!(page["deviceRegistrations"][0]["id"], r1["id"]);
    assert_eq!(page["pagination"]["next"], Value::Null);
}

#[tokio::test]
async fn deleting_a_registration_removes_it_and_frees_its_tokens() {
    let app = app_with_an_app().await;
    let r = register(&app, json!({"appName": "app", "token": apn_token(105), "provider": "APN"})).await;
    let id = r["id"].as_str().expect("id");
    let (status, deleted) = app.delete(&format!("{REGISTRATIONS}/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["resourceId"], id);
    assert_eq!(app.get(&format!("{REGISTRATIONS}/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("{REGISTRATIONS}/{id}")).await.0, StatusCode::NOT_FOUND);
    let user = r["userId"].as_str().expect("userId");
    assert!(registrations_of(&app, user).await.is_empty());
    // The token is free for a new registration (which then holds it alone).
    let again =
        register(&app, json!({"appName": "app", "token": apn_token(105), "provider": "APN", "userId": user})).await;
    assert_ne!(again["id"], r["id"]);
    assert_eq!(tokens(&again), [apn_token(105)]);
}

#[tokio::test]
async fn deleting_a_user_shows_deleted_at_and_removes_its_registrations() {
    let app = app_with_an_app().await;
    app.create_fcm_credential("other").await;
    let r = register(&app, json!({"appName": "app", "token": apn_token(105), "provider": "APN"})).await;
    let user = r["userId"].as_str().expect("userId");
    register(&app, json!({"appName": "other", "token": fcm_token(106), "provider": "FCM", "userId": user})).await;
    assert_eq!(registrations_of(&app, user).await.len(), 2);

    let (status, deleted) = app.delete(&format!("{USERS}/{user}")).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["resourceId"], user);
    let (status, fetched) = app.get(&format!("{USERS}/{user}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched["deletedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{fetched}");
    assert!(registrations_of(&app, user).await.is_empty());
    assert_eq!(app.get(&format!("{REGISTRATIONS}/{}", r["id"].as_str().expect("id"))).await.0, StatusCode::NOT_FOUND);
    // Deleting again changes nothing.
    let (status, _) = app.delete(&format!("{USERS}/{user}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&format!("{USERS}/{user}")).await.1["deletedAt"], fetched["deletedAt"]);
    // Its tokens are free for others.
    let other = register(&app, json!({"appName": "app", "token": apn_token(105), "provider": "APN"})).await;
    assert_eq!(tokens(&other), [apn_token(105)]);
}

#[tokio::test]
async fn users_list_newest_first_in_signed_pages() {
    let app = app_with_an_app().await;
    let mut users = Vec::new();
    for i in 0..3 {
        let r = register(&app, json!({"appName": "app", "token": apn_token(110 + i), "provider": "APN"})).await;
        users.push(r["userId"].clone());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    users.reverse();
    let (status, page) = app.get(&format!("{USERS}?pageSize=2")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<_> = page["users"].as_array().expect("users").iter().map(|u| u["id"].clone()).collect();
    assert_eq!(ids, users[..2]);
    let next = page["pagination"]["next"].as_str().expect("next");
    let (_, last) = app.get(&format!("{USERS}?pageSize=2&pageToken={next}")).await;
    assert_eq!(last["users"][0]["id"], users[2]);
    assert_eq!(last["pagination"]["next"], Value::Null);
    for bad in ["pageSize=0", "pageSize=1001", "pageToken=forged.token", "userId=x"] {
        let (status, body) = app.get(&format!("{USERS}?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn malformed_ids_get_400_and_unknown_ones_404() {
    let app = app_with_an_app().await;
    for path in [format!("{REGISTRATIONS}/comms_device_registration_X"), format!("{USERS}/user_1")] {
        assert_eq!(app.get(&path).await.0, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(app.delete(&path).await.0, StatusCode::BAD_REQUEST, "{path}");
    }
    for path in [
        format!("{REGISTRATIONS}/comms_device_registration_01h9krwprkeee8fzqspvwy6nq8"),
        format!("{USERS}/comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8"),
    ] {
        assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(app.delete(&path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        app.request(Method::PATCH, USERS).send().await.expect("answered").status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn another_accounts_registrations_and_users_are_not_found() {
    let app = app_with_an_app().await;
    let r = register(&app, json!({"appName": "app", "token": apn_token(105), "provider": "APN"})).await;
    let (id, user) = (r["id"].as_str().expect("id"), r["userId"].as_str().expect("userId"));
    let (other, other_token) = app.add_account();
    let as_other = |method: Method, path: String| {
        app.client.request(method, format!("{}{path}", app.base)).basic_auth(&other, Some(&other_token))
    };
    for (method, path) in [
        (Method::GET, format!("{REGISTRATIONS}/{id}")),
        (Method::DELETE, format!("{REGISTRATIONS}/{id}")),
        (Method::GET, format!("{USERS}/{user}")),
        (Method::DELETE, format!("{USERS}/{user}")),
    ] {
        let (status, _) = send_json(as_other(method.clone(), path.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (_, list) = send_json(as_other(Method::GET, format!("{REGISTRATIONS}?userId={user}"))).await;
    assert_eq!(list["deviceRegistrations"], json!([]));
    let (_, list) = send_json(as_other(Method::GET, USERS.to_owned())).await;
    assert_eq!(list["users"], json!([]));
    // Registering into the owner's User or App from the other account fails.
    let body = json!({"appName": "app", "token": apn_token(105), "provider": "APN", "userId": user});
    let (status, _) = send_json(as_other(Method::POST, REGISTRATIONS.to_owned()).json(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the other account has no App `app`");
    // The owner still has everything.
    assert_eq!(tokens(&app.get(&format!("{REGISTRATIONS}/{id}")).await.1), [apn_token(105)]);
}

#[tokio::test]
async fn deleting_an_apps_last_credential_deletes_its_registrations() {
    let app = TestApp::spawn().await;
    let doomed = app.create_apn_credential("doomed").await;
    app.create_apn_credential("kept").await;
    let r = register(&app, json!({"appName": "doomed", "token": apn_token(105), "provider": "APN"})).await;
    let user = r["userId"].as_str().expect("userId");
    let kept =
        register(&app, json!({"appName": "kept", "token": apn_token(105), "provider": "APN", "userId": user})).await;

    let (status, _) = app.delete(&format!("/v1/PushNotifications/Credentials/{doomed}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&format!("{REGISTRATIONS}/{}", r["id"].as_str().expect("id"))).await.0, StatusCode::NOT_FOUND);
    let left = registrations_of(&app, user).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], kept["id"]);
    // The App is gone: registering into it is refused.
    let (status, _) =
        app.post(REGISTRATIONS, &json!({"appName": "doomed", "token": apn_token(105), "provider": "APN"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_token_by_new_users_leave_it_in_exactly_one_registration() {
    use pushgate_fakes::{FakeApns, FakeFcm};
    let (apns, fcm) = (FakeApns::start_h2c().await, FakeFcm::start_h2c().await);
    let queue = std::sync::Arc::new(pushgate_tests::ManualQueue::default());
    let (deps, account, _) = pushgate_tests::memory_deps(pushgate_tests::gateway_for(&apns, &fcm), queue);
    let sa = pushgate_fakes::keys::fcm_service_account("pushgate-test", &fcm.token_uri());
    let body = pushgate_tests::fcm_credential_body(&sa, "app");
    pushgate_tests::commands::create_credential(&deps, &account, &body).await.expect("credential");
    for _ in 0..20 {
        pushgate_tests::directory_contract::concurrent_registrations_of_one_token_leave_it_in_exactly_one_registration(
            &deps, &account, "app", 8,
        )
        .await;
        // The next round starts from a free token.
        for (r, v) in deps
            .directory
            .registrations_in_app(&account, &pushgate_core::domain::AppName::parse("app").expect("valid"))
            .await
            .expect("listed")
        {
            deps.directory.delete_registration(&r, v).await.expect("deleted");
            deps.directory
                .release_token(&account, &r.app_name, pushgate_core::domain::Provider::Fcm, "contested", &r.id)
                .await
                .expect("released");
        }
    }
}
