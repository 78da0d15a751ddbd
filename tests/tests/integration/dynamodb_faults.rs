//! DynamoDB as it really behaves (issue 11, step 4): the fault layer of the metering proxy
//! enforces a write budget per partition key and fails concurrent transactions on one item,
//! answering exactly as DynamoDB does. These tests read its answers through the AWS SDK client
//! pushgate builds, and run a send through local AWS mode under it. Emulator tier.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest};
use pushgate_tests::emulator;
use pushgate_tests::meter::fault::{CapacityMode, FaultConfig, FaultKind, ItemKey};
use pushgate_tests::meter::proxy::MeterProxy;
use pushgate_tests::meter::report::Report;
use pushgate_tests::meter::run::{Plan, measure};

/// A proxy with the fault layer in front of moto, pushgate's tables created through it, and a
/// DynamoDB client built as pushgate builds it, pointed at the proxy.
struct Rig {
    proxy: MeterProxy,
    client: Client,
    push: String,
}

impl Rig {
    async fn start(faults: FaultConfig) -> Option<Rig> {
        let moto = emulator().await?.endpoint_url()?.to_owned();
        let proxy = MeterProxy::start_with(&moto, Some(faults)).await.expect("the proxy starts");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(&proxy.url).load().await;
        let client = pushgate_glue::cloud::dynamo_client(&sdk);
        let prefix = format!("pg-faults-{}-", ulid::Ulid::generate().to_string().to_ascii_lowercase());
        let tables = pushgate_aws::dynamodb::table_definitions(&prefix);
        pushgate_aws::dynamodb::create_tables(&client, &tables).await.expect("moto creates the tables");
        Some(Rig { proxy, client, push: format!("{prefix}push") })
    }

    /// The same client without retries: what one answer is, as the SDK surfaces it.
    fn one_try(&self) -> Client {
        Client::from_conf(self.client.config().to_builder().retry_config(RetryConfig::disabled()).build())
    }

    fn put(
        &self,
        client: &Client,
        pk: &str,
        sk: &str,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        client.put_item().table_name(&self.push).item("pk", s(pk)).item("sk", s(sk))
    }

    async fn exists(&self, pk: &str, sk: &str) -> bool {
        let got = self
            .client
            .get_item()
            .table_name(&self.push)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .expect("a read is never throttled");
        got.item.is_some()
    }

    fn put_entry(&self, pk: &str, sk: &str) -> TransactWriteItem {
        let put = Put::builder().table_name(&self.push).item("pk", s(pk)).item("sk", s(sk)).build().expect("a put");
        TransactWriteItem::builder().put(put).build()
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// One write unit per partition key per 1,000 s: a key's burst (1 unit) is all it gets here.
fn starved(mode: CapacityMode) -> FaultConfig {
    FaultConfig { write_wcu: 0.001, burst_seconds: 1.0, mode, conflicts: true }
}

#[tokio::test]
async fn a_write_over_its_partition_keys_budget_is_a_throttling_exception_on_an_on_demand_table() {
    let Some(rig) = Rig::start(starved(CapacityMode::OnDemand)).await else { return };
    let client = rig.one_try();
    rig.put(&client, "HOT", "1").send().await.expect("the burst admits the first write");

    let err = rig.put(&client, "HOT", "2").send().await.expect_err("the key's budget is spent");

    let Some(PutItemError::ThrottlingException(e)) = err.as_service_error() else {
        panic!("expected ThrottlingException, got {err:?}");
    };
    let reasons: Vec<_> = e.throttling_reasons().iter().filter_map(|r| r.reason()).collect();
    assert_eq!(reasons, ["TableWriteKeyRangeThroughputExceeded"]);
    assert!(e.throttling_reasons()[0].resource().is_some_and(|r| r.ends_with(&format!("table/{}", rig.push))));
    assert!(err.raw_response().is_some_and(|r| r.status().as_u16() == 400));
    assert!(!rig.exists("HOT", "2").await, "a throttled write never reaches the table");
    rig.put(&client, "COLD", "1").send().await.expect("another key has its own budget");
    let counts = rig.proxy.faults.as_ref().expect("faults on").counts();
    assert_eq!(counts.by_api.get(&("PutItem".to_owned(), FaultKind::Throttled)), Some(&1));
}

#[tokio::test]
async fn a_write_over_its_partition_keys_budget_is_provisioned_throughput_exceeded_on_a_provisioned_table() {
    let Some(rig) = Rig::start(starved(CapacityMode::Provisioned)).await else { return };
    let client = rig.one_try();
    rig.put(&client, "HOT", "1").send().await.expect("the burst admits the first write");

    let err = rig.put(&client, "HOT", "2").send().await.expect_err("the key's budget is spent");

    assert!(
        matches!(err.as_service_error(), Some(PutItemError::ProvisionedThroughputExceededException(_))),
        "expected ProvisionedThroughputExceededException, got {err:?}"
    );
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
}

#[tokio::test]
async fn pushgates_dynamodb_client_retries_a_throttled_write_until_the_key_has_capacity_again() {
    // 2 units a second, burst 2: of 10 writes to one row sent at once, at most 2 fit at once and
    // the rest are throttled until the key's capacity comes back (~4 s). Sent together, not one
    // after the other: a loaded moto's answer time would otherwise be the gap that refills it.
    let faults = FaultConfig { write_wcu: 2.0, burst_seconds: 1.0, mode: CapacityMode::OnDemand, conflicts: true };
    let Some(rig) = Rig::start(faults).await else { return };
    let sks: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let writes = sks.iter().map(|sk| rig.put(&rig.client, "HOT", sk).send());
    for written in futures::future::join_all(writes).await {
        written.expect("the SDK retries each throttled write until it fits");
    }

    for sk in &sks {
        assert!(rig.exists("HOT", sk).await, "{sk}");
    }
    let counts = rig.proxy.faults.as_ref().expect("faults on").counts();
    assert!(counts.throttles() >= 1, "writes met the budget: {counts:?}");
}

#[tokio::test]
async fn a_batch_write_hands_back_the_entries_over_budget_as_unprocessed_items_and_writes_the_rest() {
    let Some(rig) = Rig::start(starved(CapacityMode::OnDemand)).await else { return };
    let client = rig.one_try();
    rig.put(&client, "HOT", "1").send().await.expect("the burst admits the first write");
    let entry = |pk: &str, sk: &str| {
        let put = PutRequest::builder().item("pk", s(pk)).item("sk", s(sk)).build().expect("a put");
        WriteRequest::builder().put_request(put).build()
    };

    let out = client
        .batch_write_item()
        .request_items(&rig.push, vec![entry("HOT", "2"), entry("COLD", "1")])
        .send()
        .await
        .expect("a batch with room for some entries succeeds");

    let left = out.unprocessed_items().and_then(|u| u.get(&rig.push)).cloned().unwrap_or_default();
    let left_keys: Vec<_> = left
        .iter()
        .filter_map(|w| w.put_request())
        .map(|p| (p.item().get("pk").cloned(), p.item().get("sk").cloned()))
        .collect();
    assert_eq!(left_keys, [(Some(s("HOT")), Some(s("2")))]);
    assert!(rig.exists("COLD", "1").await && !rig.exists("HOT", "2").await);

    let err = client
        .batch_write_item()
        .request_items(&rig.push, vec![entry("HOT", "3")])
        .send()
        .await
        .expect_err("a batch of which nothing fits fails");
    assert_eq!(err.code(), Some("ThrottlingException"));
}

#[tokio::test]
async fn a_throttled_transaction_is_cancelled_with_throttling_error_at_the_throttled_item_only() {
    let Some(rig) = Rig::start(starved(CapacityMode::OnDemand)).await else { return };
    let client = rig.one_try();
    // A transactional write costs 2 units: the burst of 1 admits it (a full bucket admits any
    // write) and leaves the key in debt.
    client.transact_write_items().transact_items(rig.put_entry("HOT", "1")).send().await.expect("a full key admits");
    let update = Update::builder()
        .table_name(&rig.push)
        .key("pk", s("HOT"))
        .key("sk", s("1"))
        .update_expression("SET n = :n")
        .expression_attribute_values(":n", AttributeValue::N("1".into()))
        .build()
        .expect("an update");

    let err = client
        .transact_write_items()
        .transact_items(rig.put_entry("COLD", "1"))
        .transact_items(TransactWriteItem::builder().update(update).build())
        .send()
        .await
        .expect_err("the hot key has no capacity");

    let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
        panic!("expected TransactionCanceledException, got {err:?}");
    };
    let codes: Vec<_> = cancel.cancellation_reasons().iter().map(|r| r.code().unwrap_or_default()).collect();
    assert_eq!(codes, ["None", "ThrottlingError"]);
    assert!(!rig.exists("COLD", "1").await, "a cancelled transaction writes nothing");
}

#[tokio::test]
async fn a_transaction_on_an_item_another_transaction_holds_is_cancelled_with_transaction_conflict() {
    let Some(rig) = Rig::start(FaultConfig::write_budget(1_000.0)).await else { return };
    let client = rig.one_try();
    let faults = rig.proxy.faults.clone().expect("faults on");
    let held = faults.hold(ItemKey { table: rig.push.clone(), partition: "OP".into(), sort: Some("1".into()) });

    let err = client
        .transact_write_items()
        .transact_items(rig.put_entry("N", "1"))
        .transact_items(rig.put_entry("OP", "1"))
        .send()
        .await
        .expect_err("the item is in another transaction");
    let single = rig.put(&client, "OP", "1").send().await.expect_err("a single write conflicts too");

    let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
        panic!("expected TransactionCanceledException, got {err:?}");
    };
    let reasons: Vec<_> = cancel.cancellation_reasons().iter().map(|r| (r.code(), r.message())).collect();
    assert_eq!(
        reasons,
        [(Some("None"), None), (Some("TransactionConflict"), Some("Transaction is ongoing for the item"))]
    );
    assert!(
        matches!(single.as_service_error(), Some(PutItemError::TransactionConflictException(_))),
        "expected TransactionConflictException, got {single:?}"
    );
    drop(held);
    rig.put(&client, "OP", "1").send().await.expect("the item is free once the transaction is over");
    assert_eq!(faults.counts().conflicts(), 2);
}

#[tokio::test]
async fn a_hot_index_partition_throttles_writes_to_different_table_keys() {
    let Some(rig) = Rig::start(starved(CapacityMode::OnDemand)).await else { return };
    let client = rig.one_try();
    let put = |pk: &str| rig.put(&client, pk, "1").item("gsi1pk", s("USER#hot")).item("gsi1sk", s(pk));
    put("A").send().await.expect("the burst admits the first write");

    let err = put("B").send().await.expect_err("the index partition's budget is spent");

    let Some(PutItemError::ThrottlingException(e)) = err.as_service_error() else {
        panic!("expected ThrottlingException, got {err:?}");
    };
    let reasons: Vec<_> = e.throttling_reasons().iter().filter_map(|r| r.reason()).collect();
    assert!(reasons.contains(&"IndexWriteKeyRangeThroughputExceeded"), "{reasons:?}");
}

/// The send of the step 4: 2,000 recipients through local AWS mode with a write budget
/// per partition key scaled down so that the busiest keys (the account's 32 notification
/// partitions, 1/32 WRU per notification each) are the bottleneck, and transaction conflicts on (the chunks of the
/// operation count into the one Operation item concurrently). The send must meet throttles, and
/// still end with every notification delivered once and the stats adding up. The report printed
/// beside it compares the time taken with the ceiling the budget implies (not asserted).
#[tokio::test]
async fn a_send_under_a_scaled_down_write_budget_meets_throttles_completes_and_delivers_every_notification_once() {
    let Some(_) = emulator().await else { return };
    let recipients = FAULT_RECIPIENTS;
    let faults = FaultConfig::write_budget(FAULT_BUDGET_WCU);
    let plan = Plan::new(recipients, 4).with_faults(faults.clone()).within(Duration::from_secs(180));

    let m = measure(Path::new(env!("CARGO_BIN_EXE_pushgate-capacity")), &plan).await.expect("the send completes");

    let report = Report::new(&m, 512);
    println!("{}", report.render(&m));
    let (_, counts) = m.faults.clone().expect("the fault layer was on");
    assert!(counts.throttles() > 0, "the budget throttled nothing, so this proved nothing: {counts:?}");
    assert_eq!(m.status(), "COMPLETED", "{}", m.operation_item);
    let (total, sent, failed, canceled) =
        (m.counter("total"), m.counter("sent"), m.counter("failed"), m.counter("canceled"));
    assert_eq!(total, recipients as u64);
    assert_eq!(total, sent + failed + canceled, "{}", m.operation_item);
    assert_eq!(m.counter("queued"), 0, "{}", m.operation_item);
    let mut deliveries: BTreeMap<&str, usize> = BTreeMap::new();
    for token in &m.delivered_tokens {
        *deliveries.entry(token.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} tokens delivered more than once: {twice:?}", twice.len());
    assert_eq!(deliveries.len(), recipients, "every recipient is delivered");
}

/// Recipients of the send under the fault layer.
const FAULT_RECIPIENTS: usize = 2_000;

/// Write units per second per partition key for the send under the fault layer.
const FAULT_BUDGET_WCU: f64 = 5.0;
