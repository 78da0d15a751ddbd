//! The capacity meter (issue 11, step 1): DynamoDB's sizing and capacity rules as the meter
//! applies them, and a metered send through the proxy in local AWS mode (emulator tier).

use std::path::Path;

use pushgate_tests::emulator;
use pushgate_tests::meter::proxy::{identify, query_partition, read_costs, shape_of_create_table, write_costs};
use pushgate_tests::meter::report::{Names, Summary};
use pushgate_tests::meter::run::{Plan, measure};
use pushgate_tests::meter::size::{item_size, number_size, read_units, value_size, write_units};
use pushgate_tests::meter::{Meter, Service, TableShape};
use serde_json::{Map, Value, json};

fn item(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an item is a map")
}

/// An item of exactly `bytes` bytes: `pk` (2 + 1) and `s` (1 + the rest).
fn item_of(bytes: usize) -> Map<String, Value> {
    item(json!({"pk": {"S": "a"}, "s": {"S": "x".repeat(bytes - 4)}}))
}

#[test]
fn an_item_is_the_sum_of_its_attribute_names_and_values() {
    let sized =
        item(json!({"pk": {"S": "héllo"}, "ok": {"BOOL": true}, "none": {"NULL": true}, "b": {"B": "AAECAw=="}}));
    assert_eq!(item_size(&sized), (2 + 6) + (2 + 1) + (4 + 1) + (1 + 4));
}

#[test]
fn a_number_costs_one_byte_per_two_significant_digits_plus_one() {
    assert_eq!(number_size("0"), 1);
    assert_eq!(number_size("7"), 2);
    assert_eq!(number_size("1714000000000"), 3, "trailing zeros are not significant");
    assert_eq!(number_size("-0.00125"), 3, "leading zeros are not significant");
    assert_eq!(number_size("1795780800123"), 8);
}

#[test]
fn lists_and_maps_cost_three_bytes_plus_one_per_element() {
    assert_eq!(value_size(&json!({"L": []})), 3);
    assert_eq!(value_size(&json!({"L": [{"S": "ab"}, {"N": "1"}]})), 3 + (1 + 2) + (1 + 2));
    assert_eq!(value_size(&json!({"M": {"k": {"S": "v"}}})), 3 + 1 + 1 + 1);
    assert_eq!(value_size(&json!({"SS": ["a", "bc"]})), 3);
}

#[test]
fn an_item_of_1024_bytes_costs_one_write_unit() {
    assert_eq!(item_size(&item_of(1024)), 1024);
    assert_eq!(write_units(1024, false), 1.0);
}

#[test]
fn an_item_of_1025_bytes_costs_two_write_units() {
    assert_eq!(item_size(&item_of(1025)), 1025);
    assert_eq!(write_units(1025, false), 2.0);
}

#[test]
fn the_smallest_write_costs_one_unit() {
    assert_eq!(write_units(0, false), 1.0);
}

#[test]
fn a_transactional_write_costs_twice() {
    assert_eq!(write_units(1025, true), 4.0);
    let shape = TableShape::default_keys();
    let costs = write_costs("t", &shape, None, Some(&item_of(100)), true);
    assert_eq!(costs.iter().map(|c| c.wru).sum::<f64>(), 2.0);
}

#[test]
fn an_update_costs_the_larger_of_the_item_before_and_after() {
    let shape = TableShape::default_keys();
    let before = item(json!({"pk": {"S": "p"}, "sk": {"S": "s"}, "big": {"S": "x".repeat(3000)}}));
    let after = item(json!({"pk": {"S": "p"}, "sk": {"S": "s"}}));
    let costs = write_costs("t", &shape, Some(&before), Some(&after), false);
    assert_eq!(costs.len(), 1);
    assert_eq!((costs[0].wru, costs[0].partition.as_str(), costs[0].sort.as_deref()), (3.0, "p", Some("s")));
}

#[test]
fn a_write_of_an_item_with_the_index_keys_also_writes_the_index() {
    let (_, shape) = shape_of_create_table(&json!({
        "TableName": "t",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [{"IndexName": "byUser", "KeySchema": [
            {"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}]
    }))
    .expect("a table shape");
    let plain = item(json!({"pk": {"S": "p"}, "sk": {"S": "s"}}));
    assert_eq!(write_costs("t", &shape, None, Some(&plain), false).len(), 1, "a sparse index skips the item");
    let indexed = item(json!({"pk": {"S": "p"}, "sk": {"S": "s"}, "gsi1pk": {"S": "u"}, "gsi1sk": {"S": "s"}}));
    let costs = write_costs("t", &shape, None, Some(&indexed), false);
    assert_eq!(costs.len(), 2);
    assert_eq!((costs[1].index.as_deref(), costs[1].partition.as_str(), costs[1].wru), (Some("byUser"), "u", 1.0));
    let moved = item(json!({"pk": {"S": "p"}, "sk": {"S": "s"}, "gsi1pk": {"S": "v"}, "gsi1sk": {"S": "s"}}));
    assert_eq!(
        write_costs("t", &shape, Some(&indexed), Some(&moved), false).len(),
        3,
        "a key change is a delete and a put"
    );
    assert_eq!(
        write_costs("t", &shape, Some(&indexed), Some(&indexed), false).len(),
        1,
        "an unchanged image costs the index nothing"
    );
}

#[test]
fn a_strongly_consistent_read_costs_one_unit_per_4_kb() {
    assert_eq!(read_units(4096, true, false), 1.0);
    assert_eq!(read_units(4097, true, false), 2.0);
    assert_eq!(read_units(0, true, false), 1.0);
}

#[test]
fn an_eventually_consistent_query_costs_half() {
    let meter = Meter::default();
    let request = json!({"TableName": "t", "KeyConditionExpression": "#pk = :pk AND sk > :from",
        "ExpressionAttributeNames": {"#pk": "pk"}, "ExpressionAttributeValues": {":pk": {"S": "ACCOUNT"}, ":from": {"S": "a"}}});
    let response = json!({"Items": [item_of(3000), item_of(3000)]});
    let costs = read_costs(&meter, "Query", &request, &response);
    assert_eq!((costs[0].rru, costs[0].partition.as_str()), (1.0, "ACCOUNT"), "6,000 bytes: 2 units, halved");
    let consistent = json!({"TableName": "t", "ConsistentRead": true, "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "ACCOUNT"}}});
    assert_eq!(read_costs(&meter, "Query", &consistent, &response)[0].rru, 2.0);
}

#[test]
fn a_query_rounds_the_sum_of_its_items_and_a_batch_get_each_item() {
    let meter = Meter::default();
    let many: Vec<Value> = (0..10).map(|_| Value::Object(item_of(100))).collect();
    let query = json!({"TableName": "t", "ConsistentRead": true, "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": "a"}}});
    assert_eq!(read_costs(&meter, "Query", &query, &json!({"Items": many}))[0].rru, 1.0);
    let keys: Vec<Value> = (0..3).map(|i| json!({"pk": {"S": "a"}, "sk": {"S": format!("{i}")}})).collect();
    let found: Vec<Value> =
        (0..2).map(|i| json!({"pk": {"S": "a"}, "sk": {"S": format!("{i}")}, "x": {"S": "y"}})).collect();
    let batch = json!({"RequestItems": {"t": {"Keys": keys, "ConsistentRead": true}}});
    let costs = read_costs(&meter, "BatchGetItem", &batch, &json!({"Responses": {"t": found}}));
    assert_eq!(costs.iter().map(|c| c.rru).sum::<f64>(), 3.0, "two found and one missing key, one unit each");
}

#[test]
fn the_partition_key_of_a_query_is_read_from_its_key_condition() {
    let request = json!({"KeyConditionExpression": "gsi1pk=:u and gsi1sk <= :to",
        "ExpressionAttributeValues": {":u": {"S": "USER#a#b"}, ":to": {"S": "z"}}});
    assert_eq!(query_partition(&request, "gsi1pk"), "USER#a#b");
    assert_eq!(query_partition(&request, "pk"), "");
}

#[test]
fn sqs_kms_and_scheduler_calls_are_told_apart() {
    let post = http::Method::POST;
    assert_eq!(identify(&post, "/", "AmazonSQS.SendMessageBatch", b""), (Service::Sqs, "SendMessageBatch".into()));
    assert_eq!(identify(&post, "/", "", b"Action=ReceiveMessage&QueueUrl=x"), (Service::Sqs, "ReceiveMessage".into()));
    assert_eq!(identify(&post, "/", "TrentService.Decrypt", b"{}"), (Service::Kms, "Decrypt".into()));
    assert_eq!(identify(&post, "/schedules/pg-1", "", b"{}"), (Service::Scheduler, "CreateSchedule".into()));
    assert_eq!(
        identify(&http::Method::DELETE, "/schedules/pg-1", "", b""),
        (Service::Scheduler, "DeleteSchedule".into())
    );
}

#[tokio::test]
async fn a_metered_send_writes_every_notification_to_the_push_table_and_completes_through_the_proxy() {
    let Some(_) = emulator().await else { return };
    let recipients = 20;
    let exe = Path::new(env!("CARGO_BIN_EXE_pushgate-capacity"));
    let m = measure(exe, &Plan::new(recipients, 2)).await.expect("a metered send runs");

    assert_eq!((m.status().as_str(), m.counter("sent")), ("COMPLETED", recipients as u64), "{}", m.operation_item);
    assert_eq!((m.delivered_apns, m.delivered_fcm), (recipients / 2, recipients / 2));
    let all = m.all();
    let push = format!("{}push", m.table_prefix);
    let notifications = format!("NOTIFICATION#{}#", m.account);
    let mut written: std::collections::BTreeMap<String, f64> = Default::default();
    for item in all.dynamo.iter().flat_map(|c| &c.items) {
        if item.table == push && item.index.is_none() && item.partition.starts_with(&notifications) && item.wru > 0.0 {
            *written.entry(item.sort.clone().unwrap_or_default()).or_default() += item.wru;
        }
    }
    assert_eq!(written.len(), recipients, "every notification is written to the push table: {written:?}");
    assert!(written.values().all(|wru| *wru >= 1.0));
    assert!(all.dynamo.iter().all(|c| c.status < 500), "moto answered every forwarded request");
    assert!(all.services.iter().any(|c| c.service == Service::Sqs && c.api == "SendMessageBatch"));
    assert!(all.services.iter().any(|c| c.service == Service::Sqs && c.received > 0));

    let names =
        Names { table_prefix: m.table_prefix.clone(), account: m.account.clone(), operation: m.operation.clone() };
    let summary = Summary::new(&all, recipients, &names);
    assert!(summary.wru() >= 1.0, "at least one write unit per notification: {}", summary.wru());
    assert!(m.stored_items > recipients as u64, "the notifications and their operation are stored");
}
