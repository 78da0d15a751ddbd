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

/// The README's "Try it" shows lines of `examples/walkthrough.sh`, the walkthrough
/// `tests/walkthrough` runs: each of its `sh` blocks but the command that runs the script is an
/// excerpt, whose lines are the script's, in the script's order (lines between may be left out).
#[test]
fn the_readmes_walkthrough_excerpt_is_made_of_lines_of_the_tested_script_in_its_order() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let script = std::fs::read_to_string(format!("{root}/examples/walkthrough.sh")).expect("the walkthrough");
    let start = readme.find("\n## Try it").expect("README has a Try it section");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];

    let script_lines: Vec<&str> = script.lines().map(str::trim).collect();
    let mut excerpt_lines = 0;
    for block in section.split("```sh\n").skip(1) {
        let block = &block[..block.find("```").expect("a closed code block")];
        let lines: Vec<&str> = block.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines == ["sh examples/walkthrough.sh"] {
            continue;
        }
        let mut rest = script_lines.as_slice();
        for line in lines {
            let at = rest.iter().position(|l| *l == line).unwrap_or_else(|| {
                panic!("README line {line:?} is not in examples/walkthrough.sh (after the lines before it)")
            });
            rest = &rest[at + 1..];
            excerpt_lines += 1;
        }
    }
    assert!(excerpt_lines > 10, "the Try it section shows the script's key requests");
}
