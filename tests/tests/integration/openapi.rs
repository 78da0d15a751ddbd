//! The OpenAPI document (`shared/api/openapi.json`) and the router agree: every route the router serves
//! is described, the document describes no route the router lacks, and the document is
//! well-formed enough for tools (3.1, unique operation ids, responses everywhere, resolvable refs).
//! It also documents what every request may meet: `Idempotency-Key` with its 409 and 422 on every
//! POST, `Idempotent-Replayed` on their successes, 429 with `Retry-After` on every authenticated
//! operation, the send's 400 code 20430 — with the statuses, codes and headers the server gives.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

const DOCUMENT: &str = include_str!("../../../shared/api/openapi.json");

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("shared/api/openapi.json is valid JSON")
}

/// Every (METHOD, path) the document describes, with its operation object.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let paths = doc.get("paths").and_then(Value::as_object).expect("the document has a `paths` object");
    let mut out = BTreeMap::new();
    for (path, item) in paths {
        let item = item.as_object().expect("every path item is an object");
        for (key, operation) in item {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_ascii_uppercase(), path.clone()), operation.clone());
            }
        }
    }
    out
}

fn documented_routes() -> BTreeSet<(String, String)> {
    operations(&document()).into_keys().collect()
}

fn router_routes() -> BTreeSet<(String, String)> {
    pushgate_api::ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect()
}

fn listing(routes: &[&(String, String)]) -> String {
    routes.iter().map(|(method, path)| format!("\n  {method} {path}")).collect()
}

#[test]
fn every_router_route_is_described_in_the_openapi_document() {
    let documented = documented_routes();
    let router = router_routes();
    let missing: Vec<_> = router.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes the router serves but shared/api/openapi.json does not describe:{}",
        listing(&missing)
    );
}

#[test]
fn the_openapi_document_describes_no_route_the_router_lacks() {
    let documented = documented_routes();
    let router = router_routes();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        extra.is_empty(),
        "routes shared/api/openapi.json describes but the router does not serve:{}",
        listing(&extra)
    );
}

/// Every `$ref` value anywhere in `value`, with the JSON pointer of the object holding it.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    out.push((at.to_owned(), child.as_str().unwrap_or("<not a string>").to_owned()));
                } else {
                    refs(child, &format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_openapi_document_is_version_3_1_and_every_operation_has_responses_and_an_operation_id() {
    let doc = document();
    let version = doc.get("openapi").and_then(Value::as_str).expect("the document has an `openapi` version string");
    assert!(version.starts_with("3.1."), "expected OpenAPI 3.1.x, found {version}");

    let mut problems = Vec::new();
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((method, path), operation) in operations(&doc) {
        let route = format!("{method} {path}");
        match operation.get("operationId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => ids.entry(id.to_owned()).or_default().push(route.clone()),
            _ => problems.push(format!("{route} has no operationId")),
        }
        match operation.get("responses").and_then(Value::as_object) {
            Some(responses) if !responses.is_empty() => {}
            _ => problems.push(format!("{route} has no responses")),
        }
    }
    for (id, routes) in &ids {
        if routes.len() > 1 {
            problems.push(format!("operationId {id} is used by {}", routes.join(", ")));
        }
    }

    let mut found = Vec::new();
    refs(&doc, "#", &mut found);
    assert!(!found.is_empty(), "the document uses no $ref at all; the check below would prove nothing");
    for (at, target) in found {
        let resolves = target
            .strip_prefix("#/components/")
            .filter(|rest| rest.split('/').count() == 2)
            .and_then(|_| target.strip_prefix('#'))
            .and_then(|pointer| doc.pointer(pointer))
            .is_some();
        if !resolves {
            problems.push(format!("$ref {target} at {at} does not resolve to an entry of #/components"));
        }
    }

    assert!(problems.is_empty(), "problems in shared/api/openapi.json:\n  {}", problems.join("\n  "));
}

/// `value`, or what its `$ref` (a chain of them) points at.
fn resolved<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    while let Some(target) = value.get("$ref").and_then(Value::as_str) {
        value = target
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or_else(|| panic!("$ref {target} does not resolve"));
    }
    value
}

/// What is wrong with `response` (resolved) as an error answer in the `Error` shape carrying
/// `headers` (each a `$ref` to the `#/components/headers` entry of that name) and
/// `Twilio-Request-Id`.
fn error_response_problems(
    doc: &Value,
    route: &str,
    status: &str,
    response: Option<&Value>,
    headers: &[&str],
) -> Vec<String> {
    let Some(response) = response.map(|r| resolved(doc, r)) else {
        return vec![format!("{route} documents no {status}")];
    };
    let mut problems = Vec::new();
    let schema = response.pointer("/content/application~1json/schema/$ref").and_then(Value::as_str);
    if schema != Some("#/components/schemas/Error") {
        problems.push(format!("{route} {status}: the body is not the Error schema (found {schema:?})"));
    }
    for name in headers.iter().chain(&["Twilio-Request-Id"]) {
        let reference = response.get("headers").and_then(|h| h.get(*name)).and_then(|h| h.get("$ref"));
        let expected = format!("#/components/headers/{name}");
        if reference.and_then(Value::as_str) != Some(expected.as_str()) {
            problems.push(format!("{route} {status}: header {name} is not {expected} (found {reference:?})"));
        }
    }
    problems
}

/// Does `operation` (or the document, when the operation says nothing) require credentials?
fn requires_authentication(doc: &Value, operation: &Value) -> bool {
    let security = operation.get("security").or_else(|| doc.get("security"));
    security.and_then(Value::as_array).is_some_and(|requirements| {
        !requirements.is_empty()
            && requirements.iter().all(|r| r.as_object().is_some_and(|alternative| !alternative.is_empty()))
    })
}

#[test]
fn every_post_operation_documents_the_idempotency_key_and_its_409_and_422() {
    use pushgate_core::app::idempotency::{HEADER, MAX_KEY_BYTES, validate_key};

    let doc = document();
    let mut problems = Vec::new();

    // The parameter says what the server checks: 1 to 255 visible ASCII characters.
    const REFERENCE: &str = "#/components/parameters/Idempotency-Key";
    let parameter = doc.pointer("/components/parameters/Idempotency-Key").cloned().unwrap_or(Value::Null);
    let field = |pointer: &str| parameter.pointer(pointer).cloned().unwrap_or(Value::Null);
    if !field("/name").as_str().is_some_and(|name| name.eq_ignore_ascii_case(HEADER)) {
        problems.push(format!("{REFERENCE} is not the header the server reads ({HEADER}): {parameter}"));
    }
    for (pointer, expected) in [
        ("/in", Value::from("header")),
        ("/required", Value::from(false)),
        ("/schema/type", Value::from("string")),
        ("/schema/minLength", Value::from(1)),
        ("/schema/maxLength", Value::from(MAX_KEY_BYTES)),
        ("/schema/pattern", Value::from("^[!-~]+$")),
    ] {
        if field(pointer) != expected {
            problems.push(format!("{REFERENCE}{pointer} is {}, expected {expected}", field(pointer)));
        }
    }
    // `^[!-~]+$` is the core's rule: `!` (0x21) to `~` (0x7E), nothing around them.
    assert!(validate_key("!~").is_ok() && validate_key(" ").is_err() && validate_key("\u{7f}").is_err());

    let replayed = doc.pointer("/components/headers/Idempotent-Replayed");
    if replayed.and_then(|h| h.pointer("/schema/const")) != Some(&Value::from("true")) {
        problems.push(format!("#/components/headers/Idempotent-Replayed is not the constant \"true\": {replayed:?}"));
    }
    assert!(
        pushgate_api::idempotency::REPLAYED_HEADER.eq_ignore_ascii_case("Idempotent-Replayed"),
        "the server's replay header is named differently"
    );

    let paths = doc.get("paths").cloned().unwrap_or(Value::Null);
    let mut posts = 0;
    for ((method, path), operation) in operations(&doc) {
        let route = format!("{method} {path}");
        let inherited = paths.get(&path).and_then(|item| item.get("parameters")).and_then(Value::as_array);
        let own = operation.get("parameters").and_then(Value::as_array);
        let keyed = own
            .into_iter()
            .chain(inherited)
            .flatten()
            .any(|p| p.get("$ref").and_then(Value::as_str) == Some(REFERENCE));
        if method != "POST" {
            if keyed {
                problems.push(format!("{route} documents Idempotency-Key, which the server reads on POSTs only"));
            }
            continue;
        }
        posts += 1;
        if !keyed {
            problems.push(format!("{route} does not reference {REFERENCE}"));
        }
        let responses = operation.get("responses").cloned().unwrap_or(Value::Null);
        problems.extend(error_response_problems(&doc, &route, "409", responses.get("409"), &["Retry-After"]));
        problems.extend(error_response_problems(&doc, &route, "422", responses.get("422"), &[]));
        let successes: Vec<_> =
            responses.as_object().into_iter().flatten().filter(|(s, _)| s.starts_with('2')).collect();
        if successes.is_empty() {
            problems.push(format!("{route} documents no success"));
        }
        for (status, response) in successes {
            let header = resolved(&doc, response).pointer("/headers/Idempotent-Replayed/$ref").and_then(Value::as_str);
            if header != Some("#/components/headers/Idempotent-Replayed") {
                problems.push(format!("{route} {status} does not document the Idempotent-Replayed header"));
            }
        }
    }
    assert!(posts > 0, "the document has no POST operation; the check above proved nothing");
    assert!(problems.is_empty(), "problems in shared/api/openapi.json:\n  {}", problems.join("\n  "));
}

#[test]
fn every_authenticated_operation_documents_429_with_retry_after() {
    let doc = document();
    let retry_after = doc.pointer("/components/headers/Retry-After/schema/type").and_then(Value::as_str);
    assert_eq!(retry_after, Some("integer"), "Retry-After is a whole number of seconds");

    let mut problems = Vec::new();
    let mut authenticated = 0;
    for ((method, path), operation) in operations(&doc) {
        if !requires_authentication(&doc, &operation) {
            continue;
        }
        authenticated += 1;
        let route = format!("{method} {path}");
        let response = operation.pointer("/responses/429");
        problems.extend(error_response_problems(&doc, &route, "429", response, &["Retry-After"]));
    }
    assert!(authenticated > 0, "no operation requires authentication; the check above proved nothing");
    assert!(problems.is_empty(), "problems in shared/api/openapi.json:\n  {}", problems.join("\n  "));
}

#[test]
fn the_send_operation_documents_a_send_larger_than_a_minutes_budget_as_400_with_code_20430() {
    let doc = document();
    let response = doc
        .pointer("/paths/~1v1~1PushNotifications/post/responses/400")
        .map(|r| resolved(&doc, r))
        .expect("POST /v1/PushNotifications documents a 400");
    let description = response.get("description").and_then(Value::as_str).unwrap_or_default();
    assert!(description.contains("20430"), "the send's 400 does not describe code 20430: {description}");
    let examples = response.pointer("/content/application~1json/examples").and_then(Value::as_object);
    let codes: Vec<_> = examples.into_iter().flatten().filter_map(|(_, e)| e.pointer("/value/code")).collect();
    assert!(codes.contains(&&Value::from(20430)), "no example of the 20430 answer (example codes: {codes:?})");

    let error = doc.pointer("/components/schemas/Error/description").and_then(Value::as_str).unwrap_or_default();
    for code in ["20409", "20422", "20429", "20430"] {
        assert!(error.contains(code), "the Error schema's list of codes lacks {code}");
    }
}

/// The answers the server gives for the idempotency and limit errors: their status, code and
/// headers are those every POST (409, 422) and every authenticated operation (429) documents.
#[test]
fn the_servers_409_422_and_429_answers_carry_the_codes_and_headers_the_document_gives_them() {
    use axum::response::IntoResponse as _;
    use pushgate_api::ApiError;
    use pushgate_core::app::AppError;

    let doc = document();
    let limit = ApiError::App(AppError::Limit { message: "too many".into(), retry_after: 7 });
    let cases = [
        (ApiError::IdempotencyInProgress, 409, 20409),
        (ApiError::IdempotencyMismatch, 422, 20422),
        (limit, 429, 20429),
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for (error, status, code) in cases {
        let response = error.into_response();
        assert_eq!(response.status().as_u16(), status);
        let sends_retry_after = response.headers().contains_key("retry-after");
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 64 * 1024)).expect("a body");
        let body: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!((body["code"].as_u64(), body["status"].as_u64()), (Some(code), Some(u64::from(status))), "{body}");

        for ((method, path), operation) in operations(&doc) {
            let applies = if status == 429 { requires_authentication(&doc, &operation) } else { method == "POST" };
            if !applies {
                continue;
            }
            let route = format!("{method} {path}");
            let Some(documented) = operation.pointer(&format!("/responses/{status}")).map(|r| resolved(&doc, r)) else {
                problems.push(format!("{route} documents no {status}"));
                continue;
            };
            checked += 1;
            if documented.pointer("/headers/Retry-After").is_some() != sends_retry_after {
                problems.push(format!("{route} {status}: Retry-After documented differs from the server's answer"));
            }
            let content = documented.pointer("/content/application~1json").cloned().unwrap_or(Value::Null);
            let examples = content.get("examples").and_then(Value::as_object).into_iter().flatten();
            let mut codes: Vec<_> = examples.filter_map(|(_, e)| e.pointer("/value/code").cloned()).collect();
            codes.extend(content.pointer("/example/code").cloned());
            if !codes.contains(&Value::from(code)) {
                problems.push(format!("{route} {status}: its examples' codes {codes:?} do not include {code}"));
            }
        }
    }
    assert!(checked > 0, "no operation documents these answers; the check above proved nothing");
    assert!(problems.is_empty(), "problems in shared/api/openapi.json:\n  {}", problems.join("\n  "));
}
