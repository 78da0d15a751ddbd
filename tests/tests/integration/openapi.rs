//! The OpenAPI document (`shared/api/openapi.json`) and the router agree: every route the router serves
//! is described, the document describes no route the router lacks, and the document is
//! well-formed enough for tools (3.1, unique operation ids, responses everywhere, resolvable refs).
//! It also documents what every request may meet: `Idempotency-Key` with its 409 and 422 on every
//! POST, `Idempotent-Replayed` on their successes, 429 with `Retry-After` on every authenticated
//! operation, the send's 400 code 20430 — with the statuses, codes and headers the server gives.
//! And it is truthful: no description calls something the server serves unavailable, every
//! pattern is anchored at both ends (the ids' are the ones the server quotes), every `moreInfo`
//! is the link the server sends, and per request field the document and the server agree on
//! `null` and on integers written with a zero fraction. The one-process server serves it, byte for
//! byte, at `GET /openapi.json`.

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

/// Every string of the document under the key `key` (`description`, `summary`, `pattern`,
/// `moreInfo`), with its JSON pointer.
fn strings_under(value: &Value, key: &str, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                let here = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                if name == key
                    && let Some(text) = child.as_str()
                {
                    out.push((here.clone(), text.to_owned()));
                }
                strings_under(child, key, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                strings_under(child, key, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The document once said cancel, Users, DeviceRegistrations and scheduled sends were "not
/// implemented yet" and that a schedule was refused, long after the server served them all. No
/// description or summary may call something unavailable: what the document describes, the
/// router serves (the route tests above), so such a sentence can only be stale.
#[test]
fn no_description_says_that_something_the_server_serves_is_not_implemented_or_not_available_yet() {
    const STALE: &[&str] = &[
        "not implemented",
        "not yet implemented",
        "not available",
        "not yet available",
        "not supported yet",
        "not yet supported",
        "implemented yet",
        "available yet",
        "in this version of pushgate",
        "in a later version",
        "coming soon",
    ];
    let doc = document();
    let mut texts = Vec::new();
    for key in ["description", "summary"] {
        strings_under(&doc, key, "#", &mut texts);
    }
    assert!(texts.len() > 100, "only {} descriptions found; the check below would prove little", texts.len());
    let stale: Vec<_> = texts
        .iter()
        .filter_map(|(at, text)| {
            let lower = text.to_lowercase();
            STALE.iter().find(|phrase| lower.contains(*phrase)).map(|phrase| format!("{at} says {phrase:?}: {text}"))
        })
        .collect();
    assert!(stale.is_empty(), "stale descriptions in shared/api/openapi.json:\n  {}", stale.join("\n  "));

    // What the document described as refused is served: a send with a schedule is accepted.
    let schedule =
        doc.pointer("/components/schemas/SendRequest/properties/schedule/description").and_then(Value::as_str);
    assert!(schedule.is_some_and(|d| !d.to_lowercase().contains("refused")), "{schedule:?}");
}

/// An unanchored pattern matches any string that merely contains a match (JSON Schema's
/// `pattern` is a search, not a full match): `^comms_operation_…{25,34}` let any suffix through.
/// Every pattern is anchored at both ends and is a valid regular expression.
#[test]
fn every_pattern_in_the_document_is_anchored_at_both_ends() {
    let doc = document();
    let mut patterns = Vec::new();
    strings_under(&doc, "pattern", "#", &mut patterns);
    assert!(patterns.len() >= 8, "only {} patterns found", patterns.len());
    let mut problems = Vec::new();
    for (at, pattern) in &patterns {
        // `$` escaped as `\$` would be a literal dollar, not an anchor.
        if !pattern.starts_with('^') || !pattern.ends_with('$') || pattern.ends_with("\\$") {
            problems.push(format!("{at}: {pattern} is not anchored at both ends (^…$)"));
        }
        if let Err(e) = regex::Regex::new(pattern) {
            problems.push(format!("{at}: {pattern} is not a valid regular expression: {e}"));
        }
    }
    assert!(problems.is_empty(), "problems in shared/api/openapi.json:\n  {}", problems.join("\n  "));
}

/// The id patterns the server quotes in its 400s ("must match …") are the document's, and they
/// mean what the server does: an id pushgate issues matches, the same id with anything after it
/// does not.
#[test]
fn the_id_patterns_the_server_quotes_are_the_documents_and_refuse_a_suffix() {
    use pushgate_core::domain::{AccountId, CredentialId, DeviceRegistrationId, NotificationId, OperationId, UserId};

    let doc = document();
    let ulid = ulid::Ulid::from_parts(1_700_000_000_000, 42);
    let cases = [
        ("AccountId", AccountId::PATTERN, AccountId::from_bytes([7; 16]).to_string()),
        ("PushNotificationId", NotificationId::PATTERN, NotificationId::from_ulid(ulid).to_string()),
        ("OperationId", OperationId::PATTERN, OperationId::from_ulid(ulid).to_string()),
        ("CredentialId", CredentialId::PATTERN, CredentialId::from_ulid(ulid).to_string()),
        ("UserId", UserId::PATTERN, UserId::from_ulid(ulid).to_string()),
        ("DeviceRegistrationId", DeviceRegistrationId::PATTERN, DeviceRegistrationId::from_ulid(ulid).to_string()),
    ];
    let mut problems = Vec::new();
    for (schema, server, issued) in cases {
        let documented = doc.pointer(&format!("/components/schemas/{schema}/pattern")).and_then(Value::as_str);
        if documented != Some(server) {
            problems.push(format!("{schema}: the server quotes {server}, the document says {documented:?}"));
        }
        let pattern = regex::Regex::new(server).expect("a valid pattern");
        if !pattern.is_match(&issued) {
            problems.push(format!("{schema}: {server} does not match the issued id {issued}"));
        }
        for suffix in ["!", "/x", " "] {
            if pattern.is_match(&format!("{issued}{suffix}")) {
                problems.push(format!("{schema}: {server} matches {issued}{suffix:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "id patterns:\n  {}", problems.join("\n  "));
}

/// The GitHub anchor of a Markdown heading: lowercase, spaces to `-`, punctuation dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every `moreInfo` the document shows is the link the server sends (`error::MORE_INFO`), and
/// that link's anchor is a heading of the README it points at.
#[test]
fn every_more_info_link_in_the_document_is_the_one_the_server_sends_and_its_anchor_exists() {
    use pushgate_api::error::MORE_INFO;

    let doc = document();
    let mut links = Vec::new();
    strings_under(&doc, "moreInfo", "#", &mut links);
    assert!(links.len() >= 10, "only {} moreInfo examples found", links.len());
    let wrong: Vec<_> =
        links.iter().filter(|(_, link)| link != MORE_INFO).map(|(at, link)| format!("{at}: {link}")).collect();
    assert!(
        wrong.is_empty(),
        "moreInfo examples the server never sends (it sends {MORE_INFO}):\n  {}",
        wrong.join("\n  ")
    );
    let examples = doc.pointer("/components/schemas/Error/properties/moreInfo/examples").and_then(Value::as_array);
    assert_eq!(examples.map(Vec::as_slice), Some([Value::from(MORE_INFO)].as_slice()), "the Error schema's example");

    let (file, anchor) = MORE_INFO.split_once('#').expect("MORE_INFO has an anchor");
    assert!(file.ends_with("/blob/main/README.md"), "{MORE_INFO} does not point at the README");
    const README: &str = include_str!("../../../README.md");
    let mut in_code = false;
    let mut headings = Vec::new();
    for line in README.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            headings.push(github_anchor(line.trim_start_matches('#')));
        }
    }
    assert!(headings.iter().any(|h| h == anchor), "README.md has no heading with the anchor #{anchor}: {headings:?}");
}

/// Does `schema` (resolved) admit `null`: `type: "null"`, a type list with `"null"`, or a
/// `oneOf`/`anyOf` alternative that does?
fn admits_null(doc: &Value, schema: &Value) -> bool {
    let schema = resolved(doc, schema);
    if schema.get("enum").and_then(Value::as_array).is_some_and(|values| !values.contains(&Value::Null)) {
        return false;
    }
    if schema.get("const").is_some() {
        return schema.get("const") == Some(&Value::Null);
    }
    let typed = match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.contains(&Value::from("null")),
        _ => false,
    };
    typed
        || ["oneOf", "anyOf"].iter().any(|k| {
            schema
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|alternatives| alternatives.iter().any(|alternative| admits_null(doc, alternative)))
        })
}

/// The smallest integer `schema` (resolved) documents, if it is an integer field.
fn integer_minimum(doc: &Value, schema: &Value) -> Option<u64> {
    let schema = resolved(doc, schema);
    let integer = match schema.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(types)) => types.contains(&Value::from("integer")),
        _ => false,
    };
    integer.then(|| schema.get("minimum").and_then(Value::as_u64).unwrap_or(0))
}

/// One object of a request body the server reads: the document's schema for it, a body the
/// server accepts and where in it the object is.
struct BodyObject {
    schema: &'static str,
    body: Value,
    at: &'static str,
    read: fn(Value) -> Result<(), Vec<pushgate_core::domain::FieldError>>,
}

fn read_send(json: Value) -> Result<(), Vec<pushgate_core::domain::FieldError>> {
    use pushgate_api::requests::SendBody;
    let received_at = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").expect("valid").to_utc();
    pushgate_core::domain::SendRequest::try_from(SendBody { json, received_at }).map(drop)
}

fn read_registration(json: Value) -> Result<(), Vec<pushgate_core::domain::FieldError>> {
    use pushgate_api::requests::RegistrationBody;
    pushgate_core::app::directory::RegisterDevice::try_from(RegistrationBody(json)).map(drop)
}

fn read_credential(json: Value) -> Result<(), Vec<pushgate_core::domain::FieldError>> {
    use pushgate_api::requests::CredentialBody;
    pushgate_core::app::credentials::NewCredential::try_from(CredentialBody(json)).map(drop)
}

fn read_cancel(json: Value) -> Result<(), Vec<pushgate_core::domain::FieldError>> {
    use pushgate_api::requests::{Cancel, CancelBody};
    Cancel::try_from(CancelBody(json)).map(drop)
}

fn read_make_default(json: Value) -> Result<(), Vec<pushgate_core::domain::FieldError>> {
    use pushgate_api::requests::{MakeDefault, MakeDefaultBody};
    MakeDefault::try_from(MakeDefaultBody(json)).map(drop)
}

/// Every object of every request body the document describes, each in a body the server
/// accepts (every optional field present, so setting one to null or to a number changes only it).
fn body_objects() -> Vec<BodyObject> {
    use serde_json::json;

    const APN: &str = "5d4a1b0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b";
    const USER: &str = "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8";
    const APN_CREDENTIAL: &str = "comms_credential_01h9krwprkeee8fzqspvwy6nq8";
    const FCM_CREDENTIAL: &str = "comms_credential_8qn6ywvpsqzf8eeekrpwrk9h10";
    let send = |to: Value, from: Value| {
        json!({
            "to": [to],
            "content": {
                "title": "Hi {{ name }}", "body": "b", "image": "https://example.com/a.png", "data": {"k": "v"},
                "badge": 1, "collapseKey": "k", "ttl": 60, "contentAvailable": true, "mutableContent": true,
                "apn": {"aps": {"category": "c"}}, "fcm": {"android": {"priority": "HIGH"}},
            },
            "from": from,
            "priority": "LOW",
            "sound": "ring",
            "schedule": {"sendAt": ["2026-11-28T10:00:00Z"]},
            "tags": {"campaign": "c"},
        })
    };
    let device = json!({"token": APN, "provider": "APN", "variables": {"name": "Ada"}});
    let user = json!({"userId": USER, "variables": {"name": "Ada"}});
    let credentials = json!({"apn": APN_CREDENTIAL, "fcm": FCM_CREDENTIAL});
    let app = json!({"appName": "my_app"});
    let apns_key = pushgate_fakes::keys::apns_signing_key("KEY1234567", "TEAM123456");
    let fcm_account = pushgate_fakes::keys::fcm_service_account("pushgate-test", "https://oauth2.googleapis.com/token");
    let mut apn_credential = pushgate_tests::apn_credential_body(&apns_key, "my_app");
    apn_credential["isDefault"] = json!(true);
    let mut fcm_credential = pushgate_tests::fcm_credential_body(&fcm_account, "my_app");
    fcm_credential["isDefault"] = json!(false);
    let registration = json!({"appName": "my_app", "token": APN, "provider": "APN", "userId": USER});

    let object = |schema, body: &Value, at, read| BodyObject { schema, body: body.clone(), at, read };
    vec![
        object("SendRequest", &send(device.clone(), credentials.clone()), "", read_send),
        object("SendContent", &send(device.clone(), credentials.clone()), "/content", read_send),
        object("DirectRecipient", &send(device.clone(), credentials.clone()), "/to/0", read_send),
        object("UserRecipient", &send(user, app.clone()), "/to/0", read_send),
        object("CredentialSender", &send(device.clone(), credentials), "/from", read_send),
        object("AppSender", &send(device.clone(), app), "/from", read_send),
        object("Schedule", &send(device, Value::Null), "/schedule", read_send),
        object("DeviceRegistrationRequest", &registration, "", read_registration),
        object("CredentialCreateRequest", &apn_credential, "", read_credential),
        object("ApnTokenCredentialContent", &apn_credential, "/content", read_credential),
        object("CredentialCreateRequest", &fcm_credential, "", read_credential),
        object("FcmCredentialContent", &fcm_credential, "/content", read_credential),
        object("CancelRequest", &json!({"status": "CANCELED"}), "", read_cancel),
        object("MakeDefaultRequest", &json!({"isDefault": true}), "", read_make_default),
    ]
}

/// Per field of every request body, the document and the server agree on `null` (the server
/// reads an optional field sent as null as if it were left out; the document declares exactly
/// those fields nullable) and on integers (an `integer` field takes its minimum written with a
/// zero fraction, `60.0`, as JSON Schema counts it an integer, and refuses a fraction).
#[test]
fn every_request_field_is_nullable_in_the_document_exactly_when_the_server_accepts_null_and_integers_take_a_zero_fraction()
 {
    let doc = document();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut integers = 0;
    for BodyObject { schema, body, at, read } in body_objects() {
        if let Err(errors) = read(body.clone()) {
            panic!("the {schema} test body is refused: {errors:?}\n{body}");
        }
        let properties = doc
            .pointer(&format!("/components/schemas/{schema}/properties"))
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("#/components/schemas/{schema} has no properties"));
        for (name, property) in properties {
            checked += 1;
            let with = |value: Value| {
                let mut changed = body.clone();
                changed
                    .pointer_mut(at)
                    .and_then(Value::as_object_mut)
                    .expect("an object there")
                    .insert(name.clone(), value);
                changed
            };
            let documented = admits_null(&doc, property);
            let served = read(with(Value::Null)).is_ok();
            if documented != served {
                let says = |yes: bool| if yes { "takes" } else { "refuses" };
                problems.push(format!(
                    "{schema}.{name}: the document {} null, the server {} it",
                    says(documented),
                    says(served)
                ));
            }
            if let Some(minimum) = integer_minimum(&doc, property) {
                integers += 1;
                let whole = minimum as f64;
                if let Err(errors) = read(with(Value::from(whole))) {
                    problems
                        .push(format!("{schema}.{name}: {whole:?} is an integer, the server refuses it: {errors:?}"));
                }
                if read(with(Value::from(whole + 0.5))).is_ok() {
                    problems.push(format!("{schema}.{name}: {} is not an integer, the server takes it", whole + 0.5));
                }
            }
        }
    }
    assert!(checked > 40 && integers >= 2, "only {checked} fields ({integers} integers) checked");
    assert!(problems.is_empty(), "the document and the server disagree:\n  {}", problems.join("\n  "));
}

/// `pushgate-local` serves the document at `GET /openapi.json`, without credentials, as JSON:
/// exactly the bytes of `shared/api/openapi.json`, so a tool pointed at a running server reads
/// the contract of the build it talks to.
#[tokio::test]
async fn the_one_process_server_serves_the_document_at_get_openapi_json_without_credentials() {
    let app = pushgate_tests::TestApp::spawn().await;
    let response = app.client.get(format!("{}/openapi.json", app.base)).send().await.expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let body = response.text().await.expect("a body");
    assert!(body == DOCUMENT, "GET /openapi.json is not shared/api/openapi.json byte for byte");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("the body is JSON"), document());
    assert_eq!(pushgate_api::OPENAPI_DOCUMENT, DOCUMENT);

    let response = app.client.post(format!("{}/openapi.json", app.base)).send().await.expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
}

/// Twilio publishes PushNotification, Operation and User ids as up to 35 characters after the
/// prefix; pushgate issues and parses exactly the 26 of a ULID. The document once gave Twilio's
/// pattern, so a longer id was valid by the contract yet 404 in a path and 400 as a filter or in
/// a body. The document's pattern now matches exactly what the server parses, length by length.
#[test]
fn the_ulid_id_patterns_of_the_document_match_exactly_the_ids_the_server_parses() {
    use pushgate_core::domain::{NotificationId, OperationId, UserId};

    let doc = document();
    type Parses = fn(&str) -> bool;
    let parsers: [(&str, &str, Parses); 3] = [
        ("PushNotificationId", NotificationId::PREFIX, |s| NotificationId::parse(s).is_ok()),
        ("OperationId", OperationId::PREFIX, |s| OperationId::parse(s).is_ok()),
        ("UserId", UserId::PREFIX, |s| UserId::parse(s).is_ok()),
    ];
    let mut problems = Vec::new();
    for (schema, prefix, parses) in parsers {
        let pattern = doc
            .pointer(&format!("/components/schemas/{schema}/pattern"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("#/components/schemas/{schema} has no pattern"));
        let pattern = regex::Regex::new(pattern).expect("a valid pattern");
        for length in 20..=40 {
            // Crockford base32, first character 0-7: the body of a ULID when 26 long.
            let body: String = "01h9krwprkeee8fzqspvwy6nq8abcdefghjkmnpqrst".chars().cycle().take(length).collect();
            let id = format!("{prefix}{body}");
            if pattern.is_match(&id) != parses(&id) {
                problems.push(format!(
                    "{schema}: {length} characters after the prefix: the document {}, the server {}",
                    if pattern.is_match(&id) { "matches" } else { "refuses" },
                    if parses(&id) { "parses it" } else { "refuses it" },
                ));
            }
        }
    }
    assert!(problems.is_empty(), "id patterns and parsers disagree:\n  {}", problems.join("\n  "));
}

/// An id one character longer than a ULID is refused like any id that does not match its
/// pattern — a 400 naming the parameter — in a path as in a filter (it was a 404 in a path).
#[tokio::test]
async fn an_id_longer_than_a_ulid_is_a_400_naming_the_parameter_in_a_path_as_in_a_filter() {
    let app = pushgate_tests::TestApp::spawn().await;
    let body = "01h9krwprkeee8fzqspvwy6nq8z";
    let cases = [
        (format!("/v1/PushNotifications/comms_pushnotification_{body}"), "pushNotificationId"),
        (format!("/v1/PushNotifications/Operations/comms_operation_{body}"), "operationId"),
        (format!("/v1/PushNotifications/Operations/comms_operation_{body}/Errors"), "operationId"),
        (format!("/v1/PushNotifications/Users/comms_pushnotificationuser_{body}"), "userId"),
        (format!("/v1/PushNotifications?operationId=comms_operation_{body}"), "operationId"),
        (format!("/v1/PushNotifications?user=comms_pushnotificationuser_{body}"), "user"),
        (format!("/v1/PushNotifications/DeviceRegistrations?userId=comms_pushnotificationuser_{body}"), "userId"),
    ];
    for (path, field) in cases {
        let (status, answer) = app.get(&path).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["code"], 20001, "{path}: {answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{path}: {answer}");
    }
}

/// The document states each provider's device-token format as a pattern, applied to a
/// recipient's and a registration's `token` by their `provider`: a token the server refuses is
/// invalid by the document (and the conformance run never counts its refusal as a failure),
/// and every token the server accepts is valid by it.
#[test]
fn the_documents_device_token_patterns_accept_exactly_the_tokens_the_server_accepts_per_provider() {
    use pushgate_core::domain::device_token::{is_apn_token, is_fcm_token};

    let doc = document();
    let schema = |name: &str| -> (regex::Regex, Option<u64>) {
        let pointer = format!("/components/schemas/{name}");
        let pattern = doc.pointer(&format!("{pointer}/pattern")).and_then(Value::as_str);
        let pattern = regex::Regex::new(pattern.unwrap_or_else(|| panic!("{pointer} has no pattern"))).expect("valid");
        (pattern, doc.pointer(&format!("{pointer}/maxLength")).and_then(Value::as_u64))
    };
    let valid = |(pattern, max): &(regex::Regex, Option<u64>), token: &str| {
        pattern.is_match(token) && max.is_none_or(|max| token.chars().count() as u64 <= max)
    };
    let (apn, fcm) = (schema("ApnDeviceToken"), schema("FcmDeviceToken"));

    let hex = |n: usize| "0123456789abcdefABCDEF".chars().cycle().take(n).collect::<String>();
    let mut tokens: Vec<String> = [30, 31, 32, 33, 63, 64, 65, 199, 200, 201, 202].iter().map(|n| hex(*n)).collect();
    tokens.extend(
        ["", "g".repeat(64).as_str(), "fcm-token:APA91b_x.y", "a b", "a/b", "é", "a\n", "a%2F"].map(str::to_owned),
    );
    tokens.extend(["a".repeat(4096), "a".repeat(4097), format!("{}\u{e9}", hex(62))]);
    let mut problems = Vec::new();
    for token in &tokens {
        for (provider, documented, served) in
            [("APN", valid(&apn, token), is_apn_token(token)), ("FCM", valid(&fcm, token), is_fcm_token(token))]
        {
            if documented != served {
                let shown: String = token.chars().take(40).collect();
                problems.push(format!(
                    "{provider} token {shown:?} ({} chars): the document says {documented}, the server {served}",
                    token.chars().count()
                ));
            }
        }
    }

    // The rule applies the pattern by provider wherever a token is given with its provider.
    let rule = doc.pointer("/components/schemas/TokenOfItsProvider/allOf").and_then(Value::as_array).cloned();
    let applied: Vec<(String, String)> = rule
        .unwrap_or_default()
        .iter()
        .filter_map(|branch| {
            let provider = branch.pointer("/if/properties/provider/const")?.as_str()?.to_owned();
            let target = branch.pointer("/then/properties/token/$ref")?.as_str()?.to_owned();
            Some((provider, target))
        })
        .collect();
    let expected = [
        ("APN".to_owned(), "#/components/schemas/ApnDeviceToken".to_owned()),
        ("FCM".to_owned(), "#/components/schemas/FcmDeviceToken".to_owned()),
    ];
    assert_eq!(applied, expected, "TokenOfItsProvider does not give each provider its pattern");
    for holder in ["DirectRecipient", "DeviceRegistrationRequest"] {
        let all = doc.pointer(&format!("/components/schemas/{holder}/allOf")).and_then(Value::as_array);
        let applies = all.into_iter().flatten().any(|s| s["$ref"] == "#/components/schemas/TokenOfItsProvider");
        if !applies {
            problems.push(format!("{holder} does not apply TokenOfItsProvider"));
        }
    }
    assert!(problems.is_empty(), "device tokens:\n  {}", problems.join("\n  "));
}

/// The document's links (which answer's field feeds which operation's parameter: a created
/// credential's id to its fetch, a send's operationId to the Operation, …), which the
/// conformance run's stateful phase follows. Each names an operation the document has, only
/// parameters that operation takes, and a field of the answer it hangs on (a `$response.body`
/// JSON pointer into that answer's schema).
#[test]
fn every_link_names_an_operation_its_parameters_and_a_field_of_the_answer_it_follows() {
    let doc = document();
    let all = operations(&doc);
    let paths = doc.get("paths").cloned().unwrap_or(Value::Null);
    let by_id: BTreeMap<String, (String, Value)> = all
        .iter()
        .filter_map(|((_, path), operation)| {
            let id = operation.get("operationId")?.as_str()?.to_owned();
            Some((id, (path.clone(), operation.clone())))
        })
        .collect();
    let parameter_names = |path: &str, operation: &Value| -> BTreeSet<String> {
        let own = operation.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        let shared = paths.pointer(&format!("/{}/parameters", path.replace('~', "~0").replace('/', "~1")));
        let shared = shared.and_then(Value::as_array).cloned().unwrap_or_default();
        own.iter().chain(&shared).filter_map(|p| resolved(&doc, p).get("name")?.as_str().map(str::to_owned)).collect()
    };
    // The schema at `pointer` inside `schema`, through $refs and allOf.
    fn field<'a>(doc: &'a Value, schema: &'a Value, pointer: &[&str]) -> Option<&'a Value> {
        let schema = resolved(doc, schema);
        let Some((first, rest)) = pointer.split_first() else { return Some(schema) };
        if let Ok(_index) = first.parse::<usize>() {
            return field(doc, schema.get("items")?, rest);
        }
        if let Some(property) = schema.pointer(&format!("/properties/{first}")) {
            return field(doc, property, rest);
        }
        schema.get("allOf")?.as_array()?.iter().find_map(|part| field(doc, part, pointer))
    }

    let mut problems = Vec::new();
    let mut links = 0;
    for ((method, path), operation) in &all {
        let responses = operation.get("responses").and_then(Value::as_object).cloned().unwrap_or_default();
        for (status, response) in responses {
            let response = resolved(&doc, &response);
            let Some(found) = response.get("links").and_then(Value::as_object) else { continue };
            for (name, link) in found {
                links += 1;
                let at = format!("{method} {path} {status} link {name}");
                let target = link.get("operationId").and_then(Value::as_str).unwrap_or_default();
                let Some((target_path, target_operation)) = by_id.get(target) else {
                    problems.push(format!("{at}: no operation {target:?}"));
                    continue;
                };
                let takes = parameter_names(target_path, target_operation);
                let parameters = link.get("parameters").and_then(Value::as_object).cloned().unwrap_or_default();
                if parameters.is_empty() {
                    problems.push(format!("{at}: no parameters"));
                }
                for (parameter, expression) in parameters {
                    if !takes.contains(&parameter) {
                        problems.push(format!("{at}: {target} takes no parameter {parameter}"));
                    }
                    let expression = expression.as_str().unwrap_or_default();
                    let Some(pointer) = expression.strip_prefix("$response.body#/") else {
                        problems.push(format!("{at}: {parameter} = {expression:?} is not a $response.body pointer"));
                        continue;
                    };
                    let schema = response.pointer("/content/application~1json/schema").unwrap_or(&Value::Null);
                    if field(&doc, schema, &pointer.split('/').collect::<Vec<_>>()).is_none() {
                        problems.push(format!("{at}: the answer's schema has no field {pointer}"));
                    }
                }
            }
        }
    }
    assert!(links >= 10, "only {links} links in the document");
    assert!(problems.is_empty(), "links:\n  {}", problems.join("\n  "));
}

/// Every object an answer holds lists its fields and admits no other (`additionalProperties:
/// false`, or `unevaluatedProperties: false` where the object is composed with `allOf` or a
/// `$ref`): a field the server sends that the document does not describe fails the conformance
/// run's schema check instead of passing unseen. Only the free-form maps (tags, data, apn, fcm)
/// admit any key. Request bodies stay open (unknown request fields are ignored).
#[test]
fn every_object_an_answer_holds_admits_only_the_fields_the_document_describes() {
    /// What is open in `schema` (reached at `at`); `closed` when an enclosing schema has
    /// `unevaluatedProperties: false` over this one.
    fn open_objects(doc: &Value, schema: &Value, at: &str, closed: bool, seen: &mut BTreeSet<String>) -> Vec<String> {
        let closes = closed || schema.get("unevaluatedProperties") == Some(&Value::Bool(false));
        let mut found = Vec::new();
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            // A schema is checked once per way of reaching it (closed or not).
            if seen.insert(format!("{target} {closes}")) {
                found.extend(open_objects(doc, resolved(doc, schema), target, closes, seen));
            }
        }
        if schema.get("properties").is_some()
            && !closes
            && schema.get("additionalProperties") != Some(&Value::Bool(false))
        {
            found.push(at.to_owned());
        }
        for (name, property) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            found.extend(open_objects(doc, property, &format!("{at}.{name}"), false, seen));
        }
        if let Some(items) = schema.get("items") {
            found.extend(open_objects(doc, items, &format!("{at}[]"), false, seen));
        }
        for (key, passes) in [("allOf", closes), ("oneOf", false), ("anyOf", false)] {
            for (i, part) in schema.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
                found.extend(open_objects(doc, part, &format!("{at}/{key}/{i}"), passes, seen));
            }
        }
        found
    }

    let doc = document();
    let mut open = BTreeSet::new();
    let mut answers = 0;
    for ((method, path), operation) in operations(&doc) {
        for (status, response) in operation.get("responses").and_then(Value::as_object).into_iter().flatten() {
            let Some(schema) = resolved(&doc, response).pointer("/content/application~1json/schema") else { continue };
            answers += 1;
            let at = format!("{method} {path} {status}");
            open.extend(open_objects(&doc, schema, &at, false, &mut BTreeSet::new()));
        }
    }
    let event = doc.pointer("/components/schemas/OperationEvent").cloned().unwrap_or(Value::Null);
    open.extend(open_objects(&doc, &event, "OperationEvent (webhook)", false, &mut BTreeSet::new()));
    assert!(answers > 100, "only {answers} answers with a JSON body");
    assert!(
        open.is_empty(),
        "objects of answers that admit undocumented fields:\n  {}",
        open.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
