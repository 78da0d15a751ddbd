//! `pushgate-bench`: measures the release `pushgate-local` binary against in-process fake APNs
//! and FCM servers, and prints figures (it asserts nothing).
//!
//! Measured, per run of one send of `--recipients` recipients (half APN, half FCM):
//!
//! * time to 202: from the start of `POST /v1/PushNotifications` to the response headers;
//! * fan-out: from the same start until the Operation is `COMPLETED`, as notifications per second;
//! * the Operation's sent / failed counts and the fakes' delivered counts (a cross-check);
//! * CPU time used by `pushgate-local` and by this process (the fakes plus the API client), to see
//!   which side is saturated;
//!
//! and, after all runs, the peak (`VmHWM`) and current (`VmRSS`) resident set of `pushgate-local`.
//!
//! `pushgate-local`'s pid is printed at start, for profilers (`perf record -p PID`).
//!
//! Build the service first: `cargo build --release -p pushgate-local`, then
//! `cargo run --release -p pushgate-tests --bin pushgate-bench -- [--runs N] [--recipients N]`.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pushgate_fakes::{FakeApns, FakeFcm, keys};
use serde_json::{Value, json};

/// Largest send the API accepts (`MAX_RECIPIENTS`).
const MAX_RECIPIENTS: usize = 10_000;
/// How long `pushgate-local` may take to answer HTTP after being spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the Operation is polled while fanning out.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one fan-out may take before the bench gives up.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Bundle id of the APNs credential (the `apns-topic`).
const BUNDLE_ID: &str = "com.example.bench";
/// Firebase project of the FCM service account.
const FCM_PROJECT: &str = "pushgate-bench";

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// Sends to time (`--runs`, default 5).
    runs: usize,
    /// Recipients per send (`--recipients`, default 10000).
    recipients: usize,
    /// `--hostile`: measure an unrelated send and GET latency while hostile sends render.
    hostile: bool,
}

/// Account id and auth token the child is started with.
#[derive(Debug, Clone)]
struct Account {
    /// `AC` + 32 lowercase hex characters.
    sid: String,
    /// 64 hex characters.
    token: String,
}

/// The spawned `pushgate-local`; killed (and reaped) when dropped, so every exit path stops it.
struct Service {
    child: Child,
    base_url: String,
    account: Account,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one timed send measured.
#[derive(Debug, Clone)]
struct RunResult {
    /// Request start to response headers.
    to_202: Duration,
    /// Request start to Operation `COMPLETED`.
    to_completed: Duration,
    /// `stats.total` of the completed Operation.
    total: u64,
    /// `stats.sent`.
    sent: u64,
    /// `stats.failed`.
    failed: u64,
    /// Requests the fake APNs answered 200 during the run.
    apns_delivered: usize,
    /// `messages:send` requests the fake FCM answered 200 during the run.
    fcm_delivered: usize,
    /// CPU seconds `pushgate-local` used during the run.
    service_cpu: f64,
    /// CPU seconds this process (fakes + client) used during the run.
    bench_cpu: f64,
    /// `VmRSS` of `pushgate-local` once the Operation completed, in KiB.
    rss_kib: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushgate-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole benchmark; `pushgate-local` is stopped when this returns (on success or error).
async fn run() -> Result<()> {
    let options = parse_args(std::env::args().skip(1))?;
    let binary = service_binary()?;

    let apns = FakeApns::start_h2c().await;
    let fcm = FakeFcm::start_h2c().await;
    let service = spawn_service(&binary, &apns, &fcm)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")?;
    wait_ready(&client, &service).await?;
    println!(
        "pushgate-local {} (pid {}) ready at {}; bench pid {}",
        binary.display(),
        service.child.id(),
        service.base_url,
        std::process::id()
    );
    let rss_after_start = proc_status_kib(service.child.id(), "VmRSS")?;
    create_credentials(&client, &service, &apns, &fcm).await?;
    if options.hostile {
        return hostile(&client, &service).await;
    }

    let body = bytes::Bytes::from(
        serde_json::to_vec(&pushgate_tests::bench_send_body(options.recipients)).context("serializing")?,
    );
    let mut results = Vec::with_capacity(options.runs);
    let mut hwm_first = 0;
    for run in 1..=options.runs {
        let result = timed_send(&client, &service, &apns, &fcm, body.clone()).await?;
        print_run(run, &result);
        results.push(result);
        if run == 1 {
            hwm_first = proc_status_kib(service.child.id(), "VmHWM")?;
        }
    }

    let pid = service.child.id();
    let memory = (rss_after_start, proc_status_kib(pid, "VmHWM")?, proc_status_kib(pid, "VmRSS")?);
    print_report(&options, body.len(), &results, memory, hwm_first);
    Ok(())
}

/// Parses `--runs N` and `--recipients N` (also `--flag=N`); `--help` prints usage and exits.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options { runs: 5, recipients: MAX_RECIPIENTS, hostile: false };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!(
                "usage: pushgate-bench [--runs N (default 5)] [--recipients N (default 10000, at most 10000)] [--hostile]"
            );
            std::process::exit(0);
        }
        if flag == "--hostile" {
            options.hostile = true;
            continue;
        }
        let mut value = || -> Result<usize> {
            let raw = inline.clone().or_else(|| args.next()).ok_or_else(|| anyhow!("{flag} needs a value"))?;
            raw.parse().with_context(|| format!("{flag}: {raw:?} is not a positive integer"))
        };
        match flag.as_str() {
            "--runs" => options.runs = value()?,
            "--recipients" => options.recipients = value()?,
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if options.recipients == 0 || options.recipients > MAX_RECIPIENTS {
        bail!("--recipients must be 1..={MAX_RECIPIENTS} (the API's limit per send)");
    }
    Ok(options)
}

/// The release `pushgate-local` binary of this workspace, or an error saying how to build it.
/// `PUSHGATE_BENCH_BINARY` overrides the path (e.g. an unstripped build for profiling).
fn service_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PUSHGATE_BENCH_BINARY") {
        let binary = PathBuf::from(path);
        if !binary.is_file() {
            bail!("PUSHGATE_BENCH_BINARY={} is not a file", binary.display());
        }
        return Ok(binary);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = workspace.join("target").join("release").join("pushgate-local");
    if !binary.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release -p pushgate-local` (from {})",
            binary.display(),
            workspace.canonicalize().unwrap_or_else(|_| workspace.clone()).display()
        );
    }
    Ok(binary)
}

/// `n` bytes from the kernel's random source.
fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom")?;
    Ok(bytes)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr().context("reading the bound port")?.port())
}

/// Spawns `binary` configured for a fresh account and the fakes' endpoints.
fn spawn_service(binary: &Path, apns: &FakeApns, fcm: &FakeFcm) -> Result<Service> {
    let account = Account { sid: format!("AC{}", hex(&random_bytes(16)?)), token: hex(&random_bytes(32)?) };
    let listen = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(binary)
        .env("PUSHGATE_LISTEN", &listen)
        .env("PUSHGATE_ACCOUNT_ID", &account.sid)
        .env("PUSHGATE_AUTH_TOKEN", &account.token)
        .env("PUSHGATE_DATA_KEY", STANDARD.encode(random_bytes(32)?))
        .env("APNS_ENDPOINT", apns.base_url())
        .env("FCM_ENDPOINT", fcm.base_url())
        .env("PUSHGATE_FCM_TOKEN_URIS", fcm.token_uri())
        .env("RUST_LOG", "warn")
        // The memory settings README recommends for pushgate-local (see "Benchmark"), unless the
        // caller chose others.
        .env("MIMALLOC_ARENA_EAGER_COMMIT", std::env::var("MIMALLOC_ARENA_EAGER_COMMIT").unwrap_or_else(|_| "0".into()))
        .env("MIMALLOC_PURGE_DELAY", std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_else(|_| "0".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    Ok(Service { child, base_url: format!("http://{listen}"), account })
}

/// An authenticated request to `path` of the service.
fn request(
    client: &reqwest::Client,
    service: &Service,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    client
        .request(method, format!("{}{path}", service.base_url))
        .basic_auth(&service.account.sid, Some(&service.account.token))
}

/// Polls `GET /v1/PushNotifications/Operations` until it answers 200 (or the child exits).
async fn wait_ready(client: &reqwest::Client, service: &Service) -> Result<()> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < STARTUP_TIMEOUT {
        match request(client, service, reqwest::Method::GET, "/v1/PushNotifications/Operations").send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("pushgate-local did not answer 200 at {} within {STARTUP_TIMEOUT:?} (last: {last})", service.base_url)
}

/// POSTs `body` as JSON to `path`; the answer must be 2xx.
async fn post_json(client: &reqwest::Client, service: &Service, path: &str, body: &Value) -> Result<Value> {
    let response = request(client, service, reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("reading the answer to POST {path}"))?;
    if !status.is_success() {
        bail!("POST {path} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {path} answered non-JSON: {text}"))
}

/// Registers a signing key and a service account with the fakes and creates the matching APN
/// and FCM credentials (App `bench`, which becomes the account's default App).
async fn create_credentials(client: &reqwest::Client, service: &Service, apns: &FakeApns, fcm: &FakeFcm) -> Result<()> {
    let key = keys::apns_signing_key("BENCHKEY01", "BENCHTEAM1");
    apns.register_signing_key(&key);
    let account = keys::fcm_service_account(FCM_PROJECT, &fcm.token_uri());
    fcm.register_service_account(&account);
    let path = "/v1/PushNotifications/Credentials";
    let apn = json!({
        "credentialType": "APN",
        "appName": "bench",
        "content": {
            "keyId": key.key_id,
            "teamId": key.team_id,
            "bundleId": BUNDLE_ID,
            "privateKey": STANDARD.encode(&key.private_key_pem),
        },
    });
    post_json(client, service, path, &apn).await.context("creating the APN credential")?;
    let fcm_credential = json!({
        "credentialType": "FCM",
        "appName": "bench",
        "content": { "privateKey": STANDARD.encode(account.to_json()) },
    });
    post_json(client, service, path, &fcm_credential).await.context("creating the FCM credential")?;
    Ok(())
}

/// The send request: `recipients` recipients alternating APN / FCM, each with unique tokens and
/// its own template variables.
/// Sends `body` once and follows its Operation to `COMPLETED`.
async fn timed_send(
    client: &reqwest::Client,
    service: &Service,
    apns: &FakeApns,
    fcm: &FakeFcm,
    body: bytes::Bytes,
) -> Result<RunResult> {
    apns.reset();
    fcm.reset();
    let pid = service.child.id();
    let (service_cpu_before, bench_cpu_before) = (cpu_seconds(&pid.to_string())?, cpu_seconds("self")?);

    let started = Instant::now();
    let response = request(client, service, reqwest::Method::POST, "/v1/PushNotifications")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("POST /v1/PushNotifications")?;
    let to_202 = started.elapsed();
    let status = response.status();
    let text = response.text().await.context("reading the send answer")?;
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("POST /v1/PushNotifications answered {status} after {to_202:?}, expected 202: {text}");
    }
    let answer: Value = serde_json::from_str(&text).with_context(|| format!("send answered non-JSON: {text}"))?;
    let operation_id =
        answer["operationId"].as_str().ok_or_else(|| anyhow!("the send answer has no operationId: {text}"))?;

    let operation = wait_completed(client, service, operation_id, started).await?;
    let to_completed = started.elapsed();
    let stat = |name: &str| operation["stats"][name].as_u64().unwrap_or(0);
    Ok(RunResult {
        to_202,
        to_completed,
        total: stat("total"),
        sent: stat("sent"),
        failed: stat("failed"),
        apns_delivered: apns.delivered_count(),
        fcm_delivered: fcm.delivered_count(),
        service_cpu: cpu_seconds(&pid.to_string())? - service_cpu_before,
        bench_cpu: cpu_seconds("self")? - bench_cpu_before,
        rss_kib: proc_status_kib(pid, "VmRSS")?,
    })
}

/// Polls the Operation every [`POLL_INTERVAL`] until it is `COMPLETED`; returns its JSON.
async fn wait_completed(client: &reqwest::Client, service: &Service, id: &str, started: Instant) -> Result<Value> {
    let path = format!("/v1/PushNotifications/Operations/{id}");
    loop {
        let response = request(client, service, reqwest::Method::GET, &path)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("reading GET {path}"))?;
        if !status.is_success() {
            bail!("GET {path} answered {status} after {:?}: {text}", started.elapsed());
        }
        let operation: Value = serde_json::from_str(&text).with_context(|| format!("GET {path}: non-JSON {text}"))?;
        match operation["status"].as_str() {
            Some("COMPLETED") => return Ok(operation),
            Some("CANCELED") => bail!("operation {id} was canceled: {text}"),
            _ if started.elapsed() > FANOUT_TIMEOUT => {
                bail!("operation {id} not COMPLETED after {FANOUT_TIMEOUT:?}; last seen: {text}")
            }
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// Hostile operations in flight at once in `--hostile`.
const HOSTILE_OPERATIONS: usize = 8;
/// Recipients of each hostile operation.
const HOSTILE_RECIPIENTS: usize = 500;

/// A template that spends its whole budget on every recipient: 9,999 iterations of filters on a
/// list (the iteration budget is 10,000) and no output.
const HOSTILE_TEMPLATE: &str = "{% for a in (1..99) %}{% for b in (1..101) %}{% assign c = items | sort | reverse | first | plus: b %}{% endfor %}{% endfor %}x";

/// `--hostile`: eight sends whose every recipient renders at the budget are put in flight; while
/// they render, an unrelated one-recipient send is timed to COMPLETED and GETs are timed one after
/// the other. Then a 1.5 MiB request of static data to 2,000 recipients is sent, with the
/// service's RSS around it.
async fn hostile(client: &reqwest::Client, service: &Service) -> Result<()> {
    let pid = service.child.id();
    let items: Vec<u32> = (0..200).rev().collect();
    let hostile_body = |n: usize| {
        let to: Vec<Value> = (0..n)
            .map(|i| json!({"token": format!("{:064x}", 1_000_000 + i), "provider": "APN", "variables": {"items": items}}))
            .collect();
        json!({"to": to, "content": {"title": HOSTILE_TEMPLATE}})
    };
    let cpu_before = cpu_seconds(&pid.to_string())?;
    let started = Instant::now();
    let mut hostile_ids = Vec::new();
    for _ in 0..HOSTILE_OPERATIONS {
        let answer = post_json(client, service, "/v1/PushNotifications", &hostile_body(HOSTILE_RECIPIENTS)).await?;
        hostile_ids.push(answer["operationId"].as_str().unwrap_or_default().to_owned());
    }
    println!(
        "pushgate-bench --hostile: {HOSTILE_OPERATIONS} operations x {HOSTILE_RECIPIENTS} recipients whose template \
         runs ~10,000 filtered iterations each, accepted in {:.0} ms",
        ms(started.elapsed())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // An unrelated send, while they render.
    let plain = json!({
        "to": [{"token": format!("{:064x}", 7), "provider": "APN", "variables": {"name": "Ada"}}],
        "content": {"title": "Hi {{ name }}"},
    });
    let sent_at = Instant::now();
    let answer = post_json(client, service, "/v1/PushNotifications", &plain).await?;
    let id = answer["operationId"].as_str().unwrap_or_default().to_owned();
    let operation = wait_completed(client, service, &id, sent_at).await?;
    println!(
        "unrelated 1-recipient send (templated): COMPLETED in {:.0} ms (sent {})",
        ms(sent_at.elapsed()),
        operation["stats"]["sent"]
    );

    // GET latency, one request after the other, while they still render.
    let mut latencies = Vec::new();
    let path = format!("/v1/PushNotifications/Operations/{}", hostile_ids[0]);
    for _ in 0..200 {
        let t = Instant::now();
        let response = request(client, service, reqwest::Method::GET, &path).send().await.context("GET")?;
        let _ = response.bytes().await;
        latencies.push(ms(t.elapsed()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "GET an Operation x {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );

    let mut failed = 0;
    for id in &hostile_ids {
        let op = wait_completed(client, service, id, started).await?;
        failed += op["stats"]["failed"].as_u64().unwrap_or(0);
    }
    let seconds = started.elapsed().as_secs_f64();
    let recipients = HOSTILE_OPERATIONS * HOSTILE_RECIPIENTS;
    println!(
        "hostile operations COMPLETED after {seconds:.1} s ({failed} of {recipients} failed at the budget); \
         pushgate-local CPU {:.1} s, {:.2} ms per hostile recipient",
        cpu_seconds(&pid.to_string())? - cpu_before,
        1000.0 * seconds / recipients as f64
    );

    // 1.5 MiB of static data to 2,000 recipients.
    let data: serde_json::Map<String, Value> =
        (0..96).map(|i| (format!("k{i}"), Value::from("d".repeat(16 * 1024 - 8)))).collect();
    let to: Vec<Value> = (0..2000).map(|i| json!({"token": format!("fcm-{i}:APA91b"), "provider": "FCM"})).collect();
    let body = json!({"to": to, "content": {"data": data}});
    let size = serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0);
    let rss_before = proc_status_kib(pid, "VmRSS")?;
    let response = request(client, service, reqwest::Method::POST, "/v1/PushNotifications")
        .json(&body)
        .send()
        .await
        .context("POST the large request")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "{:.2} MiB of static data to 2,000 recipients: HTTP {status} ({}); VmRSS {:.1} -> {:.1} MiB",
        size as f64 / (1024.0 * 1024.0),
        text.chars().take(160).collect::<String>(),
        rss_before as f64 / 1024.0,
        proc_status_kib(pid, "VmRSS")? as f64 / 1024.0
    );
    Ok(())
}

/// User + system CPU seconds of `/proc/<pid>/stat` (`pid` may be `self`), assuming the usual
/// 100 clock ticks per second.
fn cpu_seconds(pid: &str) -> Result<f64> {
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("odd /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        let raw = fields.get(i).ok_or_else(|| anyhow!("/proc/{pid}/stat is too short"))?;
        Ok(raw.parse::<u64>().with_context(|| format!("/proc/{pid}/stat field {raw:?}"))? as f64)
    };
    // `rest` starts at field 3, so field n is at index n - 3.
    Ok((ticks(14 - 3)? + ticks(15 - 3)?) / TICKS_PER_SECOND)
}

/// A `kB` line (`VmHWM`, `VmRSS`) of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| anyhow!("no {key} line in {path}"))
}

/// Milliseconds of `d`.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `n` with thousands separators.
fn grouped(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// (min, median, max) of `values` (not empty).
fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    (values[0], median, values[n - 1])
}

/// One line per run.
fn print_run(run: usize, r: &RunResult) {
    let secs = r.to_completed.as_secs_f64();
    println!(
        "  run {run}: 202 in {:.1} ms, COMPLETED in {:.1} ms ({} notif/s), sent {} failed {}, \
         fakes delivered APNs {} FCM {}, CPU pushgate-local {:.2} s ({:.0}%), bench+fakes {:.2} s ({:.0}%), VmRSS {:.1} MiB",
        ms(r.to_202),
        ms(r.to_completed),
        grouped(r.total as f64 / secs),
        r.sent,
        r.failed,
        r.apns_delivered,
        r.fcm_delivered,
        r.service_cpu,
        100.0 * r.service_cpu / secs,
        r.bench_cpu,
        100.0 * r.bench_cpu / secs,
        r.rss_kib as f64 / 1024.0,
    );
}

/// The summary over all runs; `memory` is (VmRSS after start, VmHWM, VmRSS) in KiB.
/// `hwm_first` is the peak after the first send alone (one operation's records in memory).
fn print_report(options: &Options, body_bytes: usize, results: &[RunResult], memory: (u64, u64, u64), hwm_first: u64) {
    let apn = options.recipients.div_ceil(2);
    let fcm = options.recipients / 2;
    println!(
        "pushgate-bench: {} recipients ({apn} APN + {fcm} FCM, body {:.1} MiB) x {} runs",
        options.recipients,
        body_bytes as f64 / (1024.0 * 1024.0),
        options.runs
    );
    let (min, median, max) = summary(results.iter().map(|r| ms(r.to_202)).collect());
    println!("time to 202: median {median:.1} ms (min {min:.1}, max {max:.1})");
    let (min, median, max) = summary(results.iter().map(|r| r.total as f64 / r.to_completed.as_secs_f64()).collect());
    let all_sent = results.iter().all(|r| r.sent == r.total && r.failed == 0 && r.total == options.recipients as u64);
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let failed: u64 = results.iter().map(|r| r.failed).sum();
    println!(
        "fan-out: median {} notifications/s (min {}, max {}) ; all SENT: {} (sent {sent}, failed {failed})",
        grouped(median),
        grouped(min),
        grouped(max),
        if all_sent { "yes" } else { "NO" }
    );
    let (min, median, max) = summary(results.iter().map(|r| ms(r.to_completed)).collect());
    println!("send to COMPLETED: median {median:.1} ms (min {min:.1}, max {max:.1})");
    let (rss_start, hwm, rss) = memory;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("peak RSS after the first send (VmHWM): {:.1} MiB", mib(hwm_first));
    println!(
        "peak RSS after all {} sends (VmHWM): {:.1} MiB ; VmRSS at end: {:.1} MiB (after start-up: {:.1} MiB); \
         every run's records stay in the in-memory store",
        options.runs,
        mib(hwm),
        mib(rss),
        mib(rss_start)
    );
    let apns: usize = results.iter().map(|r| r.apns_delivered).sum();
    let fcm_total: usize = results.iter().map(|r| r.fcm_delivered).sum();
    println!(
        "fakes delivered: APNs {apns} (expected {}), FCM {fcm_total} (expected {})",
        options.runs * apn,
        options.runs * fcm
    );
    let fanout: f64 = results.iter().map(|r| r.to_completed.as_secs_f64()).sum();
    let service_cpu: f64 = results.iter().map(|r| r.service_cpu).sum();
    let bench_cpu: f64 = results.iter().map(|r| r.bench_cpu).sum();
    println!(
        "CPU during the runs ({:.2} s wall, {} cores): pushgate-local {service_cpu:.2} s ({:.0}%), \
         bench (fakes + client) {bench_cpu:.2} s ({:.0}%)",
        fanout,
        std::thread::available_parallelism().map_or(0, usize::from),
        100.0 * service_cpu / fanout,
        100.0 * bench_cpu / fanout,
    );
}
