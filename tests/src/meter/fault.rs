//! The fault layer: DynamoDB's write limits and transaction conflicts, enforced by the metering
//! proxy in front of the emulator (issue 11, step 4). moto accepts any rate on any key and lets
//! concurrent transactions on one item both run; DynamoDB does neither, and code that never met
//! a throttle or a conflict has never been tested against them.
//!
//! - **Write budget per partition key.** A token bucket per table partition key value, and per
//!   index partition key value for the index writes an item causes (DynamoDB throttles a base
//!   table write when the index partition it lands on is hot). Each bucket refills at
//!   [`FaultConfig::write_wcu`] units per second and holds at most
//!   [`FaultConfig::burst_seconds`] of them (DynamoDB keeps up to 300 s of unused capacity; the
//!   budget here is scaled down, and so is the burst). A write is charged the write request
//!   units the meter computes for it (doubled in a transaction), on every key it writes; one
//!   that would overdraw any of them is answered the way DynamoDB answers, without reaching the
//!   emulator: a throttling error for a single-item write, `UnprocessedItems` for the throttled
//!   entries of a `BatchWriteItem` (the error when none is admitted), a
//!   `TransactionCanceledException` with `ThrottlingError` at the throttled positions for a
//!   `TransactWriteItems`. A full bucket admits any write, so an item larger than the burst
//!   still goes through (and leaves the bucket in debt).
//! - **Transaction conflicts.** While a `TransactWriteItems` is with the emulator, its items
//!   (table + primary key) are held: another transaction touching one of them is cancelled with
//!   `TransactionConflict` at that position, and a single-item write on one gets
//!   `TransactionConflictException`.
//!
//! Which throttling error: pushgate's tables are on-demand, and an on-demand table whose
//! partition key runs over its share answers `ThrottlingException` ("Throughput exceeds the
//! current capacity of your table or index…"), with the throttling reason
//! `TableWriteKeyRangeThroughputExceeded` (or `IndexWrite…`); a provisioned table answers
//! `ProvisionedThroughputExceededException`. [`CapacityMode`] picks one. The AWS SDKs classify
//! both as throttling errors and retry them with backoff; they do not retry a cancelled
//! transaction, whatever its reasons.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use super::ItemCost;

/// How the emulated tables are billed, which decides the throttling error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityMode {
    /// `PAY_PER_REQUEST` (pushgate's tables): `ThrottlingException`.
    OnDemand,
    /// Provisioned capacity: `ProvisionedThroughputExceededException`.
    Provisioned,
}

/// What the fault layer enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Write capacity of one partition key, in write units per second (DynamoDB: 1,000).
    pub write_wcu: f64,
    /// Unused capacity a key keeps, in seconds of [`Self::write_wcu`] (DynamoDB: up to 300).
    pub burst_seconds: f64,
    pub mode: CapacityMode,
    /// Whether concurrent transactions on one item conflict.
    pub conflicts: bool,
}

impl FaultConfig {
    /// `write_wcu` per partition key, 1 s of burst, on-demand errors, conflicts on.
    pub fn write_budget(write_wcu: f64) -> FaultConfig {
        FaultConfig { write_wcu, burst_seconds: 1.0, mode: CapacityMode::OnDemand, conflicts: true }
    }

    /// The most write units a bucket holds.
    pub fn burst(&self) -> f64 {
        (self.write_wcu * self.burst_seconds).max(1.0)
    }
}

/// What the fault layer did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Refused whole for throughput (a single-item write, or a batch of which nothing fitted).
    Throttled,
    /// A `BatchWriteItem` of which some entries were handed back as `UnprocessedItems`.
    PartlyThrottled,
    /// Entries handed back as `UnprocessedItems` (counted per entry).
    UnprocessedItem,
    /// A `TransactWriteItems` cancelled with `ThrottlingError`.
    TransactionThrottled,
    /// A `TransactWriteItems` cancelled with `TransactionConflict`.
    TransactionConflict,
    /// A single-item write refused with `TransactionConflictException`.
    WriteConflict,
}

impl FaultKind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Throttled => "throttled",
            FaultKind::PartlyThrottled => "partly throttled",
            FaultKind::UnprocessedItem => "unprocessed items",
            FaultKind::TransactionThrottled => "cancelled: ThrottlingError",
            FaultKind::TransactionConflict => "cancelled: TransactionConflict",
            FaultKind::WriteConflict => "TransactionConflictException",
        }
    }
}

/// What the fault layer has done so far, by API and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub by_api: BTreeMap<(String, FaultKind), u64>,
}

impl FaultCounts {
    /// How many times `kind` happened, on any API.
    pub fn count(&self, kind: FaultKind) -> u64 {
        self.by_api.iter().filter(|((_, k), _)| *k == kind).map(|(_, n)| n).sum()
    }

    /// Requests that met a throttle: refused whole, partly unprocessed, or cancelled for it.
    pub fn throttles(&self) -> u64 {
        self.count(FaultKind::Throttled)
            + self.count(FaultKind::PartlyThrottled)
            + self.count(FaultKind::TransactionThrottled)
    }

    /// Requests refused because a transaction held an item they write.
    pub fn conflicts(&self) -> u64 {
        self.count(FaultKind::TransactionConflict) + self.count(FaultKind::WriteConflict)
    }
}

/// A partition key's bucket: the table, the index (for index writes) and the key's value.
type BucketKey = (String, Option<String>, String);

/// An item: its table and its primary key values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    pub table: String,
    pub partition: String,
    pub sort: Option<String>,
}

/// One item a write request writes, as the fault layer judges it.
#[derive(Debug, Clone)]
pub struct WriteItem {
    pub key: ItemKey,
    /// What writing it costs, on the table and on each index (the meter's estimate before the
    /// write; [`Admission::settle`] charges the difference once the meter knows).
    pub costs: Vec<ItemCost>,
}

/// An answer DynamoDB would give instead of doing the work.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Always 400, as DynamoDB answers these.
    pub status: u16,
    /// The JSON error body (`__type`, message, and the reasons where the error has them).
    pub body: Value,
}

/// The fault layer's verdict on a write request.
pub enum Verdict {
    /// Forward it as it is.
    Admit(Admission),
    /// Forward only the entries not listed in `refused` (indexes into the request's items) and
    /// hand those back as `UnprocessedItems`.
    Partly { admission: Admission, refused: Vec<usize> },
    /// Answer this instead.
    Refuse(Refusal),
}

/// A forwarded write: what it was charged, and the items it holds while in flight.
pub struct Admission {
    faults: Arc<Faults>,
    charged: HashMap<BucketKey, f64>,
    held: Vec<ItemKey>,
}

impl Admission {
    /// The emulator has answered: the transaction's items are free again.
    pub fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if let Ok(mut state) = self.faults.state.lock() {
            for key in self.held.drain(..) {
                if let Some(n) = state.in_flight.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        state.in_flight.remove(&key);
                    }
                }
            }
        }
    }

    /// Charges what the write really cost (`actual`, the meter's costs once it knows the item
    /// after the write; nothing if the emulator refused the request) in place of the estimate.
    pub fn settle(mut self, actual: &[ItemCost]) {
        self.release();
        let mut spent: HashMap<BucketKey, f64> = HashMap::new();
        for cost in actual.iter().filter(|c| c.wru > 0.0) {
            *spent.entry(bucket_key(cost)).or_default() += cost.wru;
        }
        let Ok(mut state) = self.faults.state.lock() else { return };
        let now = Instant::now();
        let keys: Vec<BucketKey> = self.charged.keys().chain(spent.keys()).cloned().collect();
        for key in keys {
            let difference = spent.remove(&key).unwrap_or(0.0) - self.charged.remove(&key).unwrap_or(0.0);
            if difference != 0.0 {
                let bucket = state.bucket(&self.faults.config, key, now);
                bucket.tokens -= difference;
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release();
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct State {
    buckets: HashMap<BucketKey, Bucket>,
    in_flight: HashMap<ItemKey, u32>,
    counts: FaultCounts,
}

impl State {
    /// `key`'s bucket, refilled up to `now` (a new one starts full).
    fn bucket(&mut self, config: &FaultConfig, key: BucketKey, now: Instant) -> &mut Bucket {
        let burst = config.burst();
        let bucket = self.buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * config.write_wcu;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        bucket
    }

    fn count(&mut self, api: &str, kind: FaultKind, n: u64) {
        *self.counts.by_api.entry((api.to_owned(), kind)).or_default() += n;
    }
}

/// The fault layer's state: the buckets, the items held by transactions in flight, the counts.
pub struct Faults {
    config: FaultConfig,
    state: Mutex<State>,
    /// The region and account named in throttling reasons' resource ARNs.
    region: String,
}

fn bucket_key(cost: &ItemCost) -> BucketKey {
    (cost.table.clone(), cost.index.clone(), cost.partition.clone())
}

/// Units each bucket key would be charged for `items`.
fn demand<'a>(items: impl IntoIterator<Item = &'a WriteItem>) -> HashMap<BucketKey, f64> {
    let mut demand: HashMap<BucketKey, f64> = HashMap::new();
    for cost in items.into_iter().flat_map(|i| &i.costs).filter(|c| c.wru > 0.0) {
        *demand.entry(bucket_key(cost)).or_default() += cost.wru;
    }
    demand
}

/// The cancellation message DynamoDB gives: the reasons' codes in order.
fn cancellation(reasons: &[Value]) -> Refusal {
    let codes: Vec<&str> = reasons.iter().map(|r| r["Code"].as_str().unwrap_or("None")).collect();
    Refusal {
        status: 400,
        body: json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
            "CancellationReasons": reasons,
        }),
    }
}

const THROTTLED_MESSAGE: &str = "Throughput exceeds the current capacity of your table or index. DynamoDB is \
     automatically scaling your table or index so please try again shortly. If exceptions persist, check if you \
     have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";
const PROVISIONED_MESSAGE: &str = "The level of configured provisioned throughput for the table was exceeded. \
     Consider increasing your provisioning level with the UpdateTable API.";
const CONFLICT_MESSAGE: &str = "Transaction is ongoing for the item";

impl Faults {
    /// A fault layer enforcing `config`, with nothing spent and nothing in flight.
    pub fn new(config: FaultConfig) -> Faults {
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
        Faults { config, state: Mutex::default(), region }
    }

    /// What it enforces.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// What it has done so far.
    pub fn counts(&self) -> FaultCounts {
        self.state.lock().map(|s| s.counts.clone()).unwrap_or_default()
    }

    /// Holds `key` as a transaction in flight would, until the returned admission is dropped:
    /// for tests that need a transaction to be "ongoing" at a chosen moment.
    pub fn hold(self: &Arc<Self>, key: ItemKey) -> Admission {
        if let Ok(mut state) = self.state.lock() {
            *state.in_flight.entry(key.clone()).or_default() += 1;
        }
        Admission { faults: self.clone(), charged: HashMap::new(), held: vec![key] }
    }

    /// Judges a write request (`api`) writing `items` (in the request's order): admits it
    /// (charging the buckets and, for a transaction, holding its items), admits part of a
    /// `BatchWriteItem`, or refuses it as DynamoDB would.
    pub fn judge(self: &Arc<Self>, api: &str, items: &[WriteItem]) -> Verdict {
        let transaction = api == "TransactWriteItems";
        let batch = api == "BatchWriteItem";
        let Ok(mut guard) = self.state.lock() else {
            return Verdict::Admit(Admission { faults: self.clone(), charged: HashMap::new(), held: Vec::new() });
        };
        let state = &mut *guard;
        let now = Instant::now();

        if self.config.conflicts && !batch {
            let held: Vec<bool> = items.iter().map(|i| state.in_flight.contains_key(&i.key)).collect();
            if held.iter().any(|h| *h) {
                if transaction {
                    state.count(api, FaultKind::TransactionConflict, 1);
                    let reasons: Vec<Value> = held
                        .iter()
                        .map(|h| match h {
                            true => json!({"Code": "TransactionConflict", "Message": CONFLICT_MESSAGE}),
                            false => json!({"Code": "None"}),
                        })
                        .collect();
                    return Verdict::Refuse(cancellation(&reasons));
                }
                state.count(api, FaultKind::WriteConflict, 1);
                return Verdict::Refuse(Refusal {
                    status: 400,
                    body: json!({
                        "__type": "com.amazonaws.dynamodb.v20120810#TransactionConflictException",
                        "message": CONFLICT_MESSAGE,
                    }),
                });
            }
        }

        // Whether `needed` units fit in `key`'s bucket: they do if it has them, or if it is full
        // (an item larger than the burst must get through some time).
        let config = &self.config;
        let fits = |state: &mut State, key: &BucketKey, needed: f64| {
            let bucket = state.bucket(config, key.clone(), now);
            bucket.tokens >= needed || bucket.tokens >= config.burst()
        };

        let mut charged: HashMap<BucketKey, f64> = HashMap::new();
        let mut refused = Vec::new();
        if batch {
            // Each entry on its own, in order: DynamoDB processes what it can.
            for (n, item) in items.iter().enumerate() {
                let wanted = demand([item]);
                if wanted.iter().all(|(key, units)| fits(&mut *state, key, *units)) {
                    for (key, units) in wanted {
                        state.bucket(config, key.clone(), now).tokens -= units;
                        *charged.entry(key).or_default() += units;
                    }
                } else {
                    refused.push(n);
                }
            }
            if refused.len() == items.len() {
                state.count(api, FaultKind::Throttled, 1);
                return Verdict::Refuse(self.throttled(items));
            }
        } else {
            let wanted = demand(items);
            let short: Vec<BucketKey> =
                wanted.iter().filter(|(key, units)| !fits(&mut *state, key, **units)).map(|(k, _)| k.clone()).collect();
            if !short.is_empty() {
                let throttled = |item: &WriteItem| item.costs.iter().any(|c| short.contains(&bucket_key(c)));
                if transaction {
                    state.count(api, FaultKind::TransactionThrottled, 1);
                    let reasons: Vec<Value> = items
                        .iter()
                        .map(|item| match throttled(item) {
                            true => json!({"Code": "ThrottlingError", "Message": THROTTLED_MESSAGE}),
                            false => json!({"Code": "None"}),
                        })
                        .collect();
                    return Verdict::Refuse(cancellation(&reasons));
                }
                state.count(api, FaultKind::Throttled, 1);
                let throttled: Vec<WriteItem> = items.iter().filter(|i| throttled(i)).cloned().collect();
                return Verdict::Refuse(self.throttled(&throttled));
            }
            for (key, units) in wanted {
                state.bucket(config, key.clone(), now).tokens -= units;
                charged.insert(key, units);
            }
        }

        let held: Vec<ItemKey> = if transaction && self.config.conflicts {
            items.iter().map(|i| i.key.clone()).collect()
        } else {
            Vec::new()
        };
        for key in &held {
            *state.in_flight.entry(key.clone()).or_default() += 1;
        }
        let admission = Admission { faults: self.clone(), charged, held };
        if refused.is_empty() {
            Verdict::Admit(admission)
        } else {
            state.count(api, FaultKind::PartlyThrottled, 1);
            state.count(api, FaultKind::UnprocessedItem, refused.len() as u64);
            Verdict::Partly { admission, refused }
        }
    }

    /// The throttling error for writes of `items`, with a reason per table or index throttled.
    fn throttled(&self, items: &[WriteItem]) -> Refusal {
        let mut reasons: Vec<Value> = Vec::new();
        for cost in items.iter().flat_map(|i| &i.costs) {
            let (kind, resource) = match &cost.index {
                Some(index) => ("IndexWriteKeyRangeThroughputExceeded", format!("{}/index/{index}", cost.table)),
                None => ("TableWriteKeyRangeThroughputExceeded", cost.table.clone()),
            };
            let reason = json!({
                "reason": kind,
                "resource": format!("arn:aws:dynamodb:{}:123456789012:table/{resource}", self.region),
            });
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        let (kind, message) = match self.config.mode {
            CapacityMode::OnDemand => ("com.amazon.coral.availability#ThrottlingException", THROTTLED_MESSAGE),
            CapacityMode::Provisioned => {
                ("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", PROVISIONED_MESSAGE)
            }
        };
        Refusal { status: 400, body: json!({"__type": kind, "message": message, "throttlingReasons": reasons}) }
    }
}
