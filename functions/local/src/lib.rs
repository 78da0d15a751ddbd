//! `pushgate-local`: the whole service in one process on the memory adapters (or, with the
//! `aws` feature, on the AWS adapters at `AWS_ENDPOINT_URL`). This crate is a composition root:
//! it reads the configuration, wires the adapter crates into the core's `Deps`, and serves the
//! API crate's router with a hardened HTTP server ([`server`]).
//!
//! May import: every pushgate crate, hyper for the server, and (feature `aws`) `aws-config`
//! and the glue's AWS wiring. Nothing imports it but the tests, which run the same process.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use tracing::{info, warn};

use pushgate_api::{ApiConfig, DEFAULT_MAX_BODY_BYTES, router};
use pushgate_core::app::ports::PushGateway;
use pushgate_core::app::{Deps, PageTokens, Settings};
pub use pushgate_core::config::ConfigError;
use pushgate_core::config::positive;
use pushgate_core::domain::{Account, AccountId, AuthToken};
use pushgate_core::system::{RandomIds, SystemClock};
use pushgate_memory::crypto::AesGcmBox;
use pushgate_memory::{
    MemoryAccounts, MemoryCredentials, MemoryDirectory, MemoryPushStore, MemoryQueue, MemoryScheduler, QueueWorkers,
    run_releases,
};
use pushgate_providers::checks::CredentialRules;
use pushgate_providers::gateway::{ProviderConfig, ProviderGateway, parse_token_uris};
use pushgate_providers::http::HttpSettings;
use pushgate_providers::webhook::{InProcessEvents, LOCAL_RETRIES, Webhook, WebhookClient};
pub(crate) use server::serve_router;
pub use server::{ServerLimits, connection_cap, listen_base, raise_open_file_limit};

/// Chunks the local queue processes at once by default. A slot mostly waits (on the render
/// pool, on the providers), so there are many: a few heavy operations, each limited to its
/// share, cannot take them all.
pub const DEFAULT_WORKERS: usize = 256;

/// How `pushgate-local` writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the spans it was written in (`request_id`
    /// among them), for a log pipeline.
    Json,
}

/// Where `pushgate-local` keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// In-memory adapters (the default): nothing to install, nothing survives a restart.
    #[default]
    Memory,
    /// The AWS adapters (DynamoDB, SQS, KMS) at `AWS_ENDPOINT_URL`, e.g. moto: the storage code
    /// of the Lambda functions, without a cloud account. Needs the `aws` build feature.
    Aws,
}

/// Configuration of the local server (all from the environment).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `PUSHGATE_BACKEND`: `memory` (default) or `aws`.
    pub backend: Backend,
    /// `PUSHGATE_LISTEN` (default `127.0.0.1:3000`).
    pub listen: SocketAddr,
    /// `PUSHGATE_ACCOUNT_ID` + `PUSHGATE_AUTH_TOKEN`; generated when both are unset.
    pub account: Option<(AccountId, AuthToken)>,
    /// `PUSHGATE_DATA_KEY` (base64 of 32 bytes); generated when unset.
    pub data_key: Option<[u8; 32]>,
    /// HTTP settings (`PUSHGATE_PUBLIC_URL`, `PUSHGATE_MAX_BODY_BYTES`,
    /// `PUSHGATE_REQUEST_TIMEOUT_SECS`).
    pub api: ApiConfig,
    /// Limits of the HTTP server (`PUSHGATE_HEADER_TIMEOUT_SECS`, `PUSHGATE_IDLE_TIMEOUT_SECS`,
    /// `PUSHGATE_MAX_CONNECTIONS`, `PUSHGATE_HTTP2_MAX_STREAMS`).
    pub server: ServerLimits,
    /// Providers (`APNS_ENDPOINT`, `FCM_ENDPOINT`, `PUSHGATE_FCM_TOKEN_URIS`,
    /// `PUSHGATE_EXTRA_CA_FILE`).
    pub providers: ProviderConfig,
    /// `PUSHGATE_WORKERS`: chunks processed at once (default [`DEFAULT_WORKERS`]; at most
    /// [`pushgate_memory::CHUNKS_PER_OPERATION`] of one operation; each delivers up to 128
    /// notifications at once).
    pub workers: usize,
    /// `PUSHGATE_RENDER_THREADS`: threads rendering templates (default: one per core but one,
    /// at least one).
    pub render_threads: Option<usize>,
    /// Use case tunables.
    pub settings: Settings,
    /// `PUSHGATE_WEBHOOK_URL` + `PUSHGATE_WEBHOOK_SECRET`: the account's webhook for operation
    /// events (none when unset).
    pub webhook: Option<Webhook>,
    /// `PUSHGATE_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            account: None,
            data_key: None,
            api: ApiConfig::default(),
            server: ServerLimits::default(),
            providers: ProviderConfig::default(),
            workers: DEFAULT_WORKERS,
            render_threads: None,
            settings: Settings::default(),
            webhook: None,
            log_format: LogFormat::Text,
        }
    }
}

impl LocalConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, if set; empty values count
    /// as unset).
    pub fn from_vars(lookup: impl Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let backend = match var("PUSHGATE_BACKEND").as_deref() {
            None | Some("memory") => Backend::Memory,
            Some("aws") => Backend::Aws,
            Some(_) => return Err(ConfigError::new("PUSHGATE_BACKEND", "must be memory or aws")),
        };
        let log_format = match var("PUSHGATE_LOG_FORMAT").map(|f| f.to_ascii_lowercase()).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(ConfigError::new("PUSHGATE_LOG_FORMAT", "must be text or json")),
        };
        let mut config = Self { backend, log_format, ..Self::default() };
        if let Some(listen) = var("PUSHGATE_LISTEN") {
            config.listen = listen
                .parse()
                .map_err(|_| ConfigError::new("PUSHGATE_LISTEN", "must be host:port, e.g. 127.0.0.1:3000"))?;
        }
        config.account = match (var("PUSHGATE_ACCOUNT_ID"), var("PUSHGATE_AUTH_TOKEN")) {
            (None, None) => None,
            (Some(id), Some(token)) => {
                let id = AccountId::parse(&id).map_err(|_| {
                    ConfigError::new("PUSHGATE_ACCOUNT_ID", "must be AC followed by 32 lowercase hex characters")
                })?;
                if token.len() < 32 {
                    return Err(ConfigError::new("PUSHGATE_AUTH_TOKEN", "must be at least 32 characters"));
                }
                Some((id, AuthToken::new(token)))
            }
            (Some(_), None) => {
                return Err(ConfigError::new("PUSHGATE_AUTH_TOKEN", "must be set when PUSHGATE_ACCOUNT_ID is"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new("PUSHGATE_ACCOUNT_ID", "must be set when PUSHGATE_AUTH_TOKEN is"));
            }
        };
        if let Some(token) = var("PUSHGATE_ADMIN_TOKEN") {
            if token.len() < 32 {
                return Err(ConfigError::new("PUSHGATE_ADMIN_TOKEN", "must be at least 32 characters"));
            }
            config.api.admin_token = Some(AuthToken::new(token).hash());
        }
        if let Some(key) = var("PUSHGATE_DATA_KEY") {
            let bytes =
                STANDARD.decode(key.trim()).map_err(|_| ConfigError::new("PUSHGATE_DATA_KEY", "must be base64"))?;
            config.data_key = Some(
                bytes
                    .try_into()
                    .map_err(|_| ConfigError::new("PUSHGATE_DATA_KEY", "must decode to exactly 32 bytes"))?,
            );
        }
        config.api.public_url = var("PUSHGATE_PUBLIC_URL");
        if let Some(n) = var("PUSHGATE_MAX_BODY_BYTES") {
            config.api.max_body_bytes =
                n.parse().map_err(|_| ConfigError::new("PUSHGATE_MAX_BODY_BYTES", "must be a number of bytes"))?;
        } else {
            config.api.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
        }
        if let Some(secs) = positive(var, "PUSHGATE_REQUEST_TIMEOUT_SECS", "a whole number of seconds")? {
            config.api.request_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = positive(var, "PUSHGATE_HEADER_TIMEOUT_SECS", "a whole number of seconds")? {
            config.server.header_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = positive(var, "PUSHGATE_IDLE_TIMEOUT_SECS", "a whole number of seconds")? {
            config.server.idle_timeout = Duration::from_secs(secs);
        }
        if let Some(n) = positive(var, "PUSHGATE_MAX_CONNECTIONS", "a number of connections")? {
            config.server.max_connections =
                usize::try_from(n).map_err(|_| ConfigError::new("PUSHGATE_MAX_CONNECTIONS", "is too large"))?;
        }
        if let Some(n) = positive(var, "PUSHGATE_HTTP2_MAX_STREAMS", "a number of streams")? {
            config.server.http2_max_streams =
                u32::try_from(n).map_err(|_| ConfigError::new("PUSHGATE_HTTP2_MAX_STREAMS", "is too large"))?;
        }
        config.providers.apns_endpoint = var("APNS_ENDPOINT");
        config.providers.fcm_endpoint = var("FCM_ENDPOINT");
        if let Some(uris) = var("PUSHGATE_FCM_TOKEN_URIS") {
            config.providers.fcm_token_uris =
                parse_token_uris(&uris).map_err(|m| ConfigError::new("PUSHGATE_FCM_TOKEN_URIS", m))?;
        }
        if let Some(path) = var("PUSHGATE_EXTRA_CA_FILE") {
            let pem = std::fs::read(&path)
                .map_err(|e| ConfigError::new("PUSHGATE_EXTRA_CA_FILE", format!("cannot read {path}: {e}")))?;
            config.providers.http = HttpSettings { extra_ca_pem: Some(pem), ..HttpSettings::default() };
        }
        config.webhook = Webhook::from_env(var)?;
        config.settings.limits =
            pushgate_core::app::LimitDefaults::from_vars(var).map_err(|(name, why)| ConfigError::new(name, why))?;
        if let Some(n) = positive(var, "PUSHGATE_RENDER_THREADS", "a number of threads")? {
            config.render_threads =
                Some(usize::try_from(n).map_err(|_| ConfigError::new("PUSHGATE_RENDER_THREADS", "is too large"))?);
        }
        if let Some(n) = var("PUSHGATE_MAX_LIVE_NOTIFICATIONS") {
            config.settings.max_live_notifications = match n.trim() {
                "none" => None,
                n => Some(n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError::new(
                        "PUSHGATE_MAX_LIVE_NOTIFICATIONS",
                        "must be a number of notifications > 0, or none",
                    )
                })?),
            };
        }
        if let Some(n) = var("PUSHGATE_WORKERS") {
            config.workers = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::new("PUSHGATE_WORKERS", "must be a positive integer"))?;
        }
        Ok(config)
    }
}

impl LocalConfig {
    /// The CPU pool for rendering: `render_threads`, or sized for this machine.
    pub fn cpu_pool(&self) -> pushgate_core::app::cpu::CpuPool {
        match self.render_threads {
            Some(n) => pushgate_core::app::cpu::CpuPool::new(n),
            None => pushgate_core::app::cpu::CpuPool::for_this_machine(),
        }
    }
}

/// A running local service (not yet listening): the router plus its background workers.
pub struct LocalApp {
    /// The API router.
    pub router: axum::Router,
    /// The account configured or generated at start.
    pub account: AccountId,
    /// Its token (shown once at start when generated).
    pub token: AuthToken,
    /// Whether the account was generated.
    pub generated_account: bool,
    /// The accounts store (tests add more accounts).
    pub accounts: Arc<MemoryAccounts>,
    /// The queue (tests wait for it to go idle).
    pub queue: MemoryQueue,
    workers: QueueWorkers,
    limits: ServerLimits,
    public_url_set: bool,
}

/// Builds the local service with the real provider gateway.
pub fn build(config: &LocalConfig) -> Result<LocalApp, ConfigError> {
    let gateway = ProviderGateway::new(&config.providers).map_err(|e| {
        ConfigError::new("PUSHGATE_EXTRA_CA_FILE", format!("cannot build the provider HTTP clients: {e}"))
    })?;
    build_with_gateway(config, Arc::new(gateway))
}

/// Builds the local service around `gateway` (tests may pass their own).
pub fn build_with_gateway(config: &LocalConfig, gateway: Arc<dyn PushGateway>) -> Result<LocalApp, ConfigError> {
    let data_key = config.data_key.unwrap_or_else(|| {
        warn!(
            "PUSHGATE_DATA_KEY is not set: generated a data key for this run; credentials will not survive a restart"
        );
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        key
    });
    let (account, token, generated_account) = account_for(config);
    let accounts = Arc::new(MemoryAccounts::default());
    // A fresh store cannot be poisoned.
    let _ = accounts.insert(Account::new(account.clone(), token.hash()));
    let queue = MemoryQueue::default();
    let push = Arc::new(MemoryPushStore::default());
    spawn_retention(push.clone());
    let (scheduler, fired) = MemoryScheduler::new();
    let deps = Deps {
        push: push.clone(),
        credentials: Arc::new(MemoryCredentials::default()),
        accounts: accounts.clone(),
        idempotency: Arc::new(pushgate_memory::MemoryIdempotency::default()),
        budget: Arc::new(pushgate_memory::MemorySendBudget::default()),
        directory: Arc::new(MemoryDirectory::default()),
        queue: Arc::new(queue.clone()),
        scheduler: Arc::new(scheduler),
        events: Arc::new(InProcessEvents::new(
            WebhookClient::configured(config.webhook.as_ref().map(|w| (&account, w)))?,
            LOCAL_RETRIES,
        )),
        gateway,
        pacing: Default::default(),
        checker: Arc::new(CredentialRules::new(&config.providers.fcm_token_uris)),
        secrets: Arc::new(AesGcmBox::new(&data_key)),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        pages: PageTokens::derive(&data_key),
        settings: config.settings.clone(),
        cpu: config.cpu_pool(),
    };
    let workers = queue.start(deps.clone(), config.workers);
    run_releases(deps.clone(), fired);
    let mut api = config.api.clone();
    api.metrics = Some(metrics_text(Some(queue.clone())));
    Ok(LocalApp {
        router: router(deps, api),
        account,
        token,
        generated_account,
        accounts,
        queue,
        workers,
        limits: config.server.clone(),
        public_url_set: config.api.public_url.is_some(),
    })
}

/// `GET /metrics`: the process's metrics as Prometheus text, the in-memory fan-out queue's depth
/// and oldest age sampled at each scrape (SQS reports its own in the AWS mode). One recorder per process (installed by the first server
/// built; later ones, in tests, share it).
pub(crate) fn metrics_text(queue: Option<MemoryQueue>) -> pushgate_api::MetricsText {
    static PROMETHEUS: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    let handle = PROMETHEUS.get_or_init(|| {
        let seconds = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.install_recorder())
            .map_err(|e| warn!(error = %e, "metrics: another recorder is installed; /metrics stays empty"))
            .ok()
            .inspect(|handle| {
                // Histogram samples wait in the recorder until an upkeep folds them in: without
                // it they would pile up between scrapes.
                let handle = handle.clone();
                std::thread::spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        handle.run_upkeep();
                    }
                });
            })
    });
    let handle = handle.clone();
    pushgate_api::MetricsText(Arc::new(move || {
        if let Some(queue) = &queue {
            let (depth, oldest) = queue.waiting();
            pushgate_core::app::metrics::queue(depth, oldest);
        }
        handle.as_ref().map(|h| h.render()).unwrap_or_default()
    }))
}

/// The configured account, or a generated one (`true`) when none is configured.
pub fn account_for(config: &LocalConfig) -> (AccountId, AuthToken, bool) {
    match &config.account {
        Some((id, token)) => (id.clone(), token.clone(), false),
        None => {
            let mut id = [0u8; 16];
            let mut token = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut id);
            rand::thread_rng().fill_bytes(&mut token);
            let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
            (AccountId::from_bytes(id), AuthToken::new(token), true)
        }
    }
}

/// Applies the 7-day retention to the memory store every ten minutes.
fn spawn_retention(push: Arc<MemoryPushStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            match push.purge_created_before(chrono::Utc::now() - pushgate_core::domain::RETENTION) {
                Ok(0) => {}
                Ok(n) => info!(records = n, "retention: forgot records older than 7 days"),
                Err(e) => warn!(error = %e, "retention sweep failed"),
            }
        }
    });
}

/// Prints how to call the server: the generated account (terminal only, once) and the address.
pub fn print_banner(account: &AccountId, token: &AuthToken, generated: bool, addr: SocketAddr) {
    if generated {
        println!("pushgate-local generated an account for this run:");
        println!("  PUSHGATE_ACCOUNT_ID={account}");
        println!("  PUSHGATE_AUTH_TOKEN={}", token.expose());
    }
    println!("pushgate-local listening on http://{addr}");
    info!(%addr, account_id = %account, "pushgate-local started");
}

impl LocalApp {
    /// Serves on `listener` (under the configuration's [`ServerLimits`]) until `shutdown`
    /// resolves, then stops accepting, finishes in-flight requests and drains queued chunks (up to
    /// `drain`).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> std::io::Result<()> {
        let LocalApp { router, workers, limits, public_url_set, .. } = self;
        serve_router(listener, router, &limits, public_url_set, shutdown).await?;
        info!("HTTP server stopped; draining the fan-out queue");
        workers.drain(drain).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(vars: &[(&'static str, &str)]) -> Result<LocalConfig, ConfigError> {
        let vars: Vec<(&'static str, String)> = vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        LocalConfig::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_server_limits_have_sane_defaults_and_are_read_from_their_variables() {
        let defaults = config_with(&[]).expect("defaults");
        assert_eq!(defaults.server, ServerLimits::default());
        assert_eq!(defaults.api.request_timeout, Duration::from_secs(30));
        assert_eq!(defaults.server.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(defaults.server.max_connections, 1_000);

        let set = config_with(&[
            ("PUSHGATE_REQUEST_TIMEOUT_SECS", "5"),
            ("PUSHGATE_HEADER_TIMEOUT_SECS", "2"),
            ("PUSHGATE_IDLE_TIMEOUT_SECS", " 30 "),
            ("PUSHGATE_MAX_CONNECTIONS", "50"),
            ("PUSHGATE_HTTP2_MAX_STREAMS", "10"),
        ])
        .expect("valid");
        assert_eq!(set.api.request_timeout, Duration::from_secs(5));
        assert_eq!(
            set.server,
            ServerLimits {
                header_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(30),
                max_connections: 50,
                http2_max_streams: 10,
            }
        );
    }

    #[test]
    fn a_limit_that_is_not_a_positive_whole_number_is_refused_naming_its_variable() {
        for var in [
            "PUSHGATE_REQUEST_TIMEOUT_SECS",
            "PUSHGATE_HEADER_TIMEOUT_SECS",
            "PUSHGATE_IDLE_TIMEOUT_SECS",
            "PUSHGATE_MAX_CONNECTIONS",
            "PUSHGATE_HTTP2_MAX_STREAMS",
        ] {
            for bad in ["0", "-1", "1.5", "ten"] {
                match config_with(&[(var, bad)]) {
                    Ok(_) => panic!("{var}={bad} was accepted"),
                    Err(e) => assert_eq!(e.var, var, "{bad}: {e}"),
                }
            }
        }
        match config_with(&[("PUSHGATE_HTTP2_MAX_STREAMS", "5000000000")]) {
            Ok(_) => panic!("a stream count past u32 was accepted"),
            Err(e) => assert_eq!(e.var, "PUSHGATE_HTTP2_MAX_STREAMS"),
        }
    }
}
