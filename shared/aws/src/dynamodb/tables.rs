//! The DynamoDB tables pushgate needs, declared once. Test set-up creates tables from these
//! definitions ([`create_tables`]) and a later step generates/checks `template.yaml` from them,
//! so code and infrastructure cannot drift. Every key attribute is a string; every table is
//! on-demand (`PAY_PER_REQUEST`); every index projects all attributes.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::store_error;
use pushgate_core::app::ports::StoreError;

/// Partition and sort key attribute names (both strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySchema {
    /// Partition (HASH) key attribute.
    pub partition: &'static str,
    /// Sort (RANGE) key attribute.
    pub sort: &'static str,
}

/// A global secondary index (projection `ALL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDefinition {
    /// Index name.
    pub name: &'static str,
    pub key: KeySchema,
}

/// One table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    /// The `template.yaml` logical id.
    pub logical_id: &'static str,
    /// The physical table name (prefix + stem).
    pub name: String,
    /// The primary key.
    pub key: KeySchema,
    /// Global secondary indexes.
    pub indexes: Vec<IndexDefinition>,
    /// The numeric attribute (epoch seconds) DynamoDB TTL deletes items by, if the table has TTL.
    pub ttl_attribute: Option<&'static str>,
}

/// Primary key of the push table.
pub const PUSH_KEY: KeySchema = KeySchema { partition: "pk", sort: "sk" };
/// The `byUser` index: a user's notifications, newest first (sparse: only addressed-by-user ones).
pub const BY_USER: IndexDefinition =
    IndexDefinition { name: "byUser", key: KeySchema { partition: "gsi1pk", sort: "gsi1sk" } };
/// The TTL attribute (epoch seconds): created + 7 days on the push table, minted + 1 hour on
/// the config table's provider tokens.
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// Primary key of the config table (credential books, sealed secrets, accounts, provider tokens).
pub const CONFIG_KEY: KeySchema = KeySchema { partition: "pk", sort: "sk" };
/// Primary key of the directory table (users and device registrations).
pub const DIRECTORY_KEY: KeySchema = KeySchema { partition: "pk", sort: "sk" };
/// The `byToken` index of the directory table: device registrations by device token.
pub const BY_TOKEN: IndexDefinition =
    IndexDefinition { name: "byToken", key: KeySchema { partition: "gsi1pk", sort: "gsi1sk" } };

/// Every table, named `{prefix}{stem}`: `push` (notifications and operations), `config`
/// (credentials, Apps, accounts, provider tokens) and `directory` (users and device
/// registrations).
pub fn table_definitions(prefix: &str) -> Vec<TableDefinition> {
    vec![
        TableDefinition {
            logical_id: "PushTable",
            name: format!("{prefix}push"),
            key: PUSH_KEY,
            indexes: vec![BY_USER],
            ttl_attribute: Some(TTL_ATTRIBUTE),
        },
        TableDefinition {
            logical_id: "ConfigTable",
            name: format!("{prefix}config"),
            key: CONFIG_KEY,
            indexes: Vec::new(),
            ttl_attribute: Some(TTL_ATTRIBUTE),
        },
        TableDefinition {
            logical_id: "DirectoryTable",
            name: format!("{prefix}directory"),
            key: DIRECTORY_KEY,
            indexes: vec![BY_TOKEN],
            ttl_attribute: None,
        },
    ]
}

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unexpected(format!("invalid table definition: {e}"))
}

fn key_schema(key: &KeySchema) -> Result<Vec<KeySchemaElement>, StoreError> {
    Ok(vec![
        KeySchemaElement::builder()
            .attribute_name(key.partition)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_error)?,
        KeySchemaElement::builder().attribute_name(key.sort).key_type(KeyType::Range).build().map_err(build_error)?,
    ])
}

/// Polls until the table is `ACTIVE` (real DynamoDB refuses the TTL update while `CREATING`;
/// moto is active at once).
async fn wait_until_active(client: &Client, name: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let described =
            client.describe_table().table_name(name).send().await.map_err(|e| store_error("DescribeTable", e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(StoreError::Unavailable(format!("table {name} did not become active in 60 s")))
}

/// Creates `tables` (with their indexes) and turns their TTL on (for those that have one). For
/// test set-up and local use; on AWS the template creates them.
pub async fn create_tables(client: &Client, tables: &[TableDefinition]) -> Result<(), StoreError> {
    for table in tables {
        let mut attributes: Vec<&str> = vec![table.key.partition, table.key.sort];
        for index in &table.indexes {
            for name in [index.key.partition, index.key.sort] {
                if !attributes.contains(&name) {
                    attributes.push(name);
                }
            }
        }
        let definitions = attributes
            .iter()
            .map(|name| {
                AttributeDefinition::builder()
                    .attribute_name(*name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let indexes = table
            .indexes
            .iter()
            .map(|index| {
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(key_schema(&index.key)?))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        client
            .create_table()
            .table_name(&table.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(definitions))
            .set_key_schema(Some(key_schema(&table.key)?))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .send()
            .await
            .map_err(|e| store_error("CreateTable", e))?;
        wait_until_active(client, &table.name).await?;
        let Some(ttl_attribute) = table.ttl_attribute else { continue };
        client
            .update_time_to_live()
            .table_name(&table.name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl_attribute)
                    .enabled(true)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(|e| store_error("UpdateTimeToLive", e))?;
    }
    Ok(())
}
