//! Property test of the bounded Liquid engine: templates generated from a grammar of tags,
//! filters, ranges and nesting, rendered against generated variables, never panic (not even a
//! panic that the engine catches) and never exceed the render budget by more than a small
//! factor, in time and in memory.
//!
//! Its own test binary: the peak-tracking allocator below measures the whole process, so
//! nothing else may run beside it. `PROPTEST_CASES=5000 cargo test -p pushgate-shared --test
//! template_properties -- --nocapture` runs a longer search and prints the worst case seen.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use peak_alloc::PeakAlloc;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use pushgate_core::domain::template::{
    Globals, MAX_OUTPUT_BYTES, MAX_VALUE_BYTES_PER_RENDER, RENDER_BUDGET, RenderScope, Template, caught_panics,
};
use serde_json::{Map, Value, json};

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// Time a render may take past its budget: the engine checks the clock between steps, and the
/// largest single step (a filter on a 64 KiB value in a debug build) takes a few milliseconds;
/// the rest is slack for a loaded CI machine.
const TIME_SLACK: Duration = Duration::from_millis(950);
/// Memory a render may hold at its peak beyond what it started with: the value budget, plus the
/// transient copies of one filter call (a `split` of 64 KiB into 64 Ki values is the largest),
/// plus the loop bookkeeping.
const MEMORY_FACTOR: usize = 8;

/// The stdlib filters with how many arguments each takes (min, max).
const FILTERS: &[(&str, usize, usize)] = &[
    ("abs", 0, 0),
    ("append", 1, 1),
    ("at_least", 1, 1),
    ("at_most", 1, 1),
    ("capitalize", 0, 0),
    ("ceil", 0, 0),
    ("compact", 0, 0),
    ("concat", 1, 1),
    ("date", 1, 1),
    ("default", 1, 1),
    ("divided_by", 1, 1),
    ("downcase", 0, 0),
    ("escape", 0, 0),
    ("escape_once", 0, 0),
    ("first", 0, 0),
    ("floor", 0, 0),
    ("join", 0, 1),
    ("last", 0, 0),
    ("lstrip", 0, 0),
    ("map", 1, 1),
    ("minus", 1, 1),
    ("modulo", 1, 1),
    ("newline_to_br", 0, 0),
    ("plus", 1, 1),
    ("prepend", 1, 1),
    ("remove", 1, 1),
    ("remove_first", 1, 1),
    ("replace", 2, 2),
    ("replace_first", 2, 2),
    ("reverse", 0, 0),
    ("round", 0, 1),
    ("rstrip", 0, 0),
    ("size", 0, 0),
    ("slice", 1, 2),
    ("sort", 0, 1),
    ("sort_natural", 0, 1),
    ("split", 1, 1),
    ("strip", 0, 0),
    ("strip_html", 0, 0),
    ("strip_newlines", 0, 0),
    ("times", 1, 1),
    ("truncate", 0, 2),
    ("truncatewords", 0, 2),
    ("uniq", 0, 0),
    ("upcase", 0, 0),
    ("url_decode", 0, 0),
    ("url_encode", 0, 0),
    ("where", 1, 2),
];
const VARIABLES: &[&str] = &["n", "m", "s", "big", "items", "map", "min", "max", "nothing", "i", "x", "acc"];

fn integer() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("1000".to_owned()),
        Just("10000".to_owned()),
        Just("1000000000".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("9223372036854775807".to_owned()),
        (-20i64..200).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("''".to_owned()),
        Just("','".to_owned()),
        Just("'%Y-%m-%d %c'".to_owned()),
        "[a-z ,<>&]{0,12}".prop_map(|s| format!("'{s}'")),
    ]
}

fn variable() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(VARIABLES).prop_map(str::to_owned),
        proptest::sample::select(VARIABLES).prop_map(|v| format!("{v}[0]")),
        proptest::sample::select(VARIABLES).prop_map(|v| format!("{v}.size")),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![integer(), string(), variable(), variable(), Just("3.5".to_owned())]
}

fn filtered() -> impl Strategy<Value = String> {
    let filter =
        (proptest::sample::select(FILTERS), proptest::collection::vec(value(), 2)).prop_map(|((f, min, max), args)| {
            let n = if args[0].len() % 2 == 0 { min } else { max };
            if n == 0 { format!(" | {f}") } else { format!(" | {f}: {}", args[..n].join(", ")) }
        });
    (value(), proptest::collection::vec(filter, 0..4)).prop_map(|(v, fs)| format!("{v}{}", fs.concat()))
}

fn range() -> impl Strategy<Value = String> {
    let end = prop_oneof![integer(), variable()];
    prop_oneof![(end.clone(), end).prop_map(|(a, b)| format!("({a}..{b})")), variable()]
}

fn template() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-zA-Z ]{0,8}",
        filtered().prop_map(|e| format!("{{{{ {e} }}}}")),
        (proptest::sample::select(VARIABLES), filtered()).prop_map(|(v, e)| format!("{{% assign {v} = {e} %}}")),
        Just("{% assign acc = acc | append: s %}".to_owned()),
        Just("{% assign acc = acc | append: acc %}".to_owned()),
        Just("{% assign items = items | concat: items %}".to_owned()),
        Just("{% increment counter %}".to_owned()),
        Just("{% cycle 'a', 'b', 'c' %}".to_owned()),
        Just("{% break %}".to_owned()),
        Just("{% continue %}".to_owned()),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        let body = proptest::collection::vec(inner, 0..5).prop_map(|parts| parts.concat());
        let params = (
            proptest::option::of(prop_oneof![integer(), variable()]),
            proptest::option::of(prop_oneof![integer(), variable()]),
            any::<bool>(),
        )
            .prop_map(|(limit, offset, reversed)| {
                let mut p = String::new();
                if let Some(l) = limit {
                    p.push_str(&format!(" limit: {l}"));
                }
                if let Some(o) = offset {
                    p.push_str(&format!(" offset: {o}"));
                }
                if reversed {
                    p.push_str(" reversed");
                }
                p
            });
        prop_oneof![
            body.clone(),
            (filtered(), body.clone(), body.clone())
                .prop_map(|(c, a, b)| format!("{{% if {c} %}}{a}{{% else %}}{b}{{% endif %}}")),
            (filtered(), body.clone()).prop_map(|(c, a)| format!("{{% unless {c} %}}{a}{{% endunless %}}")),
            (value(), value(), body.clone(), body.clone())
                .prop_map(|(v, w, a, b)| format!("{{% case {v} %}}{{% when {w} %}}{a}{{% else %}}{b}{{% endcase %}}")),
            (proptest::sample::select(VARIABLES), range(), params, body.clone(), body)
                .prop_map(|(v, r, p, a, b)| format!("{{% for {v} in {r}{p} %}}{a}{{% else %}}{b}{{% endfor %}}")),
        ]
    })
}

fn variables() -> impl Strategy<Value = Map<String, Value>> {
    let text = prop_oneof![
        Just(String::new()),
        "[a-z ,]{0,40}",
        (0usize..5).prop_map(|k| "a,b ".repeat(256 << k)),
        Just("x".repeat(60 * 1024)),
    ];
    let item = prop_oneof![any::<i64>().prop_map(Value::from), "[a-z]{0,6}".prop_map(Value::from)];
    (
        integer(),
        integer(),
        text.clone(),
        text,
        proptest::collection::vec(item, 0..1000),
        proptest::collection::btree_map("[a-z]{1,4}", "[a-z]{0,8}", 0..20),
    )
        .prop_map(|(n, m, s, big, items, map)| {
            let number = |v: String| v.parse::<i64>().map(Value::from).unwrap_or(Value::Null);
            let object = json!({
                "n": number(n), "m": number(m), "s": s, "big": big, "items": items, "map": map,
                "min": i64::MIN, "max": i64::MAX, "i": 3, "x": "x", "acc": "",
            });
            object.as_object().cloned().unwrap_or_default()
        })
}

#[test]
fn generated_templates_never_panic_and_stay_within_their_budget_in_time_and_memory() {
    // Generating nested templates recurses deeply through proptest's strategies in a debug
    // build: give the search a thread with room for that (rendering itself is bounded).
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(search)
        .expect("spawn the search thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn search() {
    let worst_time = AtomicU64::new(0);
    let worst_memory = AtomicUsize::new(0);
    let rendered = AtomicUsize::new(0);
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner
        .run(&(template(), variables()), |(source, variables)| {
            if std::env::var_os("TRACE_TEMPLATES").is_some() {
                eprintln!("SRC {source}");
            }
            let panics = caught_panics();
            let Ok(template) = Template::parse(&source) else {
                prop_assert_eq!(caught_panics(), panics, "parsing panicked on {}", source);
                return Ok(());
            };
            let globals = Globals::new(&variables, [&template]).expect("plain JSON variables convert");
            let before = PEAK.current_usage();
            PEAK.reset_peak_usage();
            let started = Instant::now();
            let result = {
                let _recipient = RenderScope::enter();
                template.render_with(&globals)
            };
            let elapsed = started.elapsed();
            let peak = PEAK.peak_usage().saturating_sub(before);
            rendered.fetch_add(1, Ordering::Relaxed);
            worst_time.fetch_max(elapsed.as_micros() as u64, Ordering::Relaxed);
            worst_memory.fetch_max(peak, Ordering::Relaxed);
            prop_assert_eq!(caught_panics(), panics, "a panic was caught rendering {}", source);
            prop_assert!(elapsed < RENDER_BUDGET + TIME_SLACK, "{:?} rendering {}", elapsed, source);
            prop_assert!(
                peak <= MEMORY_FACTOR * MAX_VALUE_BYTES_PER_RENDER,
                "{} bytes at the peak rendering {}",
                peak,
                source
            );
            if let Ok(out) = result {
                prop_assert!(out.len() <= MAX_OUTPUT_BYTES);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "rendered {} generated templates; slowest {} µs, largest peak {} KiB",
        rendered.load(Ordering::Relaxed),
        worst_time.load(Ordering::Relaxed),
        worst_memory.load(Ordering::Relaxed) / 1024
    );
    assert!(rendered.load(Ordering::Relaxed) > 50, "most generated templates parse and render");
}
