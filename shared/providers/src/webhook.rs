//! Webhooks: posting operation events to an account's URL, signed with HMAC-SHA256
//! (`X-Pushgate-Signature: t=…,v1=…`, see `domain::event::signature`).
//!
//! [`WebhookClient`] posts one event once. [`InProcessEvents`] (local) publishes by spawning a
//! task that posts with exponential backoff; on AWS `aws::sqs::QueuedEvents` queues the event
//! for the dispatch function instead, because a Lambda is frozen once it has answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

use pushgate_core::app::ports::{EventSink, QueueError, WebhookError};
use pushgate_core::config::ConfigError;
use pushgate_core::domain::{AccountId, OperationEvent};

/// One account's webhook. The secret is never logged (`Debug` redacts it).
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where events are posted.
    pub url: String,
    /// The HMAC key.
    pub secret: String,
}

impl Webhook {
    /// The webhook from `PUSHGATE_WEBHOOK_URL` and `PUSHGATE_WEBHOOK_SECRET` (both or neither; an
    /// `http(s)://` URL and a secret of at least 16 characters), read through `var`.
    pub fn from_env(var: impl Fn(&'static str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        match (var("PUSHGATE_WEBHOOK_URL"), var("PUSHGATE_WEBHOOK_SECRET")) {
            (None, None) => Ok(None),
            (Some(url), Some(secret)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::new("PUSHGATE_WEBHOOK_URL", "must be an http:// or https:// URL"));
                }
                if secret.len() < 16 {
                    return Err(ConfigError::new("PUSHGATE_WEBHOOK_SECRET", "must be at least 16 characters"));
                }
                Ok(Some(Self { url, secret }))
            }
            (Some(_), None) => {
                Err(ConfigError::new("PUSHGATE_WEBHOOK_SECRET", "must be set when PUSHGATE_WEBHOOK_URL is"))
            }
            (None, Some(_)) => {
                Err(ConfigError::new("PUSHGATE_WEBHOOK_URL", "must be set when PUSHGATE_WEBHOOK_SECRET is"))
            }
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).field("secret", &"[redacted]").finish()
    }
}

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-pushgate-signature";
/// The header naming the event type.
pub const EVENT_HEADER: &str = "x-pushgate-event";

/// Posts events to the webhooks of the accounts that have one.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    hooks: Arc<HashMap<AccountId, Webhook>>,
    http: reqwest::Client,
}

impl WebhookClient {
    /// A client for `hooks` (10 s per request).
    pub fn new(hooks: HashMap<AccountId, Webhook>) -> Result<Self, reqwest::Error> {
        let http = crate::http::trusting(
            reqwest::Client::builder()
                // A redirect is an answer (not a 2xx: retried), never a reason to post elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("pushgate/", env!("CARGO_PKG_VERSION"))),
            None,
        )?
        .build()?;
        Ok(Self { hooks: Arc::new(hooks), http })
    }

    /// A client for one configured account's webhook (or none: it posts nothing).
    pub fn configured(hook: Option<(&AccountId, &Webhook)>) -> Result<Self, ConfigError> {
        let hooks = hook.map(|(account, w)| (account.clone(), w.clone())).into_iter().collect();
        Self::new(hooks)
            .map_err(|e| ConfigError::new("PUSHGATE_WEBHOOK_URL", format!("cannot build the webhook HTTP client: {e}")))
    }

    /// Does `account` have a webhook?
    pub fn has(&self, account: &AccountId) -> bool {
        self.hooks.contains_key(account)
    }

    /// Posts `event` once: any 2xx is delivered; anything else (or no answer) is an error.
    pub async fn post(&self, event: &OperationEvent) -> Result<(), WebhookError> {
        let Some(hook) = self.hooks.get(&event.account_id) else { return Ok(()) };
        let body = serde_json::to_vec(event).map_err(|e| WebhookError(format!("cannot encode the event: {e}")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = pushgate_core::domain::event::signature(hook.secret.as_bytes(), timestamp, &body);
        let sent = self
            .http
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, event.kind.as_str())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            // Without the URL: it may carry a token of the receiver's.
            .map_err(|e| WebhookError(e.without_url().to_string()))?;
        if sent.status().is_success() {
            Ok(())
        } else {
            Err(WebhookError(format!("the webhook answered {}", sent.status())))
        }
    }
}

pub use pushgate_core::app::backoff::Backoff;

/// How a local webhook post is retried: 8 tries, pauses from 1 s up to 60 s.
pub const LOCAL_RETRIES: Backoff = Backoff::new(8, Duration::from_secs(1), Duration::from_secs(60));

/// Local events: published by a spawned task that posts with [`Backoff`] (it survives nothing,
/// like the local queue).
#[derive(Clone, Debug)]
pub struct InProcessEvents {
    client: WebhookClient,
    backoff: Backoff,
}

impl InProcessEvents {
    /// Posts through `client`, retrying as `backoff` says.
    pub fn new(client: WebhookClient, backoff: Backoff) -> Self {
        Self { client, backoff }
    }
}

#[async_trait]
impl EventSink for InProcessEvents {
    async fn publish(&self, event: OperationEvent) -> Result<(), QueueError> {
        if !self.client.has(&event.account_id) {
            return Ok(());
        }
        let (client, backoff) = (self.client.clone(), self.backoff);
        tokio::spawn(async move {
            for attempt in 1..=backoff.attempts {
                match client.post(&event).await {
                    Ok(()) => {
                        info!(event = %event.id, attempt, "webhook delivered");
                        return;
                    }
                    Err(e) if attempt < backoff.attempts => {
                        let wait = backoff.wait(attempt);
                        warn!(event = %event.id, attempt, error = %e, wait_ms = wait.as_millis() as u64, "webhook failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => warn!(event = %event.id, attempt, error = %e, "webhook failed; giving up"),
                }
            }
        });
        Ok(())
    }

    async fn deliver(&self, event: &OperationEvent) -> Result<(), WebhookError> {
        self.client.post(event).await
    }
}
