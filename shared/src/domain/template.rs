//! Liquid templates with bounded work.
//!
//! Every string field of a send is a Liquid template. A template is parsed once per request (or
//! per queued chunk) and rendered once per recipient. Rendering is a place where a hostile request
//! could burn a worker, so the parser here is the Liquid stdlib with these changes:
//!
//! - no `include`, `render` (no file system) and no `capture` (it buffers outside the output cap);
//! - `for`/`tablerow` ranges must be integer literals spanning at most [`MAX_LOOP_ITERATIONS`]
//!   (liquid materialises a range before iterating, so `(1..100000000)` must never reach it),
//!   every loop is capped at that many iterations, and loops nest at most [`MAX_LOOP_DEPTH`] deep;
//! - every filter result is size-checked (strings ≤ [`MAX_VALUE_BYTES`], arrays ≤
//!   [`MAX_LOOP_ITERATIONS`] items), so repeated `append`/`concat` cannot grow without bound;
//! - output per field is capped at [`MAX_OUTPUT_BYTES`] and each render has a time budget checked
//!   on every write and filter call.
//!
//! A variable missing from the recipient's `variables` renders empty.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use liquid_core::parser::FilterArguments;
use liquid_core::{Filter, FilterReflection, ParseFilter, Runtime, Value, ValueView};
use liquid_lib::stdlib;
use regex::Regex;

/// Rendered output of one field may not exceed this many bytes.
pub const MAX_OUTPUT_BYTES: usize = 4096;
/// Template source of one field may not exceed this many bytes.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// A filter may not produce a string larger than this.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// A loop runs at most this many times; a literal range may span at most this many values.
pub const MAX_LOOP_ITERATIONS: u64 = 1000;
/// Loops nest at most this deep.
pub const MAX_LOOP_DEPTH: usize = 2;
/// Wall-clock budget for rendering one field.
pub const RENDER_BUDGET: Duration = Duration::from_millis(50);

/// Why a template was refused at parse time (the request gets a 400 naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// Why rendering for one recipient failed (that notification fails; the request does not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// A parsed template. Cheap to clone.
#[derive(Clone)]
pub struct Template {
    inner: Option<Arc<liquid::Template>>,
    source: Arc<str>,
    roots: Arc<BTreeSet<String>>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

static PARSER: LazyLock<liquid::Parser> = LazyLock::new(|| {
    let builder = liquid::ParserBuilder::new()
        .tag(stdlib::AssignTag)
        .tag(stdlib::BreakTag)
        .tag(stdlib::ContinueTag)
        .tag(stdlib::CycleTag)
        .tag(stdlib::IncrementTag)
        .tag(stdlib::DecrementTag)
        .block(stdlib::RawBlock)
        .block(stdlib::IfBlock)
        .block(stdlib::UnlessBlock)
        .block(stdlib::IfChangedBlock)
        .block(stdlib::ForBlock)
        .block(stdlib::TableRowBlock)
        .block(stdlib::CommentBlock)
        .block(stdlib::CaseBlock);
    let builder = bounded_filters(builder);
    // The stdlib parser builds without fallible configuration; failing here is a programming error.
    builder.build().expect("the bounded Liquid parser configuration is valid")
});

static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%-?\s*(for|tablerow|endfor|endtablerow|raw|endraw)\b(.*?)(-?%\})").expect("tag regex")
});
static RANGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*\S+\s+in\s+\(([^)]*)\)").expect("range regex"));
static LIMIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\blimit\s*:\s*(\S+)").expect("limit regex"));
static ROOTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""[^"]*"|'[^']*'|(?P<dot>\.)?\b(?P<id>[A-Za-z_][A-Za-z0-9_-]*)"#).expect("roots regex")
});
static EXPRESSIONS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)\{\{(.*?)\}\}|\{%(.*?)%\}").expect("expressions regex"));

impl Template {
    /// Parses `source`, refusing constructs whose work cannot be bounded.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(TemplateError(format!("template is longer than {MAX_SOURCE_BYTES} bytes")));
        }
        // Plain text needs no engine: most fields of most sends are not templated at all.
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(Self { inner: None, source: source.into(), roots: Arc::default() });
        }
        let bounded = bound_loops(source)?;
        let inner = PARSER.parse(&bounded).map_err(|e| TemplateError(first_line(&e.to_string())))?;
        Ok(Self { inner: Some(Arc::new(inner)), source: source.into(), roots: Arc::new(roots(source)) })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Does rendering need the engine (is there any Liquid markup)?
    pub fn is_dynamic(&self) -> bool {
        self.inner.is_some()
    }

    /// Renders with `variables` (a JSON object); missing variables render empty.
    pub fn render(&self, variables: &serde_json::Map<String, serde_json::Value>) -> Result<String, RenderError> {
        if self.inner.is_none() {
            return Ok(self.source.to_string());
        }
        self.render_with(&Globals::new(variables, [self])?)
    }

    /// Renders with globals prepared once for several templates of one recipient.
    pub fn render_with(&self, globals: &Globals) -> Result<String, RenderError> {
        let Some(inner) = &self.inner else {
            return Ok(self.source.to_string());
        };
        let globals = &globals.0;
        let _budget = Budget::start(RENDER_BUDGET);
        let mut out = CappedWriter { buf: Vec::with_capacity(64), exceeded: false };
        let result = inner.render_to(&mut out, &globals);
        if out.exceeded {
            return Err(RenderError(format!("rendered output exceeds {MAX_OUTPUT_BYTES} bytes")));
        }
        if Budget::expired() {
            return Err(RenderError("template rendering exceeded its time budget".to_owned()));
        }
        result.map_err(|e| RenderError(first_line(&e.to_string())))?;
        String::from_utf8(out.buf).map_err(|_| RenderError("rendered output is not UTF-8".to_owned()))
    }
}

/// One recipient's variables as Liquid globals, with every name the templates refer to present
/// (missing ones as nil, so they render empty instead of failing).
pub struct Globals(liquid::Object);

impl Globals {
    /// Converts `variables` once for all of `templates`.
    pub fn new<'a>(
        variables: &serde_json::Map<String, serde_json::Value>,
        templates: impl IntoIterator<Item = &'a Template>,
    ) -> Result<Self, RenderError> {
        let mut globals = liquid::to_object(variables).map_err(|e| RenderError(first_line(&e.to_string())))?;
        for template in templates {
            for root in template.roots.iter() {
                if !globals.contains_key(root.as_str()) {
                    globals.insert(root.clone().into(), Value::Nil);
                }
            }
        }
        Ok(Self(globals))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("invalid template").trim().to_owned()
}

/// Checks loop ranges and nesting, and caps every loop without a literal `limit` at
/// [`MAX_LOOP_ITERATIONS`] by rewriting the tag.
fn bound_loops(source: &str) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(source.len() + 32);
    let mut last = 0;
    let mut depth = 0usize;
    let mut in_raw = false;
    for caps in TAG.captures_iter(source) {
        let (Some(whole), Some(kind), Some(args), Some(close)) = (caps.get(0), caps.get(1), caps.get(2), caps.get(3))
        else {
            continue;
        };
        match kind.as_str() {
            "raw" => in_raw = true,
            "endraw" => in_raw = false,
            _ if in_raw => {}
            "endfor" | "endtablerow" => depth = depth.saturating_sub(1),
            _ => {
                depth += 1;
                if depth > MAX_LOOP_DEPTH {
                    return Err(TemplateError(format!("loops may nest at most {MAX_LOOP_DEPTH} deep")));
                }
                check_range(args.as_str())?;
                out.push_str(&source[last..close.start()]);
                match LIMIT.captures(args.as_str()).and_then(|c| c.get(1)) {
                    Some(limit) => {
                        let ok = limit.as_str().parse::<u64>().is_ok_and(|n| n <= MAX_LOOP_ITERATIONS);
                        if !ok {
                            return Err(TemplateError(format!(
                                "loop limit must be an integer of at most {MAX_LOOP_ITERATIONS}"
                            )));
                        }
                    }
                    None => out.push_str(&format!(" limit:{MAX_LOOP_ITERATIONS} ")),
                }
                last = close.start();
                let _ = whole;
            }
        }
    }
    out.push_str(&source[last..]);
    Ok(out)
}

fn check_range(args: &str) -> Result<(), TemplateError> {
    let Some(range) = RANGE.captures(args).and_then(|c| c.get(1)) else {
        return Ok(());
    };
    let refuse =
        || TemplateError(format!("loop ranges must be integer literals spanning at most {MAX_LOOP_ITERATIONS} values"));
    let (start, end) = range.as_str().split_once("..").ok_or_else(refuse)?;
    let start: i64 = start.trim().parse().map_err(|_| refuse())?;
    let end: i64 = end.trim().parse().map_err(|_| refuse())?;
    let span = end.saturating_sub(start).saturating_add(1);
    if span > MAX_LOOP_ITERATIONS as i64 {
        return Err(refuse());
    }
    Ok(())
}

/// Names that may be looked up at the top level of the template's variables.
fn roots(source: &str) -> BTreeSet<String> {
    let mut roots = BTreeSet::new();
    for expr in EXPRESSIONS.captures_iter(source) {
        let Some(body) = expr.get(1).or_else(|| expr.get(2)) else { continue };
        for caps in ROOTS.captures_iter(body.as_str()) {
            if let (None, Some(id)) = (caps.name("dot"), caps.name("id")) {
                roots.insert(id.as_str().to_owned());
            }
        }
    }
    for keyword in ["nil", "null", "true", "false", "empty", "blank"] {
        roots.remove(keyword);
    }
    roots
}

struct CappedWriter {
    buf: Vec<u8>,
    exceeded: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.exceeded = true;
            return Err(io::Error::other("output limit"));
        }
        if Budget::expired() {
            return Err(io::Error::other("time budget"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The render deadline of the current thread (rendering is synchronous, so a thread-local holds).
struct Budget;

impl Budget {
    fn start(budget: Duration) -> Self {
        DEADLINE.with(|d| d.set(Some(Instant::now() + budget)));
        Budget
    }

    fn expired() -> bool {
        DEADLINE.with(|d| d.get().is_some_and(|deadline| Instant::now() > deadline))
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
    }
}

/// Wraps a stdlib filter so its results are size-checked and the time budget is enforced.
#[derive(Clone)]
struct Bounded<F: ParseFilter + Clone>(F);

impl<F: ParseFilter + Clone + 'static> ParseFilter for Bounded<F> {
    fn parse(&self, arguments: FilterArguments<'_>) -> liquid_core::Result<Box<dyn Filter>> {
        Ok(Box::new(BoundedFilter(self.0.parse(arguments)?)))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self.0.reflection()
    }
}

#[derive(Debug)]
struct BoundedFilter(Box<dyn Filter>);

impl fmt::Display for BoundedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Filter for BoundedFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> liquid_core::Result<Value> {
        if Budget::expired() {
            return Err(liquid_core::Error::with_msg("template rendering exceeded its time budget"));
        }
        let value = self.0.evaluate(input, runtime)?;
        let too_big = match &value {
            Value::Scalar(s) => s.to_kstr().len() > MAX_VALUE_BYTES,
            Value::Array(a) => a.len() as u64 > MAX_LOOP_ITERATIONS,
            _ => false,
        };
        if too_big {
            return Err(liquid_core::Error::with_msg(format!(
                "a filter result exceeds {MAX_VALUE_BYTES} bytes or {MAX_LOOP_ITERATIONS} items"
            )));
        }
        Ok(value)
    }
}

fn bounded_filters(b: liquid::ParserBuilder) -> liquid::ParserBuilder {
    macro_rules! register {
        ($b:expr, $($f:ident),* $(,)?) => { $b$(.filter(Bounded(stdlib::$f)))* };
    }
    register!(
        b,
        Abs,
        Append,
        AtLeast,
        AtMost,
        Capitalize,
        Ceil,
        Compact,
        Concat,
        Date,
        Default,
        DividedBy,
        Downcase,
        Escape,
        EscapeOnce,
        First,
        Floor,
        Join,
        Last,
        Lstrip,
        Map,
        Minus,
        Modulo,
        NewlineToBr,
        Plus,
        Prepend,
        Remove,
        RemoveFirst,
        Replace,
        ReplaceFirst,
        Reverse,
        Round,
        Rstrip,
        Size,
        Slice,
        Sort,
        SortNatural,
        Split,
        Strip,
        StripHtml,
        StripNewlines,
        Times,
        Truncate,
        TruncateWords,
        Uniq,
        Upcase,
        UrlDecode,
        UrlEncode,
        Where,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn templates_render_recipient_variables() {
        let t = Template::parse("Hi {{ name | upcase }}, gate {{ gate }}").expect("parses");
        assert_eq!(t.render(&vars(json!({"name": "ada", "gate": 12}))).expect("renders"), "Hi ADA, gate 12");
    }

    #[test]
    fn a_missing_variable_renders_empty() {
        let t = Template::parse("Hi {{ name }}!{% if vip %} VIP{% endif %}").expect("parses");
        assert_eq!(t.render(&vars(json!({}))).expect("renders"), "Hi !");
    }

    #[test]
    fn plain_text_is_returned_as_is() {
        let t = Template::parse("Boarding time @ TLL").expect("parses");
        assert_eq!(t.render(&vars(json!({}))).expect("renders"), "Boarding time @ TLL");
    }

    #[test]
    fn a_syntax_error_is_refused_at_parse_time() {
        assert!(Template::parse("Hi {{ name ").is_err());
        assert!(Template::parse("{% if %}").is_err());
    }

    #[test]
    fn a_huge_literal_range_is_refused_before_it_can_run() {
        let started = Instant::now();
        let err = Template::parse("{% for i in (1..100000000) %}x{% endfor %}").expect_err("refused");
        assert!(err.0.contains("ranges"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_range_with_variable_bounds_is_refused() {
        assert!(Template::parse("{% for i in (1..n) %}x{% endfor %}").is_err());
    }

    #[test]
    fn loops_are_capped_and_their_nesting_is_bounded() {
        let t = Template::parse("{% for i in items %}.{% endfor %}").expect("parses");
        let items: Vec<u32> = (0..3000).collect();
        // 1000 iterations at most: the output stays below the cap.
        assert_eq!(t.render(&vars(json!({"items": items}))).expect("renders").len(), 1000);
        assert!(
            Template::parse("{% for a in x %}{% for b in y %}{% for c in z %}{% endfor %}{% endfor %}{% endfor %}")
                .is_err()
        );
        assert!(Template::parse("{% for a in x limit: 5000 %}{% endfor %}").is_err());
    }

    #[test]
    fn output_over_the_cap_is_a_render_error() {
        let t = Template::parse("{% for i in (1..1000) %}0123456789{% endfor %}").expect("parses");
        let err = t.render(&vars(json!({}))).expect_err("too big");
        assert!(err.0.contains("exceeds"), "{err}");
    }

    #[test]
    fn doubling_a_string_is_cut_off() {
        let t = Template::parse(
            "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..64) %}{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
        )
        .expect("parses");
        let started = Instant::now();
        assert!(t.render(&vars(json!({}))).is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn file_system_and_capture_tags_are_not_available() {
        assert!(Template::parse("{% include 'x' %}").is_err());
        assert!(Template::parse("{% render 'x' %}").is_err());
        assert!(Template::parse("{% capture x %}y{% endcapture %}").is_err());
    }
}
