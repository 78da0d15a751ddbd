//! The OpenAPI document (`shared/api/openapi.json`) and the router agree: every route the router serves
//! is described, the document describes no route the router lacks, and the document is
//! well-formed enough for tools (3.1, unique operation ids, responses everywhere, resolvable refs).

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
