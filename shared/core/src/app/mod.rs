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
    IdempotencyStore, PushGateway, PushWriter, Scheduler, SecretBox,
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
    /// 429); `None`: no cap. Enforced where the store keeps the figure (memory).
    pub max_live_notifications: Option<u64>,
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
