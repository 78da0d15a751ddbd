//! The send request as a command, and the rules its content obeys: limits, templates
//! compiled once and rendered per recipient, what a provider payload can hold. The API crate
//! reads the JSON body into a [`SendRequest`] (`pushgate_api::requests`), calling these rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use serde_json::{Map, Value};

use super::ids::{AppName, UserId};
use super::model::{Content, Priority, Provider, Senders, Timestamp};
use super::template::{Globals, RenderError, RenderScope, Template};

/// Most recipients one send may address.
pub const MAX_RECIPIENTS: usize = 10_000;
pub use super::device_token::MAX_TOKEN_CHARS;
/// Most tags on one send.
pub const MAX_TAGS: usize = 10;
/// Longest tag key (chars).
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value (chars).
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Longest collapse key (bytes).
pub const MAX_COLLAPSE_KEY_BYTES: usize = 64;
/// Largest ttl (28 days, the providers' maximum).
pub const MAX_TTL_SECONDS: u64 = 2_419_200;
/// Most `sendAt` instants.
pub const MAX_SEND_AT: usize = 10;
/// How far ahead a send may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(7);
/// Most entries in any object or array inside a recipient's `variables` (bounds template loops).
pub const MAX_VARIABLE_ENTRIES: usize = 1000;
/// Largest `variables` of one recipient, as JSON.
pub const MAX_VARIABLES_BYTES: usize = 16 * 1024;
/// Largest `content` plus `tags` of a send, as JSON (the templates, before rendering).
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Most keys in `content.data`.
pub const MAX_DATA_KEYS: usize = 100;
/// The providers' payload limit (APNs 4,096 bytes; FCM 4,096 bytes): content whose static parts
/// alone are larger can never be delivered.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Deepest nesting of `content.apn` / `content.fcm` (each object or array is one level).
pub const MAX_EXTRA_DEPTH: usize = 8;
/// Largest serialized `content.apn` / `content.fcm`: they merge into a payload of at most
/// 4,096 bytes.
pub const MAX_EXTRA_BYTES: usize = 4096;
/// FCM `message` fields `content.fcm` may not set: the target (`token`, `topic`, `condition`,
/// `fid`) decides who receives the message, and pushgate sends each message to its recipient's
/// token only; `name` is set by FCM.
pub const FCM_RESERVED_FIELDS: [&str; 5] = ["token", "topic", "condition", "fid", "name"];

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON-path-like field name (`to[3].provider`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A recipient of a send.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    /// A device token.
    Device {
        /// Token as given.
        token: String,
        provider: Provider,
        /// Template variables.
        variables: Map<String, Value>,
    },
    /// Every device of a User.
    User {
        user_id: UserId,
        /// Template variables.
        variables: Map<String, Value>,
    },
}

/// Who sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderSpec {
    /// The account's default App.
    DefaultApp,
    /// Explicit credentials per provider.
    Credentials(Senders),
    /// The named App's default credentials.
    App(AppName),
}

/// A validated send request.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Recipients, in request order.
    pub to: Vec<Recipient>,
    /// Content templates (strings are Liquid sources), shared by every chunk of the send.
    pub content: Arc<Content>,
    /// Sender.
    pub from: SenderSpec,
    pub priority: Priority,
    pub sound: Option<String>,
    /// `schedule.sendAt` instants (empty: send now).
    pub send_at: Vec<Timestamp>,
    /// Tag templates.
    pub tags: BTreeMap<String, String>,
}

/// The templates of a send, parsed once and rendered per recipient.
#[derive(Debug, Clone)]
pub struct CompiledContent {
    base: Arc<Content>,
    title: Option<Template>,
    body: Option<Template>,
    image: Option<Template>,
    collapse_key: Option<Template>,
    data: Vec<(String, Template)>,
    tags: Vec<(String, Template)>,
    /// Does any content field need rendering per recipient?
    content_dynamic: bool,
    /// Does any field, tags included?
    dynamic: bool,
}

impl CompiledContent {
    /// Parses every template of `content` and `tags`; errors name the field.
    pub fn compile(content: &Arc<Content>, tags: &BTreeMap<String, String>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut parse = |field: String, source: &str| match Template::parse(source) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(FieldError::new(field, format!("invalid Liquid template: {e}")));
                None
            }
        };
        let title = content.title.as_deref().and_then(|s| parse("content.title".into(), s));
        let body = content.body.as_deref().and_then(|s| parse("content.body".into(), s));
        let image = content.image.as_deref().and_then(|s| parse("content.image".into(), s));
        let collapse_key = content.collapse_key.as_deref().and_then(|s| parse("content.collapseKey".into(), s));
        let data = content
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| parse(format!("content.data.{k}"), v).map(|t| (k.clone(), t)))
            .collect();
        let tags = tags.iter().filter_map(|(k, v)| parse(format!("tags.{k}"), v).map(|t| (k.clone(), t))).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut compiled = Self {
            base: content.clone(),
            title,
            body,
            image,
            collapse_key,
            data,
            tags,
            content_dynamic: false,
            dynamic: false,
        };
        let content_dynamic = compiled.content_templates().any(Template::is_dynamic);
        let dynamic = compiled.templates().any(Template::is_dynamic);
        compiled.content_dynamic = content_dynamic;
        compiled.dynamic = dynamic;
        Ok(compiled)
    }

    fn content_templates(&self) -> impl Iterator<Item = &Template> {
        [&self.title, &self.body, &self.image, &self.collapse_key]
            .into_iter()
            .flatten()
            .chain(self.data.iter().map(|(_, t)| t))
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.content_templates().chain(self.tags.iter().map(|(_, t)| t))
    }

    /// Are the tags the same for every recipient (no tag value needs rendering)?
    pub fn tags_are_static(&self) -> bool {
        self.tags.iter().all(|(_, t)| !t.is_dynamic())
    }

    /// Does any field need rendering per recipient?
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// The least any recipient's payload can weigh: the JSON of the parts that are the same for
    /// everyone (static fields and `data` values; every `data` key), then that plus `apn`, and
    /// plus `fcm`.
    pub fn static_bytes(&self) -> (usize, usize, usize) {
        let fixed = |t: &Option<Template>| t.as_ref().filter(|t| !t.is_dynamic()).map(|t| t.source().to_owned());
        let common = Content {
            title: fixed(&self.title),
            body: fixed(&self.body),
            image: fixed(&self.image),
            collapse_key: fixed(&self.collapse_key),
            data: self.base.data.as_ref().map(|_| {
                self.data
                    .iter()
                    .map(|(k, t)| (k.clone(), if t.is_dynamic() { String::new() } else { t.source().to_owned() }))
                    .collect()
            }),
            apn: None,
            fcm: None,
            ..(*self.base).clone()
        };
        let common = json_len(&common);
        (common, common + json_len(&self.base.apn), common + json_len(&self.base.fcm))
    }

    /// Renders content and tags for one recipient (its variables are converted once, and every
    /// field draws from one render budget). Content without templates is shared, not copied.
    pub fn render(
        &self,
        variables: &Map<String, Value>,
    ) -> Result<(Arc<Content>, BTreeMap<String, String>), RenderError> {
        let _budget = RenderScope::enter();
        let globals = if self.dynamic {
            Some(Globals::new(variables, self.templates().filter(|t| t.is_dynamic()))?)
        } else {
            None
        };
        let render = |t: &Template| match &globals {
            Some(g) => t.render_with(g),
            None => Ok(t.source().to_owned()),
        };
        let field = |name: &str, t: &Option<Template>| -> Result<Option<String>, RenderError> {
            t.as_ref().map(|t| render(t).map_err(|e| RenderError(format!("{name}: {e}")))).transpose()
        };
        let mut tags = BTreeMap::new();
        for (k, t) in &self.tags {
            let value = render(t).map_err(|e| RenderError(format!("tags.{k}: {e}")))?;
            if value.chars().count() > MAX_TAG_VALUE_CHARS {
                return Err(RenderError(format!("tags.{k}: longer than {MAX_TAG_VALUE_CHARS} characters")));
            }
            tags.insert(k.clone(), value);
        }
        if !self.content_dynamic {
            return Ok((self.base.clone(), tags));
        }
        let mut content = (*self.base).clone();
        content.title = field("content.title", &self.title)?;
        content.body = field("content.body", &self.body)?;
        content.image = field("content.image", &self.image)?;
        content.collapse_key = field("content.collapseKey", &self.collapse_key)?;
        if let Some(Err(problem)) = content.collapse_key.as_deref().map(check_collapse_key) {
            return Err(RenderError(format!("content.collapseKey: {problem}")));
        }
        if self.base.data.is_some() {
            let mut data = BTreeMap::new();
            for (k, t) in &self.data {
                data.insert(k.clone(), render(t).map_err(|e| RenderError(format!("content.data.{k}: {e}")))?);
            }
            content.data = Some(data);
        }
        Ok((Arc::new(content), tags))
    }
}

/// The exact length of `value` serialized as JSON, without allocating it.
pub fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing plain data into a counter cannot fail; an error would only undercount.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A collapse key becomes the `apns-collapse-id` header: at most 64 bytes, no control
/// characters.
pub fn check_collapse_key(key: &str) -> Result<(), String> {
    check_collapse_key_length(key)?;
    if key.chars().any(char::is_control) {
        return Err("may not contain control characters".into());
    }
    Ok(())
}

/// The length part of [`check_collapse_key`], for a key that is still a template (checked in
/// full once rendered).
pub fn check_collapse_key_length(key: &str) -> Result<(), String> {
    if key.len() > MAX_COLLAPSE_KEY_BYTES {
        return Err(format!("must be at most {MAX_COLLAPSE_KEY_BYTES} bytes"));
    }
    Ok(())
}

/// Checks a send's content and tags as a whole (their size as JSON, their templates, whether
/// the parts that are the same for everyone already exceed a payload) and compiles them; every
/// problem goes to `errors`.
pub fn compile_send(
    content: &Arc<Content>,
    tags: &BTreeMap<String, String>,
    errors: &mut Vec<FieldError>,
) -> Option<CompiledContent> {
    let size = json_len(content) + json_len(tags);
    if size > MAX_CONTENT_BYTES {
        // Larger than any chunk may carry; not worth compiling.
        errors.push(FieldError::new(
            "content",
            format!("content and tags are {size} bytes as JSON; the limit is {MAX_CONTENT_BYTES}"),
        ));
        return None;
    }
    match CompiledContent::compile(content, tags) {
        Ok(c) => {
            check_fits(&c, errors);
            Some(c)
        }
        Err(mut e) => {
            errors.append(&mut e);
            None
        }
    }
}

/// Content whose parts that are the same for every recipient already exceed the providers'
/// payload limit can never be delivered: refused at send rather than failed per recipient.
fn check_fits(compiled: &CompiledContent, errors: &mut Vec<FieldError>) {
    let (common, apn, fcm) = compiled.static_bytes();
    for (field, size) in [("content", common), ("content.apn", apn), ("content.fcm", fcm)] {
        // An object already refused for its own size is not reported twice.
        if size > MAX_PAYLOAD_BYTES && !errors.iter().any(|e| e.field == field) {
            errors.push(FieldError::new(
                field,
                format!(
                    "can never fit a notification: its fixed parts alone are {size} bytes and providers accept \
                     {MAX_PAYLOAD_BYTES}"
                ),
            ));
            return;
        }
    }
}

/// Path of the first object/array in `m` with more than [`MAX_VARIABLE_ENTRIES`] entries.
pub fn oversized(m: &Map<String, Value>, path: &str) -> Option<String> {
    if m.len() > MAX_VARIABLE_ENTRIES {
        return Some(path.to_owned());
    }
    m.iter().find_map(|(k, v)| oversized_value(v, &format!("{path}.{k}")))
}

fn oversized_value(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Object(m) => oversized(m, path),
        Value::Array(a) if a.len() > MAX_VARIABLE_ENTRIES => Some(path.to_owned()),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| oversized_value(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Bounds `content.apn` / `content.fcm` (depth, serialized size) and keeps `content.fcm` from
/// addressing the message.
pub fn check_extra(name: &str, extra: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let field = format!("content.{name}");
    if depth(extra) > MAX_EXTRA_DEPTH {
        errors.push(FieldError::new(&field, format!("may nest objects and arrays at most {MAX_EXTRA_DEPTH} deep")));
    } else if serde_json::to_vec(extra).map_or(usize::MAX, |b| b.len()) > MAX_EXTRA_BYTES {
        errors.push(FieldError::new(&field, format!("must serialize to at most {MAX_EXTRA_BYTES} bytes")));
    }
    if name == "fcm" {
        for key in FCM_RESERVED_FIELDS.into_iter().filter(|k| extra.contains_key(*k)) {
            let message = if key == "name" {
                "may not be set: FCM sets a message's name"
            } else {
                "may not be set: it chooses who receives the message, and pushgate sends each message to \
                 its recipient's token"
            };
            errors.push(FieldError::new(format!("{field}.{key}"), message));
        }
    }
}

/// Levels of objects and arrays in `m` (itself one).
fn depth(m: &Map<String, Value>) -> usize {
    fn value_depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => depth(m),
            Value::Array(a) => 1 + a.iter().map(value_depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + m.values().map(value_depth).max().unwrap_or(0)
}
