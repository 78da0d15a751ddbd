//! The capacity meter: a metering reverse proxy between pushgate's AWS SDK clients and the
//! emulator (moto), and the report built from what it saw (issue 11, step 1).
//!
//! moto enforces none of DynamoDB's limits and reports a constant `ConsumedCapacity`, so the
//! proxy ([`proxy::MeterProxy`]) prices every request itself: it identifies each call
//! (DynamoDB's `X-Amz-Target`, SQS's JSON `AmazonSQS.*` or query `Action=`, KMS's
//! `TrentService.*`, EventBridge Scheduler's REST paths), forwards it unchanged, and records per
//! DynamoDB request the API, table, index, partition key and every item written or read with
//! its size and units under DynamoDB's published rules ([`size`]). What a request does not show
//! (the item before a write, the item after an `UpdateItem`) the proxy reads from moto itself,
//! with `GetItem`s it does not count. [`run`] drives a metered send end to end in local AWS
//! mode; [`report`] turns the records into figures per notification and dollars per million.
//! With a [`fault::FaultConfig`] the proxy also behaves as DynamoDB does under load: a write
//! budget per partition key and conflicts between concurrent transactions ([`fault`]).

pub mod fault;
pub mod proxy;
pub mod report;
pub mod run;
pub mod size;

use std::collections::HashMap;
use std::sync::Mutex;

/// How a table or index projects attributes into a global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Every attribute.
    All,
    /// The table's and the index's keys only.
    KeysOnly,
    /// The keys and these attributes.
    Include(Vec<String>),
}

/// A global secondary index as the meter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexShape {
    pub name: String,
    /// Partition key attribute.
    pub partition: String,
    /// Sort key attribute, if any.
    pub sort: Option<String>,
    pub projection: Projection,
}

/// A table's keys and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// Partition key attribute.
    pub partition: String,
    /// Sort key attribute, if any.
    pub sort: Option<String>,
    pub indexes: Vec<IndexShape>,
}

impl TableShape {
    /// The shape of a table declared in `pushgate_aws::dynamodb::table_definitions`.
    pub fn from_definition(table: &pushgate_aws::dynamodb::TableDefinition) -> Self {
        TableShape {
            partition: table.key.partition.to_owned(),
            sort: Some(table.key.sort.to_owned()),
            indexes: table
                .indexes
                .iter()
                .map(|i| IndexShape {
                    name: i.name.to_owned(),
                    partition: i.key.partition.to_owned(),
                    sort: Some(i.key.sort.to_owned()),
                    projection: Projection::All,
                })
                .collect(),
        }
    }

    /// The shape pushgate's tables have when the meter never saw their `CreateTable`: `pk`/`sk`.
    pub fn default_keys() -> Self {
        TableShape { partition: "pk".into(), sort: Some("sk".into()), indexes: Vec::new() }
    }
}

/// One item's share of a DynamoDB request: written (WRU) or read (RRU) on one partition key.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemCost {
    /// The table.
    pub table: String,
    /// The index, for a read through one or a write an index had to apply.
    pub index: Option<String>,
    /// The partition key value (on the index, for index reads and writes).
    pub partition: String,
    /// The sort key value, when one item is meant (a Query's sum has none).
    pub sort: Option<String>,
    /// Bytes counted (the larger of before/after for a write; the sum returned for a Query).
    pub size: u64,
    /// Write request units.
    pub wru: f64,
    /// Read request units.
    pub rru: f64,
}

/// One DynamoDB request as the meter saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoCall {
    /// `PutItem`, `Query`, `TransactWriteItems`, …
    pub api: String,
    /// The tables (and `table/index` for index Queries) the request names.
    pub tables: Vec<String>,
    /// The HTTP status moto answered.
    pub status: u16,
    /// What each item cost.
    pub items: Vec<ItemCost>,
}

impl DynamoCall {
    /// Write request units of the whole request.
    pub fn wru(&self) -> f64 {
        self.items.iter().map(|i| i.wru).sum()
    }

    /// Read request units of the whole request.
    pub fn rru(&self) -> f64 {
        self.items.iter().map(|i| i.rru).sum()
    }
}

/// The AWS services other than DynamoDB the meter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Sqs,
    Kms,
    Scheduler,
    /// Anything the meter does not recognise (forwarded all the same).
    Other,
}

impl Service {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Sqs => "SQS",
            Service::Kms => "KMS",
            Service::Scheduler => "Scheduler",
            Service::Other => "other",
        }
    }
}

/// One SQS, KMS, Scheduler or unrecognised request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCall {
    pub service: Service,
    /// The API (`SendMessageBatch`, `Decrypt`, `CreateSchedule`, …).
    pub api: String,
    /// Billed requests: SQS bills each started 64 KB of a request as one; others 1.
    pub billed: u64,
    /// Entries of a batch request (`SendMessageBatch`, `DeleteMessageBatch`), else 0.
    pub entries: u64,
    /// Messages a `ReceiveMessage` returned, else 0.
    pub received: u64,
    /// The HTTP status answered.
    pub status: u16,
}

/// Everything recorded since the last [`Meter::take`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub dynamo: Vec<DynamoCall>,
    pub services: Vec<ServiceCall>,
}

impl Records {
    /// Adds `other` to these records.
    pub fn extend(&mut self, other: Records) {
        self.dynamo.extend(other.dynamo);
        self.services.extend(other.services);
    }
}

/// What the proxy has recorded, and the table shapes it prices writes with.
#[derive(Default)]
pub struct Meter {
    tables: Mutex<HashMap<String, TableShape>>,
    records: Mutex<Records>,
}

impl Meter {
    /// Declares a table's shape (a `CreateTable` seen by the proxy does the same).
    pub fn register_table(&self, name: &str, shape: TableShape) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.insert(name.to_owned(), shape);
        }
    }

    /// The shape of `table`: as declared or created through the proxy, else `pk`/`sk`.
    pub fn shape(&self, table: &str) -> TableShape {
        self.tables.lock().ok().and_then(|t| t.get(table).cloned()).unwrap_or_else(TableShape::default_keys)
    }

    /// Takes what was recorded so far (the meter starts again from nothing).
    pub fn take(&self) -> Records {
        self.records.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> Records {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn record_dynamo(&self, call: DynamoCall) {
        if let Ok(mut records) = self.records.lock() {
            records.dynamo.push(call);
        }
    }

    fn record_service(&self, call: ServiceCall) {
        if let Ok(mut records) = self.records.lock() {
            records.services.push(call);
        }
    }
}
