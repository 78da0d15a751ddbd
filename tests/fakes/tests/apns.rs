//! The fake APNs checks requests the way Apple does.

use std::time::Duration;

use pushgate_fakes::keys::{ApnsSigningKey, apns_client_certificate, apns_signing_key};
use pushgate_fakes::{ApnsReply, FakeApns};
use serde_json::{Value, json};

const TOPIC: &str = "com.example.pushgate";

fn device_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn provider_token(key: &ApnsSigningKey, iat: i64) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.key_id.clone());
    let claims = json!({ "iss": key.team_id, "iat": iat });
    let encoding_key = jsonwebtoken::EncodingKey::from_ec_pem(key.private_key_pem.as_bytes()).expect("valid .p8 key");
    jsonwebtoken::encode(&header, &claims, &encoding_key).expect("signed JWT")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().expect("h2c client")
}

fn tls_client(fake: &FakeApns, identity_pem: Option<&str>) -> reqwest::Client {
    let ca = fake.server_ca_pem().expect("TLS fake has a server CA");
    let mut builder =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM"));
    if let Some(pem) = identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("TLS client")
}

/// Sends a push and returns (status, apns-id header, reason, retry-after).
struct Answer {
    status: u16,
    apns_id: Option<String>,
    reason: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn push(
    client: &reqwest::Client,
    fake: &FakeApns,
    token: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = client.post(format!("{}/3/device/{token}", fake.base_url()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.expect("request sent");
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().expect("ASCII header").to_owned());
    let status = response.status().as_u16();
    let apns_id = header("apns-id");
    let retry_after = header("retry-after");
    let bytes = response.bytes().await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, apns_id, reason: body.get("reason").and_then(Value::as_str).map(str::to_owned), retry_after, body }
}

const ALERT: &str = r#"{"aps":{"alert":{"title":"Hi","body":"There"}}}"#;

async fn fake_with_key() -> (FakeApns, ApnsSigningKey, String) {
    let fake = FakeApns::start_h2c().await;
    let key = apns_signing_key("KEYID12345", "TEAMID1234");
    fake.register_signing_key(&key);
    let bearer = format!("bearer {}", provider_token(&key, now()));
    (fake, key, bearer)
}

#[tokio::test]
async fn apns_accepts_a_valid_es256_provider_token() {
    let (fake, key, bearer) = fake_with_key().await;
    let client = h2c_client();
    let answer = push(
        &client,
        &fake,
        &device_token(1),
        &[("authorization", &bearer), ("apns-topic", TOPIC), ("apns-push-type", "alert"), ("apns-priority", "10")],
        ALERT,
    )
    .await;

    assert_eq!(answer.status, 200);
    assert!(answer.apns_id.is_some_and(|id| id.len() == 36));
    assert_eq!(fake.delivered_count(), 1);
    let delivered = fake.delivered();
    assert_eq!(delivered.len(), 1);
    let request = &delivered[0];
    assert_eq!(request.device_token, device_token(1));
    assert_eq!(request.http_version, "HTTP/2.0");
    assert_eq!(request.payload["aps"]["alert"]["title"], "Hi");
    assert_eq!(request.body_len, ALERT.len());
    assert_eq!(request.headers["apns-topic"], TOPIC);
    assert_eq!(request.headers["authorization"], bearer);
    assert_eq!(request.jwt_claims.as_ref().expect("claims")["iss"], key.team_id);
    assert!(!request.client_certificate);
    assert_eq!(fake.distinct_jwts(), 1);
}

#[tokio::test]
async fn apns_echoes_the_apns_id_the_client_chose() {
    let (fake, _key, bearer) = fake_with_key().await;
    let id = "123E4567-E89B-12D3-A456-42665544000A";
    let answer = push(
        &h2c_client(),
        &fake,
        &device_token(1),
        &[("authorization", &bearer), ("apns-topic", TOPIC), ("apns-id", id)],
        ALERT,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.apns_id.as_deref(), Some(id));
}

#[tokio::test]
async fn apns_rejects_a_jwt_signed_by_an_unknown_key() {
    let (fake, key, _bearer) = fake_with_key().await;
    let client = h2c_client();

    // Same kid and team, different private key.
    let impostor =
        ApnsSigningKey { private_key_pem: apns_signing_key(&key.key_id, &key.team_id).private_key_pem, ..key.clone() };
    let forged = format!("bearer {}", provider_token(&impostor, now()));
    let answer =
        push(&client, &fake, &device_token(1), &[("authorization", &forged), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("InvalidProviderToken"));
    assert!(answer.apns_id.is_some());

    // A kid the fake never heard of.
    let stranger = apns_signing_key("UNKNOWN123", &key.team_id);
    let unknown = format!("bearer {}", provider_token(&stranger, now()));
    let answer =
        push(&client, &fake, &device_token(1), &[("authorization", &unknown), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("InvalidProviderToken"));

    // Right key, wrong team.
    let wrong_team = ApnsSigningKey { team_id: "OTHERTEAM1".to_owned(), ..key.clone() };
    let answer = push(
        &client,
        &fake,
        &device_token(1),
        &[("authorization", &format!("bearer {}", provider_token(&wrong_team, now()))), ("apns-topic", TOPIC)],
        ALERT,
    )
    .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("InvalidProviderToken"));

    assert_eq!(fake.delivered_count(), 0);
    let received = fake.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.status == 403 && r.jwt_claims.is_none()));
    assert_eq!(fake.distinct_jwts(), 3);
}

#[tokio::test]
async fn apns_rejects_expired_and_future_provider_tokens() {
    let (fake, key, _bearer) = fake_with_key().await;
    let client = h2c_client();
    let old = format!("bearer {}", provider_token(&key, now() - 3700));
    let answer = push(&client, &fake, &device_token(1), &[("authorization", &old), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("ExpiredProviderToken"));

    let future = format!("bearer {}", provider_token(&key, now() + 600));
    let answer =
        push(&client, &fake, &device_token(1), &[("authorization", &future), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("InvalidProviderToken"));
}

#[tokio::test]
async fn apns_requires_a_provider_token_without_a_client_certificate() {
    let fake = FakeApns::start_h2c().await;
    let answer = push(&h2c_client(), &fake, &device_token(1), &[("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("MissingProviderToken"));

    let answer =
        push(&h2c_client(), &fake, &device_token(1), &[("authorization", "Basic abc"), ("apns-topic", TOPIC)], ALERT)
            .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("InvalidProviderToken"));
}

#[tokio::test]
async fn apns_rejects_a_missing_topic_with_token_auth() {
    let (fake, _key, bearer) = fake_with_key().await;
    let answer = push(&h2c_client(), &fake, &device_token(1), &[("authorization", &bearer)], ALERT).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.reason.as_deref(), Some("MissingTopic"));
    assert_eq!(fake.received()[0].reason.as_deref(), Some("MissingTopic"));
}

/// Device token, request headers, body, expected status and reason.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, String, u16, &'static str);

#[tokio::test]
async fn apns_checks_paths_methods_tokens_headers_and_payloads_like_apple() {
    let (fake, _key, bearer) = fake_with_key().await;
    let client = h2c_client();
    let auth = ("authorization", bearer.as_str());
    let topic = ("apns-topic", TOPIC);
    let good = device_token(7);
    let long_collapse_id = "c".repeat(65);

    let cases: Vec<Case<'_>> = vec![
        ("z".repeat(64), vec![auth, topic], ALERT.to_owned(), 400, "BadDeviceToken"),
        ("ab".repeat(31), vec![auth, topic], ALERT.to_owned(), 400, "BadDeviceToken"),
        (format!("{good}a"), vec![auth, topic], ALERT.to_owned(), 400, "BadDeviceToken"),
        (good.clone(), vec![auth, topic, ("apns-push-type", "banner")], ALERT.to_owned(), 400, "InvalidPushType"),
        (good.clone(), vec![auth, topic, ("apns-priority", "7")], ALERT.to_owned(), 400, "BadPriority"),
        (
            good.clone(),
            vec![auth, topic, ("apns-push-type", "background"), ("apns-priority", "10")],
            r#"{"aps":{"content-available":1}}"#.to_owned(),
            400,
            "BadPriority",
        ),
        (
            good.clone(),
            vec![auth, topic, ("apns-push-type", "background")],
            r#"{"aps":{"content-available":1}}"#.to_owned(),
            400,
            "BadPriority",
        ),
        (good.clone(), vec![auth, topic, ("apns-expiration", "tomorrow")], ALERT.to_owned(), 400, "BadExpirationDate"),
        (
            good.clone(),
            vec![auth, topic, ("apns-collapse-id", &long_collapse_id)],
            ALERT.to_owned(),
            400,
            "BadCollapseId",
        ),
        (good.clone(), vec![auth, topic, ("apns-id", "not-a-uuid")], ALERT.to_owned(), 400, "BadMessageId"),
        (good.clone(), vec![auth, topic], String::new(), 400, "PayloadEmpty"),
        (good.clone(), vec![auth, topic], "not json".to_owned(), 400, "BadPayload"),
        (good.clone(), vec![auth, topic], r#"{"alert":"no aps"}"#.to_owned(), 400, "BadPayload"),
        (
            good.clone(),
            vec![auth, topic],
            format!(r#"{{"aps":{{"alert":"{}"}}}}"#, "x".repeat(4096)),
            413,
            "PayloadTooLarge",
        ),
    ];
    for (token, headers, body, status, reason) in cases {
        let answer = push(&client, &fake, &token, &headers, body).await;
        assert_eq!(
            (answer.status, answer.reason.as_deref()),
            (status, Some(reason)),
            "token {token}, headers {headers:?}"
        );
        assert!(answer.apns_id.is_some());
    }

    // Background with priority 5 is fine, and so is a 5000-byte VoIP push.
    let answer = push(
        &client,
        &fake,
        &good,
        &[auth, topic, ("apns-push-type", "background"), ("apns-priority", "5")],
        r#"{"aps":{"content-available":1}}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    let voip = format!(r#"{{"aps":{{}},"data":"{}"}}"#, "x".repeat(4900));
    let answer = push(
        &client,
        &fake,
        &good,
        &[auth, ("apns-topic", "com.example.pushgate.voip"), ("apns-push-type", "voip")],
        voip,
    )
    .await;
    assert_eq!(answer.status, 200);

    let response = client.post(format!("{}/3/devices/{good}", fake.base_url())).body(ALERT).send().await.expect("sent");
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("apns-id"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "BadPath");

    let response = client.get(format!("{}/3/device/{good}", fake.base_url())).send().await.expect("sent");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "MethodNotAllowed");
}

#[tokio::test]
async fn apns_only_speaks_http2() {
    let (fake, _key, bearer) = fake_with_key().await;
    let client = reqwest::Client::builder().http1_only().build().expect("client");
    let answer =
        push(&client, &fake, &device_token(1), &[("authorization", &bearer), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 505);
    assert_eq!(fake.received()[0].http_version, "HTTP/1.1");
    assert_eq!(fake.delivered_count(), 0);
}

#[tokio::test]
async fn apns_returns_a_scripted_unregistered_then_ok() {
    let (fake, _key, bearer) = fake_with_key().await;
    let client = h2c_client();
    let token = device_token(9);
    fake.script(&token.to_uppercase(), vec![ApnsReply::Unregistered]);
    let headers = [("authorization", bearer.as_str()), ("apns-topic", TOPIC)];

    let answer = push(&client, &fake, &token, &headers, ALERT).await;
    assert_eq!(answer.status, 410);
    assert_eq!(answer.reason.as_deref(), Some("Unregistered"));
    assert!(answer.body["timestamp"].as_i64().is_some_and(|ms| ms > 1_600_000_000_000));

    let answer = push(&client, &fake, &token, &headers, ALERT).await;
    assert_eq!(answer.status, 200);

    let received = fake.received();
    assert_eq!(received.iter().map(|r| r.status).collect::<Vec<_>>(), vec![410, 200]);
    assert_eq!(fake.delivered().len(), 1);
}

#[tokio::test]
async fn apns_returns_scripted_errors_and_delays_in_order() {
    let (fake, _key, bearer) = fake_with_key().await;
    let client = h2c_client();
    let token = device_token(3);
    fake.script(
        &token,
        vec![
            ApnsReply::TooManyRequests { retry_after_secs: Some(7) },
            ApnsReply::InternalServerError,
            ApnsReply::ServiceUnavailable,
            ApnsReply::BadDeviceToken,
            ApnsReply::Delay(Duration::from_millis(200)),
        ],
    );
    let headers = [("authorization", bearer.as_str()), ("apns-topic", TOPIC)];

    let answer = push(&client, &fake, &token, &headers, ALERT).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.reason.as_deref(), Some("TooManyRequests"));
    assert_eq!(answer.retry_after.as_deref(), Some("7"));

    for (status, reason) in [(500, "InternalServerError"), (503, "ServiceUnavailable"), (400, "BadDeviceToken")] {
        let answer = push(&client, &fake, &token, &headers, ALERT).await;
        assert_eq!((answer.status, answer.reason.as_deref()), (status, Some(reason)));
    }

    let started = std::time::Instant::now();
    let answer = push(&client, &fake, &token, &headers, ALERT).await;
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.delivered_count(), 1);
}

#[tokio::test]
async fn apns_counts_distinct_provider_tokens_and_reset_forgets_everything_but_keys() {
    let (fake, key, bearer) = fake_with_key().await;
    let client = h2c_client();
    let other = format!("bearer {}", provider_token(&key, now() - 10));
    for auth in [&bearer, &bearer, &other, &bearer] {
        let answer =
            push(&client, &fake, &device_token(1), &[("authorization", auth), ("apns-topic", TOPIC)], ALERT).await;
        assert_eq!(answer.status, 200);
    }
    assert_eq!(fake.distinct_jwts(), 2);
    assert_eq!(fake.delivered_count(), 4);

    fake.script(&device_token(1), vec![ApnsReply::Unregistered]);
    fake.reset();
    assert_eq!(fake.distinct_jwts(), 0);
    assert_eq!(fake.delivered_count(), 0);
    assert!(fake.received().is_empty());

    let answer =
        push(&client, &fake, &device_token(1), &[("authorization", &bearer), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 200, "script cleared, key still registered");
}

#[tokio::test]
async fn apns_accepts_a_client_certificate_without_a_jwt_over_tls() {
    let fake = FakeApns::start_tls().await;
    assert!(fake.base_url().starts_with("https://localhost:"));
    let certificate = fake.issue_client_certificate(TOPIC);
    let client = tls_client(&fake, Some(&certificate.identity_pem()));

    let answer = push(&client, &fake, &device_token(2), &[], ALERT).await;
    assert_eq!(answer.status, 200, "{:?}", answer.reason);
    let request = &fake.delivered()[0];
    assert!(request.client_certificate);
    assert!(request.jwt_claims.is_none());
    assert_eq!(request.http_version, "HTTP/2.0");

    // Certificates from the free function are signed by the same CA.
    let other = apns_client_certificate("com.example.other");
    let client = tls_client(&fake, Some(&other.identity_pem()));
    let answer = push(&client, &fake, &device_token(2), &[("apns-topic", "com.example.other")], ALERT).await;
    assert_eq!(answer.status, 200);
    assert_eq!(fake.delivered_count(), 2);
}

#[tokio::test]
async fn apns_over_tls_without_a_client_certificate_needs_a_provider_token() {
    let fake = FakeApns::start_tls().await;
    let key = apns_signing_key("TLSKEY1234", "TEAMID1234");
    fake.register_signing_key(&key);
    let client = tls_client(&fake, None);

    let answer = push(&client, &fake, &device_token(4), &[("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.reason.as_deref(), Some("MissingProviderToken"));

    let bearer = format!("bearer {}", provider_token(&key, now()));
    let answer =
        push(&client, &fake, &device_token(4), &[("authorization", &bearer), ("apns-topic", TOPIC)], ALERT).await;
    assert_eq!(answer.status, 200);
    assert!(!fake.delivered()[0].client_certificate);
}

#[tokio::test]
async fn apns_serves_many_concurrent_streams_on_one_connection() {
    let (fake, _key, bearer) = fake_with_key().await;
    let client = h2c_client();
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let client = client.clone();
        let url = format!("{}/3/device/{}", fake.base_url(), device_token((i % 250) as u8));
        let bearer = bearer.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("authorization", bearer)
                .header("apns-topic", TOPIC)
                .body(ALERT)
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200);
    }
    assert_eq!(fake.delivered_count(), 500);
    assert_eq!(fake.distinct_jwts(), 1);
}
