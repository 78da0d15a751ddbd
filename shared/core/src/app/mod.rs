//! Use cases over the ports: send, dispatch, queries, credentials and auth. No HTTP, no SDKs.

pub mod admin;
pub mod auth;
pub mod backoff;
pub mod cancel;
pub mod cpu;
pub mod credentials;
pub mod directory;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod paging;
pub mod ports;
pub mod queries;
pub mod schedule;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

pub use error::AppError;
pub use paging::PageTokens;
use ports::{
    AccountStore, Clock, CredentialChecker, CredentialStore, DirectoryStore, EventSink, FanoutQueue, IdGenerator,
    IdempotencyStore, PushGateway, PushWriter, Scheduler, SecretBox, SendBudget,
};

/// Tunables of the use cases.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most recipients per queued chunk.
    pub chunk_size: usize,
    /// Most estimated bytes per queued chunk (SQS allows 256 KiB; stay well under).
    pub chunk_bytes: usize,
    /// Provider attempts per notification within one processing of a chunk.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_base: Duration,
    /// Longest wait between attempts inside one processing; longer waits go back to the queue.
    pub max_inline_wait: Duration,
    /// How long a claim on a notification lasts.
    pub claim_lease: Duration,
    /// After this many receives of a chunk, retryable failures become FAILED.
    pub max_receives: u32,
    /// Concurrent deliveries per chunk.
    pub delivery_concurrency: usize,
    /// Most notifications one account may have queued or scheduled at once (sends beyond it get
    /// 429); `None`: no cap. Enforced where the store keeps the figure (memory). An account's
    /// own `liveNotifications` limit wins.
    pub max_live_notifications: Option<u64>,
    /// The limits of an account the operator set none for.
    pub limits: LimitDefaults,
}

/// The deployment's default per-account limits (`pushgate-admin limits set` overrides them per
/// account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDefaults {
    /// API requests per second (token bucket refill).
    pub requests_per_second: u32,
    /// API requests in a burst (token bucket size).
    pub request_burst: u32,
    /// Notifications (recipients × sendAt instants) accepted per minute.
    pub notifications_per_minute: u32,
}

impl Default for LimitDefaults {
    fn default() -> Self {
        // FCM accepts 600,000 messages a minute per project; one account rarely has more.
        Self { requests_per_second: 100, request_burst: 200, notifications_per_minute: 600_000 }
    }
}

impl LimitDefaults {
    /// The variables that set the defaults (pushgate-local and the Lambda functions read them).
    pub const VARIABLES: [&'static str; 3] =
        ["PUSHGATE_REQUESTS_PER_SECOND", "PUSHGATE_REQUEST_BURST", "PUSHGATE_NOTIFICATIONS_PER_MINUTE"];

    /// The defaults, with each variable `var` gives replacing its value; `Err((variable, why))`
    /// for a value that is not a whole number ≥ 1.
    pub fn from_vars(var: impl Fn(&'static str) -> Option<String>) -> Result<Self, (&'static str, &'static str)> {
        let mut limits = Self::default();
        let fields = [&mut limits.requests_per_second, &mut limits.request_burst, &mut limits.notifications_per_minute];
        for (name, field) in Self::VARIABLES.into_iter().zip(fields) {
            if let Some(raw) = var(name) {
                *field = raw.trim().parse().ok().filter(|n| *n >= 1).ok_or((name, "must be a whole number ≥ 1"))?;
            }
        }
        Ok(limits)
    }
}

/// The limits in force for one account: its own, else the deployment's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// API requests per second.
    pub requests_per_second: u32,
    /// API requests in a burst.
    pub request_burst: u32,
    /// Notifications accepted per minute.
    pub notifications_per_minute: u32,
    /// Live notifications at most (`None`: no cap).
    pub live_notifications: Option<u64>,
}

impl Settings {
    /// The limits in force for an account with `own` limits.
    pub fn limits_for(&self, own: &crate::domain::AccountLimits) -> Limits {
        let d = self.limits;
        Limits {
            requests_per_second: own.requests_per_second.unwrap_or(d.requests_per_second),
            request_burst: own.request_burst.unwrap_or(d.request_burst).max(1),
            notifications_per_minute: own.notifications_per_minute.unwrap_or(d.notifications_per_minute),
            live_notifications: own.live_notifications.map(u64::from).or(self.max_live_notifications),
        }
    }
}

/// Default cap on one account's live (queued + scheduled) notifications: 100 full sends.
pub const DEFAULT_MAX_LIVE_NOTIFICATIONS: u64 = 1_000_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            chunk_size: 500,
            chunk_bytes: 192 * 1024,
            max_attempts: 3,
            retry_base: Duration::from_millis(200),
            max_inline_wait: Duration::from_secs(10),
            claim_lease: Duration::from_secs(120),
            max_receives: 5,
            delivery_concurrency: 128,
            max_live_notifications: Some(DEFAULT_MAX_LIVE_NOTIFICATIONS),
            limits: LimitDefaults::default(),
        }
    }
}

/// Everything the use cases need, built once per process (or Lambda cold start).
#[derive(Clone)]
pub struct Deps {
    /// Notifications and operations.
    pub push: Arc<dyn PushWriter>,
    /// Credentials and Apps.
    pub credentials: Arc<dyn CredentialStore>,
    pub accounts: Arc<dyn AccountStore>,
    /// Idempotency records of POSTs.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Notifications accepted per account and minute.
    pub budget: Arc<dyn SendBudget>,
    /// Users and DeviceRegistrations.
    pub directory: Arc<dyn DirectoryStore>,
    /// The fan-out queue.
    pub queue: Arc<dyn FanoutQueue>,
    /// Releases of scheduled sends.
    pub scheduler: Arc<dyn Scheduler>,
    /// Operation events for webhooks.
    pub events: Arc<dyn EventSink>,
    /// APNs and FCM.
    pub gateway: Arc<dyn PushGateway>,
    /// Credentials whose provider asked this process to slow down.
    pub pacing: Arc<dispatch::pacing::Pacing>,
    /// What APNs and FCM accept as credentials.
    pub checker: Arc<dyn CredentialChecker>,
    /// Credential encryption.
    pub secrets: Arc<dyn SecretBox>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    /// Page token signing.
    pub pages: PageTokens,
    /// Tunables.
    pub settings: Settings,
    /// Threads for CPU-heavy work (template rendering), fair between operations.
    pub cpu: cpu::CpuPool,
}
