//! Creating the AWS resources `template.yaml` declares, for tests and for `pushgate-local` in
//! its AWS mode (moto or a sandbox account). Idempotent: what exists is reused. On AWS proper,
//! the template creates them and nothing here runs.

use aws_sdk_sqs::types::QueueAttributeName;

use super::dynamodb::{TableDefinition, create_tables};
use pushgate_core::app::ports::StoreError;

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} failed: {e}"))
}

/// An SDK error with its causes (the SDK's `DisplayErrorContext`, shared by every service).
fn show<E: std::error::Error>(e: &E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

/// Creates the tables of `tables` that do not exist yet.
pub async fn ensure_tables(client: &aws_sdk_dynamodb::Client, tables: &[TableDefinition]) -> Result<(), StoreError> {
    for table in tables {
        let exists = client.describe_table().table_name(&table.name).send().await.is_ok();
        if !exists {
            create_tables(client, std::slice::from_ref(table)).await?;
        }
    }
    Ok(())
}

/// Creates (or finds) the queue `name` and its dead-letter queue `{name}-dlq` with a redrive
/// policy after `max_receives` receives, as the template does; returns the queue URL.
pub async fn ensure_queue(client: &aws_sdk_sqs::Client, name: &str, max_receives: u32) -> Result<String, StoreError> {
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| failed("CreateQueue (dead-letter)", show(&e)))?;
    let dlq_url = dlq.queue_url().unwrap_or_default();
    let attributes = client
        .get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| failed("GetQueueAttributes", show(&e)))?;
    let dlq_arn =
        attributes.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().unwrap_or_default();
    let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives }).to_string();
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "180")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| failed("CreateQueue", show(&e)))?;
    queue.queue_url().map(str::to_owned).ok_or_else(|| failed("CreateQueue", "no queue URL in the answer"))
}

/// Finds the KMS key behind `alias` (`alias/...`), creating key and alias when missing; returns
/// the key id.
pub async fn ensure_key(client: &aws_sdk_kms::Client, alias: &str) -> Result<String, StoreError> {
    if let Ok(found) = client.describe_key().key_id(alias).send().await
        && let Some(meta) = found.key_metadata()
    {
        return Ok(meta.key_id().to_owned());
    }
    let created = client
        .create_key()
        .description("pushgate credential secrets (local AWS mode)")
        .send()
        .await
        .map_err(|e| failed("CreateKey", show(&e)))?;
    let key_id =
        created.key_metadata().map(|m| m.key_id().to_owned()).ok_or_else(|| failed("CreateKey", "no key id"))?;
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&key_id)
        .send()
        .await
        .map_err(|e| failed("CreateAlias", show(&e)))?;
    Ok(key_id)
}
