//! What pushgate measures, recorded through the `metrics` facade (one place for every name and
//! label). The process chooses where they go: Prometheus text at `GET /metrics` in
//! pushgate-local, CloudWatch Embedded Metric Format lines on Lambda; without a recorder they
//! cost nothing.
//!
//! Labels are bounded sets (route templates, providers, outcomes), never an id or an account.

use std::time::Duration;

use crate::domain::Provider;

/// Requests answered: `route` (the matched route template, or `unmatched`), `method`, `status`.
pub const REQUESTS: &str = "pushgate_http_requests_total";
/// Time to answer a request, in seconds; same labels as [`REQUESTS`] but `status` is its class.
pub const REQUEST_SECONDS: &str = "pushgate_http_request_duration_seconds";
/// Provider answers: `provider` (`apns`, `fcm`), `outcome` (`sent`, `invalid_token`, `rejected`,
/// `retryable`; `paused`: not asked, the credential waits out a provider's `Retry-After`).
pub const PROVIDER_ANSWERS: &str = "pushgate_provider_answers_total";
/// Time a provider took to answer, in seconds: `provider`.
pub const PROVIDER_SECONDS: &str = "pushgate_provider_request_duration_seconds";
/// Deliveries tried again within one processing (after a retryable answer): `provider`.
pub const RETRIES: &str = "pushgate_delivery_retries_total";
/// Notifications decided: `outcome` (`sent`, `failed`, `canceled`).
pub const NOTIFICATIONS: &str = "pushgate_notifications_total";
/// Template renderings that failed: `reason` (`budget` when a render budget ran out, `error`).
pub const RENDER_FAILURES: &str = "pushgate_render_failures_total";
/// Requests refused by a per-account limit: `limit` (`requests`, `notifications`, `live`).
pub const RATE_LIMITED: &str = "pushgate_rate_limited_total";
/// Chunks waiting in the fan-out queue (pushgate-local; SQS reports its own on AWS).
pub const QUEUE_DEPTH: &str = "pushgate_queue_depth";
/// Age of the oldest waiting chunk, in seconds (pushgate-local).
pub const QUEUE_OLDEST_SECONDS: &str = "pushgate_queue_oldest_age_seconds";

fn provider_label(provider: Provider) -> &'static str {
    match provider {
        Provider::Apn => "apns",
        Provider::Fcm => "fcm",
    }
}

/// One answered request.
pub fn request(route: &str, method: &str, status: u16, took: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let (route, method) = (route.to_owned(), method.to_owned());
    metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route, "method" => method, "status" => class)
        .record(took.as_secs_f64());
}

/// One provider answer and how long it took.
pub fn provider_answer(provider: Provider, outcome: &'static str, took: Duration) {
    let provider = provider_label(provider);
    metrics::counter!(PROVIDER_ANSWERS, "provider" => provider, "outcome" => outcome).increment(1);
    metrics::histogram!(PROVIDER_SECONDS, "provider" => provider).record(took.as_secs_f64());
}

/// One delivery tried again.
pub fn retry(provider: Provider) {
    metrics::counter!(RETRIES, "provider" => provider_label(provider)).increment(1);
}

/// `n` notifications decided with `outcome`.
pub fn notifications(outcome: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(NOTIFICATIONS, "outcome" => outcome).increment(n);
    }
}

/// One failed rendering (`message` says whether a render budget ran out).
pub fn render_failed(message: &str) {
    let budget = crate::domain::template::budget::Exhausted::named_in(message);
    let reason = if budget { "budget" } else { "error" };
    metrics::counter!(RENDER_FAILURES, "reason" => reason).increment(1);
}

/// One request refused by a per-account limit.
pub fn rate_limited(limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// The fan-out queue's depth and the age of its oldest chunk.
pub fn queue(depth: usize, oldest: Duration) {
    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
    metrics::gauge!(QUEUE_OLDEST_SECONDS).set(oldest.as_secs_f64());
}
