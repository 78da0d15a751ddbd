//! Test harness: spawns `pushgate-local`'s app on a random port against the fake APNs and FCM
//! servers, with helpers to call the API as a client would. Logs of the whole test process are
//! captured so tests can prove no secret is ever logged.
//!
//! May import anything: it is the support crate of the one integration-test binary
//! (`tests/tests/integration`): the test app, use-case dependency builders, the contract
//! suites both adapter sets run, emulator and Lambda rigs, and the benchmarks' tools.

use std::io::Write;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use pushgate_core::domain::{Account, AccountId, AuthToken};
use pushgate_fakes::keys::{ApnsSigningKey, FcmServiceAccount, apns_signing_key, fcm_service_account};
use pushgate_fakes::{FakeApns, FakeFcm};
use pushgate_local::{LocalConfig, build};
use pushgate_memory::{MemoryAccounts, MemoryQueue};
use reqwest::StatusCode;
use serde_json::Value;

pub use pushgate_fakes;

pub mod commands;
pub mod config_contract;
pub mod contract;
pub mod directory_contract;
pub mod idempotency_contract;
pub mod lambda_rig;
pub mod meter;
pub mod webhook;

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
static INIT: Once = Once::new();

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of this test process (pushgate at trace level, others at info).
pub fn capture_logs() {
    INIT.call_once(|| {
        let buffer = LOGS.get_or_init(Arc::default).clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,pushgate=trace"))
            .with_writer(move || LogWriter(buffer.clone()))
            .with_ansi(false)
            .try_init();
    });
}

/// Everything logged so far by this test process.
pub fn captured_logs() -> String {
    LOGS.get().and_then(|l| l.lock().ok().map(|l| String::from_utf8_lossy(&l).into_owned())).unwrap_or_default()
}

/// A running service with its fakes and one account.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub account: AccountId,
    /// Its auth token.
    pub token: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The local queue (to wait for fan-out to finish).
    pub queue: MemoryQueue,
    /// Accounts store (to add a second account).
    pub accounts: Arc<MemoryAccounts>,
    /// Fake APNs.
    pub apns: FakeApns,
    /// Fake FCM.
    pub fcm: FakeFcm,
    /// The APNs signing key registered with the fake.
    pub apns_key: ApnsSigningKey,
    /// The FCM service account registered with the fake.
    pub fcm_account: FcmServiceAccount,
}

/// Test tunables: fast retries.
pub fn test_config() -> LocalConfig {
    let mut config = LocalConfig::default();
    config.settings.retry_base = Duration::from_millis(20);
    config.settings.max_inline_wait = Duration::from_secs(2);
    config.settings.claim_lease = Duration::from_secs(5);
    config.settings.chunk_size = 50;
    config.workers = 2;
    config
}

impl TestApp {
    /// Spawns with h2c fakes and the test configuration.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(FakeApns::start_h2c().await, |_| {}).await
    }

    /// Spawns with the given fake APNs (h2c or TLS) and a configuration tweak.
    pub async fn spawn_with(apns: FakeApns, tweak: impl FnOnce(&mut LocalConfig)) -> TestApp {
        capture_logs();
        let fcm = FakeFcm::start_h2c().await;
        let apns_key = apns_signing_key("KEY1234567", "TEAM123456");
        apns.register_signing_key(&apns_key);
        let fcm_account = fcm_service_account("pushgate-test", &fcm.token_uri());
        fcm.register_service_account(&fcm_account);

        let mut config = test_config();
        config.providers.apns_endpoint = Some(apns.base_url());
        config.providers.fcm_endpoint = Some(fcm.base_url());
        config.providers.fcm_token_uris = vec![fcm.token_uri()];
        config.providers.http.extra_ca_pem = apns.server_ca_pem().map(String::into_bytes);
        tweak(&mut config);
        let app = build(&config).expect("the test configuration builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a random port");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (queue, accounts, account) = (app.queue.clone(), app.accounts.clone(), app.account.clone());
        let token = app.token.expose().to_owned();
        tokio::spawn(app.serve(listener, std::future::pending(), Duration::from_secs(1)));
        TestApp {
            base,
            account,
            token,
            client: reqwest::Client::new(),
            queue,
            accounts,
            apns,
            fcm,
            apns_key,
            fcm_account,
        }
    }

    /// Adds another account; returns its id and token.
    pub fn add_account(&self) -> (String, String) {
        let id = AccountId::from_bytes(rand_bytes());
        let token = AuthToken::new(hex(&rand_bytes()) + &hex(&rand_bytes()));
        self.accounts.insert(Account::new(id.clone(), token.hash())).expect("account stored");
        (id.to_string(), token.expose().to_owned())
    }

    /// A request with this app's account.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).basic_auth(&self.account, Some(&self.token))
    }

    /// GET as this account; returns status and JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send_json(self.request(reqwest::Method::GET, path)).await
    }

    /// POST JSON as this account.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        send_json(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// PATCH JSON as this account.
    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        send_json(self.request(reqwest::Method::PATCH, path).json(body)).await
    }

    /// DELETE as this account.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        send_json(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Creates an APN token-auth credential in `app`; returns its id.
    pub async fn create_apn_credential(&self, app: &str) -> String {
        self.create_credential(&apn_credential_body(&self.apns_key, app)).await
    }

    /// Creates an FCM credential in `app`; returns its id.
    pub async fn create_fcm_credential(&self, app: &str) -> String {
        self.create_credential(&fcm_credential_body(&self.fcm_account, app)).await
    }

    /// Creates a credential; panics unless 202.
    pub async fn create_credential(&self, body: &Value) -> String {
        let (status, created) = self.post("/v1/PushNotifications/Credentials", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "credential create failed: {created}");
        created["resourceId"].as_str().expect("resourceId").to_owned()
    }

    /// Sends; panics unless 202; returns the operation id.
    pub async fn send(&self, body: &Value) -> String {
        let (status, accepted) = self.post("/v1/PushNotifications", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "send failed: {accepted}");
        accepted["operationId"].as_str().expect("operationId").to_owned()
    }

    /// Waits until the fan-out queue is idle, then returns the operation.
    pub async fn settle(&self, operation_id: &str) -> Value {
        assert!(self.queue.wait_idle(Duration::from_secs(30)).await, "fan-out did not finish in 30 s");
        let (status, op) = self.get(&format!("/v1/PushNotifications/Operations/{operation_id}")).await;
        assert_eq!(status, StatusCode::OK, "{op}");
        op
    }

    /// Every notification of an operation (follows pages).
    pub async fn notifications_of(&self, operation_id: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut path = format!("/v1/PushNotifications?operationId={operation_id}&pageSize=1000");
        loop {
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            items.extend(page["pushNotifications"].as_array().cloned().unwrap_or_default());
            match page["pagination"]["next"].as_str() {
                Some(next) => {
                    path = format!("/v1/PushNotifications?operationId={operation_id}&pageSize=1000&pageToken={next}")
                }
                None => return items,
            }
        }
    }
}

/// Sends a request and decodes the JSON answer (Null when the body is not JSON).
pub async fn send_json(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the request reaches the server");
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// A valid APNs device token (64 hex chars) derived from `n`.
pub fn apn_token(n: usize) -> String {
    format!("{n:064x}")
}

/// An FCM registration token derived from `n`.
pub fn fcm_token(n: usize) -> String {
    format!("fcm-{n:06}:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx")
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The provider ports a test wires: delivery and the credential rules, configured alike.
pub struct Providers {
    pub gateway: Arc<dyn pushgate_core::app::ports::PushGateway>,
    pub checker: Arc<dyn pushgate_core::app::ports::CredentialChecker>,
}

impl Providers {
    /// The real gateway and credential rules for `config`.
    pub fn from_config(config: &pushgate_providers::gateway::ProviderConfig) -> Self {
        let gateway = pushgate_providers::gateway::ProviderGateway::new(config).expect("the gateway builds");
        let checker = pushgate_providers::checks::CredentialRules::new(&config.fcm_token_uris);
        Self { gateway: Arc::new(gateway), checker: Arc::new(checker) }
    }
}

/// Use-case dependencies on the memory stores with the given providers and queue, plus one
/// account, for tests that drive use cases directly (no HTTP server, no workers).
pub fn memory_deps(
    providers: Providers,
    queue: Arc<dyn pushgate_core::app::ports::FanoutQueue>,
) -> (pushgate_core::app::Deps, AccountId, AuthToken) {
    let Providers { gateway, checker } = providers;
    use pushgate_core::system::{RandomIds, SystemClock};
    use pushgate_memory::crypto::AesGcmBox;
    use pushgate_memory::{MemoryCredentials, MemoryDirectory, MemoryPushStore};
    let accounts = Arc::new(MemoryAccounts::default());
    let account = AccountId::from_bytes(rand_bytes());
    let token = AuthToken::new(hex(&rand_bytes()) + &hex(&rand_bytes()));
    accounts.insert(Account::new(account.clone(), token.hash())).expect("account stored");
    let deps = pushgate_core::app::Deps {
        push: Arc::new(MemoryPushStore::default()),
        credentials: Arc::new(MemoryCredentials::default()),
        accounts,
        idempotency: Arc::new(pushgate_memory::MemoryIdempotency::default()),
        budget: Arc::new(pushgate_memory::MemorySendBudget::default()),
        directory: Arc::new(MemoryDirectory::default()),
        queue,
        scheduler: Arc::new(ManualScheduler::default()),
        events: Arc::new(pushgate_providers::webhook::InProcessEvents::new(
            pushgate_providers::webhook::WebhookClient::configured(None).expect("a webhook client"),
            pushgate_providers::webhook::LOCAL_RETRIES,
        )),
        gateway,
        pacing: Default::default(),
        checker,
        secrets: Arc::new(AesGcmBox::new(&[7; 32])),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        pages: pushgate_core::app::PageTokens::new([8; 32]),
        settings: test_config().settings,
        cpu: pushgate_core::app::cpu::CpuPool::new(2),
    };
    (deps, account, token)
}

/// The provider ports pointed at the given fakes (h2c).
pub fn gateway_for(apns: &FakeApns, fcm: &FakeFcm) -> Providers {
    use pushgate_providers::gateway::ProviderConfig;
    let config = ProviderConfig {
        apns_endpoint: Some(apns.base_url()),
        fcm_endpoint: Some(fcm.base_url()),
        fcm_token_uris: vec![fcm.token_uri()],
        http: pushgate_providers::http::HttpSettings {
            extra_ca_pem: apns.server_ca_pem().map(String::into_bytes),
            ..Default::default()
        },
    };
    Providers::from_config(&config)
}

/// A queue that keeps chunks for the test to process by hand, or refuses them.
#[derive(Default)]
pub struct ManualQueue {
    /// Chunks enqueued so far.
    pub chunks: Mutex<Vec<pushgate_core::app::ports::Chunk>>,
    /// When set, `enqueue` fails.
    pub fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl pushgate_core::app::ports::FanoutQueue for ManualQueue {
    async fn enqueue(
        &self,
        chunks: Vec<pushgate_core::app::ports::Chunk>,
    ) -> Result<(), pushgate_core::app::ports::QueueError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(pushgate_core::app::ports::QueueError("injected failure".into()));
        }
        self.chunks.lock().expect("queue lock").extend(chunks);
        Ok(())
    }
}

impl ManualQueue {
    /// Takes the enqueued chunks.
    pub fn take(&self) -> Vec<pushgate_core::app::ports::Chunk> {
        std::mem::take(&mut *self.chunks.lock().expect("queue lock"))
    }
}

/// A scheduler that only records: the test fires releases by hand (as a test on moto delivers
/// a schedule's input itself).
#[derive(Default)]
pub struct ManualScheduler {
    /// Pending releases.
    pub pending: Mutex<Vec<pushgate_core::app::ports::Release>>,
}

#[async_trait::async_trait]
impl pushgate_core::app::ports::Scheduler for ManualScheduler {
    async fn schedule(
        &self,
        release: &pushgate_core::app::ports::Release,
    ) -> Result<(), pushgate_core::app::ports::QueueError> {
        self.pending.lock().expect("scheduler lock").push(release.clone());
        Ok(())
    }

    async fn unschedule(
        &self,
        _: &AccountId,
        operation: pushgate_core::domain::OperationId,
        instant: u8,
    ) -> Result<(), pushgate_core::app::ports::QueueError> {
        self.pending.lock().expect("scheduler lock").retain(|r| (r.operation_id, r.instant) != (operation, instant));
        Ok(())
    }
}

impl ManualScheduler {
    /// The pending releases.
    pub fn pending(&self) -> Vec<pushgate_core::app::ports::Release> {
        self.pending.lock().expect("scheduler lock").clone()
    }
}

/// Credential-create bodies for the fakes' key material (the ones `pushgate-fake-providers`
/// writes).
pub use pushgate_fakes::tool::{apn_credential_body, fcm_credential_body};

/// The AWS SDK configuration for the emulator tier (moto, started by `tests/run`), or `None`
/// when no emulator is configured: plain `cargo test` on a bare machine skips that tier. Under
/// `tests/run` (`PUSHGATE_REQUIRE_EMULATORS=1`) a missing emulator fails the test instead.
pub async fn emulator() -> Option<aws_config::SdkConfig> {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        assert!(
            std::env::var("PUSHGATE_REQUIRE_EMULATORS").is_err(),
            "PUSHGATE_REQUIRE_EMULATORS is set but AWS_ENDPOINT_URL is not: start moto (tests/run does)"
        );
        eprintln!("skipped: AWS_ENDPOINT_URL is not set; run ./tests/run for the emulator tier");
        return None;
    }
    Some(aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await)
}

/// The emulator's DynamoDB client and the name of the table `logical_id` (`PushTable`,
/// `ConfigTable`, `DirectoryTable`) among a fresh set created from `table_definitions` (the one
/// definition the template is checked against), or `None` without an emulator.
pub async fn fresh_table(logical_id: &str) -> Option<(aws_sdk_dynamodb::Client, String)> {
    use pushgate_aws::dynamodb::{create_tables, table_definitions};
    let config = emulator().await?;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let prefix = format!("pushgate-test-{}-", ulid::Ulid::generate().to_string().to_ascii_lowercase());
    let tables = table_definitions(&prefix);
    create_tables(&client, &tables).await.expect("moto creates the tables");
    let table = tables.into_iter().find(|t| t.logical_id == logical_id).expect("the table is defined");
    Some((client, table.name))
}

/// A fresh SQS queue for one test (unique name), returning its URL.
pub async fn test_queue(sqs: &aws_sdk_sqs::Client, purpose: &str) -> String {
    let name = format!("pushgate-test-{purpose}-{}", ulid::Ulid::generate().to_string().to_ascii_lowercase());
    let created = sqs.create_queue().queue_name(name).send().await.expect("moto creates the queue");
    created.queue_url().expect("queue url").to_owned()
}

/// Receives the messages currently on the queue (stopping at `expected`, or when the queue stays
/// empty), as the
/// dispatch Lambda would get them, keeping them invisible for `visibility_secs`.
pub async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    expected: usize,
    visibility_secs: i32,
) -> Vec<pushgate_core::app::dispatch::QueueMessage> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let mut out = Vec::new();
    let mut empty_polls = 0;
    for _ in 0..200 {
        if out.len() >= expected {
            break;
        }
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        for m in received.messages() {
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            out.push(pushgate_core::app::dispatch::QueueMessage {
                id: m.message_id().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count,
            });
        }
        if received.messages().is_empty() {
            empty_polls += 1;
            if empty_polls >= 3 && !out.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    out
}

/// Use-case dependencies wired to fresh fake APNs/FCM servers, with one account that has an
/// APN and an FCM credential in its default App, sending through `queue`.
pub struct ProviderRig {
    /// The dependencies.
    pub deps: pushgate_core::app::Deps,
    pub account: AccountId,
    pub token: AuthToken,
    /// Fake APNs.
    pub apns: FakeApns,
    /// Fake FCM.
    pub fcm: FakeFcm,
}

/// Builds a [`ProviderRig`]; `tweak` adjusts the settings before the credentials are created.
pub async fn provider_rig(
    queue: Arc<dyn pushgate_core::app::ports::FanoutQueue>,
    tweak: impl FnOnce(&mut pushgate_core::app::Settings),
) -> ProviderRig {
    let apns = FakeApns::start_h2c().await;
    let fcm = FakeFcm::start_h2c().await;
    let key = apns_signing_key("KEY1234567", "TEAM123456");
    apns.register_signing_key(&key);
    let sa = fcm_service_account("pushgate-test", &fcm.token_uri());
    fcm.register_service_account(&sa);
    let (mut deps, account, token) = memory_deps(gateway_for(&apns, &fcm), queue);
    tweak(&mut deps.settings);
    let create = |body: Value| {
        let (deps, account) = (deps.clone(), account.clone());
        async move { crate::commands::create_credential(&deps, &account, &body).await.expect("credential") }
    };
    create(apn_credential_body(&key, "app")).await;
    create(fcm_credential_body(&sa, "app")).await;
    ProviderRig { deps, account, token, apns, fcm }
}

/// The benchmarks' send: `recipients` recipients, half APN and half FCM (tokens shaped like real
/// ones), with three variables each, a templated title, body and data, and a tag.
pub fn bench_send_body(recipients: usize) -> Value {
    let to: Vec<Value> = (0..recipients)
        .map(|i| {
            let variables = serde_json::json!({ "name": format!("User {i}"), "gate": "A12", "seat": "14C" });
            if i % 2 == 0 {
                serde_json::json!({ "token": format!("{:032x}{:032x}", 0xbe9c_u128, i), "provider": "APN", "variables": variables })
            } else {
                // ~150 characters, shaped like a real FCM registration token.
                let token = format!("fcm-token-{i:06}:APA91b{}", "Xk7pQ2vN9mR4tL8wZ3cF6hJ1yB5dG0sE".repeat(4));
                serde_json::json!({ "token": token, "provider": "FCM", "variables": variables })
            }
        })
        .collect();
    serde_json::json!({
        "to": to,
        "content": {
            "title": "Hi {{ name }}",
            "body": "Boarding at gate {{ gate }}, seat {{ seat }}",
            "data": { "seat": "{{ seat }}" },
        },
        "tags": { "campaign": "bench" },
    })
}
