//! The Lambda entry points: an HTTP function runs its own router (see [`crate::functions`])
//! through `lambda_http`; the dispatch function turns an SQS batch into chunk processing and
//! reports per-message failures. Every `functions/*/src/main.rs` is one call into this module.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use axum::body::Body;
use http::Response;
use lambda_http::request::RequestContext;
use lambda_http::{RequestExt, service_fn};
use lambda_runtime::LambdaEvent;
use tower::ServiceExt;

use crate::cloud::{CloudConfig, lambda_sdk_config};
use pushgate_api::PublicBase;
use pushgate_core::app::Deps;
use pushgate_core::app::dispatch::{QueueMessage, process_messages};
use pushgate_core::config::ConfigError;

fn env(name: &'static str) -> Option<String> {
    std::env::var(name).ok()
}

/// Anything that stops a function from starting or running.
pub type Error = lambda_runtime::Error;

/// Logs for CloudWatch: the filter from `AWS_LAMBDA_LOG_LEVEL` (Lambda's logging controls) or
/// `RUST_LOG` (see [`log_filter`]), JSON lines when the function's log format is JSON.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let var = |name: &str| std::env::var(name).ok();
    let filter = log_filter(var("AWS_LAMBDA_LOG_LEVEL").or_else(|| var("RUST_LOG")).as_deref());
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let lines = tracing_subscriber::fmt::layer().with_target(false).without_time();
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if json {
        tracing_subscriber::registry().with(lines.json()).with(filter).try_init()
    } else {
        tracing_subscriber::registry().with(lines).with(filter).try_init()
    };
}

/// A level (`info`) or targets with levels (`info,pushgate_core=debug`); anything else, or
/// nothing, is `info`. Targets only: matching on span fields would need `EnvFilter`, whose regex
/// engine is a large share of a small function's binary.
pub fn log_filter(value: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    value
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:=,.-".contains(&b)))
        .and_then(|v| v.to_ascii_lowercase().parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
        // The EMF collector keeps 100 values of a histogram per flush (EMF's limit) and logs an
        // error for each value past them: a dispatch invocation measures thousands of provider
        // answers, so its histograms are a sample of the first 100, silently.
        .with_target("metrics_cloudwatch_embedded", LevelFilter::OFF)
}

/// The CloudWatch namespace of pushgate's metrics.
pub const METRICS_NAMESPACE: &str = "pushgate";

/// Metrics for CloudWatch: what the code records (`pushgate_core::app::metrics`) is written as
/// Embedded Metric Format lines to stdout after each invocation ([`flush_metrics`]), which
/// CloudWatch Logs turns into metrics in the `pushgate` namespace, with no API call. `None` when
/// a recorder is already installed (a second initialisation, in tests).
pub fn init_metrics() -> Option<&'static metrics_cloudwatch_embedded::Collector> {
    metrics_cloudwatch_embedded::Builder::new().cloudwatch_namespace(METRICS_NAMESPACE).init().ok()
}

/// Writes what was recorded since the last flush as EMF lines to `out`.
pub fn flush_metrics(collector: Option<&metrics_cloudwatch_embedded::Collector>, out: impl std::io::Write) {
    if let Some(collector) = collector
        && let Err(e) = collector.flush(out)
    {
        tracing::warn!(error = %e, "metrics could not be written");
    }
}

/// Runs an HTTP function: `cold_start` (one of [`crate::functions::cold_start`]) builds its
/// router once, from the environment and the secrets it reads.
pub async fn run_http<F, Start>(cold_start: F) -> Result<(), Error>
where
    F: FnOnce(aws_types::SdkConfig) -> Start,
    Start: std::future::Future<Output = Result<axum::Router, ConfigError>>,
{
    let router = cold_start(lambda_sdk_config(env)?).await?;
    let metrics = init_metrics();
    lambda_http::run(service_fn(move |request| {
        let router = router.clone();
        async move {
            let answer = handle(router, request).await;
            flush_metrics(metrics, std::io::stdout().lock());
            answer
        }
    }))
    .await
}

/// Serves one API Gateway request (REST v1 or HTTP API v2 event) with `router`.
///
/// API Gateway puts the stage in front of the path of a REST API (`/prod/v1/...`) and of an HTTP
/// API with a named stage (lambda_http adds it where the event's path lacks it); the router knows
/// the API's own paths only, so the stage prefix is removed first. lambda_http's own switch for
/// that (`AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`) is not used: it would also drop the stage from
/// the links below, which must keep it to work as they are.
///
/// The base of the answer's absolute links (unless `PUSHGATE_PUBLIC_URL` is set) is the domain
/// API Gateway received the request on, from the request context AWS writes (`domainName`), never
/// the `Host` header the client wrote; with the stage prefix when the path had one, so the link
/// works as it is.
pub async fn handle(router: axum::Router, request: lambda_http::Request) -> Result<Response<Body>, Infallible> {
    let (stage, domain) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => (ctx.stage.clone(), ctx.domain_name.clone()),
        Some(RequestContext::ApiGatewayV2(ctx)) => (ctx.stage.clone(), ctx.domain_name.clone()),
        _ => (None, None),
    };
    let (mut parts, body) = request.into_parts();
    let mut prefix = String::new();
    if let Some(stage) = stage.filter(|s| s != "$default")
        && let Some(rest) = parts.uri.path().strip_prefix(&format!("/{stage}"))
        && (rest == "/v1" || rest.starts_with("/v1/"))
    {
        let rewritten = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        if let Ok(uri) = rewritten.parse() {
            parts.uri = uri;
            prefix = format!("/{stage}");
        }
    }
    if let Some(domain) = domain.filter(|d| !d.is_empty()) {
        parts.extensions.insert(PublicBase::new(&format!("https://{domain}{prefix}")));
    }
    let request = http::Request::from_parts(parts, Body::new(body));
    router.oneshot(request).await
}

/// Runs the dispatch function: SQS batches of chunks, built once per cold start.
pub async fn run_dispatch() -> Result<(), Error> {
    let sdk = lambda_sdk_config(env)?;
    let config = CloudConfig::from_env()?.resolved::<{ crate::cloud::ports::DISPATCH }>(&sdk).await?;
    let deps = crate::functions::dispatch(&config, &sdk)?;
    let deps = &deps;
    let metrics = init_metrics();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let answer = dispatch(deps, event.payload).await;
        flush_metrics(metrics, std::io::stdout().lock());
        Ok::<_, Infallible>(answer)
    }))
    .await
}

/// Processes one SQS batch. Messages whose chunk must be retried (or that cannot be read, so they
/// end in the dead-letter queue) are reported as batch item failures; the rest are done.
pub async fn dispatch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let messages: Vec<QueueMessage> = event
        .records
        .into_iter()
        .filter_map(|record| {
            Some(QueueMessage {
                receive_count: record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                id: record.message_id?,
                body: record.body.unwrap_or_default(),
            })
        })
        .collect();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = process_messages(deps, &messages)
        .await
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::{METRICS_NAMESPACE, flush_metrics, init_metrics, log_filter};

    #[test]
    fn the_log_filter_reads_a_level_or_targets_and_falls_back_to_info() {
        let info = log_filter(None);
        assert!(info.would_enable("pushgate_core::app", &Level::INFO));
        assert!(!info.would_enable("pushgate_core::app", &Level::DEBUG));
        let debug = log_filter(Some("DEBUG"));
        assert!(debug.would_enable("aws_smithy_runtime", &Level::DEBUG));
        let targets = log_filter(Some("warn,pushgate_core=debug"));
        assert!(targets.would_enable("pushgate_core::app::dispatch", &Level::DEBUG));
        assert!(!targets.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(targets.would_enable("aws_smithy_runtime", &Level::WARN));
        let ours = log_filter(Some("info,pushgate=debug"));
        assert!(ours.would_enable("pushgate_core::app", &Level::DEBUG), "a prefix covers every pushgate crate");
        let garbage = log_filter(Some("not a filter [x]"));
        assert!(garbage.would_enable("anything", &Level::INFO) && !garbage.would_enable("anything", &Level::DEBUG));
        for filter in [log_filter(None), log_filter(Some("trace"))] {
            assert!(
                !filter.would_enable("metrics_cloudwatch_embedded::collector", &Level::ERROR),
                "a histogram past EMF's 100 values per flush is not an error line per value"
            );
        }
    }

    #[test]
    fn recorded_metrics_leave_as_embedded_metric_format_lines_in_the_pushgate_namespace() {
        let collector = init_metrics();
        assert!(collector.is_some(), "the first recorder of this process");
        pushgate_core::app::metrics::request("/v1/PushNotifications", "POST", 202, std::time::Duration::from_millis(7));
        pushgate_core::app::metrics::provider_answer(
            pushgate_core::domain::Provider::Fcm,
            "sent",
            std::time::Duration::from_millis(40),
        );
        let mut out = Vec::new();
        flush_metrics(collector, &mut out);
        let documents: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON document"))
            .collect();
        let named = |name: &str| {
            documents.iter().find(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|metric| metric["Name"] == name))
            })
        };
        let requests = named(pushgate_core::app::metrics::REQUESTS).expect("the request counter");
        assert_eq!(requests["_aws"]["CloudWatchMetrics"][0]["Namespace"], METRICS_NAMESPACE);
        assert_eq!(requests["route"], "/v1/PushNotifications");
        assert_eq!(requests["status"], "202");
        assert!(requests[pushgate_core::app::metrics::REQUESTS].as_f64().is_some_and(|v| v >= 1.0), "{requests}");
        let provider = named(pushgate_core::app::metrics::PROVIDER_SECONDS).expect("the provider latency");
        assert_eq!(provider["provider"], "fcm");
        let mut again = Vec::new();
        flush_metrics(collector, &mut again);
        assert!(!String::from_utf8_lossy(&again).contains(pushgate_core::app::metrics::REQUESTS), "a flush empties");
    }
}
