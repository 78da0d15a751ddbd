//! `GET /metrics` of pushgate-local: Prometheus text with the series operators watch — requests
//! by route and status with latency histograms, provider answers and latency, retries,
//! notifications by outcome, render failures, rate-limit refusals, the queue's depth and age.

use pushgate_core::domain::AccountLimits;
use pushgate_fakes::ApnsReply;
use pushgate_tests::{TestApp, apn_token, fcm_token};
use reqwest::StatusCode;
use serde_json::json;

/// The value of the series `name{…labels…}` (every label given must match), summed.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_expose_requests_providers_retries_notifications_render_failures_limits_and_the_queue_after_a_send() {
    let app = TestApp::spawn().await;
    app.create_apn_credential("metrics").await;
    app.create_fcm_credential("metrics").await;
    app.apns.script(&apn_token(2), vec![ApnsReply::ServiceUnavailable, ApnsReply::Ok]);
    let body = json!({
        "to": [
            { "token": apn_token(1), "provider": "APN" },
            { "token": apn_token(2), "provider": "APN" },
            { "token": fcm_token(3), "provider": "FCM" },
        ],
        "content": { "title": "Boarding" },
    });
    let operation = app.send(&body).await;
    app.settle(&operation).await;
    let failing = json!({
        "to": [{ "token": apn_token(4), "provider": "APN", "variables": { "n": 1_000_000_000i64 } }],
        "content": { "title": "{% for i in (1..n) %}{% endfor %}done" },
    });
    let failed = app.send(&failing).await;
    app.settle(&failed).await;
    let (id, token) = app.add_account();
    {
        use pushgate_core::app::ports::AccountStore as _;
        let account = pushgate_core::domain::AccountId::parse(&id).expect("an account id");
        let mut stored = app.accounts.get_account(&account).await.expect("read").expect("stored");
        stored.limits = AccountLimits { requests_per_second: Some(1), request_burst: Some(1), ..Default::default() };
        app.accounts.insert(stored).expect("saved");
    }
    let client = reqwest::Client::new();
    for _ in 0..2 {
        client
            .get(format!("{}/v1/PushNotifications", app.base))
            .basic_auth(&id, Some(&token))
            .send()
            .await
            .expect("answer");
    }

    let response = client.get(format!("{}/metrics", app.base)).send().await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().expect("text").starts_with("text/plain"));
    let text = response.text().await.expect("text");
    let series = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    assert!(
        series(
            "pushgate_http_requests_total",
            &[("route", "/v1/PushNotifications"), ("method", "POST"), ("status", "202")]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        series(
            "pushgate_http_request_duration_seconds_count",
            &[("route", "/v1/PushNotifications"), ("status", "2xx")]
        ) >= 2.0
    );
    assert!(text.contains("pushgate_http_request_duration_seconds_bucket{"), "a histogram with buckets");
    assert!(!text.contains(&operation), "no id ever becomes a label");
    assert!(series("pushgate_provider_answers_total", &[("provider", "apns"), ("outcome", "sent")]) >= 2.0);
    assert!(series("pushgate_provider_answers_total", &[("provider", "fcm"), ("outcome", "sent")]) >= 1.0);
    assert!(series("pushgate_provider_answers_total", &[("provider", "apns"), ("outcome", "retryable")]) >= 1.0);
    assert!(series("pushgate_provider_request_duration_seconds_count", &[("provider", "apns")]) >= 3.0);
    assert!(series("pushgate_delivery_retries_total", &[("provider", "apns")]) >= 1.0);
    assert!(series("pushgate_notifications_total", &[("outcome", "sent")]) >= 3.0);
    assert!(series("pushgate_render_failures_total", &[("reason", "budget")]) >= 1.0, "{text}");
    assert!(series("pushgate_rate_limited_total", &[("limit", "requests")]) >= 1.0);
    assert!(text.contains("pushgate_queue_depth "), "{text}");
    assert!(text.contains("pushgate_queue_oldest_age_seconds "));
}
