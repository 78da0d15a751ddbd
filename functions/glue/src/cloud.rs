//! The AWS composition: configuration from the environment and the AWS adapters wired into
//! [`Deps`], built once per Lambda cold start (or once by `pushgate-local` in its AWS mode).
//! Clients and HTTP/2 connections live as long as the process.
//!
//! A function wires only its [`ports`] and is given only their settings (see `template.yaml`): a
//! port it does not wire, or a missing queue URL or KMS key, leaves an adapter that refuses with a
//! clear error (a 503 if a request ever reached it), rather than a function that cannot start.

use std::sync::Arc;

use async_trait::async_trait;
use aws_types::SdkConfig;
use rand::RngCore;
use tracing::warn;

use pushgate_api::{ApiConfig, DEFAULT_MAX_BODY_BYTES};
use pushgate_aws::dynamodb::config::{DynamoAccountStore, DynamoCredentialStore, DynamoTokenCache};
use pushgate_aws::dynamodb::idempotency::{DynamoIdempotency, DynamoSendBudget};
use pushgate_aws::dynamodb::{DynamoDirectoryStore, DynamoPushStore};
use pushgate_aws::kms::KmsEnvelopeBox;
use pushgate_aws::scheduler::{EventBridgeScheduler, ScheduleTarget};
use pushgate_aws::sqs::SqsQueue;
use pushgate_core::app::ports::{
    AccountStore, Chunk, CredentialChecker, CredentialProblem, Delivery, DeliveryOutcome, EventSink, FanoutQueue,
    PushGateway, QueueError, Release, Scheduler, SecretBox, StoreError, WebhookError,
};
use pushgate_core::app::{Deps, PageTokens, Settings};
use pushgate_core::config::ConfigError;
use pushgate_core::domain::{
    Account, AccountId, ApiKey, ApiKeySid, CredentialSecret, OperationEvent, OperationId, TokenHash,
};
use pushgate_core::system::{RandomIds, SystemClock};
use pushgate_providers::checks::CredentialRules;
use pushgate_providers::gateway::{ProviderConfig, ProviderGateway, parse_token_uris};
use pushgate_providers::webhook::{Webhook, WebhookClient};

/// One account's webhook, as configured: the signing key itself, or where to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSetting {
    /// The account whose operation events are posted.
    pub account: AccountId,
    /// Where they are posted.
    pub url: String,
    /// The HMAC key (`PUSHGATE_WEBHOOK_SECRET`, or read from `secret_arn`): only the function
    /// that posts needs it.
    pub secret: Option<String>,
    /// `PUSHGATE_WEBHOOK_SECRET_ARN`: the Secrets Manager secret holding the key.
    pub secret_arn: Option<String>,
}

impl std::fmt::Debug for WebhookSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSetting")
            .field("account", &self.account)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("secret_arn", &self.secret_arn)
            .finish()
    }
}

/// The shortest webhook signing key accepted.
const WEBHOOK_SECRET_MIN: usize = 16;
/// The shortest page-token key accepted.
const PAGE_TOKEN_KEY_MIN: usize = 32;

/// Configuration of a function (all from the environment; see the README's table).
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// `PUSHGATE_PUSH_TABLE`: notifications and operations.
    pub push_table: String,
    /// `PUSHGATE_CONFIG_TABLE`: accounts, credential books and secrets, provider tokens.
    pub config_table: String,
    /// `PUSHGATE_DIRECTORY_TABLE`: users and device registrations.
    pub directory_table: String,
    /// `PUSHGATE_QUEUE_URL`: the fan-out queue (the send function).
    pub queue_url: Option<String>,
    /// `PUSHGATE_KMS_KEY_ID`: the key credential secrets are enveloped with.
    pub kms_key_id: Option<String>,
    /// `PUSHGATE_SCHEDULE_GROUP`, `PUSHGATE_SCHEDULER_ROLE_ARN`, `PUSHGATE_QUEUE_ARN`: where
    /// scheduled sends' releases are scheduled (the send and cancel functions).
    pub schedules: Option<ScheduleTarget>,
    /// `PUSHGATE_WEBHOOK_URL`, `PUSHGATE_WEBHOOK_ACCOUNT_ID` and the signing key
    /// (`PUSHGATE_WEBHOOK_SECRET`, or `PUSHGATE_WEBHOOK_SECRET_ARN` read at cold start): one
    /// account's webhook for operation events.
    pub webhook: Option<WebhookSetting>,
    /// `PUSHGATE_PAGE_TOKEN_KEY`: secret page tokens are signed with (shared by every function).
    pub page_token_key: Option<String>,
    /// `PUSHGATE_PAGE_TOKEN_SECRET_ARN`: the Secrets Manager secret holding that key, read once
    /// per cold start by the functions that page ([`CloudConfig::resolved`]), so the key is never
    /// in their environment.
    pub page_token_secret_arn: Option<String>,
    /// `PUSHGATE_ACCOUNT_ID` + `PUSHGATE_AUTH_TOKEN_SHA256`: an account known without a table row.
    pub bootstrap: Option<Account>,
    /// HTTP settings (`PUSHGATE_PUBLIC_URL`, `PUSHGATE_MAX_BODY_BYTES`).
    pub api: ApiConfig,
    /// Providers (`APNS_ENDPOINT`, `FCM_ENDPOINT`, `PUSHGATE_FCM_TOKEN_URIS`).
    pub providers: ProviderConfig,
    /// Use case tunables.
    pub settings: Settings,
}

impl CloudConfig {
    /// A configuration with the given tables (push, config, directory) and nothing else (tests
    /// fill in the rest).
    pub fn new(
        push_table: impl Into<String>,
        config_table: impl Into<String>,
        directory_table: impl Into<String>,
    ) -> Self {
        Self {
            push_table: push_table.into(),
            config_table: config_table.into(),
            directory_table: directory_table.into(),
            queue_url: None,
            kms_key_id: None,
            schedules: None,
            webhook: None,
            page_token_key: None,
            page_token_secret_arn: None,
            bootstrap: None,
            api: ApiConfig::default(),
            providers: ProviderConfig::default(),
            settings: Settings::default(),
        }
    }

    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests). Empty
    /// values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &'static str| var(name).ok_or_else(|| ConfigError::new(name, "must be set"));
        let mut config = Self::new(
            required("PUSHGATE_PUSH_TABLE")?,
            required("PUSHGATE_CONFIG_TABLE")?,
            required("PUSHGATE_DIRECTORY_TABLE")?,
        );
        config.queue_url = var("PUSHGATE_QUEUE_URL");
        config.kms_key_id = var("PUSHGATE_KMS_KEY_ID");
        config.schedules =
            match (var("PUSHGATE_SCHEDULE_GROUP"), var("PUSHGATE_SCHEDULER_ROLE_ARN"), var("PUSHGATE_QUEUE_ARN")) {
                (None, None, None) => None,
                (Some(group), Some(role_arn), Some(queue_arn)) => Some(ScheduleTarget { group, role_arn, queue_arn }),
                _ => {
                    return Err(ConfigError::new(
                        "PUSHGATE_SCHEDULE_GROUP",
                        "PUSHGATE_SCHEDULE_GROUP, PUSHGATE_SCHEDULER_ROLE_ARN and PUSHGATE_QUEUE_ARN go together",
                    ));
                }
            };
        config.page_token_key = var("PUSHGATE_PAGE_TOKEN_KEY");
        if config.page_token_key.as_ref().is_some_and(|k| k.len() < PAGE_TOKEN_KEY_MIN) {
            return Err(ConfigError::new("PUSHGATE_PAGE_TOKEN_KEY", "must be at least 32 characters"));
        }
        config.page_token_secret_arn = var("PUSHGATE_PAGE_TOKEN_SECRET_ARN");
        if config.page_token_key.is_some() && config.page_token_secret_arn.is_some() {
            return Err(ConfigError::new(
                "PUSHGATE_PAGE_TOKEN_SECRET_ARN",
                "names where PUSHGATE_PAGE_TOKEN_KEY is kept: set one of them, not both",
            ));
        }
        config.bootstrap = match (var("PUSHGATE_ACCOUNT_ID"), var("PUSHGATE_AUTH_TOKEN_SHA256")) {
            (None, None) => None,
            (Some(id), Some(hash)) => {
                let id = AccountId::parse(&id).map_err(|_| {
                    ConfigError::new("PUSHGATE_ACCOUNT_ID", "must be AC followed by 32 lowercase hex characters")
                })?;
                let hash = parse_sha256(&hash).ok_or_else(|| {
                    ConfigError::new(
                        "PUSHGATE_AUTH_TOKEN_SHA256",
                        "must be the 64 hex characters of the token's SHA-256",
                    )
                })?;
                Some(Account::new(id, TokenHash(hash)))
            }
            (Some(_), None) => {
                return Err(ConfigError::new("PUSHGATE_AUTH_TOKEN_SHA256", "must be set when PUSHGATE_ACCOUNT_ID is"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new("PUSHGATE_ACCOUNT_ID", "must be set when PUSHGATE_AUTH_TOKEN_SHA256 is"));
            }
        };
        config.webhook = webhook_setting(&var, config.bootstrap.as_ref())?;
        config.api.public_url = var("PUSHGATE_PUBLIC_URL");
        config.api.max_body_bytes = match var("PUSHGATE_MAX_BODY_BYTES") {
            Some(n) => {
                n.parse().map_err(|_| ConfigError::new("PUSHGATE_MAX_BODY_BYTES", "must be a number of bytes"))?
            }
            None => DEFAULT_MAX_BODY_BYTES,
        };
        config.providers.apns_endpoint = var("APNS_ENDPOINT");
        config.providers.fcm_endpoint = var("FCM_ENDPOINT");
        if let Some(uris) = var("PUSHGATE_FCM_TOKEN_URIS") {
            config.providers.fcm_token_uris =
                parse_token_uris(&uris).map_err(|m| ConfigError::new("PUSHGATE_FCM_TOKEN_URIS", m))?;
        }
        config.settings.limits =
            pushgate_core::app::LimitDefaults::from_vars(var).map_err(|(name, why)| ConfigError::new(name, why))?;
        Ok(config)
    }
}

/// The webhook from `PUSHGATE_WEBHOOK_URL` (an `http(s)://` URL), the account it belongs to
/// (`PUSHGATE_WEBHOOK_ACCOUNT_ID`, else the bootstrap account), and its key:
/// `PUSHGATE_WEBHOOK_SECRET` (≥ 16 characters) or `PUSHGATE_WEBHOOK_SECRET_ARN`, at most one (a
/// function that only publishes events has neither).
fn webhook_setting(
    var: &impl Fn(&str) -> Option<String>,
    bootstrap: Option<&Account>,
) -> Result<Option<WebhookSetting>, ConfigError> {
    let (secret, secret_arn) = (var("PUSHGATE_WEBHOOK_SECRET"), var("PUSHGATE_WEBHOOK_SECRET_ARN"));
    let account = var("PUSHGATE_WEBHOOK_ACCOUNT_ID");
    let Some(url) = var("PUSHGATE_WEBHOOK_URL") else {
        for (name, set) in [
            ("PUSHGATE_WEBHOOK_SECRET", secret.is_some()),
            ("PUSHGATE_WEBHOOK_SECRET_ARN", secret_arn.is_some()),
            ("PUSHGATE_WEBHOOK_ACCOUNT_ID", account.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(name, "is a setting of the webhook: set PUSHGATE_WEBHOOK_URL too"));
            }
        }
        return Ok(None);
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError::new("PUSHGATE_WEBHOOK_URL", "must be an http:// or https:// URL"));
    }
    let account = match account {
        Some(id) => AccountId::parse(&id).map_err(|_| {
            ConfigError::new("PUSHGATE_WEBHOOK_ACCOUNT_ID", "must be AC followed by 32 lowercase hex characters")
        })?,
        None => bootstrap.map(|a| a.id.clone()).ok_or_else(|| {
            ConfigError::new("PUSHGATE_WEBHOOK_ACCOUNT_ID", "must be set: the account the webhook belongs to")
        })?,
    };
    if secret.is_some() && secret_arn.is_some() {
        return Err(ConfigError::new(
            "PUSHGATE_WEBHOOK_SECRET_ARN",
            "names where PUSHGATE_WEBHOOK_SECRET is kept: set one of them, not both",
        ));
    }
    if secret.as_ref().is_some_and(|s| s.len() < WEBHOOK_SECRET_MIN) {
        return Err(ConfigError::new("PUSHGATE_WEBHOOK_SECRET", "must be at least 16 characters"));
    }
    Ok(Some(WebhookSetting { account, url, secret, secret_arn }))
}

impl CloudConfig {
    /// This configuration with the secrets a function with `PORTS` uses read from Secrets
    /// Manager (once per cold start): the page-token key of a function that pages
    /// ([`ports::PAGES`]), the webhook's key of the function that posts events
    /// ([`ports::PROVIDERS`]). A function without those ports never calls Secrets Manager (nor
    /// links its client). A secret that cannot be read, or is too short, stops the function
    /// from starting, naming the variable.
    pub async fn resolved<const PORTS: u8>(self, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        // Chosen at compile time rather than by an `if` on PORTS in this future: the states of an
        // awaited call stay in a future's code even when a constant condition skips them, so
        // every binary would link the Secrets Manager client. A function without these ports
        // has no reference to the reader.
        let reader: Option<SecretsReader> =
            const { if PORTS & (ports::PAGES | ports::PROVIDERS) != 0 { Some(read_secrets::<PORTS>) } else { None } };
        match reader {
            Some(read) => read(self, sdk).await,
            None => Ok(self),
        }
    }
}

/// Reads the secrets of a function's ports ([`CloudConfig::resolved`]).
type SecretsReader = for<'a> fn(CloudConfig, &'a SdkConfig) -> SecretsRead<'a>;
type SecretsRead<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<CloudConfig, ConfigError>> + Send + 'a>>;

fn read_secrets<const PORTS: u8>(mut config: CloudConfig, sdk: &SdkConfig) -> SecretsRead<'_> {
    Box::pin(async move {
        if PORTS & ports::PAGES != 0
            && config.page_token_key.is_none()
            && let Some(arn) = &config.page_token_secret_arn
        {
            config.page_token_key =
                Some(read_secret(sdk, "PUSHGATE_PAGE_TOKEN_SECRET_ARN", arn, PAGE_TOKEN_KEY_MIN).await?);
        }
        if PORTS & ports::PROVIDERS != 0
            && let Some(webhook) = &mut config.webhook
            && webhook.secret.is_none()
            && let Some(arn) = &webhook.secret_arn
        {
            webhook.secret = Some(read_secret(sdk, "PUSHGATE_WEBHOOK_SECRET_ARN", arn, WEBHOOK_SECRET_MIN).await?);
        }
        Ok(config)
    })
}

/// The secret `arn` names, read for `var` (which the errors name); at least `min` characters.
async fn read_secret(sdk: &SdkConfig, var: &'static str, arn: &str, min: usize) -> Result<String, ConfigError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let secret = pushgate_aws::secrets::read_secret_string(&client, arn)
        .await
        .map(|s| s.trim().to_owned())
        .map_err(|e| ConfigError::new(var, format!("cannot be read: {e}")))?;
    if secret.len() < min {
        return Err(ConfigError::new(var, format!("names a secret of fewer than {min} characters")));
    }
    Ok(secret)
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The SDK configuration of a Lambda function, from the variables Lambda sets: `AWS_REGION`
/// and the execution role's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`
/// (plus `AWS_ENDPOINT_URL`, for moto). That is all the standard provider chain would find
/// there; building it directly keeps the chain's other sources (profiles, SSO, web identity
/// through STS, IMDS) out of every binary and out of its cold start. `pushgate-local` and the
/// tests use the full chain (`aws-config`).
pub fn lambda_sdk_config(var: impl Fn(&'static str) -> Option<String>) -> Result<SdkConfig, ConfigError> {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_types::region::Region;
    let var = |name: &'static str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let required = |name: &'static str| var(name).ok_or_else(|| ConfigError::new(name, "must be set (Lambda sets it)"));
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or_else(|| ConfigError::new("AWS_REGION", "must be set"))?;
    let credentials = Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut builder = SdkConfig::builder()
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest());
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    if let Some(client) = sdk_http_client() {
        builder = builder.http_client(client);
    }
    Ok(builder.build())
}

/// The SDK clients' HTTPS client (hyper + rustls, the SDK's own), on the crypto provider the
/// function chose with a `sdk-tls-*` feature of this crate (see its Cargo.toml): `ring` in the
/// functions that do no other TLS, `aws-lc` in those whose provider clients (reqwest,
/// jsonwebtoken) link aws-lc anyway. Only one provider is compiled into the SDK's client, so a
/// function links only that one. Without either feature: none, and the SDK's default client
/// (aws-lc) if the build has one (`aws-config`'s `default-https-client`).
fn sdk_http_client() -> Option<aws_types::sdk_config::SharedHttpClient> {
    #[cfg(any(feature = "sdk-tls-aws-lc", feature = "sdk-tls-ring"))]
    {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        #[cfg(feature = "sdk-tls-aws-lc")]
        let mode = CryptoMode::AwsLc;
        #[cfg(not(feature = "sdk-tls-aws-lc"))]
        let mode = CryptoMode::Ring;
        Some(aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(mode)).build_https())
    }
    #[cfg(not(any(feature = "sdk-tls-aws-lc", feature = "sdk-tls-ring")))]
    None
}

/// The page-token key: derived from the shared secret, or random for this process (page tokens
/// then only work on the instance that issued them: [`CloudConfig::warn_unshared_page_tokens`]
/// says so where it matters).
fn page_tokens(secret: Option<&str>) -> PageTokens {
    match secret {
        Some(secret) => PageTokens::derive(secret.as_bytes()),
        None => {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            PageTokens::new(key)
        }
    }
}

impl CloudConfig {
    /// Warns when page tokens are signed with a key of this instance only (for the functions
    /// that issue page tokens, once their secrets are [resolved](CloudConfig::resolved)).
    pub fn warn_unshared_page_tokens(&self) {
        if self.page_token_key.is_none() {
            warn!(
                "neither PUSHGATE_PAGE_TOKEN_KEY nor PUSHGATE_PAGE_TOKEN_SECRET_ARN is set: page tokens are signed \
                 with a key of this instance only"
            );
        }
    }
}

/// What a function wires besides the DynamoDB stores and the clock, ids and page tokens (which
/// every function has): one bit per port whose adapter links an SDK or a provider client. A
/// function's set is a constant, so the ports it leaves out are not only unused but not linked
/// into its binary; `template.yaml` grants each function the AWS actions of exactly its set
/// (the template tests compare them).
pub mod ports {
    /// The fan-out queue (SQS): chunks of a send, released schedules.
    pub const QUEUE: u8 = 1 << 0;
    /// EventBridge Scheduler: scheduled sends and their cancellation.
    pub const SCHEDULER: u8 = 1 << 1;
    /// Operation events, published on the fan-out queue.
    pub const EVENTS: u8 = 1 << 2;
    /// Credential secrets (KMS envelopes).
    pub const SECRETS: u8 = 1 << 3;
    /// The provider clients: APNs and FCM delivery, and webhook delivery.
    pub const PROVIDERS: u8 = 1 << 4;
    /// The providers' rules for new credentials (no client: nothing is sent).
    pub const CHECKS: u8 = 1 << 5;
    /// Page tokens: the key read from Secrets Manager at cold start (`PUSHGATE_PAGE_TOKEN_SECRET_ARN`).
    pub const PAGES: u8 = 1 << 6;
    /// Every port (local AWS mode and the tests).
    pub const ALL: u8 = QUEUE | SCHEDULER | EVENTS | SECRETS | PROVIDERS | CHECKS | PAGES;

    /// `send`: stores the operation, queues its chunks or schedules its releases, announces it.
    pub const SEND: u8 = QUEUE | SCHEDULER | EVENTS;
    /// `cancel`: finishes notifications (events) and deletes pending schedules.
    pub const CANCEL: u8 = SCHEDULER | EVENTS;
    /// `credentials`: seals secrets, checks keys the way the providers will use them, pages.
    pub const CREDENTIALS: u8 = SECRETS | CHECKS | PAGES;
    /// `fetch`: the stores only.
    pub const STORES_ONLY: u8 = 0;
    /// `list`, `operations`, `apps`, `device-registrations`, `users`: the stores, and page tokens.
    pub const LISTS: u8 = PAGES;
    /// `dispatch`: delivers (opening secrets), queues released schedules, publishes and
    /// delivers events.
    pub const DISPATCH: u8 = QUEUE | EVENTS | SECRETS | PROVIDERS;
}

/// The DynamoDB client every store uses, with retries sized for DynamoDB's per-partition
/// limits rather than the SDK's defaults (3–4 attempts from a shared quota of 100 retries).
///
/// A send puts most of its writes on a few partition keys (the account's notifications, the
/// operation), so under load DynamoDB throttles them, and every concurrent finish meets the
/// others on the operation item. Each throttle or conflict the client gives up on becomes a
/// store error, the recipient goes back to the queue, and its chunk comes back only after the
/// visibility timeout — by then the claim has expired and the notification, already delivered,
/// is delivered again. So the client retries what DynamoDB asks to be retried, long enough for a
/// key's capacity to come back:
/// - up to [`DYNAMO_ATTEMPTS`] attempts, exponential backoff with full jitter from 50 ms up to
///   2 s (throttles clear within the second; a long wait holds a Lambda for nothing);
/// - its own retry quota, large enough for every call a dispatcher has in flight to be
///   retrying at once ([`DYNAMO_RETRY_QUOTA`]): the default quota is shared per region and
///   empties after 100 throttle retries, after which every throttle fails at once;
/// - a `TransactWriteItems` cancelled only for `ThrottlingError` or `TransactionConflict`, which
///   DynamoDB says to retry (the transaction changed nothing, and its conditions are evaluated
///   again), is retried like a throttle; a cancellation with any other reason (a failed
///   condition) is not.
pub fn dynamo_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition, TokenBucket};
    use std::time::Duration;
    let retry = RetryConfig::standard()
        .with_max_attempts(DYNAMO_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(2));
    let quota = TokenBucket::builder().capacity(DYNAMO_RETRY_QUOTA).build();
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(retry)
        .retry_partition(RetryPartition::custom("pushgate-dynamodb").token_bucket(quota).build())
        .retry_classifier(CancelledForCapacity)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Attempts of one DynamoDB call, the first included.
pub const DYNAMO_ATTEMPTS: u32 = 10;

/// Retry tokens of the DynamoDB client: a throttle retry costs 5, and a dispatcher has up to 10
/// messages × 128 recipients in flight, each with one call at a time.
pub const DYNAMO_RETRY_QUOTA: usize = 10 * 128 * 5;

/// Retries a `TransactWriteItems` that DynamoDB cancelled for capacity or a conflict only.
#[derive(Debug)]
struct CancelledForCapacity;

impl aws_sdk_dynamodb::config::retry::ClassifyRetry for CancelledForCapacity {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::InterceptorContext,
    ) -> aws_sdk_dynamodb::config::retry::RetryAction {
        use aws_sdk_dynamodb::config::retry::RetryAction;
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        let Some(Err(error)) = ctx.output_or_error() else { return RetryAction::NoActionIndicated };
        let cancelled = error.as_operation_error().and_then(|e| e.downcast_ref::<TransactWriteItemsError>());
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = cancelled else {
            return RetryAction::NoActionIndicated;
        };
        let codes: Vec<&str> = cancel.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
        let retryable = codes.iter().all(|c| matches!(*c, "None" | "ThrottlingError" | "TransactionConflict"))
            && codes.iter().any(|c| *c != "None");
        if retryable { RetryAction::throttling_error() } else { RetryAction::NoActionIndicated }
    }

    fn name(&self) -> &'static str {
        "pushgate: transaction cancelled for capacity or a conflict"
    }
}

/// Every port wired (local AWS mode, the tests).
pub fn build_deps(config: &CloudConfig, sdk: &SdkConfig) -> Result<Deps, ConfigError> {
    wire::<{ ports::ALL }>(config, sdk)
}

/// The use cases' dependencies for a function that uses the [`ports`] in `PORTS`: DynamoDB
/// stores always; SQS, Scheduler, KMS and the provider clients only when `PORTS` has them (a
/// port left out refuses with an error naming it).
pub fn wire<const PORTS: u8>(config: &CloudConfig, sdk: &SdkConfig) -> Result<Deps, ConfigError> {
    let has = |port: u8| PORTS & port != 0;
    let dynamo = dynamo_client(sdk);
    let secrets: Arc<dyn SecretBox> = match &config.kms_key_id {
        _ if !has(ports::SECRETS) => Arc::new(Missing("this function does not use credential secrets")),
        Some(key) => Arc::new(KmsEnvelopeBox::new(aws_sdk_kms::Client::new(sdk), key.clone())),
        None => Arc::new(Missing("PUSHGATE_KMS_KEY_ID is not set for this function")),
    };
    let sqs = match &config.queue_url {
        Some(url) if has(ports::QUEUE) || has(ports::EVENTS) => {
            Some(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url.clone()))
        }
        _ => None,
    };
    let queue: Arc<dyn FanoutQueue> = match &sqs {
        _ if !has(ports::QUEUE) => Arc::new(Missing("this function does not queue chunks")),
        Some(queue) => Arc::new(queue.clone()),
        None => Arc::new(Missing("PUSHGATE_QUEUE_URL is not set for this function")),
    };
    let events: Arc<dyn EventSink> = if !has(ports::EVENTS) {
        Arc::new(Missing("this function does not publish operation events"))
    } else if has(ports::PROVIDERS) {
        let hook = match &config.webhook {
            None => None,
            Some(WebhookSetting { account, url, secret: Some(secret), .. }) => {
                Some((account.clone(), Webhook { url: url.clone(), secret: secret.clone() }))
            }
            Some(WebhookSetting { secret_arn: Some(_), .. }) => {
                return Err(ConfigError::new(
                    "PUSHGATE_WEBHOOK_SECRET_ARN",
                    "is read at cold start (CloudConfig::resolved) before the function is wired",
                ));
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "PUSHGATE_WEBHOOK_SECRET",
                    "or PUSHGATE_WEBHOOK_SECRET_ARN must be set for the function that posts events",
                ));
            }
        };
        Arc::new(QueuedEvents::new(sqs, WebhookClient::configured(hook.as_ref().map(|(a, w)| (a, w)))?))
    } else {
        Arc::new(PublishedEvents { queue: sqs, account: config.webhook.as_ref().map(|w| w.account.clone()) })
    };
    let scheduler: Arc<dyn Scheduler> = match &config.schedules {
        _ if !has(ports::SCHEDULER) => Arc::new(Missing("this function does not schedule sends")),
        Some(target) => Arc::new(EventBridgeScheduler::new(aws_sdk_scheduler::Client::new(sdk), target.clone())),
        None => Arc::new(Missing("PUSHGATE_SCHEDULE_GROUP is not set for this function")),
    };
    let gateway: Arc<dyn PushGateway> = if has(ports::PROVIDERS) {
        let tokens = DynamoTokenCache::new(dynamo.clone(), config.config_table.clone(), secrets.clone());
        let gateway = ProviderGateway::new(&config.providers)
            .map_err(|e| ConfigError::new("APNS_ENDPOINT", format!("cannot build the provider HTTP clients: {e}")))?;
        Arc::new(gateway.with_token_cache(Arc::new(tokens)))
    } else {
        Arc::new(Missing("this function does not talk to the providers"))
    };
    let checker: Arc<dyn CredentialChecker> = if has(ports::CHECKS) {
        Arc::new(CredentialRules::new(&config.providers.fcm_token_uris))
    } else {
        Arc::new(Missing("this function does not create credentials"))
    };
    let accounts = Bootstrapped {
        bootstrap: config.bootstrap.clone(),
        store: DynamoAccountStore::new(dynamo.clone(), config.config_table.clone()),
    };
    Ok(Deps {
        push: Arc::new(DynamoPushStore::new(dynamo.clone(), config.push_table.clone())),
        credentials: Arc::new(DynamoCredentialStore::new(dynamo.clone(), config.config_table.clone())),
        accounts: Arc::new(accounts),
        idempotency: Arc::new(DynamoIdempotency::new(dynamo.clone(), config.config_table.clone())),
        budget: Arc::new(DynamoSendBudget::new(dynamo.clone(), config.config_table.clone())),
        directory: Arc::new(DynamoDirectoryStore::new(dynamo.clone(), config.directory_table.clone())),
        queue,
        scheduler,
        events,
        gateway,
        pacing: Default::default(),
        checker,
        secrets,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        pages: page_tokens(config.page_token_key.as_deref()),
        settings: config.settings.clone(),
        cpu: pushgate_core::app::cpu::CpuPool::for_this_machine(),
    })
}

/// Events on AWS: published as `{"event": …}` messages on the fan-out queue (one SQS call; the
/// API answers without waiting for the webhook), delivered by the dispatch function, which
/// retries a few times inline and then leaves the message to SQS (redelivered after the
/// visibility timeout, dead-lettered after the redrive policy's receives).
#[derive(Clone, Debug)]
pub struct QueuedEvents {
    queue: Option<SqsQueue>,
    client: WebhookClient,
}

impl QueuedEvents {
    /// Queues on `queue` (functions without a queue URL deliver only) and posts with `client`.
    pub fn new(queue: Option<SqsQueue>, client: WebhookClient) -> Self {
        Self { queue, client }
    }
}

#[async_trait]
impl EventSink for QueuedEvents {
    async fn publish(&self, event: OperationEvent) -> Result<(), QueueError> {
        if !self.client.has(&event.account_id) {
            return Ok(());
        }
        let Some(queue) = &self.queue else {
            return Err(QueueError("PUSHGATE_QUEUE_URL is not set: cannot queue an operation event".into()));
        };
        queue.publish_event(event).await
    }

    async fn deliver(&self, event: &OperationEvent) -> Result<(), WebhookError> {
        self.client.post(event).await
    }
}

/// Events of a function that publishes but never delivers (send, cancel): the same messages as
/// [`QueuedEvents`], without a webhook HTTP client.
struct PublishedEvents {
    queue: Option<SqsQueue>,
    /// The account with a webhook (`PUSHGATE_WEBHOOK_ACCOUNT_ID`, when `PUSHGATE_WEBHOOK_URL` is set).
    account: Option<AccountId>,
}

#[async_trait]
impl EventSink for PublishedEvents {
    async fn publish(&self, event: OperationEvent) -> Result<(), QueueError> {
        if self.account.as_ref() != Some(&event.account_id) {
            return Ok(());
        }
        let Some(queue) = &self.queue else {
            return Err(QueueError("PUSHGATE_QUEUE_URL is not set: cannot queue an operation event".into()));
        };
        queue.publish_event(event).await
    }

    async fn deliver(&self, _: &OperationEvent) -> Result<(), WebhookError> {
        Err(WebhookError("webhooks are delivered by the dispatch function".into()))
    }
}

/// Accounts: the bootstrap account from the environment, then the table.
struct Bootstrapped {
    bootstrap: Option<Account>,
    store: DynamoAccountStore,
}

#[async_trait]
impl AccountStore for Bootstrapped {
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        match &self.bootstrap {
            Some(account) if &account.id == id => Ok(Some(account.clone())),
            _ => self.store.get_account(id).await,
        }
    }
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.store.create_account(account).await
    }
    async fn save_account(&self, account: &Account) -> Result<(), StoreError> {
        self.store.save_account(account).await
    }
    async fn delete_account(&self, id: &AccountId) -> Result<(), StoreError> {
        self.store.delete_account(id).await
    }
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.store.create_api_key(key).await
    }
    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
        self.store.get_api_key(sid).await
    }
    async fn list_api_keys(&self, account: &AccountId) -> Result<Vec<ApiKey>, StoreError> {
        self.store.list_api_keys(account).await
    }
    async fn delete_api_key(&self, account: &AccountId, sid: &ApiKeySid) -> Result<bool, StoreError> {
        self.store.delete_api_key(account, sid).await
    }
}

/// A port a function was not given (not configured, or not among its [`ports`]): refuses,
/// saying which. A request that reached one would be a 503 naming it.
struct Missing(&'static str);

#[async_trait]
impl FanoutQueue for Missing {
    async fn enqueue(&self, _: Vec<Chunk>) -> Result<(), QueueError> {
        Err(QueueError(self.0.into()))
    }
}

#[async_trait]
impl Scheduler for Missing {
    async fn schedule(&self, _: &Release) -> Result<(), QueueError> {
        Err(QueueError(self.0.into()))
    }

    async fn unschedule(&self, _: &AccountId, _: OperationId, _: u8) -> Result<(), QueueError> {
        Err(QueueError(self.0.into()))
    }
}

#[async_trait]
impl SecretBox for Missing {
    async fn seal(&self, _: &[u8], _: &[u8]) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::Unavailable(self.0.into()))
    }

    async fn open(&self, _: &[u8], _: &[u8]) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::Unavailable(self.0.into()))
    }
}

#[async_trait]
impl EventSink for Missing {
    async fn publish(&self, _: OperationEvent) -> Result<(), QueueError> {
        Err(QueueError(self.0.into()))
    }

    async fn deliver(&self, _: &OperationEvent) -> Result<(), WebhookError> {
        Err(WebhookError(self.0.into()))
    }
}

#[async_trait]
impl PushGateway for Missing {
    async fn deliver(&self, _: &Delivery<'_>) -> DeliveryOutcome {
        DeliveryOutcome::Retryable { after: None, reason: self.0.into() }
    }
}

impl CredentialChecker for Missing {
    fn check(&self, _: &CredentialSecret) -> Vec<CredentialProblem> {
        vec![CredentialProblem::PrivateKey(self.0.into())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_webhook_needs_its_account_and_at_most_one_key_source_and_schedules_need_all_three_settings() {
        let tables = [("PUSHGATE_PUSH_TABLE", "p"), ("PUSHGATE_CONFIG_TABLE", "c"), ("PUSHGATE_DIRECTORY_TABLE", "d")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = tables.to_vec();
            all.extend_from_slice(extra);
            CloudConfig::from_lookup(lookup(&all))
        };
        let bootstrap = [
            ("PUSHGATE_ACCOUNT_ID", "AC0123456789abcdef0123456789abcdef"),
            ("PUSHGATE_AUTH_TOKEN_SHA256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        ];
        let account = ("PUSHGATE_WEBHOOK_ACCOUNT_ID", "ACfedcba9876543210fedcba9876543210");
        let url = ("PUSHGATE_WEBHOOK_URL", "https://hooks.example.com/push");
        let secret = ("PUSHGATE_WEBHOOK_SECRET", "sixteen-chars-at-least");
        let arn = ("PUSHGATE_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:hook");
        assert_eq!(with(&[url, secret]).expect_err("no account").var, "PUSHGATE_WEBHOOK_ACCOUNT_ID");
        assert_eq!(
            with(&[url, ("PUSHGATE_WEBHOOK_ACCOUNT_ID", "AC1")]).expect_err("bad id").var,
            "PUSHGATE_WEBHOOK_ACCOUNT_ID"
        );
        assert_eq!(
            with(&[url, account, ("PUSHGATE_WEBHOOK_SECRET", "short")]).expect_err("short").var,
            "PUSHGATE_WEBHOOK_SECRET"
        );
        assert_eq!(with(&[url, account, secret, arn]).expect_err("both").var, "PUSHGATE_WEBHOOK_SECRET_ARN");
        assert_eq!(
            with(&[("PUSHGATE_WEBHOOK_URL", "ftp://x"), account]).expect_err("scheme").var,
            "PUSHGATE_WEBHOOK_URL"
        );
        for alone in [secret, arn, account] {
            assert_eq!(with(&[alone]).expect_err("without a URL").var, alone.0);
        }
        // A function that only publishes events (send, cancel) needs no key.
        let publishes = with(&[url, account]).expect("URL and account").webhook.expect("a webhook");
        assert_eq!((publishes.account.as_str(), publishes.secret), (account.1, None));
        let from_arn = with(&[url, account, arn]).expect("ARN").webhook.expect("a webhook");
        assert_eq!(from_arn.secret_arn.as_deref(), Some(arn.1));
        // Without PUSHGATE_WEBHOOK_ACCOUNT_ID, the bootstrap account's.
        let ok = with(&[url, secret, bootstrap[0], bootstrap[1]]).expect("complete");
        assert_eq!(ok.webhook.as_ref().map(|w| (w.url.as_str(), w.account.as_str())), Some((url.1, bootstrap[0].1)));
        assert!(!format!("{:?}", ok.webhook).contains(secret.1), "the key is never in Debug output");

        let e = with(&[("PUSHGATE_SCHEDULE_GROUP", "g")]).expect_err("group alone");
        assert_eq!(e.var, "PUSHGATE_SCHEDULE_GROUP");
        let ok = with(&[
            ("PUSHGATE_SCHEDULE_GROUP", "g"),
            ("PUSHGATE_SCHEDULER_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("PUSHGATE_QUEUE_ARN", "arn:aws:sqs:us-east-1:1:q"),
        ])
        .expect("all three");
        assert_eq!(ok.schedules.map(|s| s.group), Some("g".to_owned()));
    }

    #[test]
    fn the_tables_are_required_and_named_in_the_error() {
        let e = CloudConfig::from_lookup(lookup(&[("PUSHGATE_PUSH_TABLE", "p")])).expect_err("config table missing");
        assert_eq!(e.var, "PUSHGATE_CONFIG_TABLE");
        let e = CloudConfig::from_lookup(lookup(&[("PUSHGATE_PUSH_TABLE", "p"), ("PUSHGATE_CONFIG_TABLE", "c")]))
            .expect_err("directory table missing");
        assert_eq!(e.var, "PUSHGATE_DIRECTORY_TABLE");
        let ok = CloudConfig::from_lookup(lookup(&[
            ("PUSHGATE_PUSH_TABLE", "p"),
            ("PUSHGATE_CONFIG_TABLE", "c"),
            ("PUSHGATE_DIRECTORY_TABLE", "d"),
        ]))
        .expect("all three tables given");
        assert_eq!(ok.directory_table, "d");
    }

    #[test]
    fn empty_values_count_as_unset_so_an_empty_template_parameter_means_the_real_provider() {
        let config = CloudConfig::from_lookup(lookup(&[
            ("PUSHGATE_PUSH_TABLE", "p"),
            ("PUSHGATE_CONFIG_TABLE", "c"),
            ("PUSHGATE_DIRECTORY_TABLE", "d"),
            ("APNS_ENDPOINT", ""),
            ("PUSHGATE_QUEUE_URL", "  "),
        ]))
        .expect("valid");
        assert_eq!(config.providers.apns_endpoint, None);
        assert_eq!(config.queue_url, None);
    }

    #[test]
    fn the_bootstrap_account_needs_an_id_and_a_sha256_of_its_token() {
        let base = [("PUSHGATE_PUSH_TABLE", "p"), ("PUSHGATE_CONFIG_TABLE", "c"), ("PUSHGATE_DIRECTORY_TABLE", "d")];
        let id = "AC0123456789abcdef0123456789abcdef";
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let ok = CloudConfig::from_lookup(lookup(&[
            base[0],
            base[1],
            base[2],
            ("PUSHGATE_ACCOUNT_ID", id),
            ("PUSHGATE_AUTH_TOKEN_SHA256", hash),
        ]))
        .expect("valid");
        let account = ok.bootstrap.expect("bootstrap account");
        assert!(account.verify(&pushgate_core::domain::AuthToken::new("test"), Default::default()));
        let bad = CloudConfig::from_lookup(lookup(&[
            base[0],
            base[1],
            base[2],
            ("PUSHGATE_ACCOUNT_ID", id),
            ("PUSHGATE_AUTH_TOKEN_SHA256", "not-hex"),
        ]))
        .expect_err("bad hash");
        assert_eq!(bad.var, "PUSHGATE_AUTH_TOKEN_SHA256");
        let alone = CloudConfig::from_lookup(lookup(&[base[0], base[1], base[2], ("PUSHGATE_ACCOUNT_ID", id)]))
            .expect_err("hash missing");
        assert_eq!(alone.var, "PUSHGATE_AUTH_TOKEN_SHA256");
    }

    #[test]
    fn fcm_token_uris_are_read_as_a_list_and_a_bad_entry_names_the_variable() {
        let base = [("PUSHGATE_PUSH_TABLE", "p"), ("PUSHGATE_CONFIG_TABLE", "c"), ("PUSHGATE_DIRECTORY_TABLE", "d")];
        let unset = CloudConfig::from_lookup(lookup(&base)).expect("valid");
        assert!(unset.providers.fcm_token_uris.is_empty(), "unset: Google's endpoints");
        let listed = CloudConfig::from_lookup(lookup(&[
            base[0],
            base[1],
            base[2],
            ("PUSHGATE_FCM_TOKEN_URIS", "https://oauth2.googleapis.com/token,http://127.0.0.1:8080/token"),
        ]))
        .expect("valid");
        assert_eq!(
            listed.providers.fcm_token_uris,
            ["https://oauth2.googleapis.com/token", "http://127.0.0.1:8080/token"]
        );
        let bad =
            CloudConfig::from_lookup(lookup(&[base[0], base[1], base[2], ("PUSHGATE_FCM_TOKEN_URIS", "not a url")]))
                .expect_err("not a URL");
        assert_eq!(bad.var, "PUSHGATE_FCM_TOKEN_URIS");
    }

    #[test]
    fn the_lambda_sdk_configuration_comes_from_the_variables_lambda_sets() {
        let env = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ];
        let with = |pairs: &[(&'static str, &'static str)]| {
            let pairs = pairs.to_vec();
            lambda_sdk_config(move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
        };
        let sdk = with(&env).expect("complete");
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(sdk.credentials_provider().is_some());
        assert_eq!(with(&env[1..]).expect_err("no region").var, "AWS_REGION");
        assert_eq!(with(&[env[0], env[2]]).expect_err("no key id").var, "AWS_ACCESS_KEY_ID");
        assert_eq!(with(&env[..4]).expect("no endpoint: AWS's").endpoint_url(), None);
    }

    #[tokio::test]
    async fn only_the_credentials_function_checks_credentials_and_it_wires_no_provider_client() {
        let config = CloudConfig::from_lookup(lookup(&[
            ("PUSHGATE_PUSH_TABLE", "p"),
            ("PUSHGATE_CONFIG_TABLE", "c"),
            ("PUSHGATE_DIRECTORY_TABLE", "d"),
            ("PUSHGATE_KMS_KEY_ID", "alias/k"),
            ("PUSHGATE_FCM_TOKEN_URIS", "https://oauth.example/token"),
        ]))
        .expect("configured");
        let sdk = lambda_sdk_config(lookup(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]))
        .expect("sdk");
        let secret = CredentialSecret::Fcm {
            project_id: "p".into(),
            client_email: "a@p.iam.gserviceaccount.com".into(),
            private_key_pem: "not a key".into(),
            token_uri: "https://elsewhere.example/token".into(),
        };
        let credentials = wire::<{ ports::CREDENTIALS }>(&config, &sdk).expect("wired");
        let problems = credentials.checker.check(&secret);
        assert!(
            matches!(problems.as_slice(), [CredentialProblem::TokenUri(uri), CredentialProblem::PrivateKey(_)]
                if uri.contains("https://oauth.example/token")),
            "the providers' rules with this deployment's endpoints: {problems:?}"
        );
        let delivery = Delivery {
            credential_id: pushgate_core::domain::CredentialId::parse("comms_credential_0123456789abcdefghjkmnpqrs")
                .expect("id"),
            credential_type: pushgate_core::domain::CredentialType::Fcm,
            secret: &Arc::new(secret.clone()),
            token: "t",
            content: &pushgate_core::domain::Content::default(),
            priority: pushgate_core::domain::Priority::High,
            sound: None,
        };
        assert!(
            matches!(credentials.gateway.deliver(&delivery).await,
                DeliveryOutcome::Retryable { reason, .. } if reason.contains("does not talk to the providers")),
            "the credentials function has no provider client"
        );
        let dispatch = wire::<{ ports::DISPATCH }>(&config, &sdk).expect("wired");
        assert!(
            matches!(dispatch.checker.check(&secret).as_slice(),
                [CredentialProblem::PrivateKey(m)] if m.contains("does not create credentials")),
            "the dispatcher never creates credentials"
        );
    }

    #[test]
    fn a_short_page_token_key_is_refused() {
        let e = CloudConfig::from_lookup(lookup(&[
            ("PUSHGATE_PUSH_TABLE", "p"),
            ("PUSHGATE_CONFIG_TABLE", "c"),
            ("PUSHGATE_DIRECTORY_TABLE", "d"),
            ("PUSHGATE_PAGE_TOKEN_KEY", "short"),
        ]))
        .expect_err("too short");
        assert_eq!(e.var, "PUSHGATE_PAGE_TOKEN_KEY");
    }
}
