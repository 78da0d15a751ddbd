//! The keys a deployment generates for itself (template.yaml: Secrets Manager secrets) reach the
//! functions at cold start, never through their environment: the page-token key of the
//! functions that page, the webhook's key of the dispatch function (`webhooks::on_moto_…`).

use pushgate_api::Function;
use pushgate_glue::cloud::{CloudConfig, ports};
use pushgate_tests::lambda_rig::{AwsRig, create_secret, http_api_event, invoke_router};
use reqwest::StatusCode;

/// One cold start of `function`: the configuration as the template gives it, its secrets read.
async fn cold_start(config: &CloudConfig, sdk: &aws_config::SdkConfig, function: Function) -> axum::Router {
    let config = config.clone().resolved::<{ ports::LISTS }>(sdk).await.expect("the secrets are read");
    pushgate_glue::functions::by_function(function)(&config, sdk).expect("the function wires")
}

#[tokio::test]
async fn a_page_token_from_one_instance_is_accepted_by_another_with_the_key_read_from_secrets_manager() {
    let Some(rig) = AwsRig::new("pagekey", |_| {}).await else { return };
    rig.create_credentials("main").await;
    let arn = create_secret(&rig.sdk, "pagekey", "a-generated-page-token-key-0123456789abcdef").await;
    let mut config = rig.config.clone();
    config.page_token_key = None;
    config.page_token_secret_arn = Some(arn);
    let (first, second) = (
        cold_start(&config, &rig.sdk, Function::Credentials).await,
        cold_start(&config, &rig.sdk, Function::Credentials).await,
    );
    let event = http_api_event("GET", "/v1/PushNotifications/Credentials?pageSize=1", "$default", &rig.caller, None);
    let (status, _, page) = invoke_router(first, &event).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let next = page["pagination"]["next"].as_str().expect("two credentials: a second page");
    let event = http_api_event(
        "GET",
        &format!("/v1/PushNotifications/Credentials?pageSize=1&pageToken={next}"),
        "$default",
        &rig.caller,
        None,
    );
    let (status, _, page) = invoke_router(second, &event).await;
    assert_eq!(status, StatusCode::OK, "the other instance reads the token: {page}");
    assert_eq!(page["credentials"].as_array().map(Vec::len), Some(1), "{page}");
}

#[tokio::test]
async fn a_function_whose_secret_cannot_be_read_does_not_start_and_names_the_variable() {
    let Some(rig) = AwsRig::new("nokey", |_| {}).await else { return };
    let mut config = rig.config.clone();
    config.page_token_key = None;
    config.page_token_secret_arn =
        Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:pushgate-missing-AbCdEf".into());
    let error = config.resolved::<{ ports::LISTS }>(&rig.sdk).await.expect_err("a missing secret");
    assert_eq!(error.var, "PUSHGATE_PAGE_TOKEN_SECRET_ARN");
}

#[tokio::test]
async fn a_function_that_does_not_page_never_reads_the_page_token_secret() {
    let Some(rig) = AwsRig::new("nopages", |_| {}).await else { return };
    let mut config = rig.config.clone();
    config.page_token_key = None;
    config.page_token_secret_arn =
        Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:pushgate-missing-AbCdEf".into());
    // The same unreadable secret: a function without the page-token port starts anyway.
    let resolved = config.resolved::<{ ports::SEND }>(&rig.sdk).await.expect("nothing read");
    assert_eq!(resolved.page_token_key, None);
}

#[tokio::test]
async fn a_page_token_secret_shorter_than_32_characters_stops_the_function_naming_the_variable() {
    let Some(rig) = AwsRig::new("shortkey", |_| {}).await else { return };
    let mut config = rig.config.clone();
    config.page_token_key = None;
    config.page_token_secret_arn = Some(create_secret(&rig.sdk, "shortkey", "too-short").await);
    let error = config.resolved::<{ ports::LISTS }>(&rig.sdk).await.expect_err("a short key");
    assert_eq!(error.var, "PUSHGATE_PAGE_TOKEN_SECRET_ARN");
}
