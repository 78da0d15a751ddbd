//! `pushgate-fake-providers` end to end: pushgate-local configured with the environment the tool
//! prints, the credentials created from the files it writes, a send that ends SENT at the fakes.

use std::collections::HashMap;

use pushgate_fakes::tool::FakeProviders;
use pushgate_local::LocalConfig;
use pushgate_tests::{TestApp, apn_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("the tool wrote the file")).expect("JSON")
}

#[tokio::test]
async fn pushgate_local_delivers_to_the_fake_providers_with_the_environment_and_credentials_the_tool_gives() {
    let out_dir = std::env::temp_dir().join(format!("pushgate-fake-providers-{}", ulid::Ulid::generate()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let providers = FakeProviders::start(listener, &out_dir).await.expect("the fake providers start");

    // pushgate-local reads the printed variables exactly as it reads its environment.
    let env: HashMap<&str, String> = providers.pushgate_env().into_iter().collect();
    let from_env = LocalConfig::from_vars(|name| env.get(name).cloned()).expect("the printed environment is valid");
    assert_eq!(from_env.providers.apns_endpoint.as_deref(), Some(providers.base_url().as_str()));
    let app = TestApp::spawn_with(providers.apns.clone(), |config| {
        config.providers.apns_endpoint = from_env.providers.apns_endpoint;
        config.providers.fcm_endpoint = from_env.providers.fcm_endpoint;
        config.providers.fcm_token_uris = from_env.providers.fcm_token_uris;
    })
    .await;

    for file in [&providers.apn_credential_file, &providers.fcm_credential_file] {
        let (status, created) = app.post("/v1/PushNotifications/Credentials", &read_json(file)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {created}", file.display());
    }
    let fcm_token = "fcm-demo-token-1";
    let op = app
        .send(&json!({
            "to": [
                {"token": apn_token(1), "provider": "APN", "variables": {"name": "Ada"}},
                {"token": fcm_token, "provider": "FCM", "variables": {"name": "Bob"}},
            ],
            "content": {"title": "Hi {{ name }}", "body": "Boarding at gate 12"},
        }))
        .await;
    let operation = app.settle(&op).await;
    assert_eq!(operation["status"], "COMPLETED", "{operation}");
    assert_eq!(operation["stats"]["sent"], 2, "{operation}");
    let notifications = app.notifications_of(&op).await;
    assert_eq!(notifications.len(), 2);
    assert!(notifications.iter().all(|n| n["status"] == "SENT"), "{notifications:#?}");

    // Delivered by the tool's fakes, signed with the tool's key and service account.
    let apns = providers.apns.delivered();
    assert_eq!(apns.len(), 1);
    assert_eq!(apns[0].payload["aps"]["alert"]["title"], "Hi Ada");
    let claims = apns[0].jwt_claims.as_ref().expect("token authentication");
    assert_eq!(claims["iss"], providers.apns_key.team_id);
    let fcm = providers.fcm.delivered();
    assert_eq!(fcm.len(), 1);
    assert_eq!((fcm[0].device_token.as_str(), fcm[0].project_id.as_str()), (fcm_token, "pushgate-demo"));
    assert_eq!(fcm[0].message["notification"]["title"], "Hi Bob");
    assert_eq!(app.fcm.delivered_count(), 0, "nothing went to the harness's own fake FCM");
    let _ = std::fs::remove_dir_all(&out_dir);
}
