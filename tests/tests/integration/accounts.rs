//! Accounts and API keys managed with `pushgate-admin`: against a running pushgate-local (its
//! admin routes) and, on the emulator tier, against the config table the Lambda functions read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pushgate_api::Function;
use pushgate_core::domain::AuthToken;
use pushgate_fakes::FakeApns;
use pushgate_tests::lambda_rig::{AwsRig, http_api_event};
use pushgate_tests::{TestApp, apn_credential_body, send_json};
use reqwest::StatusCode;
use serde_json::Value;

const ADMIN_TOKEN: &str = "an-admin-token-of-at-least-32-characters";

async fn app_with_admin() -> TestApp {
    TestApp::spawn_with(FakeApns::start_h2c().await, |c| c.api.admin_token = Some(AuthToken::new(ADMIN_TOKEN).hash()))
        .await
}

/// Runs `pushgate-admin args…` with `target` flags; its exit code and its JSON output.
async fn admin_cli(target: &[&str], args: &[&str]) -> (i32, Value) {
    let mut out = Vec::new();
    let argv = std::iter::once("pushgate-admin").chain(target.iter().copied()).chain(args.iter().copied());
    let code = pushgate_admin::main_with(argv, &mut out).await;
    let json = if out.is_empty() { Value::Null } else { serde_json::from_slice(&out).expect("the output is JSON") };
    (code, json)
}

async fn admin(app: &TestApp, args: &[&str]) -> Value {
    let (code, json) = admin_cli(&["--url", &app.base, "--admin-token", ADMIN_TOKEN], args).await;
    assert_eq!(code, 0, "pushgate-admin {args:?} succeeds");
    json
}

/// GET `path` on the app as `user:secret`.
async fn get_as(app: &TestApp, user: &str, secret: &str, path: &str) -> (StatusCode, Value) {
    send_json(reqwest::Client::new().get(format!("{}{path}", app.base)).basic_auth(user, Some(secret))).await
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("`{field}` in {value}")).to_owned()
}

#[tokio::test]
async fn an_account_created_with_pushgate_admin_and_its_api_key_work_end_to_end_and_see_only_that_account() {
    let app = app_with_admin().await;
    let created = admin(&app, &["accounts", "create"]).await;
    let (sid, token) = (text(&created, "accountSid"), text(&created, "authToken"));
    assert!(sid.starts_with("AC") && token.len() == 64);

    let credential = send_json(
        reqwest::Client::new()
            .post(format!("{}/v1/PushNotifications/Credentials", app.base))
            .basic_auth(&sid, Some(&token))
            .json(&apn_credential_body(&app.apns_key, "second_app")),
    )
    .await;
    assert_eq!(credential.0, StatusCode::ACCEPTED, "{}", credential.1);
    let credential_id = text(&credential.1, "resourceId");

    let key = admin(&app, &["keys", "create", &sid, "--name", "ci deploys"]).await;
    let (key_sid, secret) = (text(&key, "sid"), text(&key, "secret"));
    assert!(key_sid.starts_with("SK"));
    assert_eq!(text(&key, "accountSid"), sid);
    let (status, listed) = get_as(&app, &key_sid, &secret, "/v1/PushNotifications/Credentials").await;
    assert_eq!(status, StatusCode::OK, "the key acts for its account: {listed}");
    assert!(listed.to_string().contains(&credential_id));
    let (status, first) = app.get("/v1/PushNotifications/Credentials").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!first.to_string().contains(&credential_id), "the first account does not see the second's credential");

    let keys = admin(&app, &["keys", "list", &sid]).await;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(keys["keys"][0]["friendlyName"], "ci deploys");
    assert!(!keys.to_string().contains(&secret), "a listing never shows a secret");
    let shown = admin(&app, &["accounts", "show", &sid]).await;
    assert_eq!(shown["apiKeys"], 1);
    assert!(!shown.to_string().contains(&token));
}

#[tokio::test]
async fn a_revoked_api_key_gets_401_at_once_and_a_wrong_secret_never_works() {
    let app = app_with_admin().await;
    let sid = text(&admin(&app, &["accounts", "create"]).await, "accountSid");
    let key = admin(&app, &["keys", "create", &sid]).await;
    let (key_sid, secret) = (text(&key, "sid"), text(&key, "secret"));
    assert_eq!(get_as(&app, &key_sid, &secret, "/v1/PushNotifications/Operations").await.0, StatusCode::OK);
    assert_eq!(
        get_as(&app, &key_sid, "not-the-secret", "/v1/PushNotifications/Operations").await.0,
        StatusCode::UNAUTHORIZED
    );

    let revoked = admin(&app, &["keys", "revoke", &sid, &key_sid]).await;
    assert_eq!(revoked["revoked"], true);
    let (status, body) = get_as(&app, &key_sid, &secret, "/v1/PushNotifications/Operations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], 20003);
    let (code, _) =
        admin_cli(&["--url", &app.base, "--admin-token", ADMIN_TOKEN], &["keys", "revoke", &sid, &key_sid]).await;
    assert_eq!(code, 1, "revoking twice says the key is not found");
}

#[tokio::test]
async fn a_rotated_auth_token_keeps_working_for_its_grace_period_and_the_new_one_works_at_once() {
    let app = app_with_admin().await;
    let created = admin(&app, &["accounts", "create"]).await;
    let (sid, first) = (text(&created, "accountSid"), text(&created, "authToken"));
    let path = "/v1/PushNotifications/Operations";

    let rotated = admin(&app, &["accounts", "rotate-token", &sid, "--grace", "1h"]).await;
    let second = text(&rotated, "authToken");
    assert_ne!(second, first);
    assert!(rotated["previousTokenValidUntil"].is_string());
    assert_eq!(get_as(&app, &sid, &first, path).await.0, StatusCode::OK, "the old token, within its grace period");
    assert_eq!(get_as(&app, &sid, &second, path).await.0, StatusCode::OK, "the new token");

    let third = text(&admin(&app, &["accounts", "rotate-token", &sid, "--grace", "0"]).await, "authToken");
    assert_eq!(get_as(&app, &sid, &second, path).await.0, StatusCode::UNAUTHORIZED, "no grace: stopped at once");
    assert_eq!(
        get_as(&app, &sid, &first, path).await.0,
        StatusCode::UNAUTHORIZED,
        "only the last replaced token has grace"
    );
    assert_eq!(get_as(&app, &sid, &third, path).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_deleted_account_stops_authenticating_with_its_token_and_its_keys() {
    let app = app_with_admin().await;
    let created = admin(&app, &["accounts", "create"]).await;
    let (sid, token) = (text(&created, "accountSid"), text(&created, "authToken"));
    let key = admin(&app, &["keys", "create", &sid]).await;
    admin(&app, &["accounts", "delete", &sid]).await;
    let path = "/v1/PushNotifications/Operations";
    assert_eq!(get_as(&app, &sid, &token, path).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&app, &text(&key, "sid"), &text(&key, "secret"), path).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(path).await.0, StatusCode::OK, "other accounts are untouched");
}

#[tokio::test]
async fn admin_routes_refuse_a_wrong_admin_token_and_do_not_exist_without_one() {
    let app = app_with_admin().await;
    let client = reqwest::Client::new();
    let url = format!("{}/admin/v1/Accounts", app.base);
    let wrong =
        client.post(&url).bearer_auth("a-wrong-admin-token-of-32-characters-or-more").send().await.expect("answer");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let account_auth =
        client.post(&url).basic_auth(app.account.to_string(), Some(&app.token)).send().await.expect("answer");
    assert_eq!(account_auth.status(), StatusCode::UNAUTHORIZED, "an account's credentials are not the admin token");
    let (code, _) = admin_cli(
        &["--url", &app.base, "--admin-token", "a-wrong-admin-token-of-32-characters"],
        &["accounts", "create"],
    )
    .await;
    assert_eq!(code, 1);

    let plain = TestApp::spawn().await;
    let off =
        client.post(format!("{}/admin/v1/Accounts", plain.base)).bearer_auth(ADMIN_TOKEN).send().await.expect("answer");
    assert_eq!(off.status(), StatusCode::NOT_FOUND, "no admin token configured: no admin routes");
}

#[tokio::test]
async fn pushgate_admin_refuses_a_command_line_without_exactly_one_target() {
    let (code, out) = admin_cli(&[], &["accounts", "create"]).await;
    assert_eq!((code, out), (1, Value::Null), "no target");
    let both = ["--url", "http://127.0.0.1:9", "--admin-token", ADMIN_TOKEN, "--config-table", "t"];
    assert_eq!(admin_cli(&both, &["accounts", "create"]).await.0, 1, "two targets");
    assert_eq!(admin_cli(&["--url", "http://127.0.0.1:9"], &["accounts", "create"]).await.0, 1, "no admin token");
}

/// Emulator tier: `pushgate-admin --config-table` writes the table the Lambda functions read, so
/// a deployment needs no account parameter: the account, its key and its rotation take effect
/// in the functions at once.
#[tokio::test]
async fn pushgate_admin_on_the_config_table_creates_accounts_and_keys_the_lambda_functions_accept() {
    let Some(rig) = AwsRig::new("admin", |_| {}).await else { return };
    let table = rig.config.config_table.clone();
    let target = ["--config-table", table.as_str()];
    let (code, created) = admin_cli(&target, &["accounts", "create"]).await;
    assert_eq!(code, 0);
    let (sid, token) = (text(&created, "accountSid"), text(&created, "authToken"));
    let (code, key) = admin_cli(&target, &["keys", "create", &sid, "--name", "lambda"]).await;
    assert_eq!(code, 0);

    let list = |user: String, secret: String| {
        let base = http_api_event("GET", "/v1/PushNotifications/Operations", "$default", &rig.caller, None);
        let auth = format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")));
        let event = base.replace(&rig.caller.authorization(), &auth);
        let rig = &rig;
        async move { rig.invoke(Function::Operations, &event).await.0 }
    };
    assert_eq!(list(sid.clone(), token.clone()).await, StatusCode::OK, "the new account");
    assert_eq!(list(text(&key, "sid"), text(&key, "secret")).await, StatusCode::OK, "its API key");

    let (code, _) = admin_cli(&target, &["keys", "revoke", &sid, &text(&key, "sid")]).await;
    assert_eq!(code, 0);
    assert_eq!(list(text(&key, "sid"), text(&key, "secret")).await, StatusCode::UNAUTHORIZED, "revoked at once");

    let (code, rotated) = admin_cli(&target, &["accounts", "rotate-token", &sid, "--grace", "10m"]).await;
    assert_eq!(code, 0);
    assert_eq!(list(sid.clone(), token.clone()).await, StatusCode::OK, "the old token within its grace");
    assert_eq!(list(sid.clone(), text(&rotated, "authToken")).await, StatusCode::OK, "the new token");
    let (code, limits) = admin_cli(&target, &["limits", "set", &sid, "--requests-per-second", "50"]).await;
    assert_eq!((code, limits["requestsPerSecond"].as_u64()), (0, Some(50)));
    let (code, _) = admin_cli(&target, &["accounts", "delete", &sid]).await;
    assert_eq!(code, 0);
    assert_eq!(list(sid, text(&rotated, "authToken")).await, StatusCode::UNAUTHORIZED, "deleted");
}

#[tokio::test]
async fn an_api_key_name_with_a_control_character_or_over_64_characters_is_refused_and_creates_nothing() {
    let app = app_with_admin().await;
    let sid = text(&admin(&app, &["accounts", "create"]).await, "accountSid");
    let target = ["--url", app.base.as_str(), "--admin-token", ADMIN_TOKEN];
    for name in ["bell\u{7}".to_owned(), "line\nbreak".to_owned(), "n".repeat(65)] {
        let (code, _) = admin_cli(&target, &["keys", "create", &sid, "--name", &name]).await;
        assert_eq!(code, 1, "{name:?}");
    }
    assert_eq!(admin(&app, &["keys", "list", &sid]).await["keys"].as_array().map(Vec::len), Some(0));
}
