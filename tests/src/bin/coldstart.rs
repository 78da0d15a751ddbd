//! `pushgate-coldstart`: cold-start figures of the Lambda function binaries, measured on this
//! machine against a local stand-in for the AWS Lambda Runtime API (`GET
//! /2018-06-01/runtime/invocation/next`, `POST .../invocation/{id}/response`, `.../error`,
//! `POST .../init/error`).
//!
//! For each `NAME=BINARY:KIND` given, it starts the binary `--runs` times (after `--warmup`
//! unmeasured starts that fill the page cache), each time in a clean environment holding what a
//! deployed function gets (the variables `template.yaml` gives that function, the ones Lambda
//! itself sets, `AWS_LAMBDA_RUNTIME_API` pointing here, and `AWS_ENDPOINT_URL` plus test
//! credentials from this process's own environment), and measures:
//!
//! - cold init: from spawn to the function's first `GET .../invocation/next`;
//! - first response: from spawn to its `POST .../invocation/{id}/response` for one event.
//!
//! Then it kills the process. KIND `http`: an API Gateway HTTP API (payload 2.0) event with Basic
//! auth of the bootstrap account (`PUSHGATE_ACCOUNT_ID` + `PUSHGATE_AUTH_TOKEN_SHA256`). The
//! request is `--request NAME='METHOD PATH [BODY]'`; by default `fetch` gets `GET
//! /v1/PushNotifications/comms_pushnotification_<new ulid>` (one DynamoDB GetItem, a 404) and
//! `send` gets `POST /v1/PushNotifications` with `{}` (a 400, written nowhere). KIND `sqs`: an
//! SQS event with no records (answer `{"batchItemFailures":[]}`). It prints the median, min and
//! max of both figures per function and each function's last answer.
//!
//! It depends on no pushgate crate (only on what a deployed function sees: its environment and
//! the Runtime API), so it measures any build of the functions, before or after a restructuring.
//! The tables are created here with aws-sdk-dynamodb (`--create-tables`, keys as in
//! `template.yaml`: pk/sk, GSIs `byUser` on push and `byToken` on directory).
//!
//! Exact commands (from the workspace root; moto as `tests/run` installs it):
//!
//! ```sh
//! python3 -m venv .tools && .tools/bin/pip install 'moto[server]==5.2.5'      # once
//! .tools/bin/moto_server -H 127.0.0.1 -p 5055 > .tools/moto-coldstart.log 2>&1 &
//! cargo build --profile lambda -p pushgate-fetch -p pushgate-send -p pushgate-dispatch
//! cargo build -p pushgate-tests --bin pushgate-coldstart
//! export AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
//! target/debug/pushgate-coldstart --create-tables --runs 10 \
//!     fetch=target/lambda/fetch:http send=target/lambda/send:http dispatch=target/lambda/dispatch:sqs
//! ```
//!
//! The figures include this machine's process start, page cache and moto's latency; Lambda adds
//! its own (code download, sandbox start) and runs arm64. Compare builds on the same machine.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

const USAGE: &str = "usage: pushgate-coldstart [--runs N] [--warmup N] [--timeout SECS] [--create-tables]
       [--table-prefix P] [--request NAME='METHOD PATH [BODY]']... [--env VAR=VALUE]...
       NAME=BINARY:KIND...   (KIND: http or sqs; NAME is the function's folder name, e.g. fetch)";

const API: &str = "/2018-06-01/runtime";
const ACCOUNT_NUMBER: &str = "123456789012";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Http,
    Sqs,
}

struct Target {
    name: String,
    binary: PathBuf,
    kind: Kind,
}

struct Options {
    runs: usize,
    warmup: usize,
    timeout: Duration,
    create_tables: bool,
    table_prefix: String,
    requests: BTreeMap<String, String>,
    extra_env: Vec<(String, String)>,
    targets: Vec<Target>,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        runs: 10,
        warmup: 1,
        timeout: Duration::from_secs(30),
        create_tables: false,
        table_prefix: "pushgate-coldstart-".into(),
        requests: BTreeMap::new(),
        extra_env: Vec::new(),
        targets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().with_context(|| format!("{flag} takes a value\n{USAGE}"));
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--runs" => options.runs = value("--runs")?.parse().context("--runs takes a number")?,
            "--warmup" => options.warmup = value("--warmup")?.parse().context("--warmup takes a number")?,
            "--timeout" => {
                options.timeout = Duration::from_secs(value("--timeout")?.parse().context("--timeout takes seconds")?)
            }
            "--create-tables" => options.create_tables = true,
            "--table-prefix" => options.table_prefix = value("--table-prefix")?,
            "--request" => {
                let spec = value("--request")?;
                let (name, request) = spec.split_once('=').context("--request takes NAME='METHOD PATH [BODY]'")?;
                options.requests.insert(name.to_owned(), request.to_owned());
            }
            "--env" => {
                let spec = value("--env")?;
                let (var, val) = spec.split_once('=').context("--env takes VAR=VALUE")?;
                options.extra_env.push((var.to_owned(), val.to_owned()));
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}\n{USAGE}"),
            spec => {
                let (name, rest) =
                    spec.split_once('=').with_context(|| format!("{spec}: expected NAME=BINARY:KIND"))?;
                let (binary, kind) =
                    rest.rsplit_once(':').with_context(|| format!("{spec}: expected NAME=BINARY:KIND"))?;
                let kind = match kind {
                    "http" => Kind::Http,
                    "sqs" => Kind::Sqs,
                    other => bail!("{spec}: kind {other} is neither http nor sqs"),
                };
                let binary = PathBuf::from(binary);
                if !binary.is_file() {
                    bail!("{spec}: {} is not a file", binary.display());
                }
                options.targets.push(Target { name: name.to_owned(), binary, kind });
            }
        }
    }
    if options.targets.is_empty() || options.runs == 0 {
        bail!("{USAGE}");
    }
    Ok(options)
}

// ------------------------------------------------------------------------------------------------
// The Runtime API stand-in: one invocation per started process. The first `next` gets the event;
// later ones are left pending until the process is killed.
// ------------------------------------------------------------------------------------------------

/// What the function did, as seen by the Runtime API (with the instant it arrived, for the two
/// that are measured).
#[derive(Debug)]
enum Seen {
    Next(Instant),
    Response(Instant, String),
    InvocationError(String),
    InitError(String),
}

struct Invocation {
    request_id: String,
    event: String,
    function_arn: String,
    timeout: Duration,
}

#[derive(Clone)]
struct RuntimeApi {
    pending: Arc<Mutex<Option<Invocation>>>,
    current_id: Arc<Mutex<String>>,
    seen: mpsc::UnboundedSender<Seen>,
}

impl RuntimeApi {
    fn arm(&self, invocation: Invocation) {
        *self.current_id.lock().unwrap_or_else(|e| e.into_inner()) = invocation.request_id.clone();
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(invocation);
    }
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    let at = Instant::now();
    let _ = api.seen.send(Seen::Next(at));
    let invocation = api.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(invocation) = invocation else {
        // As Lambda does between invocations: no answer until the next event (here: never).
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + invocation.timeout;
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("content-type", "application/json".into());
    put("lambda-runtime-aws-request-id", invocation.request_id);
    put("lambda-runtime-deadline-ms", deadline.as_millis().to_string());
    put("lambda-runtime-invoked-function-arn", invocation.function_arn);
    put("lambda-runtime-trace-id", format!("Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0", 0, 0, 0));
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn is_current(api: &RuntimeApi, id: &str) -> bool {
    *api.current_id.lock().unwrap_or_else(|e| e.into_inner()) == id
}

async fn response(State(api): State<RuntimeApi>, UrlPath(id): UrlPath<String>, body: Bytes) -> Response {
    let at = Instant::now();
    if !is_current(&api, &id) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let _ = api.seen.send(Seen::Response(at, String::from_utf8_lossy(&body).into_owned()));
    accepted()
}

async fn invocation_error(State(api): State<RuntimeApi>, UrlPath(id): UrlPath<String>, body: Bytes) -> Response {
    if !is_current(&api, &id) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let _ = api.seen.send(Seen::InvocationError(String::from_utf8_lossy(&body).into_owned()));
    accepted()
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> Response {
    let _ = api.seen.send(Seen::InitError(String::from_utf8_lossy(&body).into_owned()));
    accepted()
}

// ------------------------------------------------------------------------------------------------
// Events and environment
// ------------------------------------------------------------------------------------------------

struct Account {
    id: String,
    token: String,
}

impl Account {
    fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let hex = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
            (0..n).map(|_| format!("{:x}", rng.gen_range(0..16u8))).collect()
        };
        Self { id: format!("AC{}", hex(32, &mut rng)), token: hex(40, &mut rng) }
    }

    fn token_sha256(&self) -> String {
        Sha256::digest(self.token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn authorization(&self) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.id, self.token)))
    }
}

fn default_request(name: &str) -> Option<String> {
    match name {
        "fetch" => Some(format!(
            "GET /v1/PushNotifications/comms_pushnotification_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        )),
        "send" => Some("POST /v1/PushNotifications {}".into()),
        _ => None,
    }
}

/// An API Gateway HTTP API (payload format 2.0) event on the `$default` stage.
fn http_api_event(request: &str, account: &Account) -> Result<String> {
    let mut parts = request.trim().splitn(3, ' ');
    let method = parts.next().filter(|m| !m.is_empty()).context("request without a method")?.to_uppercase();
    let path_and_query = parts.next().context("request without a path")?;
    let body = parts.next().map(str::trim).filter(|b| !b.is_empty());
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let query_map: serde_json::Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let domain = "coldstart.execute-api.us-east-1.amazonaws.com";
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let mut headers = json!({
        "authorization": account.authorization(),
        "host": domain,
        "user-agent": "pushgate-coldstart",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443"
    });
    if let Some(body) = body {
        headers["content-type"] = json!("application/json");
        headers["content-length"] = json!(body.len().to_string());
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_NUMBER,
            "apiId": "coldstart",
            "domainName": domain,
            "domainPrefix": "coldstart",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "pushgate-coldstart"},
            "requestId": ulid::Ulid::generate().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": now_ms
        },
        "isBase64Encoded": false
    });
    if !query_map.is_empty() {
        event["queryStringParameters"] = Value::Object(query_map);
    }
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    Ok(event.to_string())
}

/// The environment of a deployed function: Lambda's own variables, `template.yaml`'s Globals and
/// the function's Environment (with stand-in values for the resources), plus the endpoint and
/// credentials of the emulator from this process's environment.
fn function_env(
    name: &str,
    kind: Kind,
    runtime_api: &str,
    options: &Options,
    account: &Account,
) -> Vec<(String, String)> {
    let own = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let region = own("AWS_REGION").unwrap_or_else(|| "us-east-1".into());
    let endpoint = own("AWS_ENDPOINT_URL");
    let queue_name = format!("{}fanout", options.table_prefix);
    let queue_url = match &endpoint {
        Some(endpoint) => format!("{}/{ACCOUNT_NUMBER}/{queue_name}", endpoint.trim_end_matches('/')),
        None => format!("https://sqs.{region}.amazonaws.com/{ACCOUNT_NUMBER}/{queue_name}"),
    };
    let function_name = format!("pushgate-coldstart-{name}");
    let memory = if kind == Kind::Sqs { "1024" } else { "256" };
    let mut env: Vec<(String, String)> = vec![
        // Lambda's own (provided.al2023).
        ("PATH".into(), "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        ("TZ".into(), ":UTC".into()),
        ("_HANDLER".into(), "bootstrap".into()),
        ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
        ("LAMBDA_RUNTIME_DIR".into(), "/var/runtime".into()),
        ("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.into()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), memory.into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{function_name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), "2026/01/01/[$LATEST]coldstart".into()),
        ("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()),
        ("AWS_REGION".into(), region.clone()),
        ("AWS_DEFAULT_REGION".into(), region.clone()),
        ("AWS_ACCESS_KEY_ID".into(), own("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "test".into())),
        ("AWS_SECRET_ACCESS_KEY".into(), own("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "test".into())),
        ("AWS_SESSION_TOKEN".into(), own("AWS_SESSION_TOKEN").unwrap_or_else(|| "test".into())),
        // template.yaml Globals.
        ("RUST_LOG".into(), "info".into()),
        ("PUSHGATE_PUSH_TABLE".into(), format!("{}push", options.table_prefix)),
        ("PUSHGATE_CONFIG_TABLE".into(), format!("{}config", options.table_prefix)),
        ("PUSHGATE_DIRECTORY_TABLE".into(), format!("{}directory", options.table_prefix)),
        // Every function: the bootstrap account.
        ("PUSHGATE_ACCOUNT_ID".into(), account.id.clone()),
        ("PUSHGATE_AUTH_TOKEN_SHA256".into(), account.token_sha256()),
    ];
    if let Some(endpoint) = endpoint {
        env.push(("AWS_ENDPOINT_URL".into(), endpoint));
    }
    let kms_key = format!("arn:aws:kms:{region}:{ACCOUNT_NUMBER}:key/00000000-0000-4000-8000-000000000000");
    if kind == Kind::Http {
        env.push(("PUSHGATE_PAGE_TOKEN_KEY".into(), "coldstart-page-token-key-0123456789abcdef".into()));
    }
    if matches!(name, "send" | "cancel") {
        env.push(("PUSHGATE_QUEUE_URL".into(), queue_url.clone()));
        env.push(("PUSHGATE_SCHEDULE_GROUP".into(), format!("{}schedules", options.table_prefix)));
        env.push((
            "PUSHGATE_SCHEDULER_ROLE_ARN".into(),
            format!("arn:aws:iam::{ACCOUNT_NUMBER}:role/pushgate-coldstart-scheduler"),
        ));
        env.push(("PUSHGATE_QUEUE_ARN".into(), format!("arn:aws:sqs:{region}:{ACCOUNT_NUMBER}:{queue_name}")));
    }
    if matches!(name, "credentials" | "dispatch") || kind == Kind::Sqs {
        env.push(("PUSHGATE_KMS_KEY_ID".into(), kms_key));
    }
    if kind == Kind::Sqs {
        env.push(("PUSHGATE_QUEUE_URL".into(), queue_url));
    }
    env.extend(options.extra_env.iter().cloned());
    env
}

// ------------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------------

async fn create_tables(prefix: &str) -> Result<()> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    for (stem, index) in [("push", Some("byUser")), ("config", None), ("directory", Some("byToken"))] {
        let name = format!("{prefix}{stem}");
        let mut request = client
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?);
        if let Some(index) = index {
            request = request
                .attribute_definitions(attribute("gsi1pk")?)
                .attribute_definitions(attribute("gsi1sk")?)
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(index)
                        .key_schema(key("gsi1pk", KeyType::Hash)?)
                        .key_schema(key("gsi1sk", KeyType::Range)?)
                        .projection(Projection::builder().projection_type(ProjectionType::All).build())
                        .build()?,
                );
        }
        match request.send().await {
            Ok(_) => println!("created table {name}"),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {
                println!("table {name} exists")
            }
            Err(e) => return Err(anyhow!("CreateTable {name}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))),
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Runs
// ------------------------------------------------------------------------------------------------

struct Measured {
    init_ms: f64,
    response_ms: f64,
    answer: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn run_once(
    target: &Target,
    env: &[(String, String)],
    event: &str,
    api: &RuntimeApi,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    timeout: Duration,
    log: &Path,
) -> Result<Measured> {
    while seen.try_recv().is_ok() {}
    api.arm(Invocation {
        request_id: ulid::Ulid::generate().to_string().to_lowercase(),
        event: event.to_owned(),
        function_arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT_NUMBER}:function:pushgate-coldstart-{}", target.name),
        timeout: if target.kind == Kind::Sqs { Duration::from_secs(300) } else { Duration::from_secs(29) },
    });
    let out = File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
    let err = out.try_clone()?;
    let mut command = Command::new(&target.binary);
    command.env_clear().envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(out).stderr(err);
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("cannot start {}", target.binary.display()))?;
    let mut init = None;
    let outcome = loop {
        match tokio::time::timeout(Duration::from_millis(20), seen.recv()).await {
            Ok(Some(Seen::Next(at))) => {
                init.get_or_insert(at);
            }
            Ok(Some(Seen::Response(at, body))) => break Ok((at, body)),
            Ok(Some(Seen::InvocationError(body))) => break Err(anyhow!("invocation error: {body}")),
            Ok(Some(Seen::InitError(body))) => break Err(anyhow!("init error: {body}")),
            Ok(None) => break Err(anyhow!("the runtime API stopped")),
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(anyhow!("the process exited ({status}) without a response"));
                }
                if started.elapsed() > timeout {
                    break Err(anyhow!("no response in {} s", timeout.as_secs()));
                }
            }
        }
    };
    stop(&mut child);
    match outcome {
        Ok((at, answer)) => {
            let init = init.context("a response without a prior GET next")?;
            Ok(Measured { init_ms: ms(init - started), response_ms: ms(at - started), answer })
        }
        Err(e) => Err(anyhow!(
            "{} ({}): {e}\nlast lines of {}:\n{}",
            target.name,
            target.binary.display(),
            log.display(),
            tail(log)
        )),
    }
}

fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    (median, values[0], values[n - 1])
}

/// `statusCode` and the start of `body` of an HTTP answer; the answer itself otherwise.
fn describe(answer: &str) -> String {
    let snippet = |s: &str| s.chars().take(160).collect::<String>();
    match serde_json::from_str::<Value>(answer) {
        Ok(v) if v.get("statusCode").is_some() => {
            let body = v.get("body").and_then(Value::as_str).unwrap_or("");
            format!("status {} body {}", v["statusCode"], snippet(body))
        }
        _ => snippet(answer),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_args()?;
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("warning: AWS_ENDPOINT_URL is not set: the functions will try real AWS endpoints");
    }
    if options.create_tables {
        create_tables(&options.table_prefix).await.context("creating the tables (is moto at AWS_ENDPOINT_URL?)")?;
    }

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        pending: Arc::new(Mutex::new(None)),
        current_id: Arc::new(Mutex::new(String::new())),
        seen: seen_tx,
    };
    let router = Router::new()
        .route(&format!("{API}/invocation/next"), get(next))
        .route(&format!("{API}/invocation/{{id}}/response"), post(response))
        .route(&format!("{API}/invocation/{{id}}/error"), post(invocation_error))
        .route(&format!("{API}/init/error"), post(init_error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let logs = std::env::temp_dir().join(format!("pushgate-coldstart-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    println!("runtime API on {runtime_api}; function logs in {}", logs.display());

    let account = Account::generate();
    let mut rows = Vec::new();
    for target in &options.targets {
        let (event, request) = match target.kind {
            Kind::Sqs => (json!({"Records": []}).to_string(), "SQS event, 0 records".to_owned()),
            Kind::Http => {
                let request = options.requests.get(&target.name).cloned().or_else(|| default_request(&target.name));
                let request = request.with_context(|| {
                    format!(
                        "{}: no default request for this function; give --request {}='METHOD PATH [BODY]'",
                        target.name, target.name
                    )
                })?;
                (http_api_event(&request, &account)?, request)
            }
        };
        let env = function_env(&target.name, target.kind, &runtime_api, &options, &account);
        let size = std::fs::metadata(&target.binary)?.len();
        println!("{}: {} ({size} bytes), event: {request}", target.name, target.binary.display());
        let mut measured = Vec::new();
        for i in 0..options.warmup + options.runs {
            let log = logs.join(format!("{}-{i}.log", target.name));
            let m = run_once(target, &env, &event, &api, &mut seen, options.timeout, &log).await?;
            let label =
                if i < options.warmup { "warm-up".to_owned() } else { format!("run {}", i - options.warmup + 1) };
            println!("  {label:>8}: init {:7.1} ms, first response {:7.1} ms", m.init_ms, m.response_ms);
            if i >= options.warmup {
                measured.push(m);
            }
        }
        let answer = measured.last().map(|m| describe(&m.answer)).unwrap_or_default();
        let init = summary(measured.iter().map(|m| m.init_ms).collect());
        let first = summary(measured.iter().map(|m| m.response_ms).collect());
        rows.push((target.name.clone(), measured.len(), init, first, answer));
    }
    server.abort();

    println!();
    println!(
        "{:<12} {:>4}  {:>28}  {:>28}",
        "function", "runs", "cold init ms (med/min/max)", "first resp. ms (med/min/max)"
    );
    for (name, n, init, first, _) in &rows {
        println!(
            "{name:<12} {n:>4}  {:>8.1} {:>8.1} {:>9.1}  {:>8.1} {:>8.1} {:>9.1}",
            init.0, init.1, init.2, first.0, first.1, first.2
        );
    }
    for (name, _, _, _, answer) in &rows {
        println!("{name}: {answer}");
    }
    Ok(())
}
