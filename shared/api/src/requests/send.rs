//! `POST /v1/PushNotifications`: the JSON body read into the core's [`SendRequest`], every
//! problem reported at once with its path (`to[3].token`, `content.fcm.topic`). The limits and
//! content rules it applies are the core's (`pushgate_core::domain::send`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::whole_number;
use pushgate_core::domain::device_token::parse_token;
use pushgate_core::domain::send::{
    MAX_DATA_KEYS, MAX_RECIPIENTS, MAX_SCHEDULE_AHEAD, MAX_SEND_AT, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS,
    MAX_TOKEN_CHARS, MAX_TTL_SECONDS, MAX_VARIABLE_ENTRIES, MAX_VARIABLES_BYTES, check_collapse_key,
    check_collapse_key_length, check_extra, compile_send, json_len, oversized,
};
use pushgate_core::domain::{
    AppName, Content, CredentialId, FieldError, Priority, Provider, Recipient, SendRequest, SenderSpec, Senders,
    Timestamp, UserId,
};

/// A send body as received: the JSON and the instant it arrived (`schedule.sendAt` must be
/// after it and at most 7 days ahead).
pub struct SendBody {
    pub json: Value,
    pub received_at: Timestamp,
}

impl TryFrom<SendBody> for SendRequest {
    type Error = Vec<FieldError>;

    /// Reads and validates the body (taking ownership: recipients' variables move, not copy).
    fn try_from(SendBody { json, received_at }: SendBody) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Value::Object(mut obj) = json else {
            return Err(vec![FieldError::new("", "body must be a JSON object")]);
        };
        let to = parse_to(obj.remove("to"), &mut errors);
        let content = parse_content(obj.get("content"), &mut errors);
        let from = parse_from(obj.get("from"), &mut errors);
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => Priority::High,
            Some(Value::String(s)) if s == "HIGH" => Priority::High,
            Some(Value::String(s)) if s == "LOW" => Priority::Low,
            Some(_) => {
                errors.push(FieldError::new("priority", "must be one of HIGH, LOW"));
                Priority::High
            }
        };
        let sound = match obj.get("sound") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::new("sound", "must be a non-empty string of at most 256 bytes, or null"));
                None
            }
        };
        let send_at = parse_schedule(obj.get("schedule"), received_at, &mut errors);
        let tags = parse_tags(obj.get("tags"), &mut errors);
        let content = Arc::new(content);
        match compile_send(&content, &tags, &mut errors) {
            Some(_) if errors.is_empty() => Ok(SendRequest { to, content, from, priority, sound, send_at, tags }),
            _ => Err(errors),
        }
    }
}

fn parse_to(value: Option<Value>, errors: &mut Vec<FieldError>) -> Vec<Recipient> {
    let Some(value) = value else {
        errors.push(FieldError::new("to", "is required"));
        return Vec::new();
    };
    let Value::Array(items) = value else {
        errors.push(FieldError::new("to", "must be an array of recipients"));
        return Vec::new();
    };
    if items.is_empty() || items.len() > MAX_RECIPIENTS {
        errors.push(FieldError::new("to", format!("must hold 1 to {MAX_RECIPIENTS} recipients")));
        if items.len() > MAX_RECIPIENTS {
            return Vec::new();
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let field = |name: &str| format!("to[{i}].{name}");
        let Value::Object(mut r) = item else {
            errors.push(FieldError::new(format!("to[{i}]"), "must be an object"));
            continue;
        };
        let variables = match r.remove("variables") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => {
                if let Some(path) = oversized(&m, "") {
                    errors.push(FieldError::new(
                        format!("{}{path}", field("variables")),
                        format!("objects and arrays may hold at most {MAX_VARIABLE_ENTRIES} entries"),
                    ));
                } else if json_len(&m) > MAX_VARIABLES_BYTES {
                    errors.push(FieldError::new(
                        field("variables"),
                        format!("may be at most {MAX_VARIABLES_BYTES} bytes as JSON"),
                    ));
                }
                m
            }
            Some(_) => {
                errors.push(FieldError::new(field("variables"), "must be an object"));
                Map::new()
            }
        };
        // As everywhere in the body, a null field is an absent one.
        let given = |name: &str| r.get(name).filter(|v| !v.is_null());
        if let Some(user) = given("userId") {
            if given("token").is_some() || given("provider").is_some() {
                errors.push(FieldError::new(format!("to[{i}]"), "give either userId or token and provider, not both"));
                continue;
            }
            match user.as_str().map(UserId::parse) {
                Some(Ok(user_id)) => out.push(Recipient::User { user_id, variables }),
                _ => errors.push(FieldError::new(field("userId"), format!("must match {}", UserId::PATTERN))),
            }
            continue;
        }
        let provider = match r.get("provider") {
            Some(Value::String(p)) => Provider::parse(p),
            _ => None,
        };
        let token = match r.remove("token") {
            Some(Value::String(t)) => match parse_token(&t, provider) {
                Ok(_) => Some(t),
                Err(e) => {
                    errors.push(FieldError::new(field("token"), e.to_string()));
                    None
                }
            },
            None => {
                errors.push(FieldError::new(field("token"), "is required (or give a userId)"));
                None
            }
            Some(_) => {
                errors.push(FieldError::new(
                    field("token"),
                    format!("must be a non-empty string of at most {MAX_TOKEN_CHARS} characters"),
                ));
                None
            }
        };
        if provider.is_none() {
            errors.push(FieldError::new(field("provider"), "must be one of APN, FCM"));
        }
        if let (Some(token), Some(provider)) = (token, provider) {
            out.push(Recipient::Device { token, provider, variables });
        }
    }
    out
}

fn parse_content(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Content {
    let mut content = Content::default();
    let Some(value) = value else {
        errors.push(FieldError::new("content", "is required"));
        return content;
    };
    let Some(c) = value.as_object() else {
        errors.push(FieldError::new("content", "must be an object"));
        return content;
    };
    let mut string = |name: &str| -> Option<String> {
        match c.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::new(format!("content.{name}"), "must be a string"));
                None
            }
        }
    };
    content.title = string("title");
    content.body = string("body");
    content.image = string("image");
    content.collapse_key = string("collapseKey");
    if let Some(image) = &content.image
        && !image.contains("{{")
        && !image.contains("{%")
        && !url::Url::parse(image).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        errors.push(FieldError::new("content.image", "must be an absolute http(s) URL"));
    }
    if let Some(key) = &content.collapse_key {
        // A template is checked again once rendered, per recipient.
        let fixed = !key.contains("{{") && !key.contains("{%");
        let checked = if fixed { check_collapse_key(key) } else { check_collapse_key_length(key) };
        if let Err(problem) = checked {
            errors.push(FieldError::new("content.collapseKey", problem));
        }
    }
    match c.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if m.len() > MAX_DATA_KEYS {
                errors.push(FieldError::new("content.data", format!("may hold at most {MAX_DATA_KEYS} keys")));
            }
            let mut data = BTreeMap::new();
            for (k, v) in m.iter().take(MAX_DATA_KEYS) {
                match v.as_str() {
                    Some(s) => {
                        data.insert(k.clone(), s.to_owned());
                    }
                    None => errors.push(FieldError::new(format!("content.data.{k}"), "must be a string")),
                }
            }
            content.data = Some(data);
        }
        Some(_) => errors.push(FieldError::new("content.data", "must be an object of string values")),
    }
    for (name, slot, max) in
        [("badge", &mut content.badge, u64::from(u32::MAX)), ("ttl", &mut content.ttl, MAX_TTL_SECONDS)]
    {
        match c.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => match whole_number(v, max).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => *slot = Some(n),
                None => errors
                    .push(FieldError::new(format!("content.{name}"), format!("must be an integer from 0 to {max}"))),
            },
        }
    }
    for (name, slot) in
        [("contentAvailable", &mut content.content_available), ("mutableContent", &mut content.mutable_content)]
    {
        match c.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => *slot = Some(*b),
            Some(_) => errors.push(FieldError::new(format!("content.{name}"), "must be a boolean")),
        }
    }
    for (name, slot) in [("apn", &mut content.apn), ("fcm", &mut content.fcm)] {
        match c.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                check_extra(name, m, errors);
                *slot = Some(m.clone());
            }
            Some(_) => errors.push(FieldError::new(format!("content.{name}"), "must be an object")),
        }
    }
    let present = ["title", "body", "data", "contentAvailable"].iter().any(|k| c.get(*k).is_some_and(|v| !v.is_null()));
    if !present {
        errors.push(FieldError::new("content", "needs at least one of title, body, data, contentAvailable"));
    }
    content
}

fn parse_from(value: Option<&Value>, errors: &mut Vec<FieldError>) -> SenderSpec {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return SenderSpec::DefaultApp;
    };
    let Some(f) = value.as_object() else {
        errors.push(FieldError::new("from", "must be an object"));
        return SenderSpec::DefaultApp;
    };
    if let Some(app) = f.get("appName") {
        if f.contains_key("apn") || f.contains_key("fcm") {
            errors.push(FieldError::new("from", "give either appName or credential ids, not both"));
        }
        return match app.as_str().map(AppName::parse) {
            Some(Ok(name)) => SenderSpec::App(name),
            _ => {
                errors.push(FieldError::new("from.appName", format!("must match {}", AppName::PATTERN)));
                SenderSpec::DefaultApp
            }
        };
    }
    let mut senders = Senders::default();
    for (name, slot) in [("apn", &mut senders.apn), ("fcm", &mut senders.fcm)] {
        match f.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_str().map(CredentialId::parse) {
                Some(Ok(id)) => *slot = Some(id),
                _ => errors
                    .push(FieldError::new(format!("from.{name}"), format!("must match {}", CredentialId::PATTERN))),
            },
        }
    }
    if senders.apn.is_none() && senders.fcm.is_none() {
        errors.push(FieldError::new("from", "must name an appName or at least one of apn, fcm"));
    }
    SenderSpec::Credentials(senders)
}

fn parse_schedule(value: Option<&Value>, now: Timestamp, errors: &mut Vec<FieldError>) -> Vec<Timestamp> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(items) = value.as_object().and_then(|s| s.get("sendAt")).and_then(Value::as_array) else {
        errors.push(FieldError::new("schedule.sendAt", "must be an array of RFC 3339 date-times"));
        return Vec::new();
    };
    if items.is_empty() || items.len() > MAX_SEND_AT {
        errors.push(FieldError::new("schedule.sendAt", format!("must hold 1 to {MAX_SEND_AT} date-times")));
    }
    let mut out: Vec<Timestamp> = Vec::new();
    for (i, item) in items.iter().enumerate().take(MAX_SEND_AT) {
        let field = format!("schedule.sendAt[{i}]");
        let Some(at) = item.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) else {
            errors.push(FieldError::new(field, "must be an RFC 3339 date-time with an offset"));
            continue;
        };
        let at = at.with_timezone(&Utc);
        if at <= now {
            errors.push(FieldError::new(field, "must be in the future"));
        } else if at > now + MAX_SCHEDULE_AHEAD {
            errors.push(FieldError::new(field, "must be at most 7 days ahead"));
        } else if out.contains(&at) {
            errors.push(FieldError::new(field, "repeats an earlier instant"));
        } else {
            out.push(at);
        }
    }
    out
}

fn parse_tags(value: Option<&Value>, errors: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return tags;
    };
    let Some(m) = value.as_object() else {
        errors.push(FieldError::new("tags", "must be an object of string values"));
        return tags;
    };
    if m.len() > MAX_TAGS {
        errors.push(FieldError::new("tags", format!("may hold at most {MAX_TAGS} pairs")));
    }
    for (k, v) in m {
        let field = format!("tags.{k}");
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY_CHARS {
            errors.push(FieldError::new(field.clone(), format!("key must be 1 to {MAX_TAG_KEY_CHARS} characters")));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= MAX_TAG_VALUE_CHARS => {
                tags.insert(k.clone(), s.to_owned());
            }
            Some(_) => {
                errors.push(FieldError::new(field, format!("value must be at most {MAX_TAG_VALUE_CHARS} characters")))
            }
            None => errors.push(FieldError::new(field, "value must be a string")),
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_core::domain::CompiledContent;
    use serde_json::json;

    /// The request and its compiled templates, as the dispatcher will render them.
    fn parse_send(json: Value, received_at: Timestamp) -> Result<(SendRequest, CompiledContent), Vec<FieldError>> {
        let request = SendRequest::try_from(SendBody { json, received_at })?;
        let compiled = CompiledContent::compile(&request.content, &request.tags).expect("compiled once already");
        Ok((request, compiled))
    }

    fn now() -> Timestamp {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").expect("valid").with_timezone(&Utc)
    }

    fn fields(body: Value) -> Vec<String> {
        match parse_send(body, now()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    /// A well-formed APNs device token (32 bytes of hex, like Apple's).
    const APN_TOKEN: &str = "5d4a1b0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b";

    fn valid() -> Value {
        json!({
            "to": [{"token": APN_TOKEN, "provider": "APN"}, {"token": "fcm-def:APA91b", "provider": "FCM", "variables": {"name": "Ada"}}],
            "content": {"title": "Hi {{ name }}", "body": "Boarding"},
        })
    }

    #[test]
    fn twilios_documented_example_request_is_valid() {
        // The tokens of Twilio's documented example are placeholders; its APN one (`utJXX2Tr9wN`) is not hex, so
        // a well-formed 32-byte token stands in for it. The FCM placeholder is FCM-shaped as is.
        let body = json!({
            "from": {"fcm": "comms_credential_01h9krwprkeee8fzqspvwy6nq8", "apn": "comms_credential_8qn6ywvpsqzf8eeekrpwrk9h10"},
            "to": [{"token": "dqWD7WEC83K41WHyufTS7:APA91bFc", "provider": "FCM"}, {"token": APN_TOKEN, "provider": "APN"}],
            "content": {"title": "Boarding time @ TLL", "body": "Dear customer, you have 1 hour until boarding time at the Tallinn airport"},
            "priority": "HIGH",
            "sound": "ring",
        });
        let (req, _) = parse_send(body, now()).expect("valid");
        assert_eq!(req.to.len(), 2);
        assert_eq!(req.sound.as_deref(), Some("ring"));
        assert!(matches!(req.from, SenderSpec::Credentials(Senders { apn: Some(_), fcm: Some(_) })));
    }

    #[test]
    fn every_field_problem_is_reported_at_once() {
        let body = json!({
            "to": [{"token": "", "provider": "WEB"}, "nope", {"userId": "u1"}],
            "content": {"title": 5, "ttl": -1, "badge": "x", "collapseKey": "k".repeat(65), "image": "not a url"},
            "priority": "URGENT",
            "tags": {"a": 1},
        });
        let fields = fields(body);
        for expected in [
            "to[0].token",
            "to[0].provider",
            "to[1]",
            "to[2].userId",
            "content.title",
            "content.ttl",
            "content.badge",
            "content.collapseKey",
            "content.image",
            "priority",
            "tags.a",
        ] {
            assert!(fields.iter().any(|f| f == expected), "missing {expected} in {fields:?}");
        }
    }

    #[test]
    fn validation_rules_each_reject_their_bad_input() {
        let cases: Vec<(&str, Value)> = vec![
            ("to", json!({"content": {"title": "x"}})),
            ("to", json!({"to": [], "content": {"title": "x"}})),
            ("to", json!({"to": "abc", "content": {"title": "x"}})),
            ("to[0].token", json!({"to": [{"token": "x".repeat(4097), "provider": "APN"}], "content": {"title": "x"}})),
            ("to[0].token", json!({"to": [{"provider": "APN"}], "content": {"title": "x"}})),
            (
                "to[0].variables",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN", "variables": [1]}], "content": {"title": "x"}}),
            ),
            (
                "to[0].variables.big",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN", "variables": {"big": vec![0; 1001]}}], "content": {"title": "x"}}),
            ),
            (
                "to[0]",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN", "userId": "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8"}], "content": {"title": "x"}}),
            ),
            ("content", json!({"to": [{"token": APN_TOKEN, "provider": "APN"}]})),
            (
                "content",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"image": "https://x.test/a.png"}}),
            ),
            ("content.data.k", json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"data": {"k": 1}}})),
            (
                "content.ttl",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x", "ttl": 2_419_201}}),
            ),
            (
                "content.contentAvailable",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x", "contentAvailable": "yes"}}),
            ),
            (
                "content.apn",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x", "apn": 3}}),
            ),
            ("content.title", json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "{{ x "}})),
            (
                "content.body",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"body": "{% for i in (1..100000000) %}x{% endfor %}"}}),
            ),
            (
                "from.apn",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "from": {"apn": "cred"}}),
            ),
            (
                "from.appName",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "from": {"appName": "Bad-Name"}}),
            ),
            ("from", json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "from": {}})),
            ("sound", json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "sound": 3})),
            (
                "tags",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "tags": (0..11).map(|i| (format!("k{i}"), json!("v"))).collect::<Map<_, _>>()}),
            ),
            (
                "tags.k",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "tags": {"k": "v".repeat(257)}}),
            ),
            (
                "tags.k",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "tags": {"k": "{% if %}"}}),
            ),
            (
                "schedule.sendAt",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "schedule": {"sendAt": []}}),
            ),
            (
                "schedule.sendAt[0]",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "schedule": {"sendAt": ["2026-11-27T09:00:00Z"]}}),
            ),
            (
                "schedule.sendAt[0]",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "schedule": {"sendAt": ["2026-12-05T10:00:00Z"]}}),
            ),
            (
                "schedule.sendAt[0]",
                json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": {"title": "x"}, "schedule": {"sendAt": ["2026-11-28 10:00"]}}),
            ),
        ];
        for (field, body) in cases {
            let got = fields(body.clone());
            assert!(got.iter().any(|f| f == field), "expected an error on {field} for {body}, got {got:?}");
        }
    }

    /// `ttl` and `badge` are integers by the contract, and so by JSON Schema `706.0`, `7.06e2` and
    /// `-0.0` are too: the server reads them as the whole numbers they are. A fraction, a negative,
    /// a number past the field's maximum or a string stays a 400 naming the field.
    #[test]
    fn an_integer_field_accepts_a_number_with_a_zero_fraction_and_refuses_one_with_a_fraction() {
        let with = |content: Value| json!({"to": [{"token": APN_TOKEN, "provider": "APN"}], "content": content});
        for (ttl, badge, expected) in [
            (json!(706.0), json!(1.0), (706, 1)),
            (json!(7.06e2), json!(-0.0), (706, 0)),
            (json!(2_419_200.0), json!(4_294_967_295.0), (2_419_200, 4_294_967_295)),
            (json!(0), json!(3), (0, 3)),
        ] {
            let body = with(json!({"title": "x", "ttl": ttl, "badge": badge}));
            let (request, _) = parse_send(body.clone(), now()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!((request.content.ttl, request.content.badge), (Some(expected.0), Some(expected.1)), "{body}");
        }
        for (field, value) in [
            ("ttl", json!(1.5)),
            ("badge", json!(1.5)),
            ("ttl", json!(706.000_1)),
            ("ttl", json!(-1.0)),
            ("badge", json!(-1)),
            ("ttl", json!(2_419_201.0)),
            ("badge", json!(4_294_967_296.0)),
            ("badge", json!(1e300)),
            ("ttl", json!("706")),
        ] {
            let body = with(json!({"title": "x", field: value}));
            let errors = SendRequest::try_from(SendBody { json: body.clone(), received_at: now() })
                .err()
                .unwrap_or_else(|| panic!("{body} was accepted"));
            let found: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
            let expected = format!("content.{field}");
            assert!(
                matches!(found.as_slice(), [(f, m)] if *f == expected && m.contains("integer from 0 to")),
                "{body}: {found:?}"
            );
        }
    }

    /// In a recipient, as everywhere else in the body, a `null` field is an absent one: `userId: null`
    /// beside a token and provider leaves a device recipient, `token: null, provider: null` beside a
    /// `userId` a User recipient (the contract says each of them may be null there).
    #[test]
    fn a_null_field_of_a_recipient_counts_as_absent() {
        let user = "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8";
        let body = json!({
            "to": [{"token": APN_TOKEN, "provider": "APN", "userId": null}, {"userId": user, "token": null, "provider": null}],
            "content": {"title": "x"},
        });
        let (request, _) = parse_send(body, now()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            matches!(request.to.as_slice(), [Recipient::Device { .. }, Recipient::User { .. }]),
            "{:?}",
            request.to
        );
        let nobody = json!({"to": [{"userId": null}], "content": {"title": "x"}});
        assert_eq!(fields(nobody), ["to[0].token", "to[0].provider"]);
        let both = json!({"to": [{"userId": user, "token": APN_TOKEN, "provider": null}], "content": {"title": "x"}});
        assert_eq!(fields(both), ["to[0]"]);
    }

    #[test]
    fn more_than_ten_thousand_recipients_are_refused() {
        let to: Vec<Value> = (0..10_001).map(|i| json!({"token": format!("fcm-t{i}"), "provider": "FCM"})).collect();
        assert_eq!(fields(json!({"to": to, "content": {"title": "x"}})), vec!["to".to_owned()]);
    }

    #[test]
    fn a_valid_request_compiles_templates_that_render_per_recipient() {
        let (req, compiled) = parse_send(valid(), now()).expect("valid");
        let Recipient::Device { variables, .. } = &req.to[1] else { panic!("device recipient") };
        let (content, _) = compiled.render(variables).expect("renders");
        assert_eq!(content.title.as_deref(), Some("Hi Ada"));
        assert_eq!(req.priority, Priority::High);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut body = valid();
        body["futureField"] = json!({"x": 1});
        assert!(parse_send(body, now()).is_ok());
    }

    #[test]
    fn device_tokens_must_have_their_providers_format() {
        let cases: Vec<(String, &str, bool)> = vec![
            ("../../../admin?x=1".to_owned(), "APN", false),
            ("ab".to_owned(), "APN", false),
            ("ab".repeat(15), "APN", false),
            ("ab".repeat(16), "APN", true),
            ("AB".repeat(32), "APN", true),
            ("ab".repeat(100), "APN", true),
            ("ab".repeat(101), "APN", false),
            (format!("{}a", "ab".repeat(32)), "APN", false),
            ("zz".repeat(32), "APN", false),
            ("dqWD7WEC83K41WHyufTS7:APA91bFc_x-y.z".to_owned(), "FCM", true),
            ("fcm token".to_owned(), "FCM", false),
            ("tok\n".to_owned(), "FCM", false),
            ("a/b".to_owned(), "FCM", false),
            ("a?b".to_owned(), "FCM", false),
            ("x".repeat(4096), "FCM", true),
            ("x".repeat(4097), "FCM", false),
        ];
        for (token, provider, valid) in cases {
            let body = json!({"to": [{"token": &token, "provider": provider}], "content": {"title": "x"}});
            let got = fields(body);
            assert_eq!(got.is_empty(), valid, "{provider} {token:?}: {got:?}");
            if !valid {
                assert_eq!(got, ["to[0].token"], "{provider} {token:?}");
            }
        }
    }

    #[test]
    fn content_fcm_may_not_set_who_receives_the_message() {
        for key in ["token", "topic", "condition", "fid", "name"] {
            let body = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", "fcm": {key: "v"}}});
            assert_eq!(fields(body), [format!("content.fcm.{key}")], "{key}");
        }
        let allowed = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", "fcm": {"android": {"priority": "NORMAL"}, "webpush": {"headers": {"Urgency": "high"}}}}});
        assert!(fields(allowed).is_empty());
    }

    #[test]
    fn content_apn_and_fcm_are_bounded_in_depth_and_serialized_size() {
        let nested = |levels: usize| (0..levels).fold(json!("leaf"), |inner, _| json!({ "a": inner }));
        for name in ["apn", "fcm"] {
            let ok = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", name: nested(8)}});
            assert!(fields(ok).is_empty(), "{name}: 8 levels are fine");
            let deep = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", name: nested(9)}});
            assert_eq!(fields(deep), [format!("content.{name}")], "{name}: 9 levels");
            let big = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", name: {"k": "v".repeat(4096)}}});
            assert_eq!(fields(big), [format!("content.{name}")], "{name}: over 4,096 bytes");
        }
    }

    #[test]
    fn a_static_collapse_key_with_control_characters_is_refused() {
        for key in ["a\r\nx-evil: 1", "a\u{0}", "tab\there", "del\u{7f}"] {
            let body = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", "collapseKey": key}});
            assert_eq!(fields(body), ["content.collapseKey"], "{key:?}");
        }
    }

    #[test]
    fn a_collapse_key_rendering_control_characters_fails_that_recipient() {
        let body = json!({"to": [{"token": "ab".repeat(32), "provider": "APN"}], "content": {"title": "x", "collapseKey": "{{ k }}"}});
        let (_, compiled) = parse_send(body, now()).expect("valid");
        let vars = |k: &str| json!({"k": k}).as_object().cloned().unwrap_or_default();
        assert!(compiled.render(&vars("fine")).is_ok());
        let error = compiled.render(&vars("a\r\nx-evil: 1")).expect_err("refused");
        assert!(error.0.starts_with("content.collapseKey"), "{error:?}");
    }
}
