//! The fake FCM checks OAuth assertions and messages the way Google does.

use std::time::Duration;

use pushgate_fakes::keys::{FcmServiceAccount, fcm_service_account};
use pushgate_fakes::{FakeFcm, FcmReply};
use serde_json::{Value, json};

const PROJECT: &str = "pushgate-demo";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const REGISTRATION_TOKEN: &str = "fcm-registration-token-1";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn assertion_with(private_key_pem: &str, claims: &Value) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&header, claims, &key).expect("signed JWT")
}

fn claims(account: &FcmServiceAccount) -> Value {
    let iat = now();
    json!({
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": iat,
        "exp": iat + 3600,
    })
}

async fn token_request(client: &reqwest::Client, fake: &FakeFcm, assertion: &str) -> (u16, Value) {
    let body = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
    let response = client
        .post(fake.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

async fn setup() -> (FakeFcm, FcmServiceAccount, reqwest::Client, String) {
    let fake = FakeFcm::start_h2c().await;
    let account = fcm_service_account(PROJECT, &fake.token_uri());
    fake.register_service_account(&account);
    let client = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let assertion = assertion_with(&account.private_key_pem, &claims(&account));
    let (status, body) = token_request(&client, &fake, &assertion).await;
    assert_eq!(status, 200, "{body}");
    let access_token = body["access_token"].as_str().expect("access_token").to_owned();
    (fake, account, client, access_token)
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn send(client: &reqwest::Client, fake: &FakeFcm, project: &str, access_token: &str, body: &Value) -> Answer {
    let response = client
        .post(format!("{}/v1/projects/{project}/messages:send", fake.base_url()))
        .bearer_auth(access_token)
        .json(body)
        .send()
        .await
        .expect("send request sent");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("ASCII").to_owned());
    let body = response.json().await.expect("JSON body");
    Answer { status, retry_after, body }
}

fn message(token: &str) -> Value {
    json!({
        "message": {
            "token": token,
            "notification": { "title": "Hi", "body": "There" },
            "data": { "k": "v" },
            "android": { "priority": "HIGH", "ttl": "3600s" },
        }
    })
}

#[tokio::test]
async fn fcm_mints_an_access_token_then_accepts_a_message() {
    let (fake, _account, client, access_token) = setup().await;
    assert_eq!(fake.oauth_token_requests(), 1);

    let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body["name"].as_str().is_some_and(|name| name.starts_with(&format!("projects/{PROJECT}/messages/")))
    );
    assert_eq!(fake.delivered_count(), 1);
    let delivered = fake.delivered();
    assert_eq!(delivered[0].project_id, PROJECT);
    assert_eq!(delivered[0].device_token, REGISTRATION_TOKEN);
    assert_eq!(delivered[0].message["data"]["k"], "v");
    assert_eq!(delivered[0].http_version, "HTTP/2.0");
    assert_eq!(delivered[0].headers["authorization"], format!("Bearer {access_token}"));
}

#[tokio::test]
async fn fcm_also_speaks_http1() {
    let (fake, _account, _h2, access_token) = setup().await;
    let client = reqwest::Client::builder().http1_only().build().expect("client");
    let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(fake.delivered()[0].http_version, "HTTP/1.1");
}

#[tokio::test]
async fn fcm_rejects_a_wrong_bearer_token_with_401() {
    let (fake, _account, client, _access_token) = setup().await;
    let answer = send(&client, &fake, PROJECT, "ya29.made-up", &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(answer.body["error"]["code"], 401);
    assert_eq!(fake.received()[0].error_status.as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(fake.delivered_count(), 0);
}

#[tokio::test]
async fn fcm_rejects_an_access_token_for_another_project_with_401() {
    let (fake, _account, client, access_token) = setup().await;
    let answer = send(&client, &fake, "someone-else", &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(fake.received()[0].project_id, "someone-else");
}

#[tokio::test]
async fn fcm_token_endpoint_rejects_bad_assertions_with_invalid_grant() {
    let (fake, account, client, _access_token) = setup().await;
    let other_key =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).expect("RSA key");
    let stranger = FcmServiceAccount {
        client_email: "stranger@pushgate-demo.iam.gserviceaccount.com".to_owned(),
        ..account.clone()
    };

    let mut wrong_aud = claims(&account);
    wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
    let mut wrong_scope = claims(&account);
    wrong_scope["scope"] = json!("https://www.googleapis.com/auth/userinfo.email");
    let mut too_long = claims(&account);
    too_long["exp"] = json!(now() + 7200);
    let mut expired = claims(&account);
    expired["iat"] = json!(now() - 4000);
    expired["exp"] = json!(now() - 400);
    let mut no_exp = claims(&account);
    no_exp.as_object_mut().expect("object").remove("exp");

    let cases = [
        ("signed by another key", assertion_with(&other_key.serialize_pem(), &claims(&account))),
        ("unknown issuer", assertion_with(&account.private_key_pem, &claims(&stranger))),
        ("wrong audience", assertion_with(&account.private_key_pem, &wrong_aud)),
        ("wrong scope", assertion_with(&account.private_key_pem, &wrong_scope)),
        ("lifetime over an hour", assertion_with(&account.private_key_pem, &too_long)),
        ("expired", assertion_with(&account.private_key_pem, &expired)),
        ("no exp", assertion_with(&account.private_key_pem, &no_exp)),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (what, assertion) in cases {
        let (status, body) = token_request(&client, &fake, &assertion).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
        assert!(body["error_description"].is_string());
    }
    assert_eq!(fake.oauth_token_requests(), 1);

    let response = client
        .post(fake.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn fcm_returns_scripted_quota_exceeded_with_retry_after() {
    let (fake, _account, client, access_token) = setup().await;
    fake.script(REGISTRATION_TOKEN, vec![FcmReply::QuotaExceeded { retry_after_secs: Some(30) }]);
    let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.retry_after.as_deref(), Some("30"));
    assert_eq!(answer.body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(answer.body["error"]["details"][0]["@type"], "type.googleapis.com/google.firebase.fcm.v1.FcmError");
    assert_eq!(answer.body["error"]["details"][0]["errorCode"], "QUOTA_EXCEEDED");

    let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 200, "script consumed");
    assert_eq!(fake.received().iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 200]);
}

#[tokio::test]
async fn fcm_returns_each_scripted_error_in_googles_shape() {
    let (fake, _account, client, access_token) = setup().await;
    fake.script(
        REGISTRATION_TOKEN,
        vec![
            FcmReply::Unregistered,
            FcmReply::InvalidToken,
            FcmReply::Unavailable,
            FcmReply::Internal,
            FcmReply::Delay(Duration::from_millis(200)),
        ],
    );
    for (status, google_status, error_code) in [
        (404, "NOT_FOUND", "UNREGISTERED"),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        (503, "UNAVAILABLE", "UNAVAILABLE"),
        (500, "INTERNAL", "INTERNAL"),
    ] {
        let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.body["error"]["code"], status);
        assert_eq!(answer.body["error"]["status"], google_status);
        assert_eq!(answer.body["error"]["details"][0]["errorCode"], error_code);
    }
    let started = std::time::Instant::now();
    let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.delivered_count(), 1);
}

#[tokio::test]
async fn fcm_rejects_malformed_messages_with_invalid_argument() {
    let (fake, _account, client, access_token) = setup().await;
    let big = "x".repeat(4100);
    let cases = [
        ("no message", json!({ "msg": {} })),
        ("no target", json!({ "message": { "data": {} } })),
        ("two targets", json!({ "message": { "token": "t", "topic": "news" } })),
        ("topic target", json!({ "message": { "topic": "news" } })),
        ("empty token", json!({ "message": { "token": "" } })),
        ("unknown field", json!({ "message": { "token": "t", "priority": "high" } })),
        ("too big", json!({ "message": { "token": "t", "data": { "big": big } } })),
        ("non-string data", json!({ "message": { "token": "t", "data": { "n": 1 } } })),
        ("bad priority", json!({ "message": { "token": "t", "android": { "priority": "URGENT" } } })),
        ("numeric ttl", json!({ "message": { "token": "t", "android": { "ttl": 3600 } } })),
        ("ttl without unit", json!({ "message": { "token": "t", "android": { "ttl": "3600" } } })),
    ];
    for (what, body) in cases {
        let answer = send(&client, &fake, PROJECT, &access_token, &body).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert_eq!(answer.body["error"]["status"], "INVALID_ARGUMENT", "{what}");
    }
    assert_eq!(fake.delivered_count(), 0);
    assert_eq!(fake.received().len(), 11);

    let ok = json!({ "message": { "token": "t", "android": { "priority": "normal", "ttl": "1.5s" } } });
    let answer = send(&client, &fake, PROJECT, &access_token, &ok).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn fcm_reset_clears_records_and_counters_but_keeps_access_tokens() {
    let (fake, _account, client, access_token) = setup().await;
    fake.script(REGISTRATION_TOKEN, vec![FcmReply::Unregistered]);
    fake.reset();
    assert_eq!(fake.oauth_token_requests(), 0);
    let answer = send(&client, &fake, PROJECT, &access_token, &message(REGISTRATION_TOKEN)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(fake.delivered_count(), 1);
}

#[tokio::test]
async fn fcm_service_account_json_names_the_fake_token_uri() {
    let fake = FakeFcm::start_h2c().await;
    let account = fcm_service_account(PROJECT, &fake.token_uri());
    let json: Value = serde_json::from_str(&account.to_json()).expect("JSON");
    assert_eq!(json["token_uri"], format!("{}/token", fake.base_url()));
    assert_eq!(json["client_email"], format!("pushgate-test@{PROJECT}.iam.gserviceaccount.com"));
}
