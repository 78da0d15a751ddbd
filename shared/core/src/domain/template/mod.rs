//! Liquid templates with bounded work.
//!
//! Every string field of a send is a Liquid template. A template is parsed once per request (or
//! per queued chunk) and rendered once per recipient. Rendering is where a hostile request could
//! burn or balloon a worker, so the bounds live inside the engine, on the parse tree and on the
//! running render — never on a scan of the template's text:
//!
//! - the language is the Liquid stdlib without `include`/`render` (no file system), `capture`
//!   and `ifchanged` (both buffer output outside the capped writer) and `tablerow` (HTML tables);
//! - `for` is pushgate's own ([`blocks::ForBlock`]): ranges are counted before anything is
//!   materialised (a literal range longer than the budget is refused at parse time, a variable
//!   one at render time), every iteration draws from the render's budget, loops nest at most
//!   [`MAX_LOOP_DEPTH`] deep and blocks of any kind [`MAX_BLOCK_DEPTH`] deep (counted while
//!   parsing);
//! - every filter is wrapped ([`filters::Bounded`]): amplifying calls (`replace`, `join`) are
//!   refused before they run, integer arithmetic that would overflow (and panic inside
//!   liquid-lib) is refused, results are capped ([`MAX_VALUE_BYTES`], [`MAX_ITEMS`]) and charged
//!   to the render's byte budget, as is every `assign`;
//! - one budget per recipient ([`budget`]): [`MAX_ITERATIONS`] loop iterations,
//!   [`MAX_VALUE_BYTES_PER_RENDER`] bytes of values and [`RENDER_BUDGET`] of time across all its
//!   fields, [`MAX_OUTPUT_BYTES`] of output per field;
//! - a panic from any dependency during parsing or rendering becomes an error (counted by
//!   [`caught_panics`]), never an unwinding worker.
//!
//! A variable missing from the recipient's `variables` renders empty.

mod blocks;
pub mod budget;
mod filters;

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock};

use liquid_core::Value;
use liquid_lib::stdlib;
use regex::Regex;

pub use blocks::{MAX_BLOCK_DEPTH, MAX_LOOP_DEPTH};
pub use budget::{MAX_ITERATIONS, MAX_OUTPUT_BYTES, MAX_VALUE_BYTES_PER_RENDER, RENDER_BUDGET};
pub use filters::{MAX_ITEMS, MAX_VALUE_BYTES, caught_panics};

use blocks::{ForBlock, Nested};
use budget::{CappedWriter, Scope};
use filters::{AssignTag, Bounded, Check};

/// Template source of one field may not exceed this many bytes.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;

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
        .tag(AssignTag)
        .tag(stdlib::BreakTag)
        .tag(stdlib::ContinueTag)
        .tag(stdlib::CycleTag)
        .tag(stdlib::IncrementTag)
        .tag(stdlib::DecrementTag)
        .block(Nested(stdlib::RawBlock))
        .block(Nested(stdlib::IfBlock))
        .block(Nested(stdlib::UnlessBlock))
        .block(ForBlock)
        .block(Nested(stdlib::CommentBlock))
        .block(Nested(stdlib::CaseBlock));
    #[cfg(debug_assertions)]
    let builder = builder.filter(filters::TestPanic);
    let builder = bounded_filters(builder);
    // The stdlib parser builds without fallible configuration; failing here is a programming error.
    builder.build().expect("the bounded Liquid parser configuration is valid")
});

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
        // The nesting counters are guards: a panic unwinding through the parser resets them too.
        let parsed = catch_unwind(|| PARSER.parse(source)).map_err(|_| {
            filters::panic_caught();
            TemplateError("the template could not be parsed".into())
        })?;
        let inner = parsed.map_err(|e| TemplateError(first_line(&e.to_string())))?;
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
        let _budget = Scope::enter();
        self.render_with(&Globals::new(variables, [self])?)
    }

    /// Renders with globals prepared once for several templates of one recipient. Within a
    /// [`RenderScope`], every field rendered shares the recipient's budget; otherwise this one
    /// render has a budget of its own.
    pub fn render_with(&self, globals: &Globals) -> Result<String, RenderError> {
        let Some(inner) = &self.inner else {
            return Ok(self.source.to_string());
        };
        let budget = Scope::enter();
        let mut out = CappedWriter::new();
        let result = catch_unwind(AssertUnwindSafe(|| inner.render_to(&mut out, &globals.0)));
        let result = result.map_err(|_| {
            filters::panic_caught();
            RenderError("template rendering failed unexpectedly".to_owned())
        })?;
        if let Some(why) = budget.exhausted() {
            return Err(RenderError(why.message()));
        }
        result.map_err(|e| RenderError(first_line(&e.to_string())))?;
        String::from_utf8(out.into_inner()).map_err(|_| RenderError("rendered output is not UTF-8".to_owned()))
    }
}

/// One recipient's render: every field rendered while it lives shares one work budget.
pub struct RenderScope {
    _budget: Scope,
}

impl RenderScope {
    /// Starts the budget of one recipient's render on this thread.
    pub fn enter() -> Self {
        Self { _budget: Scope::enter() }
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

/// Names that may be looked up at the top level of the template's variables (to be present as
/// nil when the recipient does not have them: a missing variable renders empty).
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

fn bounded_filters(b: liquid::ParserBuilder) -> liquid::ParserBuilder {
    macro_rules! register {
        ($b:expr, $($f:ident => $check:expr),* $(,)?) => { $b$(.filter(Bounded { filter: stdlib::$f, check: $check }))* };
    }
    use Check::*;
    register!(
        b,
        Abs => Abs,
        Append => Plain,
        AtLeast => Plain,
        AtMost => Plain,
        Capitalize => Plain,
        Ceil => Plain,
        Compact => Plain,
        Concat => Plain,
        Date => Plain,
        Default => Plain,
        DividedBy => Div,
        Downcase => Plain,
        Escape => Plain,
        EscapeOnce => Plain,
        First => Plain,
        Floor => Plain,
        Join => Join,
        Last => Plain,
        Lstrip => Plain,
        Map => Plain,
        Minus => Sub,
        Modulo => Rem,
        NewlineToBr => Plain,
        Plus => Add,
        Prepend => Plain,
        Remove => Plain,
        RemoveFirst => Plain,
        Replace => Replace { first: false },
        ReplaceFirst => Replace { first: true },
        Reverse => Plain,
        Round => Plain,
        Rstrip => Plain,
        Size => Plain,
        Slice => Plain,
        Sort => Plain,
        SortNatural => Plain,
        Split => Plain,
        Strip => Plain,
        StripHtml => Plain,
        StripNewlines => Plain,
        Times => Mul,
        Truncate => Plain,
        TruncateWords => Plain,
        Uniq => Plain,
        Upcase => Plain,
        UrlDecode => Plain,
        UrlEncode => Plain,
        Where => Plain,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn render(source: &str, variables: serde_json::Value) -> Result<String, RenderError> {
        Template::parse(source).expect("parses").render(&vars(variables))
    }

    /// Renders `source`, asserting it fails within a second (no hang) without a caught panic;
    /// returns the error.
    fn fails_fast(source: &str, variables: serde_json::Value) -> String {
        let panics = caught_panics();
        let started = Instant::now();
        let err = render(source, variables).expect_err("the render is cut off");
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        assert_eq!(caught_panics(), panics, "a bound, not a caught panic, stopped it");
        err.0
    }

    /// [`fails_fast`] under a budget whose clock cannot run out first, for tests of the other
    /// bounds.
    fn fails_fast_without_clock(source: &str, variables: serde_json::Value) -> String {
        let _no_clock = Scope::without_clock();
        fails_fast(source, variables)
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
    fn loops_keep_liquid_semantics() {
        let cases = [
            ("{% for i in (1..5) %}{{ i }}{% endfor %}", "12345"),
            ("{% for i in (1..5) reversed %}{{ i }}{% endfor %}", "54321"),
            ("{% for i in (1..10) limit: 3 offset: 2 %}{{ i }}{% endfor %}", "345"),
            ("{% for i in (3..1) %}x{% else %}none{% endfor %}", "none"),
            (
                "{% for i in (1..5) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
                "13",
            ),
            (
                "{% for i in items %}{{ forloop.index }}/{{ forloop.length }}{% if forloop.last %}!{% endif %} {% endfor %}",
                "1/3 2/3 3/3! ",
            ),
            (
                "{% for a in (1..2) %}{% for b in (1..2) %}{{ forloop.parentloop.index }}{{ b }},{% endfor %}{% endfor %}",
                "11,12,21,22,",
            ),
            ("{% for pair in map %}{{ pair[0] }}={{ pair[1] }};{% endfor %}", "k=v;"),
            ("{% for i in (a..b) %}{{ i }}{% endfor %}", "-101"),
            ("{% for i in nothing %}x{% else %}empty{% endfor %}", "empty"),
        ];
        for (source, expected) in cases {
            let got = render(source, json!({"items": ["a", "b", "c"], "map": {"k": "v"}, "a": -1, "b": 1}));
            assert_eq!(got.as_deref(), Ok(expected), "{source}");
        }
    }

    #[test]
    fn a_huge_literal_range_is_refused_before_it_can_run_however_the_tag_is_spelled() {
        for source in [
            "{% for i in (1..100000000) %}x{% endfor %}",
            // A line break inside the tag (the text scan it replaces only looked at one line).
            "{% for i in\n(1..1000000000) %}{% endfor %}",
            "{%- for i in (1..1000000000) -%}{%- endfor -%}",
            // `raw` inside a string literal (the scan then skipped everything after it).
            "{{ \"{% raw %}\" }}{% for i in (1..1000000000) %}{% endfor %}",
        ] {
            let started = Instant::now();
            let err = Template::parse(source).expect_err(source);
            assert!(err.0.contains("iterations"), "{source}: {err}");
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn a_huge_range_from_variables_is_cut_off_before_it_is_materialised() {
        let err = fails_fast_without_clock("{% for i in (1..n) %}{% endfor %}", json!({"n": 1_000_000_000i64}));
        assert!(err.contains("iterations"), "{err}");
        let err = fails_fast_without_clock("{% for i in (a..b) %}{% endfor %}", json!({"a": i64::MIN, "b": i64::MAX}));
        assert!(err.contains("iterations"), "{err}");
        // Small variable ranges are fine.
        assert_eq!(render("{% for i in (1..n) %}{{ i }}{% endfor %}", json!({"n": 3})).as_deref(), Ok("123"));
    }

    #[test]
    fn nested_loops_with_empty_bodies_are_stopped_by_the_iteration_budget() {
        let err = fails_fast_without_clock(
            "{% for a in (1..10000) %}{% for b in (1..10000) %}{% endfor %}{% endfor %}",
            json!({}),
        );
        assert!(err.contains("iterations"), "{err}");
        let err = fails_fast_without_clock(
            "{% for a in (1..n) %}{% for b in (1..n) %}{% endfor %}{% endfor %}",
            json!({"n": 1000}),
        );
        assert!(err.contains("iterations"), "{err}");
    }

    #[test]
    fn every_field_of_a_recipient_draws_from_one_budget() {
        let t = Template::parse("{% for i in (1..6000) %}{% endfor %}").expect("parses");
        let globals = Globals::new(&vars(json!({})), [&t]).expect("globals");
        assert!(t.render_with(&globals).is_ok(), "6,000 iterations fit one render");
        let _recipient = RenderScope::enter();
        assert!(t.render_with(&globals).is_ok());
        let err = t.render_with(&globals).expect_err("12,000 iterations for one recipient do not");
        assert!(err.0.contains("iterations"), "{err}");
    }

    #[test]
    fn loop_nesting_is_counted_on_the_parse_tree_not_the_text() {
        let three = "{% for a in x %}{% for b in y %}{% for c in z %}{% endfor %}{% endfor %}{% endfor %}";
        assert!(Template::parse(three).expect_err("three deep").0.contains("nest"));
        // An `endfor` hidden in a comment or a string used to lower the scanner's count.
        for hidden in
            ["{% comment %}{% endfor %}{% endcomment %}", "{{ \"{% endfor %}\" }}", "{% raw %}{% endfor %}{% endraw %}"]
        {
            let source = format!(
                "{{% for a in x %}}{hidden}{{% for b in y %}}{{% for c in z %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}"
            );
            assert!(Template::parse(&source).is_err(), "{source}");
        }
        assert!(Template::parse("{% for a in x %}{% for b in y %}{% endfor %}{% endfor %}").is_ok());
        // Sibling loops are not nested.
        assert!(Template::parse("{% for a in x %}{% endfor %}{% for b in y %}{% endfor %}").is_ok());
    }

    #[test]
    fn deeply_nested_blocks_are_refused_without_exhausting_the_stack() {
        let source = format!("{}x{}", "{% if a %}".repeat(1500), "{% endif %}".repeat(1500));
        let source = &source[..source.len().min(MAX_SOURCE_BYTES)];
        assert!(Template::parse(source).is_err());
        let ok = format!("{}x{}", "{% if a %}".repeat(MAX_BLOCK_DEPTH), "{% endif %}".repeat(MAX_BLOCK_DEPTH));
        assert!(Template::parse(&ok).is_ok());
    }

    #[test]
    fn output_over_the_cap_is_a_render_error() {
        let err = fails_fast("{% for i in (1..1000) %}0123456789{% endfor %}", json!({}));
        assert!(err.contains("exceeds"), "{err}");
    }

    #[test]
    fn doubling_a_string_is_cut_off() {
        let err = fails_fast(
            "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..64) %}{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
            json!({}),
        );
        assert!(err.contains("bytes"), "{err}");
    }

    #[test]
    fn an_amplifying_replace_or_join_is_refused_before_it_runs() {
        let s = "x".repeat(16 * 1024);
        let err = fails_fast("{{ s | replace: '', s }}", json!({"s": s}));
        assert!(err.contains("replace"), "{err}");
        let items = vec!["y".repeat(60); 1000];
        let err = fails_fast("{{ items | join: s }}", json!({"items": items, "s": s}));
        assert!(err.contains("join"), "{err}");
        assert_eq!(render("{{ 'a-b' | replace: '-', '+' }}", json!({})).as_deref(), Ok("a+b"));
    }

    #[test]
    fn copying_a_large_value_again_and_again_runs_out_of_byte_budget() {
        let source: String = (0..400).map(|i| format!("{{% assign v{i} = big %}}")).collect();
        let err = fails_fast(&source, json!({"big": "z".repeat(60 * 1024)}));
        assert!(err.contains("bytes"), "{err}");
    }

    #[test]
    fn integer_arithmetic_at_the_edges_is_an_error_not_a_panic() {
        let min = json!({"n": i64::MIN, "m": -1, "max": i64::MAX});
        for source in [
            "{{ n | divided_by: m }}",
            "{{ n | modulo: m }}",
            "{{ n | abs }}",
            "{{ max | plus: 1 }}",
            "{{ n | minus: 1 }}",
            "{{ max | times: 2 }}",
        ] {
            let err = fails_fast(source, min.clone());
            assert!(err.contains("overflow"), "{source}: {err}");
        }
        assert_eq!(render("{{ 7 | divided_by: 2 }} {{ 7 | modulo: 0.5 }}", json!({})).as_deref(), Ok("3 0"));
        assert!(render("{{ 7 | divided_by: 0 }}", json!({})).is_err());
    }

    #[test]
    fn a_panic_inside_rendering_becomes_a_render_error() {
        let panics = caught_panics();
        let err = render("{{ 'x' | pushgate_test_panic }}", json!({})).expect_err("fails");
        assert!(err.0.contains("failed"), "{err}");
        assert!(caught_panics() > panics);
        // The thread is fine afterwards.
        assert_eq!(render("{{ 1 | plus: 1 }}", json!({})).as_deref(), Ok("2"));
    }

    #[test]
    fn buffering_file_system_and_html_table_tags_are_not_available() {
        for source in [
            "{% include 'x' %}",
            "{% render 'x' %}",
            "{% capture x %}y{% endcapture %}",
            "{% ifchanged %}y{% endifchanged %}",
            "{% tablerow i in (1..3) %}{{ i }}{% endtablerow %}",
        ] {
            assert!(Template::parse(source).is_err(), "{source}");
        }
    }
}
