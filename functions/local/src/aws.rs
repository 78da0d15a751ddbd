//! Local AWS mode (`PUSHGATE_BACKEND=aws`, feature `aws`): the adapters wired exactly as the
//! Lambda functions wire them (`pushgate_glue::cloud`), over DynamoDB, SQS and KMS at
//! `AWS_ENDPOINT_URL`, with in-process consumers of the fan-out queue.

use std::sync::Arc;

use tracing::warn;

use pushgate_aws::dynamodb::config::DynamoAccountStore;
use pushgate_aws::dynamodb::table_definitions;
use pushgate_aws::provision::{ensure_key, ensure_queue, ensure_tables};
use pushgate_aws::sqs::SqsQueue;
use pushgate_core::app::ports::StoreError;
use pushgate_core::app::{Deps, PageTokens};
use pushgate_core::config::ConfigError;
use pushgate_core::domain::{Account, AccountId, AuthToken};
use pushgate_glue::cloud::{CloudConfig, build_deps};
use pushgate_memory::{MemoryScheduler, run_releases};
use pushgate_providers::webhook::{InProcessEvents, LOCAL_RETRIES, WebhookClient};

use crate::{LocalConfig, ServerLimits, account_for, serve_router};

/// Most SQS consumers local AWS mode runs.
const MAX_LOCAL_CONSUMERS: usize = 16;

/// `pushgate-local` on the AWS adapters (`PUSHGATE_BACKEND=aws`): the same router as the
/// Lambda functions, over DynamoDB, SQS and KMS at `AWS_ENDPOINT_URL` (moto, or a sandbox
/// account), with in-process consumers of the fan-out queue doing what the event source mapping
/// does for the dispatch function.
pub struct AwsLocalApp {
    /// The API router (every route).
    pub router: axum::Router,
    /// The account configured or generated at start (stored in the config table).
    pub account: AccountId,
    pub token: AuthToken,
    /// Whether the account was generated.
    pub generated_account: bool,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    limits: ServerLimits,
    public_url_set: bool,
}

/// Names of the local AWS mode's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResources {
    /// `PUSHGATE_TABLE_PREFIX` (default `pushgate-local-`): tables are `{prefix}push` etc.
    pub table_prefix: String,
    /// `PUSHGATE_QUEUE_NAME` (default `pushgate-local-fanout`; the DLQ is `{name}-dlq`).
    pub queue_name: String,
    /// `PUSHGATE_KMS_KEY_ID` (default: the key behind `alias/pushgate-local`, created if missing).
    pub kms_key_id: Option<String>,
}

impl LocalResources {
    /// Reads the names from the environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the names through `lookup` (a variable's value, if given; empty counts as unset).
    pub fn from_vars(lookup: impl Fn(&'static str) -> Option<String>) -> Self {
        let var = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            table_prefix: var("PUSHGATE_TABLE_PREFIX").unwrap_or_else(|| "pushgate-local-".into()),
            queue_name: var("PUSHGATE_QUEUE_NAME").unwrap_or_else(|| "pushgate-local-fanout".into()),
            kms_key_id: var("PUSHGATE_KMS_KEY_ID"),
        }
    }
}

/// Builds `pushgate-local`'s AWS mode: creates what is missing (tables from the shared
/// definitions, queue + dead-letter queue, KMS key), stores the account, wires the adapters
/// exactly as a function does, and starts `config.workers` queue consumers.
pub async fn build_local(config: &LocalConfig, names: &LocalResources) -> Result<AwsLocalApp, ConfigError> {
    let unavailable =
        |what: &'static str| move |e: StoreError| ConfigError::new(what, format!("cannot prepare it: {e}"));
    let (prefix, queue_name, key_id) = (&names.table_prefix, &names.queue_name, names.kms_key_id.clone());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let dynamo = pushgate_glue::cloud::dynamo_client(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let tables = table_definitions(prefix);
    ensure_tables(&dynamo, &tables).await.map_err(unavailable("PUSHGATE_TABLE_PREFIX"))?;
    let queue_url = ensure_queue(&sqs, queue_name, config.settings.max_receives)
        .await
        .map_err(unavailable("PUSHGATE_QUEUE_NAME"))?;
    let key_id = match key_id {
        Some(id) => id,
        None => ensure_key(&aws_sdk_kms::Client::new(&sdk), "alias/pushgate-local")
            .await
            .map_err(unavailable("PUSHGATE_KMS_KEY_ID"))?,
    };
    let mut cloud = CloudConfig::new(format!("{prefix}push"), format!("{prefix}config"), format!("{prefix}directory"));
    cloud.queue_url = Some(queue_url.clone());
    cloud.kms_key_id = Some(key_id);
    cloud.api = config.api.clone();
    cloud.providers = config.providers.clone();
    cloud.settings = config.settings.clone();
    let mut deps = build_deps(&cloud, &sdk)?;
    // moto never fires schedules: locally the releases come from in-process timers.
    let (scheduler, fired) = MemoryScheduler::new();
    deps.scheduler = Arc::new(scheduler);
    run_releases(deps.clone(), fired);
    let (account, token, generated_account) = account_for(config);
    let hooks = WebhookClient::configured(config.webhook.as_ref().map(|w| (&account, w)))?;
    deps.events = Arc::new(InProcessEvents::new(hooks, LOCAL_RETRIES));
    if let Some(key) = config.data_key {
        deps.pages = PageTokens::derive(&key);
    }
    DynamoAccountStore::new(dynamo, cloud.config_table.clone())
        .put_account(&Account::new(account.clone(), token.hash()))
        .await
        .map_err(unavailable("PUSHGATE_ACCOUNT_ID"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let queue = SqsQueue::new(sqs, queue_url);
    // Each consumer long-polls SQS for batches of up to 10 (as one dispatch Lambda instance does);
    // PUSHGATE_WORKERS counts chunk slots in memory mode, so it is capped here.
    let consumers = (0..config.workers.min(MAX_LOCAL_CONSUMERS))
        .map(|_| tokio::spawn(consume(deps.clone(), queue.clone(), stopped.clone())))
        .collect();
    Ok(AwsLocalApp {
        router: pushgate_api::router(
            deps,
            pushgate_api::ApiConfig { metrics: Some(crate::metrics_text(None)), ..config.api.clone() },
        ),
        account,
        token,
        generated_account,
        consumers,
        stop,
        limits: config.server.clone(),
        public_url_set: config.api.public_url.is_some(),
    })
}

/// One queue consumer: receive, process, delete what is done; messages to retry stay on the
/// queue and come back after their visibility timeout (the dead-letter queue takes them after
/// the redrive policy's receives).
async fn consume(deps: Deps, queue: SqsQueue, mut stopped: tokio::sync::watch::Receiver<bool>) {
    while !*stopped.borrow() {
        let received = tokio::select! {
            r = queue.receive(10, 2) => r,
            _ = stopped.changed() => break,
        };
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "fan-out queue receive failed; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if received.is_empty() {
            continue;
        }
        let messages: Vec<_> = received.iter().map(|r| r.message.clone()).collect();
        let retry = pushgate_core::app::dispatch::process_messages(&deps, &messages).await;
        let done: Vec<_> = received.iter().filter(|r| !retry.contains(&r.message.id)).collect();
        if let Err(e) = queue.delete(&done).await {
            warn!(error = %e, "could not delete processed messages; they will be redelivered and skipped");
        }
    }
}

impl AwsLocalApp {
    /// Serves on `listener` (the same hardened server as the memory mode, under the
    /// configuration's limits) until `shutdown`, then lets the consumers finish their batch (up
    /// to `drain`).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        drain: std::time::Duration,
    ) -> std::io::Result<()> {
        serve_router(listener, self.router, &self.limits, self.public_url_set, shutdown).await?;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(drain, futures::future::join_all(self.consumers)).await;
        Ok(())
    }
}
