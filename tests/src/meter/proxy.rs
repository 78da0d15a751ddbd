//! The metering reverse proxy: pushgate's SDK clients talk to it (`AWS_ENDPOINT_URL` = the
//! proxy), it forwards every request unchanged to the emulator and records what each one costs
//! (see the [module](super) docs). Requests are forwarded one by one as they come, so what the
//! code under test does is unchanged; the proxy's own `GetItem`s (the item before a write, the
//! item after an update) go straight to the emulator and are not counted. They race with other
//! writes of the same item only as concurrent requests race anyway: the sizes are exact for
//! every item only one request writes at a time, and within a few bytes otherwise.
//!
//! Started with a [`FaultConfig`], the proxy first puts every write request to the fault layer
//! ([`super::fault`]), with the items it writes and what the meter estimates they cost from the
//! items before the write: a refused request is answered there (recorded with its status and no
//! units) and never reaches the emulator; a `BatchWriteItem` admitted in part is forwarded
//! without its refused entries, which come back in `UnprocessedItems`. Once the meter has priced
//! a forwarded write, the buckets are charged what it really cost.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use super::fault::{FaultConfig, Faults, ItemKey, Refusal, Verdict, WriteItem};
use super::size::{item_size, read_units, write_units};
use super::{DynamoCall, IndexShape, ItemCost, Meter, Projection, Service, ServiceCall, TableShape};

type Item = Map<String, Value>;

/// A running metering proxy.
pub struct MeterProxy {
    /// `http://127.0.0.1:PORT`: give it to the SDK as `AWS_ENDPOINT_URL`.
    pub url: String,
    /// What it recorded.
    pub meter: Arc<Meter>,
    /// The fault layer, when it was started with one.
    pub faults: Option<Arc<Faults>>,
    upstream: Upstream,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MeterProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MeterProxy {
    /// Starts a proxy on a random local port in front of `upstream` (e.g. moto's
    /// `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str) -> std::io::Result<MeterProxy> {
        MeterProxy::start_with(upstream, None).await
    }

    /// Starts a proxy that also enforces `faults` (see [`super::fault`]), if any.
    pub async fn start_with(upstream: &str, faults: Option<FaultConfig>) -> std::io::Result<MeterProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let meter = Arc::new(Meter::default());
        let upstream = Upstream::new(upstream)?;
        let faults = faults.map(|config| Arc::new(Faults::new(config)));
        let shared = Arc::new(Shared { upstream: upstream.clone(), meter: meter.clone(), faults: faults.clone() });
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).into_future().await {
                tracing::warn!(error = %e, "the metering proxy stopped");
            }
        });
        Ok(MeterProxy { url: format!("http://{addr}"), meter, faults, upstream, task })
    }

    /// Calls DynamoDB's `api` on the emulator directly (not metered): for the report's own reads
    /// (storage, the operation's status).
    pub async fn dynamo_unmetered(&self, api: &str, body: &Value) -> Option<Value> {
        self.upstream.dynamo(api, body, None).await
    }
}

/// The emulator behind the proxy.
#[derive(Clone)]
struct Upstream {
    base: String,
    client: reqwest::Client,
}

impl Upstream {
    fn new(base: &str) -> std::io::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Upstream { base: base.trim_end_matches('/').to_owned(), client })
    }

    /// Forwards a request as it came; `None` if the emulator could not be reached.
    async fn forward(&self, method: &Method, uri: &http::Uri, headers: &HeaderMap, body: Bytes) -> Option<Forwarded> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        for (name, value) in headers {
            if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
                request = request.header(name, value);
            }
        }
        let response = request.body(body).send().await.ok()?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.ok()?;
        Some(Forwarded { status, headers, body })
    }

    /// A DynamoDB JSON call straight to the emulator (`authorization` carries the caller's
    /// credential scope, so moto picks the same account and region).
    async fn dynamo(&self, api: &str, body: &Value, authorization: Option<&HeaderValue>) -> Option<Value> {
        let mut request = self
            .client
            .post(format!("{}/", self.base))
            .header("x-amz-target", format!("DynamoDB_20120810.{api}"))
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.0")
            .body(body.to_string());
        // moto routes a request to a service by the credential scope of its signature (it
        // checks no signature): the caller's, else one for the environment's key and region.
        request = match authorization {
            Some(auth) => request.header(header::AUTHORIZATION, auth),
            None => {
                let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
                let scope = format!(
                    "AWS4-HMAC-SHA256 Credential={}/20260101/{}/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                    var("AWS_ACCESS_KEY_ID", "test"),
                    var("AWS_REGION", "us-east-1")
                );
                request.header(header::AUTHORIZATION, scope)
            }
        };
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// The item stored under `key` (read consistently), `None` if there is none.
    async fn get_item(&self, table: &str, key: &Item, authorization: Option<&HeaderValue>) -> Option<Item> {
        let body = json!({"TableName": table, "Key": key, "ConsistentRead": true});
        let answer = self.dynamo("GetItem", &body, authorization).await?;
        answer.get("Item").and_then(Value::as_object).cloned()
    }
}

struct Forwarded {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Forwarded {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
                response.headers_mut().append(name, value.clone());
            }
        }
        response
    }

    /// Adds `left` (table → write requests) to the answer's `UnprocessedItems`. The body
    /// changes, so its checksum header goes.
    fn add_unprocessed(&mut self, left: Map<String, Value>) {
        let mut answer = self.json();
        let Some(answer_map) = answer.as_object_mut() else { return };
        let unprocessed = answer_map.entry("UnprocessedItems").or_insert_with(|| json!({}));
        let Some(unprocessed) = unprocessed.as_object_mut() else { return };
        for (table, writes) in left {
            let entries = unprocessed.entry(table).or_insert_with(|| json!([]));
            if let (Some(entries), Value::Array(writes)) = (entries.as_array_mut(), writes) {
                entries.extend(writes);
            }
        }
        self.body = Bytes::from(answer.to_string());
        self.headers.remove("x-amz-crc32");
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Whether DynamoDB would have consumed capacity: it did the work, or a condition it
    /// evaluated failed (a failed conditional write still consumes).
    fn consumed(&self) -> bool {
        if self.status.is_success() {
            return true;
        }
        let kind = self.json().get("__type").and_then(Value::as_str).unwrap_or_default().to_owned();
        kind.contains("ConditionalCheckFailed") || kind.contains("TransactionCanceled")
    }
}

fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te" | "trailer"
    )
}

struct Shared {
    upstream: Upstream,
    meter: Arc<Meter>,
    faults: Option<Arc<Faults>>,
}

/// DynamoDB's answer for a request the fault layer refused.
fn refusal(refusal: Refusal) -> Response {
    let mut response = Response::new(Body::from(refusal.body.to_string()));
    *response.status_mut() = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.0"));
    if let Ok(id) = HeaderValue::from_str(&ulid::Ulid::generate().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

fn bad_gateway() -> Response {
    let mut response = Response::new(Body::from("the metering proxy could not reach the emulator"));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else { return bad_gateway() };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if let Some(api) = target.strip_prefix("DynamoDB_20120810.") {
        return dynamo(&shared, api, &parts, body).await;
    }
    let (service, api) = identify(&parts.method, parts.uri.path(), &target, &body);
    let request_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let billed = if service == Service::Sqs { (body.len() as u64).div_ceil(64 * 1024).max(1) } else { 1 };
    let entries = request_json.get("Entries").and_then(Value::as_array).map_or(0, |e| e.len() as u64);
    let Some(forwarded) = shared.upstream.forward(&parts.method, &parts.uri, &parts.headers, body).await else {
        return bad_gateway();
    };
    let received = if api == "ReceiveMessage" {
        forwarded.json().get("Messages").and_then(Value::as_array).map_or(0, |m| m.len() as u64)
    } else {
        0
    };
    shared.meter.record_service(ServiceCall {
        service,
        api,
        billed,
        entries,
        received,
        status: forwarded.status.as_u16(),
    });
    forwarded.into_response()
}

/// Which service and API a non-DynamoDB request is.
pub fn identify(method: &Method, path: &str, target: &str, body: &[u8]) -> (Service, String) {
    if let Some(api) = target.strip_prefix("AmazonSQS.") {
        return (Service::Sqs, api.to_owned());
    }
    if let Some(api) = target.strip_prefix("TrentService.") {
        return (Service::Kms, api.to_owned());
    }
    if let Some(action) = url::form_urlencoded::parse(body).find(|(k, _)| k == "Action").map(|(_, v)| v.into_owned()) {
        return (Service::Sqs, action);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let scheduler_api = match (method.as_str(), segments.as_slice()) {
        ("POST", ["schedules", _]) => Some("CreateSchedule"),
        ("PUT", ["schedules", _]) => Some("UpdateSchedule"),
        ("DELETE", ["schedules", _]) => Some("DeleteSchedule"),
        ("GET", ["schedules", _]) => Some("GetSchedule"),
        ("GET", ["schedules"]) => Some("ListSchedules"),
        ("POST", ["schedule-groups", _]) => Some("CreateScheduleGroup"),
        ("DELETE", ["schedule-groups", _]) => Some("DeleteScheduleGroup"),
        ("GET", ["schedule-groups", ..]) => Some("GetScheduleGroup"),
        _ => None,
    };
    match scheduler_api {
        Some(api) => (Service::Scheduler, api.to_owned()),
        None => (Service::Other, format!("{method} {path}")),
    }
}

/// One item a write request changes.
#[derive(Debug, Clone)]
struct WriteTarget {
    table: String,
    key: Item,
    kind: WriteKind,
    transactional: bool,
}

#[derive(Debug, Clone)]
enum WriteKind {
    Put(Item),
    Update,
    Delete,
    ConditionCheck,
}

async fn dynamo(shared: &Shared, api: &str, parts: &http::request::Parts, body: Bytes) -> Response {
    let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut body = body;
    let auth = parts.headers.get(header::AUTHORIZATION);
    let meter = &shared.meter;
    if api == "CreateTable"
        && let Some((name, shape)) = shape_of_create_table(&request)
    {
        meter.register_table(&name, shape);
    }
    let mut targets = write_targets(meter, api, &request);
    let mut before =
        futures::future::join_all(targets.iter().map(|t| shared.upstream.get_item(&t.table, &t.key, auth))).await;
    let mut admission = None;
    let mut unprocessed = None;
    if let Some(faults) = shared.faults.as_ref().filter(|_| !targets.is_empty()) {
        let items: Vec<WriteItem> =
            targets.iter().zip(&before).map(|(t, b)| fault_item(meter, t, b.as_ref())).collect();
        match faults.judge(api, &items) {
            Verdict::Refuse(answer) => {
                let tables = tables_named(api, &request);
                meter.record_dynamo(DynamoCall {
                    api: api.to_owned(),
                    tables,
                    status: answer.status,
                    items: Vec::new(),
                });
                return refusal(answer);
            }
            Verdict::Admit(admitted) => admission = Some(admitted),
            Verdict::Partly { admission: admitted, refused } => {
                let (kept, left) = split_batch(&request, &refused);
                request = kept;
                body = Bytes::from(request.to_string());
                let keep = |n: &usize| !refused.contains(n);
                targets = targets.into_iter().enumerate().filter(|(n, _)| keep(n)).map(|(_, t)| t).collect();
                before = before.into_iter().enumerate().filter(|(n, _)| keep(n)).map(|(_, b)| b).collect();
                unprocessed = Some(left);
                admission = Some(admitted);
            }
        }
    }
    let Some(mut forwarded) = shared.upstream.forward(&parts.method, &parts.uri, &parts.headers, body).await else {
        return bad_gateway();
    };
    if let Some(admitted) = admission.as_mut() {
        admitted.release();
    }
    if let Some(left) = unprocessed {
        forwarded.add_unprocessed(left);
    }
    let response = forwarded.json();
    let mut items = Vec::new();
    if forwarded.consumed() {
        let succeeded = forwarded.status.is_success();
        let after = futures::future::join_all(targets.iter().zip(&before).map(|(t, before)| async move {
            match (&t.kind, succeeded) {
                (_, false) | (WriteKind::ConditionCheck, _) => before.clone(),
                (WriteKind::Put(item), true) => Some(item.clone()),
                (WriteKind::Delete, true) => None,
                (WriteKind::Update, true) => shared.upstream.get_item(&t.table, &t.key, auth).await,
            }
        }))
        .await;
        for ((target, before), after) in targets.iter().zip(&before).zip(&after) {
            let shape = meter.shape(&target.table);
            let after = if matches!(target.kind, WriteKind::Delete) { None } else { after.as_ref() };
            items.extend(target_costs(&shape, target, before.as_ref(), after));
        }
        items.extend(read_costs(meter, api, &request, &response));
    }
    if let Some(admitted) = admission {
        admitted.settle(&items);
    }
    meter.record_dynamo(DynamoCall {
        api: api.to_owned(),
        tables: tables_named(api, &request),
        status: forwarded.status.as_u16(),
        items,
    });
    forwarded.into_response()
}

/// What writing `target` costs, from the item before and after the write.
fn target_costs(
    shape: &TableShape,
    target: &WriteTarget,
    before: Option<&Item>,
    after: Option<&Item>,
) -> Vec<ItemCost> {
    // A write of an item that neither existed nor exists afterwards (a delete of nothing)
    // still costs the minimum, on the key's partition.
    let before = before.or(if after.is_none() { Some(&target.key) } else { None });
    write_costs(&target.table, shape, before, after, target.transactional)
}

/// `target` as the fault layer judges it: its item, and what the meter expects it to cost
/// before the write (a put writes its item; an update is priced on the item as it is).
fn fault_item(meter: &Meter, target: &WriteTarget, before: Option<&Item>) -> WriteItem {
    let shape = meter.shape(&target.table);
    let after = match &target.kind {
        WriteKind::Put(item) => Some(item.clone()),
        WriteKind::Delete => None,
        WriteKind::Update | WriteKind::ConditionCheck => Some(before.cloned().unwrap_or_else(|| target.key.clone())),
    };
    WriteItem {
        key: ItemKey {
            table: target.table.clone(),
            partition: key_string(target.key.get(&shape.partition)),
            sort: shape.sort.as_ref().map(|s| key_string(target.key.get(s))),
        },
        costs: target_costs(&shape, target, before, after.as_ref()),
    }
}

/// A `BatchWriteItem` request without its entries numbered in `refused` (in [`batch_writes`]
/// order), and those entries by table, as `UnprocessedItems` holds them.
fn split_batch(request: &Value, refused: &[usize]) -> (Value, Map<String, Value>) {
    let (mut kept, mut left) = (Map::new(), Map::new());
    for (n, (table, write)) in batch_writes(request).into_iter().enumerate() {
        let side = if refused.contains(&n) { &mut left } else { &mut kept };
        if let Some(writes) = side.entry(table).or_insert_with(|| json!([])).as_array_mut() {
            writes.push(write);
        }
    }
    let mut kept_request = request.clone();
    kept_request["RequestItems"] = Value::Object(kept);
    (kept_request, left)
}

/// The table shape a `CreateTable` request declares.
pub fn shape_of_create_table(request: &Value) -> Option<(String, TableShape)> {
    let name = request.get("TableName")?.as_str()?.to_owned();
    let keys = |schema: Option<&Value>| {
        let mut partition = None;
        let mut sort = None;
        for element in schema.and_then(Value::as_array).into_iter().flatten() {
            let attribute = element.get("AttributeName").and_then(Value::as_str).map(str::to_owned);
            match element.get("KeyType").and_then(Value::as_str) {
                Some("HASH") => partition = attribute,
                Some("RANGE") => sort = attribute,
                _ => {}
            }
        }
        (partition, sort)
    };
    let (partition, sort) = keys(request.get("KeySchema"));
    let indexes = request
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|index| {
            let (partition, sort) = keys(index.get("KeySchema"));
            let projection = index.get("Projection");
            let projection = match projection.and_then(|p| p.get("ProjectionType")).and_then(Value::as_str) {
                Some("KEYS_ONLY") => Projection::KeysOnly,
                Some("INCLUDE") => Projection::Include(
                    projection
                        .and_then(|p| p.get("NonKeyAttributes"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => Projection::All,
            };
            Some(IndexShape {
                name: index.get("IndexName")?.as_str()?.to_owned(),
                partition: partition?,
                sort,
                projection,
            })
        })
        .collect();
    Some((name, TableShape { partition: partition?, sort, indexes }))
}

fn key_of(shape: &TableShape, item: &Item) -> Item {
    [Some(&shape.partition), shape.sort.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|name| item.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

fn object(value: Option<&Value>) -> Item {
    value.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn str_of(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn write_targets(meter: &Meter, api: &str, request: &Value) -> Vec<WriteTarget> {
    let single = |kind: WriteKind, transactional: bool, body: &Value| {
        let table = str_of(body.get("TableName"));
        let key = match &kind {
            WriteKind::Put(item) => key_of(&meter.shape(&table), item),
            _ => object(body.get("Key")),
        };
        WriteTarget { table, key, kind, transactional }
    };
    match api {
        "PutItem" => vec![single(WriteKind::Put(object(request.get("Item"))), false, request)],
        "UpdateItem" => vec![single(WriteKind::Update, false, request)],
        "DeleteItem" => vec![single(WriteKind::Delete, false, request)],
        "TransactWriteItems" => request
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let entry = entry.as_object()?;
                let (kind, body) = entry.iter().next()?;
                let kind = match kind.as_str() {
                    "Put" => WriteKind::Put(object(body.get("Item"))),
                    "Update" => WriteKind::Update,
                    "Delete" => WriteKind::Delete,
                    _ => WriteKind::ConditionCheck,
                };
                Some(single(kind, true, body))
            })
            .collect(),
        "BatchWriteItem" => batch_writes(request)
            .into_iter()
            .map(|(table, write)| match write.get("PutRequest") {
                Some(put) => {
                    let item = object(put.get("Item"));
                    WriteTarget {
                        key: key_of(&meter.shape(&table), &item),
                        table,
                        kind: WriteKind::Put(item),
                        transactional: false,
                    }
                }
                None => {
                    let key = object(write.get("DeleteRequest").and_then(|d| d.get("Key")));
                    WriteTarget { table, key, kind: WriteKind::Delete, transactional: false }
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The entries of a `BatchWriteItem` (table, `PutRequest` or `DeleteRequest`) in request order.
fn batch_writes(request: &Value) -> Vec<(String, Value)> {
    object(request.get("RequestItems"))
        .into_iter()
        .flat_map(|(table, writes)| {
            let writes = writes.as_array().cloned().unwrap_or_default();
            writes.into_iter().map(move |write| (table.clone(), write))
        })
        .filter(|(_, write)| {
            write.get("PutRequest").is_some() || write.get("DeleteRequest").and_then(|d| d.get("Key")).is_some()
        })
        .collect()
}

fn tables_named(api: &str, request: &Value) -> Vec<String> {
    let mut tables: Vec<String> = match api {
        "BatchWriteItem" | "BatchGetItem" => object(request.get("RequestItems")).keys().cloned().collect(),
        "TransactWriteItems" | "TransactGetItems" => request
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_object()?.values().next()?.get("TableName")?.as_str().map(str::to_owned))
            .collect(),
        _ => {
            let table = str_of(request.get("TableName"));
            match request.get("IndexName").and_then(Value::as_str) {
                Some(index) => vec![format!("{table}/{index}")],
                None => vec![table],
            }
        }
    };
    tables.sort();
    tables.dedup();
    tables
}

/// The string form of a key value (`S`, `N` or `B`).
pub fn key_string(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_object)
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn has_keys(item: &Item, index: &IndexShape) -> bool {
    item.contains_key(&index.partition) && index.sort.as_ref().is_none_or(|s| item.contains_key(s))
}

/// The part of `item` an index holds.
fn projected(item: &Item, table: &TableShape, index: &IndexShape) -> Item {
    let keys = [Some(&table.partition), table.sort.as_ref(), Some(&index.partition), index.sort.as_ref()];
    match &index.projection {
        Projection::All => item.clone(),
        Projection::KeysOnly | Projection::Include(_) => item
            .iter()
            .filter(|(name, _)| {
                keys.iter().flatten().any(|k| k == name)
                    || matches!(&index.projection, Projection::Include(extra) if extra.contains(name))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// What writing one item costs, on the table and on each index: the table write is sized on
/// the larger of `before` and `after` (at least 1 WRU, doubled in a transaction); an index
/// whose keys the item has before or after gets a put, a delete, or both when its key changed
/// (an update that leaves the projected attributes unchanged costs the index nothing).
pub fn write_costs(
    table: &str,
    shape: &TableShape,
    before: Option<&Item>,
    after: Option<&Item>,
    transactional: bool,
) -> Vec<ItemCost> {
    let Some(any) = after.or(before) else {
        // A delete of a missing item still costs the minimum; the key is unknown here.
        return vec![ItemCost {
            table: table.to_owned(),
            index: None,
            partition: String::new(),
            sort: None,
            size: 0,
            wru: write_units(0, transactional),
            rru: 0.0,
        }];
    };
    let size = before.map_or(0, item_size).max(after.map_or(0, item_size));
    let mut costs = vec![ItemCost {
        table: table.to_owned(),
        index: None,
        partition: key_string(any.get(&shape.partition)),
        sort: shape.sort.as_ref().map(|s| key_string(any.get(s))),
        size,
        wru: write_units(size, transactional),
        rru: 0.0,
    }];
    for index in &shape.indexes {
        let old = before.filter(|i| has_keys(i, index)).map(|i| projected(i, shape, index));
        let new = after.filter(|i| has_keys(i, index)).map(|i| projected(i, shape, index));
        let index_write = |image: &Item, size: u64| ItemCost {
            table: table.to_owned(),
            index: Some(index.name.clone()),
            partition: key_string(image.get(&index.partition)),
            sort: index.sort.as_ref().map(|s| key_string(image.get(s))),
            size,
            wru: write_units(size, false),
            rru: 0.0,
        };
        match (&old, &new) {
            (None, None) => {}
            (Some(o), None) => costs.push(index_write(o, item_size(o))),
            (None, Some(n)) => costs.push(index_write(n, item_size(n))),
            (Some(o), Some(n)) => {
                let same_key = o.get(&index.partition) == n.get(&index.partition)
                    && index.sort.as_ref().is_none_or(|s| o.get(s) == n.get(s));
                if same_key {
                    if o != n {
                        costs.push(index_write(n, item_size(o).max(item_size(n))));
                    }
                } else {
                    costs.push(index_write(o, item_size(o)));
                    costs.push(index_write(n, item_size(n)));
                }
            }
        }
    }
    costs
}

/// The partition key value a `KeyConditionExpression` fixes (`#pk = :v` or `pk = :v`).
pub fn query_partition(request: &Value, partition_attribute: &str) -> String {
    let expression = str_of(request.get("KeyConditionExpression"));
    let names = object(request.get("ExpressionAttributeNames"));
    let values = object(request.get("ExpressionAttributeValues"));
    let bytes = expression.as_bytes();
    let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'#' || c == b':';
    for (at, _) in expression.match_indices('=') {
        let previous = at.checked_sub(1).map(|i| bytes[i]);
        if matches!(previous, Some(b'<' | b'>' | b'!')) {
            continue;
        }
        let left = expression[..at].trim_end();
        let left = &left[left.rfind(|c: char| !is_name(c as u8)).map_or(0, |i| i + 1)..];
        let right = expression[at + 1..].trim_start();
        let right = &right[..right.find(|c: char| !is_name(c as u8)).unwrap_or(right.len())];
        let attribute = if left.starts_with('#') { str_of(names.get(left)) } else { left.to_owned() };
        if attribute == partition_attribute {
            return key_string(values.get(right));
        }
    }
    String::new()
}

fn items_of(value: Option<&Value>) -> Vec<Item> {
    value.and_then(Value::as_array).into_iter().flatten().filter_map(|i| i.as_object().cloned()).collect()
}

/// What a read request cost, from the request and moto's answer.
/// The cost of reading the one item at `key` of `table` (GetItem, an entry of TransactGetItems).
fn keyed_read(
    meter: &Meter,
    table: String,
    key: Option<&Value>,
    item: Option<&Value>,
    consistent: bool,
    transactional: bool,
) -> ItemCost {
    let shape = meter.shape(&table);
    let key = object(key);
    let size = item.and_then(Value::as_object).map_or(0, item_size);
    ItemCost {
        partition: key_string(key.get(&shape.partition)),
        sort: shape.sort.as_ref().map(|s| key_string(key.get(s))),
        table,
        index: None,
        size,
        wru: 0.0,
        rru: read_units(size, consistent, transactional),
    }
}

pub fn read_costs(meter: &Meter, api: &str, request: &Value, response: &Value) -> Vec<ItemCost> {
    let consistent = request.get("ConsistentRead").and_then(Value::as_bool).unwrap_or(false);
    let table = str_of(request.get("TableName"));
    match api {
        "GetItem" => vec![keyed_read(meter, table, request.get("Key"), response.get("Item"), consistent, false)],
        "Query" | "Scan" => {
            let shape = meter.shape(&table);
            let index = request.get("IndexName").and_then(Value::as_str).map(str::to_owned);
            let partition_attribute = index
                .as_ref()
                .and_then(|name| shape.indexes.iter().find(|i| &i.name == name))
                .map_or(shape.partition.clone(), |i| i.partition.clone());
            let size = items_of(response.get("Items")).iter().map(item_size).sum();
            let partition =
                if api == "Query" { query_partition(request, &partition_attribute) } else { "(scan)".to_owned() };
            // An index read is never strongly consistent.
            let consistent = consistent && index.is_none();
            vec![ItemCost {
                table,
                index,
                partition,
                sort: None,
                size,
                wru: 0.0,
                rru: read_units(size, consistent, false),
            }]
        }
        "BatchGetItem" => {
            let mut costs = Vec::new();
            let returned = object(response.get("Responses"));
            let unprocessed = object(response.get("UnprocessedKeys"));
            for (table, asked) in object(request.get("RequestItems")) {
                let shape = meter.shape(&table);
                let consistent = asked.get("ConsistentRead").and_then(Value::as_bool).unwrap_or(false);
                let found: Vec<Item> = items_of(returned.get(&table));
                let found_keys: Vec<Item> = found.iter().map(|i| key_of(&shape, i)).collect();
                let left: Vec<Item> = items_of(unprocessed.get(&table).and_then(|u| u.get("Keys")));
                for item in &found {
                    let size = item_size(item);
                    costs.push(ItemCost {
                        table: table.clone(),
                        index: None,
                        partition: key_string(item.get(&shape.partition)),
                        sort: shape.sort.as_ref().map(|s| key_string(item.get(s))),
                        size,
                        wru: 0.0,
                        rru: read_units(size, consistent, false),
                    });
                }
                // A key asked for and not found still costs the minimum.
                for key in items_of(asked.get("Keys")) {
                    if !found_keys.contains(&key) && !left.contains(&key) {
                        costs.push(ItemCost {
                            table: table.clone(),
                            index: None,
                            partition: key_string(key.get(&shape.partition)),
                            sort: shape.sort.as_ref().map(|s| key_string(key.get(s))),
                            size: 0,
                            wru: 0.0,
                            rru: read_units(0, consistent, false),
                        });
                    }
                }
            }
            costs
        }
        "TransactGetItems" => {
            let answers = response.get("Responses").and_then(Value::as_array).cloned().unwrap_or_default();
            items_of(request.get("TransactItems"))
                .iter()
                .enumerate()
                .filter_map(|(n, entry)| {
                    let get = entry.get("Get")?;
                    let item = answers.get(n).and_then(|a| a.get("Item"));
                    Some(keyed_read(meter, str_of(get.get("TableName")), get.get("Key"), item, true, true))
                })
                .collect()
        }
        _ => Vec::new(),
    }
}
