//! A metered send, end to end: moto behind the metering proxy, `pushgate-local`'s AWS mode
//! (`pushgate_local::aws::build_local`, unchanged) in a child process whose `AWS_ENDPOINT_URL`
//! is the proxy, the fake APNs and FCM servers here. The child is this process's own executable
//! started with [`SERVE_ARG`] ([`serve_local_aws`]): its CPU time is pushgate's alone (the proxy,
//! the fakes and moto run elsewhere), read from `/proc/<pid>/stat`.
//!
//! Set-up (tables, queue, key, account, credentials) happens through the proxy but before the
//! meter starts; the send, the dispatch of every chunk and the deletes of the consumed messages
//! are metered. Completion is read straight from moto (not metered), so watching the operation
//! costs nothing. With a [`FaultConfig`] the proxy also enforces DynamoDB's write limits and
//! transaction conflicts ([`super::fault`]) from the start (the set-up's few writes fit in the
//! buckets' burst), and what it did is part of the measurement.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use pushgate_fakes::keys::{apns_signing_key, fcm_service_account};
use pushgate_fakes::{FakeApns, FakeFcm};
use serde_json::{Value, json};

use super::fault::{FaultConfig, FaultCounts};
use super::proxy::MeterProxy;
use super::size::item_size;
use super::{Records, Service};
use crate::{apn_credential_body, fcm_credential_body};

/// The argument that makes a capacity executable serve pushgate instead of measuring.
pub const SERVE_ARG: &str = "--serve-local-aws";

/// The measured send: `recipients` recipients, half APN and half FCM device tokens (shaped like
/// real ones), each with three template variables, Liquid in the title, body and data, and two
/// tags.
pub fn capacity_send_body(recipients: usize) -> Value {
    let to: Vec<Value> = (0..recipients)
        .map(|i| {
            let variables = json!({ "name": format!("User {i}"), "gate": "A12", "seat": "14C" });
            if i % 2 == 0 {
                json!({ "token": format!("{:032x}{:032x}", 0xcafe_u128, i), "provider": "APN", "variables": variables })
            } else {
                let token = format!("fcm-token-{i:06}:APA91b{}", "Xk7pQ2vN9mR4tL8wZ3cF6hJ1yB5dG0sE".repeat(4));
                json!({ "token": token, "provider": "FCM", "variables": variables })
            }
        })
        .collect();
    json!({
        "to": to,
        "content": {
            "title": "Hi {{ name }}",
            "body": "Boarding at gate {{ gate }}, seat {{ seat }}",
            "data": { "seat": "{{ seat }}" },
        },
        "tags": { "campaign": "spring-sale", "segment": "frequent-flyers" },
    })
}

/// The child side: `pushgate-local` in AWS mode, configured from the environment exactly as
/// `pushgate-local` is (`PUSHGATE_BACKEND=aws`), printing `listening http://ADDR` once it
/// accepts connections. It never prints the account's token.
pub async fn serve_local_aws() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = pushgate_local::LocalConfig::from_env()?;
    let names = pushgate_local::aws::LocalResources::from_env();
    let app = pushgate_local::aws::build_local(&config, &names).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!("listening http://{}", listener.local_addr()?);
    std::io::Write::flush(&mut std::io::stdout())?;
    app.serve(listener, std::future::pending(), Duration::from_secs(1)).await?;
    Ok(())
}

/// What a metered send measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub recipients: usize,
    /// Requests from the send request to its `202`.
    pub send: Records,
    /// Requests from the `202` until the operation is COMPLETED and its messages are deleted.
    pub dispatch: Records,
    pub account: String,
    pub operation: String,
    /// The tables' prefix (the report prints table stems).
    pub table_prefix: String,
    /// pushgate's CPU time (user + system) while it handled the send request.
    pub cpu_send: Duration,
    /// pushgate's CPU time while it dispatched.
    pub cpu_dispatch: Duration,
    pub wall_send: Duration,
    pub wall_dispatch: Duration,
    /// Items of the push table after the send, and their bytes (item sizes, without DynamoDB's
    /// 100 bytes of per-item overhead).
    pub stored_items: u64,
    pub stored_bytes: u64,
    /// The operation item as stored at the end.
    pub operation_item: Value,
    /// Notifications the fakes accepted.
    pub delivered_apns: usize,
    pub delivered_fcm: usize,
    /// The device token of every notification the fakes accepted, once per delivery.
    pub delivered_tokens: Vec<String>,
    /// The fault layer's budget and what it did, when it was on.
    pub faults: Option<(FaultConfig, FaultCounts)>,
    /// The queue consumers pushgate ran.
    pub workers: usize,
}

impl Measurement {
    /// Send and dispatch together.
    pub fn all(&self) -> Records {
        let mut all = self.send.clone();
        all.extend(self.dispatch.clone());
        all
    }

    /// A counter of the final operation item (`sent`, `failed`, `queued`, …).
    pub fn counter(&self, name: &str) -> u64 {
        self.operation_item
            .get(name)
            .and_then(|n| n.get("N"))
            .and_then(Value::as_str)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The final operation status.
    pub fn status(&self) -> String {
        self.operation_item
            .get("status")
            .and_then(|s| s.get("S"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// The child process, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// User + system CPU time of the child so far.
    fn cpu(&self) -> Result<Duration> {
        process_cpu(self.child.id())
    }
}

/// User + system CPU time of process `pid` (Linux `/proc`, clock ticks of 10 ms).
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("read /proc/<pid>/stat")?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `fields[0]` is field 3.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("utime/stime");
    const TICKS_PER_SECOND: u64 = 100;
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 1000 / TICKS_PER_SECOND))
}

/// What to measure: a send of `recipients` with `workers` queue consumers, optionally under the
/// fault layer, given up on when the operation is not COMPLETED within `deadline`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub recipients: usize,
    pub workers: usize,
    pub faults: Option<FaultConfig>,
    pub deadline: Duration,
}

impl Plan {
    /// `recipients` and `workers`, no fault layer, 600 s to complete.
    pub fn new(recipients: usize, workers: usize) -> Plan {
        Plan { recipients, workers, faults: None, deadline: Duration::from_secs(600) }
    }

    /// The same under the fault layer.
    pub fn with_faults(self, faults: FaultConfig) -> Plan {
        Plan { faults: Some(faults), ..self }
    }

    /// The same, given up on after `deadline`.
    pub fn within(self, deadline: Duration) -> Plan {
        Plan { deadline, ..self }
    }
}

/// Runs the metered send `plan` says through `server_exe` (an executable that serves with
/// [`SERVE_ARG`]). Needs `AWS_ENDPOINT_URL` (moto) and test credentials in the environment.
pub async fn measure(server_exe: &Path, plan: &Plan) -> Result<Measurement> {
    let (recipients, workers, faults) = (plan.recipients, plan.workers, plan.faults.clone());
    let moto = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL must name a running moto server")?;
    let proxy = MeterProxy::start_with(&moto, faults).await.context("start the metering proxy")?;
    let apns = FakeApns::start_h2c().await;
    let fcm = FakeFcm::start_h2c().await;
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let service_account = fcm_service_account("pushgate-capacity", &fcm.token_uri());
    fcm.register_service_account(&service_account);

    let suffix = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let table_prefix = format!("pg-capacity-{suffix}-");
    for table in pushgate_aws::dynamodb::table_definitions(&table_prefix) {
        proxy.meter.register_table(&table.name, super::TableShape::from_definition(&table));
    }
    let account = pushgate_core::domain::AccountId::from_bytes(ulid::Ulid::generate().to_bytes()).to_string();
    let token = format!("{}{}", ulid::Ulid::generate(), ulid::Ulid::generate());
    let data_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let mut command = Command::new(server_exe);
    command
        .arg(SERVE_ARG)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("PUSHGATE_BACKEND", "aws")
        .env("PUSHGATE_LISTEN", "127.0.0.1:0")
        .env("PUSHGATE_ACCOUNT_ID", &account)
        .env("PUSHGATE_AUTH_TOKEN", &token)
        .env("PUSHGATE_DATA_KEY", data_key)
        .env("PUSHGATE_TABLE_PREFIX", &table_prefix)
        .env("PUSHGATE_QUEUE_NAME", format!("pg-capacity-{suffix}"))
        .env("PUSHGATE_WORKERS", workers.to_string())
        .env("APNS_ENDPOINT", apns.base_url())
        .env("FCM_ENDPOINT", fcm.base_url())
        .env("PUSHGATE_FCM_TOKEN_URIS", fcm.token_uri())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().with_context(|| format!("start {}", server_exe.display()))?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let mut server = Server { child, base: String::new() };
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(120), first_line)
        .await
        .context("pushgate did not start within 120 s")???;
    server.base = line.trim().strip_prefix("listening ").context("pushgate did not start (see its stderr)")?.to_owned();

    let client = reqwest::Client::builder().no_proxy().build()?;
    let post = |path: &str, body: &Value| {
        client.post(format!("{}{path}", server.base)).basic_auth(&account, Some(&token)).json(body).send()
    };
    for body in [apn_credential_body(&key, "main"), fcm_credential_body(&service_account, "main")] {
        let answer = post("/v1/PushNotifications/Credentials", &body).await?;
        if answer.status() != reqwest::StatusCode::ACCEPTED {
            bail!("credential create answered {}", answer.status());
        }
    }

    // Measure from here.
    let body = capacity_send_body(recipients);
    let _ = proxy.meter.take();
    let (cpu_0, started) = (server.cpu()?, Instant::now());
    let answer = post("/v1/PushNotifications", &body).await?;
    let (cpu_1, accepted) = (server.cpu()?, Instant::now());
    let status = answer.status();
    let answer: Value = answer.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("send answered {status}: {answer}");
    }
    let send = proxy.meter.take();
    let operation = answer["operationId"].as_str().context("operationId")?.to_owned();
    let key = json!({"pk": {"S": format!("OPERATION#{account}")}, "sk": {"S": operation}});
    let read = json!({"TableName": format!("{table_prefix}push"), "Key": key, "ConsistentRead": true});
    let deadline = Instant::now() + plan.deadline;
    let mut operation_item = Value::Null;
    loop {
        if let Some(item) = proxy.dynamo_unmetered("GetItem", &read).await.and_then(|a| a.get("Item").cloned()) {
            operation_item = item;
        }
        if operation_item["status"]["S"] == "COMPLETED" {
            break;
        }
        if Instant::now() > deadline {
            let faults = proxy.faults.as_ref().map(|f| f.counts());
            bail!("the operation did not complete within {:?}: {operation_item}; faults: {faults:?}", plan.deadline);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The consumer deletes its messages after processing them: wait for those deletes.
    // (A consumer may have received the chunk before the 202 reached us: count from the send on.)
    for _ in 0..200 {
        let mut seen = send.clone();
        seen.extend(proxy.meter.snapshot());
        let sqs = |api: &'static str| seen.services.iter().filter(move |c| c.service == Service::Sqs && c.api == api);
        let received: u64 = sqs("ReceiveMessage").map(|c| c.received).sum();
        let deleted = sqs("DeleteMessageBatch").map(|c| c.entries).sum::<u64>() + sqs("DeleteMessage").count() as u64;
        if received > 0 && deleted >= received {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cpu_2, finished) = (server.cpu()?, Instant::now());
    let dispatch = proxy.meter.take();

    let (stored_items, stored_bytes) = storage(&proxy, &format!("{table_prefix}push")).await;
    Ok(Measurement {
        recipients,
        send,
        dispatch,
        account,
        operation,
        table_prefix,
        cpu_send: cpu_1.saturating_sub(cpu_0),
        cpu_dispatch: cpu_2.saturating_sub(cpu_1),
        wall_send: accepted - started,
        wall_dispatch: finished - accepted,
        stored_items,
        stored_bytes,
        operation_item,
        delivered_apns: apns.delivered_count(),
        delivered_fcm: fcm.delivered_count(),
        delivered_tokens: apns
            .delivered()
            .into_iter()
            .map(|r| r.device_token)
            .chain(fcm.delivered().into_iter().map(|r| r.device_token))
            .collect(),
        faults: proxy.faults.as_ref().map(|f| (f.config().clone(), f.counts())),
        workers,
    })
}

/// Items of `table` and the sum of their sizes (a Scan straight to moto, not metered).
async fn storage(proxy: &MeterProxy, table: &str) -> (u64, u64) {
    let (mut items, mut bytes) = (0, 0);
    let mut start: Option<Value> = None;
    loop {
        let mut scan = json!({"TableName": table});
        if let Some(key) = start.take() {
            scan["ExclusiveStartKey"] = key;
        }
        let Some(page) = proxy.dynamo_unmetered("Scan", &scan).await else { break };
        for item in page.get("Items").and_then(Value::as_array).into_iter().flatten() {
            items += 1;
            bytes += item.as_object().map_or(0, item_size);
        }
        match page.get("LastEvaluatedKey") {
            Some(key) if !key.is_null() => start = Some(key.clone()),
            _ => break,
        }
    }
    (items, bytes)
}
