//! `pushgate-local` in its AWS mode (`PUSHGATE_BACKEND=aws`) on moto: the Lambda functions'
//! storage, queue and encryption code behind one local HTTP server. Emulator tier.

use std::time::Duration;

use pushgate_fakes::keys::{apns_signing_key, fcm_service_account};
use pushgate_fakes::{FakeApns, FakeFcm};
use pushgate_local::LocalConfig;
use pushgate_local::aws::{AwsLocalApp, LocalResources, build_local};
use pushgate_tests::{
    apn_credential_body, apn_token, emulator, fcm_credential_body, fcm_token, send_json, test_config,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Running {
    base: String,
    account: String,
    token: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(config: &LocalConfig, names: &LocalResources) -> Running {
        let app: AwsLocalApp = build_local(config, names).await.expect("the AWS mode starts on moto");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (account, token) = (app.account.to_string(), app.token.expose().to_owned());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            app.serve(listener, shutdown, Duration::from_secs(5)).await.expect("serves");
        });
        Running { base, account, token, client: reqwest::Client::new(), stop, done }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).basic_auth(&self.account, Some(&self.token))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

#[tokio::test]
async fn the_aws_mode_delivers_through_sqs_and_a_second_process_sees_the_first_ones_data() {
    let Some(_) = emulator().await else { return };
    let (apns, fcm) = (FakeApns::start_h2c().await, FakeFcm::start_h2c().await);
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let sa = fcm_service_account("pushgate-test", &fcm.token_uri());
    fcm.register_service_account(&sa);
    let mut config = test_config();
    config.providers.apns_endpoint = Some(apns.base_url());
    config.providers.fcm_endpoint = Some(fcm.base_url());
    config.providers.fcm_token_uris = vec![fcm.token_uri()];
    config.workers = 2;
    let account_token = format!("{}{}", ulid::Ulid::generate(), ulid::Ulid::generate());
    config.account = Some((
        pushgate_core::domain::AccountId::from_bytes(ulid::Ulid::generate().to_bytes()),
        pushgate_core::domain::AuthToken::new(account_token),
    ));
    let suffix = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let names = LocalResources {
        table_prefix: format!("pg-local-{suffix}-"),
        queue_name: format!("pg-local-{suffix}"),
        kms_key_id: None,
    };

    let first = Running::start(&config, &names).await;
    for body in [apn_credential_body(&key, "main"), fcm_credential_body(&sa, "main")] {
        let (status, answer) =
            send_json(first.request(reqwest::Method::POST, "/v1/PushNotifications/Credentials").json(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (status, answer) = send_json(first.request(reqwest::Method::POST, "/v1/PushNotifications").json(&json!({
        "to": [{"token": apn_token(1), "provider": "APN"}, {"token": fcm_token(2), "provider": "FCM"}],
        "content": {"title": "hello"}
    })))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let operation = answer["operationId"].as_str().expect("operationId").to_owned();
    let path = format!("/v1/PushNotifications/Operations/{operation}");
    let mut last = Value::Null;
    for _ in 0..200 {
        last = send_json(first.request(reqwest::Method::GET, &path)).await.1;
        if last["status"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "COMPLETED", "the in-process consumers drained SQS: {last}");
    assert_eq!(last["stats"]["sent"], 2);
    assert_eq!((apns.delivered_count(), fcm.delivered_count()), (1, 1));

    // A scheduled send: chunks stored in DynamoDB, released by the in-process timer (moto never
    // fires schedules) onto SQS, delivered by the consumers.
    let instant = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, answer) = send_json(first.request(reqwest::Method::POST, "/v1/PushNotifications").json(&json!({
        "to": [{"token": fcm_token(3), "provider": "FCM"}],
        "content": {"title": "later"},
        "schedule": {"sendAt": [instant.to_rfc3339()]}
    })))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let scheduled = format!("/v1/PushNotifications/Operations/{}", answer["operationId"].as_str().expect("id"));
    assert_eq!(send_json(first.request(reqwest::Method::GET, &scheduled)).await.1["status"], "SCHEDULED");
    for _ in 0..200 {
        last = send_json(first.request(reqwest::Method::GET, &scheduled)).await.1;
        if last["status"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((last["status"].clone(), last["stats"]["sent"].clone()), (json!("COMPLETED"), json!(1)), "{last}");
    assert!(chrono::Utc::now() >= instant, "not before its instant");
    assert_eq!(fcm.delivered_count(), 2);
    first.stop().await;

    // A second process with the same account on the same resources: nothing lived in memory.
    let second = Running::start(&config, &names).await;
    let (status, again) = send_json(second.request(reqwest::Method::GET, &path)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["stats"]["sent"], 2);
    let (_, credentials) = send_json(second.request(reqwest::Method::GET, "/v1/PushNotifications/Credentials")).await;
    assert_eq!(credentials["credentials"].as_array().map(Vec::len), Some(2), "{credentials}");
    second.stop().await;
}
