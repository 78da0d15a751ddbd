//! Both fakes on one port (`start_combined`) and the `pushgate-fake-providers`
//! tool built on it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pushgate_fakes::keys::{ApnsSigningKey, apns_signing_key, fcm_service_account};
use pushgate_fakes::tool::{self, FakeProviders, Options};
use pushgate_fakes::{FcmEvent, start_combined};
use serde_json::{Value, json};

const ALERT: &str = r#"{"aps":{"alert":{"title":"Hi Ada","body":"Gate 12"}}}"#;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn provider_token(key_id: &str, team_id: &str, private_key_pem: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key_id.to_owned());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(private_key_pem.as_bytes()).expect("a .p8 key");
    jsonwebtoken::encode(&header, &json!({ "iss": team_id, "iat": now() }), &key).expect("signed JWT")
}

fn assertion(client_email: &str, token_uri: &str, private_key_pem: &str) -> String {
    let claims = json!({
        "iss": client_email,
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": token_uri,
        "iat": now(),
        "exp": now() + 3600,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).expect("an RSA key");
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).expect("signed")
}

fn h2c() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().expect("h2c client")
}

/// Sends a push to `{base}/3/device/{token}`; returns the status and Apple's reason.
async fn push(client: &reqwest::Client, base: &str, token: &str, bearer: &str) -> (u16, Option<String>) {
    let response = client
        .post(format!("{base}/3/device/{token}"))
        .header("authorization", format!("bearer {bearer}"))
        .header("apns-topic", "com.example.app")
        .header("apns-push-type", "alert")
        .body(ALERT)
        .send()
        .await
        .expect("push sent");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body.get("reason").and_then(Value::as_str).map(str::to_owned))
}

/// Gets an access token at `token_uri` and sends one message to `device_token`; returns the
/// send's status and body.
async fn fcm_send(
    client: &reqwest::Client,
    base: &str,
    token_uri: &str,
    project: &str,
    client_email: &str,
    private_key_pem: &str,
    device_token: &str,
) -> (u16, Value) {
    let grant = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
        assertion(client_email, token_uri, private_key_pem)
    );
    let response = client
        .post(token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(grant)
        .send()
        .await
        .expect("token request sent");
    assert_eq!(response.status().as_u16(), 200, "the OAuth endpoint minted a token");
    let minted: Value = response.json().await.expect("JSON");
    let access_token = minted["access_token"].as_str().expect("access_token");
    let response = client
        .post(format!("{base}/v1/projects/{project}/messages:send"))
        .bearer_auth(access_token)
        .json(&json!({"message": {"token": device_token, "notification": {"title": "Hi Bob"}}}))
        .send()
        .await
        .expect("send request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn the_combined_server_answers_apns_and_fcm_requests_on_one_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    let (apns, fcm) = start_combined(listener).await;
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(apns.base_url(), base);
    assert_eq!(fcm.base_url(), base);
    assert_eq!(fcm.token_uri(), format!("{base}/token"));
    let key: ApnsSigningKey = apns_signing_key("KEYID12345", "TEAMID1234");
    apns.register_signing_key(&key);
    let account = fcm_service_account("combined", &fcm.token_uri());
    fcm.register_service_account(&account);
    let mut apns_events = apns.subscribe();
    let mut fcm_events = fcm.subscribe();

    // APNs, over h2c with a provider token the fake verifies; refusals are still Apple's.
    let client = h2c();
    let bearer = provider_token(&key.key_id, &key.team_id, &key.private_key_pem);
    let token = format!("{:064x}", 1);
    assert_eq!(push(&client, &base, &token, &bearer).await, (200, None));
    assert_eq!(push(&client, &base, "abc", &bearer).await, (400, Some("BadDeviceToken".to_owned())));
    let forged = provider_token(&key.key_id, &key.team_id, &apns_signing_key("X", "Y").private_key_pem);
    assert_eq!(push(&client, &base, &token, &forged).await, (403, Some("InvalidProviderToken".to_owned())));
    let http1 = reqwest::Client::new();
    assert_eq!(push(&http1, &base, &token, &bearer).await.0, 505, "APNs is HTTP/2 only, on the shared port too");

    // FCM and its OAuth endpoint, over HTTP/2 and HTTP/1.1.
    for client in [&client, &http1] {
        let (status, body) = fcm_send(
            client,
            &base,
            &fcm.token_uri(),
            "combined",
            &account.client_email,
            &account.private_key_pem,
            "fcm-token-1",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["name"].as_str().is_some_and(|n| n.starts_with("projects/combined/messages/")), "{body}");
    }

    // Anything else: a 404 that names the routes.
    let response = client.get(format!("{base}/")).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 404);
    assert!(response.text().await.expect("text").contains("/3/device/{token}"));

    assert_eq!(apns.delivered_count(), 1);
    assert_eq!(apns.received().len(), 4);
    assert_eq!(fcm.delivered_count(), 2);
    assert_eq!(fcm.oauth_token_requests(), 2);
    let first = apns_events.try_recv().expect("each answered push is reported");
    assert_eq!((first.device_token.as_str(), first.status), (token.as_str(), 200));
    let events: Vec<FcmEvent> = std::iter::from_fn(|| fcm_events.try_recv().ok()).collect();
    assert!(matches!(&events[..], [FcmEvent::Token(t), FcmEvent::Send(s), FcmEvent::Token(_), FcmEvent::Send(_)]
        if t.status == 200 && t.client_email.as_deref() == Some(account.client_email.as_str()) && s.status == 200));
}

/// A `Write` the test reads while the tool writes.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }

    /// Waits up to 10 s for the output to contain `needle`.
    async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..1000 {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {needle:?} in the output:\n{}", self.text());
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pushgate-fakes-{name}-{}-{}", std::process::id(), now()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("the file was written")).expect("the file is JSON")
}

#[tokio::test]
async fn the_tool_writes_both_credentials_prints_the_environment_and_a_line_per_request() {
    let out_dir = scratch_dir("tool").join("nested");
    let options = Options {
        listen: "127.0.0.1:0".parse().expect("an address"),
        out_dir: out_dir.clone(),
        pushgate_url: "http://127.0.0.1:3000".to_owned(),
    };
    let output = Output::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut writer = output.clone();
    let tool = tokio::spawn(async move {
        tool::run(&options, &mut writer, async {
            let _ = stopped.await;
        })
        .await
    });
    let text = output.wait_for("Requests received").await;

    // The environment for pushgate-local, with the port the tool listens on.
    let base = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("export APNS_ENDPOINT="))
        .expect("an APNS_ENDPOINT line")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"), "{base}");
    assert!(text.contains(&format!("FCM_ENDPOINT={base}\n")), "{text}");
    assert!(text.contains(&format!("PUSHGATE_FCM_TOKEN_URIS={base}/token\n")), "{text}");
    // The two commands that create the credentials.
    for file in ["apn-credential.json", "fcm-credential.json"] {
        let curl = format!(
            "curl -u \"$PUSHGATE_ACCOUNT_ID:$PUSHGATE_AUTH_TOKEN\" -H 'Content-Type: application/json' --data @{} \
             http://127.0.0.1:3000/v1/PushNotifications/Credentials",
            out_dir.join(file).display()
        );
        assert!(text.contains(&curl), "{curl}\nin\n{text}");
    }

    // The APNs credential: a token-auth key the fake accepts.
    let apn = read_json(&out_dir.join("apn-credential.json"));
    assert_eq!(apn["credentialType"], "APN");
    assert_eq!(apn["appName"], "demo");
    assert_eq!(apn["content"]["bundleId"], "com.example.app");
    let key_id = apn["content"]["keyId"].as_str().expect("keyId");
    let team_id = apn["content"]["teamId"].as_str().expect("teamId");
    assert_eq!((key_id.len(), team_id.len()), (10, 10), "Apple's ids are 10 characters");
    let p8 = String::from_utf8(STANDARD.decode(apn["content"]["privateKey"].as_str().expect("key")).expect("base64"))
        .expect("PEM");
    assert!(p8.starts_with("-----BEGIN PRIVATE KEY-----"), "{p8}");

    // The FCM credential: a service account whose token_uri is the fake's.
    let fcm = read_json(&out_dir.join("fcm-credential.json"));
    assert_eq!(fcm["credentialType"], "FCM");
    assert_eq!(fcm["appName"], "demo");
    let account: Value = serde_json::from_slice(
        &STANDARD.decode(fcm["content"]["privateKey"].as_str().expect("privateKey")).expect("base64"),
    )
    .expect("service-account JSON");
    assert_eq!(account["type"], "service_account");
    assert_eq!(account["token_uri"], format!("{base}/token"));
    let project = account["project_id"].as_str().expect("project_id");

    // Requests signed with what the files hold are delivered, and each is printed.
    let client = h2c();
    let token = format!("{:064x}", 1);
    assert_eq!(push(&client, &base, &token, &provider_token(key_id, team_id, &p8)).await, (200, None));
    output.wait_for("APNs   000000…0001  200  \"Hi Ada\"").await;
    assert_eq!(push(&client, &base, "abc", "not.a.jwt").await.0, 400);
    output.wait_for("APNs   abc          400  BadDeviceToken").await;
    let (status, body) = fcm_send(
        &client,
        &base,
        account["token_uri"].as_str().expect("token_uri"),
        project,
        account["client_email"].as_str().expect("client_email"),
        account["private_key"].as_str().expect("private_key"),
        "fcm-demo-token-1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    output
        .wait_for(&format!("OAuth  {} 200  access token issued", account["client_email"].as_str().expect("email")))
        .await;
    output.wait_for("FCM    fcm-de…en-1  200  \"Hi Bob\"").await;

    stop.send(()).expect("the tool is running");
    tool.await.expect("the tool task").expect("the tool stops cleanly");
    assert!(output.text().ends_with("pushgate-fake-providers: stopped\n"), "{}", output.text());
    let _ = std::fs::remove_dir_all(out_dir.parent().expect("scratch dir"));
}

#[tokio::test]
async fn a_restarted_tool_keeps_the_apns_key_so_credentials_created_before_stay_valid() {
    let out_dir = scratch_dir("restart");
    let listener = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port") };
    let first = FakeProviders::start(listener().await, &out_dir).await.expect("started");
    let written = read_json(&first.apn_credential_file);
    let second = FakeProviders::start(listener().await, &out_dir).await.expect("restarted");
    assert_eq!(second.apns_key.public_key_pem, first.apns_key.public_key_pem);
    assert_eq!(read_json(&second.apn_credential_file), written);

    // A token signed with the key of the first run is accepted by the second.
    let bearer = provider_token(&first.apns_key.key_id, &first.apns_key.team_id, &first.apns_key.private_key_pem);
    assert_eq!(push(&h2c(), &second.base_url(), &format!("{:064x}", 2), &bearer).await, (200, None));

    // A file that is not the tool's own gets a new key.
    std::fs::write(&first.apn_credential_file, "{}").expect("overwritten");
    let third = FakeProviders::start(listener().await, &out_dir).await.expect("started again");
    assert_ne!(third.apns_key.public_key_pem, first.apns_key.public_key_pem);
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[tokio::test]
async fn the_tool_reports_an_address_it_cannot_listen_on() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let options = Options {
        listen: taken.local_addr().expect("bound"),
        out_dir: scratch_dir("taken"),
        pushgate_url: "http://127.0.0.1:3000".to_owned(),
    };
    let error = tool::run(&options, &mut Output::default(), std::future::pending()).await.expect_err("port taken");
    assert!(error.to_string().contains("cannot listen on"), "{error}");
    assert!(!options.out_dir.exists(), "nothing written");
}
