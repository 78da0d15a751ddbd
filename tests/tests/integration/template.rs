//! `template.yaml` (the SAM template at the repository root) agrees with the code:
//!
//! - every route of the router (`pushgate_api::ROUTES`) is exactly one `HttpApi` event, on the
//!   function that serves it, and the template has no route the router lacks;
//! - the DynamoDB tables equal `table_definitions` (keys, indexes, projection, TTL, attributes);
//! - the dispatch function consumes the fan-out queue with partial batch failures and bounded
//!   concurrency, and the queue redrives to its dead-letter queue after as many receives as the
//!   dispatcher allows;
//! - every folder in `functions/` (but `local`) is a function resource and back;
//! - CloudWatch alarms watch the dead-letter queue, the fan-out queue's age, the dispatch
//!   function's errors and throttles and the API's 5xx rate, each on the right resource, notify
//!   the alarm topic (an `AlarmEmail` subscribes to it) and are named in the outputs;
//! - the read-only functions cannot write, no IAM policy grants `Resource: "*"`, and KMS use is
//!   bound to the encryption context the KMS adapter sets;
//! - on the emulator tier, every DynamoDB call each function makes (seen by the metering proxy)
//!   is allowed by its role — moto enforces no IAM.
//!
//! The template is read with a plain YAML parser; short-form tags (`!Ref X`, `!GetAtt A.B`,
//! `!Sub s`) are first rewritten to their long forms, so either spelling is understood.

use std::collections::{BTreeMap, BTreeSet};

use pushgate_api::{Function, ROUTES};
use pushgate_aws::dynamodb::{TableDefinition, table_definitions};
use serde_norway::{Mapping, Value};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
const FUNCTIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");

/// The folder in `functions/` that is not a Lambda function (the one-process local server).
const LOCAL_ONLY: &str = "local";

/// The operator's command: runs on the operator's machine, never deployed.
const OPERATOR_ONLY: &str = "admin";

/// The SQS consumer (not in `Function`, which lists the HTTP functions).
const DISPATCH: &str = "dispatch";
/// Functions that only read.
const READ_ONLY: [Function; 3] = [Function::Fetch, Function::List, Function::Operations];
/// What the read-only functions must not be allowed (lowercase; IAM actions are case-insensitive).
const WRITE_ACTIONS: &[&str] = &[
    "dynamodb:putitem",
    "dynamodb:updateitem",
    "dynamodb:deleteitem",
    "dynamodb:batchwriteitem",
    "dynamodb:transactwriteitems",
    "sqs:sendmessage",
];
/// SAM policy templates that only read.
const READ_ONLY_TEMPLATES: &[&str] = &["DynamoDBReadPolicy"];
/// Managed policies a read-only function may carry (SAM attaches the first to generated roles).
const HARMLESS_MANAGED_POLICIES: &[&str] = &["AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"];

// ---------------------------------------------------------------------------------------------
// Reading the template
// ---------------------------------------------------------------------------------------------

fn template() -> Value {
    let text = std::fs::read_to_string(TEMPLATE).unwrap_or_else(|e| panic!("cannot read {TEMPLATE}: {e}"));
    let value: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("template.yaml is not valid YAML: {e}"));
    long_form(value)
}

/// Rewrites short-form intrinsic functions (`!Ref X`, `!GetAtt A.B`, `!Sub s`, ...) to their long
/// forms (`{Ref: X}`, `{Fn::GetAtt: [A, B]}`, `{Fn::Sub: s}`).
fn long_form(value: Value) -> Value {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = match name {
                "Ref" | "Condition" => name.to_owned(),
                _ => format!("Fn::{name}"),
            };
            let mut inner = long_form(tagged.value);
            if key == "Fn::GetAtt"
                && let Value::String(dotted) = &inner
                && let Some((resource, attribute)) = dotted.split_once('.')
            {
                inner = Value::Sequence(vec![resource.into(), attribute.into()]);
            }
            let mut mapping = Mapping::new();
            mapping.insert(Value::String(key), inner);
            Value::Mapping(mapping)
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(long_form).collect()),
        Value::Mapping(mapping) => Value::Mapping(mapping.into_iter().map(|(k, v)| (k, long_form(v))).collect()),
        other => other,
    }
}

fn resources(t: &Value) -> &Mapping {
    t["Resources"].as_mapping().expect("template.yaml has a Resources mapping")
}

fn resource<'t>(t: &'t Value, logical_id: &str) -> &'t Value {
    let found = &t["Resources"][logical_id];
    assert!(!found.is_null(), "template.yaml has no resource {logical_id}");
    found
}

/// `(logical id, resource)` of every resource of type `kind`.
fn resources_of_type<'t>(t: &'t Value, kind: &str) -> Vec<(&'t str, &'t Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical ids are strings"), r))
        .collect()
}

/// The logical id `{Ref: X}` points at.
fn ref_target(v: &Value) -> Option<&str> {
    v["Ref"].as_str()
}

/// The `(logical id, attribute)` of `{Fn::GetAtt: [X, Attr]}`.
fn get_att(v: &Value) -> Option<(&str, &str)> {
    match v["Fn::GetAtt"].as_sequence().map(Vec::as_slice) {
        Some([resource, attribute]) => Some((resource.as_str()?, attribute.as_str()?)),
        _ => None,
    }
}

/// A string or a list of strings, as IAM and many properties allow.
fn strings(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// A number written as a number or as a string (CloudFormation accepts both).
fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A number given literally, or as `{Ref: Parameter}` whose default and bounds all lie in `allowed`.
fn number_in(t: &Value, v: &Value, allowed: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    let check = |what: String, n: Option<u64>| match n {
        Some(n) if allowed.contains(&n) => Ok(n),
        Some(n) => Err(format!("{what} {n} is outside {allowed:?}")),
        None => Err(format!("{what} is missing or not a number")),
    };
    if let Some(n) = number(v) {
        return check("the value".to_owned(), Some(n));
    }
    let Some(name) = ref_target(v) else { return Err(format!("{v:?} is neither a number nor a Ref")) };
    let parameter = &t["Parameters"][name];
    check(format!("parameter {name}'s MinValue"), number(&parameter["MinValue"]))?;
    check(format!("parameter {name}'s MaxValue"), number(&parameter["MaxValue"]))?;
    check(format!("parameter {name}'s Default"), number(&parameter["Default"]))
}

// ---------------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------------

/// One `AWS::Serverless::Function`.
struct LambdaFunction<'t> {
    logical_id: &'t str,
    /// The binary it runs: `Metadata.BuildProperties.Binary`, else the last folder of `CodeUri`.
    binary: String,
    resource: &'t Value,
}

impl<'t> LambdaFunction<'t> {
    fn properties(&self) -> &'t Value {
        &self.resource["Properties"]
    }

    /// `(event name, event)` of every event of type `kind`.
    fn events(&self, kind: &str) -> Vec<(&'t str, &'t Value)> {
        self.properties()["Events"]
            .as_mapping()
            .map(|events| {
                events
                    .iter()
                    .filter(|(_, e)| e["Type"].as_str() == Some(kind))
                    .map(|(name, e)| (name.as_str().unwrap_or("?"), e))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn functions(t: &Value) -> Vec<LambdaFunction<'_>> {
    resources_of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(logical_id, resource)| {
            let from_build = resource["Metadata"]["BuildProperties"]["Binary"].as_str();
            let from_code_uri = resource["Properties"]["CodeUri"]
                .as_str()
                .map(|uri| uri.trim_end_matches('/'))
                .and_then(|uri| uri.rsplit('/').next())
                .filter(|folder| !folder.is_empty() && *folder != ".");
            let binary = from_build
                .or(from_code_uri)
                .unwrap_or_else(|| panic!("{logical_id} names no binary (Metadata.BuildProperties.Binary)"));
            LambdaFunction { logical_id, binary: binary.to_owned(), resource }
        })
        .collect()
}

fn function<'t>(all: &'t [LambdaFunction<'t>], binary: &str) -> &'t LambdaFunction<'t> {
    let matching: Vec<_> = all.iter().filter(|f| f.binary == binary).collect();
    match matching.as_slice() {
        [one] => one,
        [] => panic!("template.yaml has no function resource for functions/{binary}"),
        many => panic!(
            "functions/{binary} is the binary of several resources: {}",
            many.iter().map(|f| f.logical_id).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One `HttpApi` event: `(METHOD, path, binary of its function, event name)`.
fn http_api_events<'t>(all: &'t [LambdaFunction<'t>]) -> Vec<(String, String, &'t str, &'t str)> {
    let mut out = Vec::new();
    for f in all {
        for (name, event) in f.events("HttpApi") {
            let method = event["Properties"]["Method"].as_str().unwrap_or("<no method>").to_ascii_uppercase();
            let path = event["Properties"]["Path"].as_str().unwrap_or("<no path>").to_owned();
            out.push((method, path, f.binary.as_str(), name));
        }
    }
    out
}

fn folders_in_functions_dir() -> BTreeSet<String> {
    std::fs::read_dir(FUNCTIONS_DIR)
        .unwrap_or_else(|e| panic!("cannot list {FUNCTIONS_DIR}: {e}"))
        .map(|entry| entry.expect("a readable directory entry"))
        // A function is a folder with a binary; `glue` is the library they share.
        .filter(|entry| entry.path().join("src/main.rs").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != LOCAL_ONLY && name != OPERATOR_ONLY)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// IAM
// ---------------------------------------------------------------------------------------------

/// What grants a function permissions.
#[derive(Debug)]
enum Grant<'t> {
    /// A statement of an inline policy document (its own `Policies` or its explicit role's).
    Statement(&'t Value),
    /// A SAM policy template, by name.
    Template(String),
    /// A managed policy, by name or ARN (intrinsics shown as debug text).
    Managed(String),
}

fn statements_of_document(document: &Value) -> Vec<&Value> {
    strings(&document["Statement"])
}

fn managed(v: &Value) -> Grant<'_> {
    Grant::Managed(v.as_str().map(str::to_owned).unwrap_or_else(|| format!("{v:?}")))
}

/// Everything that grants `f` permissions: its `Policies`, or with an explicit `Role`, that role's
/// inline policies, managed policies and the `AWS::IAM::Policy` resources attached to it.
fn grants<'t>(t: &'t Value, f: &LambdaFunction<'t>) -> Vec<Grant<'t>> {
    let mut out = Vec::new();
    for policy in strings(&f.properties()["Policies"]) {
        match policy {
            Value::String(_) => out.push(managed(policy)),
            Value::Mapping(m) if m.contains_key("Statement") => {
                out.extend(statements_of_document(policy).into_iter().map(Grant::Statement));
            }
            Value::Mapping(m) => {
                out.extend(m.keys().map(|k| Grant::Template(k.as_str().unwrap_or("?").to_owned())));
            }
            other => out.push(managed(other)),
        }
    }
    let role = &f.properties()["Role"];
    if role.is_null() {
        return out;
    }
    let role_id = get_att(role)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("{}: Role must be Fn::GetAtt of a role in the template", f.logical_id));
    let role_resource = resource(t, role_id);
    for policy in strings(&role_resource["Properties"]["Policies"]) {
        out.extend(statements_of_document(&policy["PolicyDocument"]).into_iter().map(Grant::Statement));
    }
    out.extend(strings(&role_resource["Properties"]["ManagedPolicyArns"]).into_iter().map(managed));
    for (_, policy) in resources_of_type(t, "AWS::IAM::Policy") {
        if strings(&policy["Properties"]["Roles"]).iter().any(|r| ref_target(r) == Some(role_id)) {
            out.extend(
                statements_of_document(&policy["Properties"]["PolicyDocument"]).into_iter().map(Grant::Statement),
            );
        }
    }
    out
}

/// Every statement of an identity policy in the template: functions' `Policies` and the inline
/// and standalone policies of roles.
fn all_identity_statements(t: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for f in functions(t) {
        for policy in strings(&f.resource["Properties"]["Policies"]) {
            if policy.get("Statement").is_some() {
                out.extend(statements_of_document(policy).into_iter().map(|s| (f.logical_id.to_owned(), s)));
            }
        }
    }
    for (id, role) in resources_of_type(t, "AWS::IAM::Role") {
        for policy in strings(&role["Properties"]["Policies"]) {
            out.extend(statements_of_document(&policy["PolicyDocument"]).into_iter().map(|s| (id.to_owned(), s)));
        }
    }
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (id, policy) in resources_of_type(t, kind) {
            let document = &policy["Properties"]["PolicyDocument"];
            out.extend(statements_of_document(document).into_iter().map(|s| (id.to_owned(), s)));
        }
    }
    out
}

fn is_allow(statement: &Value) -> bool {
    statement["Effect"].as_str() == Some("Allow")
}

fn actions(statement: &Value) -> Vec<String> {
    strings(&statement["Action"]).into_iter().map(|a| a.as_str().unwrap_or("?").to_ascii_lowercase()).collect()
}

/// IAM wildcard matching (`*` any run, `?` one character) of a lowercase pattern.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => glob_matches(rest, text) || (!text.is_empty() && glob_matches(pattern, &text[1..])),
        (Some((b'?', rest)), Some((_, text_rest))) => glob_matches(rest, text_rest),
        (Some((p, rest)), Some((c, text_rest))) if p == c => glob_matches(rest, text_rest),
        _ => false,
    }
}

/// Whether an allowed action pattern grants a write or any KMS action.
fn grants_a_write(action: &str) -> bool {
    action.starts_with("kms:")
        || glob_matches(action.as_bytes(), b"kms:decrypt")
        || WRITE_ACTIONS.iter().any(|w| glob_matches(action.as_bytes(), w.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

#[test]
fn every_route_is_exactly_one_http_api_event_on_the_function_that_serves_it() {
    let t = template();
    let all = functions(&t);
    let events = http_api_events(&all);
    let mut problems = Vec::new();
    for route in ROUTES {
        let matching: Vec<_> = events.iter().filter(|(m, p, _, _)| m == route.method && p == route.path).collect();
        match matching.as_slice() {
            [(_, _, binary, _)] if *binary == route.function.name() => {}
            [(_, _, binary, name)] => problems.push(format!(
                "{} {} is served by functions/{} but event {name} puts it on functions/{binary}",
                route.method,
                route.path,
                route.function.name()
            )),
            [] => problems.push(format!(
                "{} {} (functions/{}) has no HttpApi event",
                route.method,
                route.path,
                route.function.name()
            )),
            many => problems.push(format!(
                "{} {} is routed {} times: {}",
                route.method,
                route.path,
                many.len(),
                many.iter().map(|(_, _, b, n)| format!("{b}/{n}")).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    assert!(problems.is_empty(), "template.yaml and pushgate_api::ROUTES disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn the_template_routes_nothing_that_the_router_does_not_serve() {
    let t = template();
    let all = functions(&t);
    let served: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    let extra: Vec<String> = http_api_events(&all)
        .into_iter()
        .filter(|(m, p, _, _)| !served.contains(&(m.as_str(), p.as_str())))
        .map(|(m, p, binary, name)| format!("{m} {p} (event {name} of functions/{binary})"))
        .collect();
    assert!(extra.is_empty(), "HttpApi events the router does not serve:\n  {}", extra.join("\n  "));
}

#[test]
fn every_http_api_event_is_on_the_templates_http_api_with_payload_format_2_0() {
    let t = template();
    let apis: BTreeSet<&str> =
        resources_of_type(&t, "AWS::Serverless::HttpApi").into_iter().map(|(id, _)| id).collect();
    assert_eq!(apis.len(), 1, "template.yaml should declare exactly one AWS::Serverless::HttpApi, found {apis:?}");
    let mut problems = Vec::new();
    for f in functions(&t) {
        for (name, event) in f.events("HttpApi") {
            let properties = &event["Properties"];
            if !ref_target(&properties["ApiId"]).is_some_and(|id| apis.contains(id)) {
                problems.push(format!("{}/{name}: ApiId must be a Ref to the HttpApi", f.logical_id));
            }
            let format = &properties["PayloadFormatVersion"];
            if !(format.is_null() || format.as_str() == Some("2.0")) {
                problems.push(format!("{}/{name}: PayloadFormatVersion {format:?}, expected 2.0", f.logical_id));
            }
        }
        if !f.events("Api").is_empty() {
            problems.push(format!("{} has REST (Api) events; the API is an HTTP API", f.logical_id));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Functions and folders
// ---------------------------------------------------------------------------------------------

#[test]
fn every_function_folder_has_a_function_resource_and_every_function_resource_has_a_folder() {
    let t = template();
    let all = functions(&t);
    let mut resources: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in &all {
        resources.entry(f.binary.as_str()).or_default().push(f.logical_id);
    }
    let folders = folders_in_functions_dir();
    let without_resource: Vec<_> = folders.iter().filter(|f| !resources.contains_key(f.as_str())).collect();
    let without_folder: Vec<_> = resources.keys().filter(|b| !folders.contains(**b)).collect();
    let shared: Vec<_> = resources.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        without_resource.is_empty() && without_folder.is_empty() && shared.is_empty(),
        "functions/ and template.yaml disagree:\n  folders without a function resource: {without_resource:?}\n  \
         function resources without a folder in functions/: {without_folder:?}\n  \
         binaries used by several resources: {shared:?}"
    );
}

#[test]
fn every_function_is_built_by_cargo_lambda_from_its_own_binary() {
    let t = template();
    let mut problems = Vec::new();
    for f in functions(&t) {
        if f.resource["Metadata"]["BuildMethod"].as_str() != Some("rust-cargolambda") {
            problems.push(format!("{}: Metadata.BuildMethod must be rust-cargolambda", f.logical_id));
        }
        if f.resource["Metadata"]["BuildProperties"]["Binary"].as_str() != Some(f.binary.as_str()) {
            problems.push(format!("{}: Metadata.BuildProperties.Binary must name its binary", f.logical_id));
        }
    }
    let globals = &t["Globals"]["Function"];
    for (key, expected) in [("Runtime", "provided.al2023"), ("Handler", "bootstrap")] {
        if globals[key].as_str() != Some(expected) {
            problems.push(format!("Globals.Function.{key} must be {expected}"));
        }
    }
    if strings(&globals["Architectures"]).iter().map(|a| a.as_str()).collect::<Vec<_>>() != [Some("arm64")] {
        problems.push("Globals.Function.Architectures must be [arm64]".to_owned());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// A table as both sides can state it.
#[derive(Debug, PartialEq, Eq)]
struct TableShape {
    /// `(KeyType, attribute)` in order.
    key: Vec<(String, String)>,
    /// Index name → (its key, projection type).
    indexes: BTreeMap<String, (Vec<(String, String)>, String)>,
    /// The TTL attribute, if TTL is enabled.
    ttl: Option<String>,
    /// Attribute name → type.
    attributes: BTreeMap<String, String>,
}

fn key_pairs(partition: &str, sort: &str) -> Vec<(String, String)> {
    vec![("HASH".to_owned(), partition.to_owned()), ("RANGE".to_owned(), sort.to_owned())]
}

fn expected_shape(def: &TableDefinition) -> TableShape {
    let mut attributes = BTreeMap::new();
    for name in [def.key.partition, def.key.sort] {
        attributes.insert(name.to_owned(), "S".to_owned());
    }
    let mut indexes = BTreeMap::new();
    for index in &def.indexes {
        for name in [index.key.partition, index.key.sort] {
            attributes.insert(name.to_owned(), "S".to_owned());
        }
        indexes.insert(index.name.to_owned(), (key_pairs(index.key.partition, index.key.sort), "ALL".to_owned()));
    }
    TableShape {
        key: key_pairs(def.key.partition, def.key.sort),
        indexes,
        ttl: def.ttl_attribute.map(str::to_owned),
        attributes,
    }
}

fn template_key(v: &Value) -> Vec<(String, String)> {
    strings(v)
        .into_iter()
        .map(|k| {
            let kind = k["KeyType"].as_str().unwrap_or("?").to_owned();
            (kind, k["AttributeName"].as_str().unwrap_or("?").to_owned())
        })
        .collect()
}

fn template_shape(table: &Value) -> TableShape {
    let p = &table["Properties"];
    let indexes = strings(&p["GlobalSecondaryIndexes"])
        .into_iter()
        .map(|index| {
            let name = index["IndexName"].as_str().unwrap_or("?").to_owned();
            let projection = index["Projection"]["ProjectionType"].as_str().unwrap_or("<none>").to_owned();
            (name, (template_key(&index["KeySchema"]), projection))
        })
        .collect();
    let ttl_spec = &p["TimeToLiveSpecification"];
    let ttl = (ttl_spec["Enabled"].as_bool() == Some(true) || ttl_spec["Enabled"].as_str() == Some("true"))
        .then(|| ttl_spec["AttributeName"].as_str().unwrap_or("?").to_owned());
    let attributes = strings(&p["AttributeDefinitions"])
        .into_iter()
        .map(|a| {
            let name = a["AttributeName"].as_str().unwrap_or("?").to_owned();
            (name, a["AttributeType"].as_str().unwrap_or("?").to_owned())
        })
        .collect();
    TableShape { key: template_key(&p["KeySchema"]), indexes, ttl, attributes }
}

#[test]
fn the_templates_tables_are_exactly_the_codes_table_definitions() {
    let t = template();
    let expected: BTreeMap<&str, TableShape> =
        table_definitions("any-").iter().map(|def| (def.logical_id, expected_shape(def))).collect();
    let actual: BTreeMap<&str, TableShape> = resources_of_type(&t, "AWS::DynamoDB::Table")
        .into_iter()
        .map(|(id, table)| (id, template_shape(table)))
        .collect();
    assert_eq!(
        actual, expected,
        "template.yaml's tables (left) differ from pushgate_aws::dynamodb::table_definitions (right)"
    );
}

#[test]
fn every_table_is_on_demand_encrypted_recoverable_and_retained() {
    let t = template();
    let mut problems = Vec::new();
    for (id, table) in resources_of_type(&t, "AWS::DynamoDB::Table") {
        let p = &table["Properties"];
        if p["BillingMode"].as_str() != Some("PAY_PER_REQUEST") {
            problems.push(format!("{id}: BillingMode must be PAY_PER_REQUEST"));
        }
        if p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool() != Some(true) {
            problems.push(format!("{id}: point-in-time recovery must be on"));
        }
        if p["SSESpecification"]["SSEEnabled"].as_bool() != Some(true) {
            problems.push(format!("{id}: SSE must be on"));
        }
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            if table[policy].as_str() != Some("Retain") {
                problems.push(format!("{id}: {policy} must be Retain"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Fan-out queue and dispatch
// ---------------------------------------------------------------------------------------------

#[test]
fn the_dispatch_function_consumes_the_fanout_queue_reporting_batch_item_failures_with_bounded_concurrency() {
    let t = template();
    let all = functions(&t);
    let dispatch = function(&all, DISPATCH);
    let sqs = dispatch.events("SQS");
    let [(name, event)] = sqs.as_slice() else {
        panic!("{} must have exactly one SQS event, has {}", dispatch.logical_id, sqs.len());
    };
    let p = &event["Properties"];
    assert_eq!(get_att(&p["Queue"]), Some(("FanoutQueue", "Arn")), "event {name} must consume FanoutQueue");
    assert!(
        strings(&p["FunctionResponseTypes"]).iter().any(|v| v.as_str() == Some("ReportBatchItemFailures")),
        "event {name} must have FunctionResponseTypes [ReportBatchItemFailures]"
    );
    // SQS event sources allow a MaximumConcurrency of 2 to 1000.
    if let Err(e) = number_in(&t, &p["ScalingConfig"]["MaximumConcurrency"], 2..=1000) {
        panic!("event {name}: ScalingConfig.MaximumConcurrency: {e}");
    }
    let batch = number(&p["BatchSize"]).unwrap_or_else(|| panic!("event {name} must set BatchSize"));
    assert!((1..=10).contains(&batch), "BatchSize {batch}: at most 10 chunks per invocation");
}

#[test]
fn the_fanout_queue_redrives_to_its_dead_letter_queue_after_the_receives_dispatch_allows() {
    let t = template();
    let queue = resource(&t, "FanoutQueue");
    let redrive = &queue["Properties"]["RedrivePolicy"];
    assert_eq!(
        get_att(&redrive["deadLetterTargetArn"]),
        Some(("FanoutDeadLetterQueue", "Arn")),
        "FanoutQueue's RedrivePolicy must target FanoutDeadLetterQueue"
    );
    let dlq = resource(&t, "FanoutDeadLetterQueue");
    assert_eq!(dlq["Type"].as_str(), Some("AWS::SQS::Queue"));
    let max_receives = pushgate_core::app::Settings::default().max_receives;
    assert_eq!(
        number(&redrive["maxReceiveCount"]),
        Some(u64::from(max_receives)),
        "maxReceiveCount must equal Settings::max_receives: the dispatcher fails a notification on that receive"
    );
    let retention = |q: &Value| number(&q["Properties"]["MessageRetentionPeriod"]).unwrap_or(345_600);
    assert!(
        retention(dlq) >= retention(queue),
        "the dead-letter queue must keep messages at least as long as the queue it serves"
    );
}

#[test]
fn the_fanout_queues_visibility_timeout_is_at_least_six_times_the_dispatch_timeout() {
    let t = template();
    let all = functions(&t);
    let dispatch = function(&all, DISPATCH);
    let timeout =
        number(&dispatch.properties()["Timeout"]).or_else(|| number(&t["Globals"]["Function"]["Timeout"])).unwrap_or(3);
    let visibility = number(&resource(&t, "FanoutQueue")["Properties"]["VisibilityTimeout"]).unwrap_or(30);
    assert!(visibility >= 6 * timeout, "VisibilityTimeout {visibility} s < 6 × the dispatch timeout of {timeout} s");
}

// ---------------------------------------------------------------------------------------------
// Alarms
// ---------------------------------------------------------------------------------------------

/// A value written in the template's own YAML (long-form intrinsics), to compare with.
fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not YAML: {e}"))
}

/// One metric an alarm reads: its own `Namespace`/`MetricName`/`Dimensions`, or the metric of a
/// `MetricStat` in its `Metrics` (a metric math alarm), with that query's `Id`.
#[derive(Debug)]
struct WatchedMetric<'t> {
    id: Option<&'t str>,
    namespace: &'t str,
    name: &'t str,
    /// `(Name, Value)` of every dimension.
    dimensions: Vec<(&'t str, &'t Value)>,
}

fn watched_metric<'t>(id: Option<&'t str>, metric: &'t Value) -> WatchedMetric<'t> {
    WatchedMetric {
        id,
        namespace: metric["Namespace"].as_str().unwrap_or("<no namespace>"),
        name: metric["MetricName"].as_str().unwrap_or("<no metric name>"),
        dimensions: strings(&metric["Dimensions"])
            .into_iter()
            .map(|d| (d["Name"].as_str().unwrap_or("<no name>"), &d["Value"]))
            .collect(),
    }
}

fn watched_metrics(alarm: &Value) -> Vec<WatchedMetric<'_>> {
    let p = &alarm["Properties"];
    let mut out = Vec::new();
    if !p["MetricName"].is_null() {
        out.push(watched_metric(None, p));
    }
    for query in strings(&p["Metrics"]) {
        let metric = &query["MetricStat"]["Metric"];
        if !metric.is_null() {
            out.push(watched_metric(query["Id"].as_str(), metric));
        }
    }
    out
}

impl WatchedMetric<'_> {
    /// Is this `namespace`/`name` with exactly these dimensions (another set is another metric)?
    fn is(&self, namespace: &str, name: &str, dimensions: &[(&str, Value)]) -> bool {
        let mine: BTreeMap<&str, &Value> = self.dimensions.iter().copied().collect();
        let theirs: BTreeMap<&str, &Value> = dimensions.iter().map(|(n, v)| (*n, v)).collect();
        self.namespace == namespace && self.name == name && mine == theirs
    }
}

/// When an alarm must fire.
#[derive(Debug)]
enum Fires {
    /// On the first one (a message, an error, a throttle): `> 0` or `>= 1`.
    OnTheFirstOne,
    /// Above the value of a template parameter.
    Above(&'static str),
}

impl Fires {
    fn check(&self, alarm: &Value) -> Result<(), String> {
        let p = &alarm["Properties"];
        let operator = p["ComparisonOperator"].as_str().unwrap_or("<none>");
        let threshold = &p["Threshold"];
        let ok = match self {
            Fires::OnTheFirstOne => matches!(
                (operator, number(threshold)),
                ("GreaterThanThreshold", Some(0)) | ("GreaterThanOrEqualToThreshold", Some(1))
            ),
            Fires::Above(parameter) => operator == "GreaterThanThreshold" && ref_target(threshold) == Some(*parameter),
        };
        if ok { Ok(()) } else { Err(format!("must fire {self:?}, has {operator} {threshold:?}")) }
    }
}

fn alarms(t: &Value) -> Vec<(&str, &Value)> {
    resources_of_type(t, "AWS::CloudWatch::Alarm")
}

/// An operator learns of a stuck or failing deployment from its alarms, not from users: chunks
/// in the dead-letter queue, chunks waiting too long, the dispatch function failing or throttled,
/// and the API answering 5xx. Each alarm must watch the metric of the resource it is about
/// (a dimension on another queue or function watches nothing of pushgate's).
#[test]
fn the_template_alarms_on_a_non_empty_dlq_dispatch_errors_and_throttles_api_5xx_and_queue_age() {
    let t = template();
    let all = functions(&t);
    let dispatch = function(&all, DISPATCH).logical_id;
    let apis: Vec<&str> = resources_of_type(&t, "AWS::Serverless::HttpApi").into_iter().map(|(id, _)| id).collect();
    let [api] = apis.as_slice() else { panic!("template.yaml should declare exactly one HttpApi, found {apis:?}") };
    let queue_name = |queue: &str| vec![("QueueName", yaml(&format!("{{Fn::GetAtt: [{queue}, QueueName]}}")))];
    let function_name = vec![("FunctionName", yaml(&format!("{{Ref: {dispatch}}}")))];
    // An HTTP API's metrics per stage: ApiId + Stage (the API is served on $default).
    let api_stage = vec![("ApiId", yaml(&format!("{{Ref: {api}}}"))), ("Stage", yaml("$default"))];
    let expected = [
        (
            "a non-empty dead-letter queue",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            queue_name("FanoutDeadLetterQueue"),
            Fires::OnTheFirstOne,
        ),
        (
            "the fan-out queue's oldest chunk",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            queue_name("FanoutQueue"),
            Fires::Above("QueueAgeAlarmSeconds"),
        ),
        ("dispatch errors", "AWS/Lambda", "Errors", function_name.clone(), Fires::OnTheFirstOne),
        ("dispatch throttles", "AWS/Lambda", "Throttles", function_name, Fires::OnTheFirstOne),
        ("the API's 5xx rate", "AWS/ApiGateway", "5xx", api_stage.clone(), Fires::Above("Api5xxAlarmPercent")),
    ];
    let alarms = alarms(&t);
    let mut problems = Vec::new();
    for (what, namespace, metric, dimensions, fires) in &expected {
        let watching: Vec<_> = alarms
            .iter()
            .filter(|(_, alarm)| watched_metrics(alarm).iter().any(|m| m.is(namespace, metric, dimensions)))
            .collect();
        let [(id, alarm)] = watching.as_slice() else {
            problems.push(format!(
                "{what}: expected one alarm on {namespace} {metric} {dimensions:?}, found {:?}",
                watching.iter().map(|(id, _)| id).collect::<Vec<_>>()
            ));
            continue;
        };
        if let Err(e) = fires.check(alarm) {
            problems.push(format!("{id} ({what}): {e}"));
        }
    }
    assert!(problems.is_empty(), "alarms:\n  {}", problems.join("\n  "));

    // The 5xx alarm is a rate: 5xx over the requests (Count) of the same stage, as a percentage.
    let (id, alarm) = alarms
        .iter()
        .find(|(_, a)| watched_metrics(a).iter().any(|m| m.is("AWS/ApiGateway", "5xx", &api_stage)))
        .expect("checked above");
    let metrics = watched_metrics(alarm);
    let id_of = |name: &str| {
        metrics
            .iter()
            .find(|m| m.is("AWS/ApiGateway", name, &api_stage))
            .and_then(|m| m.id)
            .unwrap_or_else(|| panic!("{id}: the rate needs {name} of the same stage as a metric query with an Id"))
    };
    let (errors, requests) = (id_of("5xx"), id_of("Count"));
    let returned: Vec<&str> = strings(&alarm["Properties"]["Metrics"])
        .into_iter()
        .filter(|q| q["ReturnData"].as_bool() == Some(true))
        .filter_map(|q| q["Expression"].as_str())
        .collect();
    let [expression] = returned.as_slice() else {
        panic!("{id}: exactly one expression must have ReturnData: true, found {returned:?}")
    };
    assert!(
        expression.contains(errors) && expression.contains(requests) && expression.contains("100"),
        "{id}: {expression:?} should be 100 × {errors} / {requests}"
    );
}

/// Every alarm tells someone: it notifies the alarm topic when it fires and when it clears, says
/// what to do, treats no data (an idle deployment) as fine, and its name is a stack output.
#[test]
fn every_alarm_notifies_the_alarm_topic_says_what_to_do_and_is_named_in_an_output() {
    let t = template();
    let topics: Vec<&str> = resources_of_type(&t, "AWS::SNS::Topic").into_iter().map(|(id, _)| id).collect();
    let [topic] = topics.as_slice() else {
        panic!("template.yaml should declare one SNS topic for alarms: {topics:?}")
    };
    let outputs = t["Outputs"].as_mapping().expect("template.yaml has Outputs");
    let output_of = |id: &str| outputs.iter().find(|(_, o)| ref_target(&o["Value"]) == Some(id)).map(|(name, _)| name);
    let alarms = alarms(&t);
    assert!(alarms.len() >= 5, "expected the five alarms, found {}", alarms.len());
    let mut problems = Vec::new();
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        for actions in ["AlarmActions", "OKActions"] {
            if !strings(&p[actions]).iter().any(|a| ref_target(a) == Some(*topic)) {
                problems.push(format!("{id}: {actions} must include {{Ref: {topic}}}"));
            }
        }
        if p["AlarmDescription"].as_str().is_none_or(|d| d.len() < 40) {
            problems.push(format!("{id}: AlarmDescription must say what the alarm means and what to do"));
        }
        if p["TreatMissingData"].as_str() != Some("notBreaching") {
            problems.push(format!("{id}: TreatMissingData must be notBreaching (no data is an idle deployment)"));
        }
        if output_of(id).is_none() {
            problems.push(format!("{id}: no output has Value {{Ref: {id}}} (its name)"));
        }
    }
    if output_of(topic).is_none() {
        problems.push(format!("no output has Value {{Ref: {topic}}} (the topic's ARN)"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `AlarmEmail` subscribes an address to the alarm topic; left empty, nothing is subscribed.
#[test]
fn the_alarm_email_subscribes_to_the_alarm_topic_only_when_it_is_set() {
    let t = template();
    let parameter = &t["Parameters"]["AlarmEmail"];
    assert_eq!(parameter["Default"].as_str(), Some(""), "AlarmEmail must default to empty (no subscription)");
    let subscriptions = resources_of_type(&t, "AWS::SNS::Subscription");
    let [(id, subscription)] = subscriptions.as_slice() else {
        panic!("expected one SNS subscription, found {}", subscriptions.len())
    };
    let p = &subscription["Properties"];
    assert_eq!(p["Protocol"].as_str(), Some("email"), "{id}: Protocol");
    assert_eq!(ref_target(&p["Endpoint"]), Some("AlarmEmail"), "{id}: Endpoint must be {{Ref: AlarmEmail}}");
    let topic = ref_target(&p["TopicArn"]).unwrap_or_else(|| panic!("{id}: TopicArn must be a Ref"));
    assert_eq!(resource(&t, topic)["Type"].as_str(), Some("AWS::SNS::Topic"), "{id}: TopicArn");
    let condition = subscription["Condition"].as_str().unwrap_or_else(|| panic!("{id} must have a Condition"));
    assert_eq!(
        t["Conditions"][condition],
        yaml(r#"{Fn::Not: [{Fn::Equals: [{Ref: AlarmEmail}, ""]}]}"#),
        "{id}'s condition {condition} must be: AlarmEmail is not empty"
    );
}

// ---------------------------------------------------------------------------------------------
// IAM
// ---------------------------------------------------------------------------------------------

#[test]
fn read_only_functions_have_no_write_permission() {
    let t = template();
    let all = functions(&t);
    let mut problems = Vec::new();
    for read_only in READ_ONLY {
        let f = function(&all, read_only.name());
        for grant in grants(&t, f) {
            match grant {
                Grant::Statement(s) if is_allow(s) => {
                    if !s["NotAction"].is_null() {
                        problems.push(format!("{}: an Allow with NotAction grants almost everything", f.logical_id));
                    }
                    for action in actions(s).into_iter().filter(|a| grants_a_write(a)) {
                        problems.push(format!("{}: allows {action}", f.logical_id));
                    }
                }
                Grant::Statement(_) => {}
                Grant::Template(name) if READ_ONLY_TEMPLATES.contains(&name.as_str()) => {}
                Grant::Template(name) => problems.push(format!("{}: policy template {name} may write", f.logical_id)),
                Grant::Managed(name) if HARMLESS_MANAGED_POLICIES.iter().any(|h| name.ends_with(h)) => {}
                Grant::Managed(name) => problems.push(format!("{}: managed policy {name} may write", f.logical_id)),
            }
        }
    }
    assert!(problems.is_empty(), "read-only functions can write:\n  {}", problems.join("\n  "));
}

#[test]
fn the_write_check_recognises_writes_and_wildcards() {
    for write in ["dynamodb:PutItem", "dynamodb:*", "dynamodb:Update*", "*", "sqs:Send*", "kms:Decrypt", "kms:*"] {
        assert!(grants_a_write(&write.to_ascii_lowercase()), "{write} should count as a write");
    }
    for read in
        ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem", "sqs:ReceiveMessage", "logs:PutLogEvents"]
    {
        assert!(!grants_a_write(&read.to_ascii_lowercase()), "{read} should not count as a write");
    }
}

#[test]
fn no_iam_policy_allows_every_resource() {
    let t = template();
    let mut problems = Vec::new();
    for (owner, statement) in all_identity_statements(&t) {
        if !statement["NotResource"].is_null() {
            problems.push(format!("{owner}: NotResource grants every other resource"));
        }
        if strings(&statement["Resource"]).iter().any(|r| r.as_str() == Some("*")) {
            problems.push(format!("{owner}: Resource \"*\" for {:?}", actions(statement)));
        }
    }
    assert!(problems.is_empty(), "IAM statements not scoped to resources:\n  {}", problems.join("\n  "));
}

#[test]
fn kms_use_requires_the_encryption_context_the_kms_adapter_sets() {
    let t = template();
    let context_key = pushgate_aws::kms::CONTEXT_KEY;
    let mut problems = Vec::new();
    let mut kms_statements = 0;
    for (owner, statement) in all_identity_statements(&t) {
        if !is_allow(statement) || !actions(statement).iter().any(|a| a.starts_with("kms:")) {
            continue;
        }
        kms_statements += 1;
        let condition = &statement["Condition"];
        let keys: Vec<_> = strings(&condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        if keys != [context_key] {
            problems
                .push(format!("{owner}: ForAllValues:StringEquals kms:EncryptionContextKeys must be [{context_key}]"));
        }
        let present = &condition["Null"]["kms:EncryptionContextKeys"];
        if !(present.as_str() == Some("false") || present.as_bool() == Some(false)) {
            problems.push(format!("{owner}: Null kms:EncryptionContextKeys must be false (a context is required)"));
        }
    }
    assert!(kms_statements > 0, "no statement allows KMS: the credentials and dispatch functions need it");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The service actions a function may use, from every statement that grants it something.
fn allowed_actions<'t>(t: &'t Value, f: &LambdaFunction<'t>) -> BTreeSet<String> {
    grants(t, f)
        .into_iter()
        .filter_map(|g| match g {
            Grant::Statement(s) if is_allow(s) => Some(actions(s)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// May `f` read the Secrets Manager secret `secret` (a resource of the template)?
fn reads_secret(t: &Value, f: &LambdaFunction<'_>, secret: &str) -> bool {
    grants(t, f).into_iter().any(|g| match g {
        Grant::Statement(s) => {
            is_allow(s)
                && actions(s).iter().any(|a| glob_matches(a.as_bytes(), b"secretsmanager:getsecretvalue"))
                && strings(&s["Resource"]).iter().any(|r| ref_target(r) == Some(secret))
        }
        _ => false,
    })
}

/// What a function's binary wires (`pushgate_glue::functions`) and what the template lets it do
/// say the same thing: it may send to the fan-out queue exactly when it queues chunks or
/// events, manage schedules exactly when it schedules, and use the credential key exactly when
/// it seals or opens secrets, read the page-token key exactly when it pages, read the webhook's
/// key exactly when it posts events. A port without its grant fails in production; a grant
/// without its port is a permission nothing needs.
#[test]
fn each_functions_grants_match_the_ports_its_binary_wires() {
    use pushgate_glue::cloud::ports;
    let t = template();
    let mut problems = Vec::new();
    for f in functions(&t) {
        let wired = pushgate_glue::functions::ports_of(&f.binary)
            .unwrap_or_else(|| panic!("{}: functions/{} has no composition in pushgate_glue", f.logical_id, f.binary));
        let allowed = allowed_actions(&t, &f);
        let may = |action: &str| allowed.iter().any(|a| glob_matches(a.as_bytes(), action.as_bytes()));
        let pairs = [
            ("queue or events", wired & (ports::QUEUE | ports::EVENTS) != 0, may("sqs:sendmessage")),
            (
                "scheduler",
                wired & ports::SCHEDULER != 0,
                may("scheduler:createschedule") || may("scheduler:deleteschedule"),
            ),
            ("secrets", wired & ports::SECRETS != 0, may("kms:generatedatakey") || may("kms:decrypt")),
            ("page tokens", wired & ports::PAGES != 0, reads_secret(&t, &f, "PageTokenSecret")),
            ("webhook key", wired & ports::PROVIDERS != 0, reads_secret(&t, &f, "WebhookSecret")),
        ];
        for (port, wires, granted) in pairs {
            if wires != granted {
                problems.push(format!(
                    "{}: wires {port}: {wires}, template grants it: {granted} ({allowed:?})",
                    f.logical_id
                ));
            }
        }
    }
    assert!(problems.is_empty(), "ports and grants disagree:\n  {}", problems.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// Each function's DynamoDB calls against its role (emulator tier)
// ---------------------------------------------------------------------------------------------

/// The DynamoDB tables (logical id, and index name for an index ARN) a statement's `Resource`
/// names: `Fn::GetAtt: [Table, Arn]` or `Fn::Sub: ${Table.Arn}/index/name`.
fn table_resources(statement: &Value) -> Vec<(String, Option<String>)> {
    strings(&statement["Resource"])
        .into_iter()
        .filter_map(|r| {
            if let Some((id, "Arn")) = get_att(r) {
                return Some((id.to_owned(), None));
            }
            let (id, tail) = r["Fn::Sub"].as_str()?.strip_prefix("${")?.split_once(".Arn}")?;
            Some((id.to_owned(), tail.strip_prefix("/index/").map(str::to_owned)))
        })
        .collect()
}

/// Does `f`'s role allow `action` (lowercase) on table `table` (logical id) or its `index`?
fn allows(t: &Value, f: &LambdaFunction<'_>, action: &str, table: &str, index: Option<&str>) -> bool {
    grants(t, f).iter().any(|grant| match grant {
        Grant::Statement(s) => {
            is_allow(s)
                && actions(s).iter().any(|a| glob_matches(a.as_bytes(), action.as_bytes()))
                && table_resources(s).iter().any(|(id, i)| id == table && i.as_deref() == index)
        }
        // Policy templates and managed policies are not read here: none grants DynamoDB today.
        _ => false,
    })
}

/// The logical id of the template's table for a table name of the rig (`{prefix}push`, …).
fn table_logical_id(name: &str) -> &'static str {
    match name.rsplit(['-', '_']).next().unwrap_or(name) {
        n if n.ends_with("push") => "PushTable",
        n if n.ends_with("config") => "ConfigTable",
        n if n.ends_with("directory") => "DirectoryTable",
        _ => panic!("a table the template does not declare: {name}"),
    }
}

/// The IAM action that authorizes a DynamoDB API call (`TransactWriteItems` is authorized per
/// item; pushgate's transactions only update).
fn action_of(api: &str) -> String {
    match api {
        "TransactWriteItems" => "dynamodb:updateitem".to_owned(),
        other => format!("dynamodb:{}", other.to_ascii_lowercase()),
    }
}

/// Every DynamoDB call recorded since the last take that `binary`'s role does not allow.
fn ungranted(
    t: &Value,
    binary: &str,
    proxy: &pushgate_tests::meter::proxy::MeterProxy,
    seen: &mut usize,
) -> Vec<String> {
    let all = functions(t);
    let f = function(&all, binary);
    let mut missing = BTreeSet::new();
    for call in proxy.meter.take().dynamo {
        *seen += 1;
        for table in &call.tables {
            let (name, index) = match table.split_once('/') {
                Some((name, index)) => (name, Some(index)),
                None => (table.as_str(), None),
            };
            let action = action_of(&call.api);
            if !allows(t, f, &action, table_logical_id(name), index) {
                missing.insert(format!(
                    "{binary}: {action} on {}{}",
                    table_logical_id(name),
                    index.map(|i| format!("/index/{i}")).unwrap_or_default()
                ));
            }
        }
    }
    missing.into_iter().collect()
}

/// moto enforces no IAM, so a call a role does not allow passes every other test and fails only
/// on AWS. Here every function runs its paths through the metering proxy (a send with a tag,
/// a first dispatch that leaves a recipient for a retry, the redelivery, lists by tag, by
/// operation and of the account, a fetch, the Operation, a cancel with its sweep) and every
/// DynamoDB call it made must be allowed by its role in `template.yaml`.
#[tokio::test]
async fn every_dynamodb_call_a_function_makes_is_allowed_by_its_role() {
    use super::lambda::{mixed_send, redelivered, send_and_receive};
    use pushgate_fakes::{ApnsReply, FcmReply};
    use pushgate_tests::lambda_rig::AwsRig;
    use pushgate_tests::{apn_token, fcm_token};

    let Some(rig) = AwsRig::new("iam", |_| {}).await else { return };
    let (rig, proxy) = pushgate_tests::lambda_rig::metered(rig).await;
    let t = template();
    let (mut missing, mut seen) = (Vec::new(), 0);

    rig.create_credentials("main").await;
    missing.extend(ungranted(&t, "credentials", &proxy, &mut seen));
    rig.apns.script(&apn_token(1), vec![ApnsReply::TooManyRequests { retry_after_secs: Some(60) }]);
    rig.fcm.script(&fcm_token(3), vec![FcmReply::Unregistered]);
    let (operation, messages) = send_and_receive(&rig, &mixed_send(&[1, 2], &[3, 4]), 1).await;
    missing.extend(ungranted(&t, "send", &proxy, &mut seen));
    rig.dispatch(&messages).await;
    rig.dispatch_deps.pacing.resume_all(); // SQS redelivers after Apple's Retry-After
    rig.dispatch(&redelivered(&messages)).await;
    missing.extend(ungranted(&t, DISPATCH, &proxy, &mut seen));

    let (status, listed) = rig.call(Function::List, "GET", "/v1/PushNotifications?tags=flight:PG1;", None).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{listed}");
    assert!(!listed["pushNotifications"].as_array().is_none_or(Vec::is_empty), "listed by tag: {listed}");
    rig.call(Function::List, "GET", &format!("/v1/PushNotifications?operationId={operation}"), None).await;
    rig.call(Function::List, "GET", "/v1/PushNotifications?pageSize=2", None).await;
    missing.extend(ungranted(&t, "list", &proxy, &mut seen));
    let first = listed["pushNotifications"][0]["id"].as_str().expect("a listed notification");
    rig.call(Function::Fetch, "GET", &format!("/v1/PushNotifications/{first}"), None).await;
    missing.extend(ungranted(&t, "fetch", &proxy, &mut seen));
    rig.call(Function::Operations, "GET", &format!("/v1/PushNotifications/Operations/{operation}"), None).await;
    missing.extend(ungranted(&t, "operations", &proxy, &mut seen));

    // A cancel with something to sweep: a send whose recipient waits for a retry.
    rig.apns.script(&apn_token(7), vec![ApnsReply::TooManyRequests { retry_after_secs: Some(60) }]);
    let (waiting, messages) = send_and_receive(&rig, &mixed_send(&[7], &[]), 1).await;
    rig.dispatch(&messages).await;
    let _ = proxy.meter.take();
    let body = serde_json::json!({"status": "CANCELED"});
    let path = format!("/v1/PushNotifications/Operations/{waiting}");
    rig.call(Function::Cancel, "PATCH", &path, Some(&body)).await;
    missing.extend(ungranted(&t, "cancel", &proxy, &mut seen));

    // Idempotency-Key: each function with a POST claims the key, keeps the answer, replays it.
    let keyed = [
        (Function::Send, "send", "/v1/PushNotifications", mixed_send(&[9], &[])),
        (Function::Credentials, "credentials", "/v1/PushNotifications/Credentials", serde_json::json!({})),
        (
            Function::DeviceRegistrations,
            "device-registrations",
            "/v1/PushNotifications/DeviceRegistrations",
            serde_json::json!({}),
        ),
    ];
    for (function, binary, path, body) in keyed {
        let event = pushgate_tests::lambda_rig::http_api_event("POST", path, "$default", &rig.caller, Some(&body));
        let mut event: serde_json::Value = serde_json::from_str(&event).expect("an event is JSON");
        event["headers"]["idempotency-key"] = serde_json::json!(format!("iam-{binary}"));
        for _ in 0..2 {
            rig.invoke(function, &event.to_string()).await;
        }
        missing.extend(ungranted(&t, binary, &proxy, &mut seen));
    }

    assert!(missing.is_empty(), "calls the template does not allow:\n{}", missing.join("\n"));
    assert!(seen > 20, "the proxy saw the functions' calls ({seen})");
}
