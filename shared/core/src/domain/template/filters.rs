//! The stdlib filters, each wrapped so that it cannot blow the render's budget or panic, and
//! pushgate's own `assign`, which charges what it stores.
//!
//! A wrapped filter keeps its own copy of the argument expressions, so before it runs the
//! wrapper can refuse what would amplify (a `replace` whose result would be huge, a `join` of
//! large items) and what would overflow (integer `plus`/`minus`/`times`/`divided_by`/`modulo`/
//! `abs` at the edges of i64, which panic inside liquid-lib). After it runs, its result is
//! size-checked and charged to the render's byte budget. A panic that still happens inside a
//! filter becomes a render error; [`caught_panics`] counts them (tests hold it at zero).

use std::cell::Cell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};

use liquid_core::model::{KString, Value, ValueView};
use liquid_core::parser::{FilterArguments, FilterChain};
use liquid_core::{
    Error, Expression, Filter, FilterReflection, Language, ParseFilter, ParseTag, Renderable, Result, Runtime,
    TagReflection, TagTokenIter,
};

use super::budget;

/// A filter may not produce a string (or an array whose items add up to) more than this.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// A filter may not produce an array of more than this many items.
pub const MAX_ITEMS: usize = 1000;

thread_local! {
    static CAUGHT_PANICS: Cell<u64> = const { Cell::new(0) };
}

/// How many panics inside parsing, filters or renders were caught on this thread (each became
/// an error instead of unwinding further). Rendering is synchronous, so a test that renders
/// reads its own count.
pub fn caught_panics() -> u64 {
    CAUGHT_PANICS.with(Cell::get)
}

/// Counts a caught panic.
pub(super) fn panic_caught() {
    CAUGHT_PANICS.with(|c| c.set(c.get() + 1));
}

/// What a wrapper checks before its filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Size of the result only.
    Plain,
    /// `replace`/`replace_first`: the exact result size, from the number of matches.
    Replace { first: bool },
    /// `join`: the items and separators add up.
    Join,
    /// Integer arithmetic must not overflow.
    Add,
    /// See [`Check::Add`].
    Sub,
    /// See [`Check::Add`].
    Mul,
    /// See [`Check::Add`] (also `i64::MIN / -1`).
    Div,
    /// See [`Check::Div`].
    Rem,
    /// `abs(i64::MIN)` overflows.
    Abs,
}

/// A stdlib filter behind the checks of its [`Check`].
#[derive(Clone)]
pub struct Bounded<F> {
    /// The stdlib filter.
    pub filter: F,
    /// What to check before it runs.
    pub check: Check,
}

impl<F: ParseFilter + Clone + 'static> ParseFilter for Bounded<F> {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        let positional: Vec<Expression> = arguments.positional.collect();
        let keyword: Vec<(String, Expression)> = arguments.keyword.map(|(k, e)| (k.to_owned(), e)).collect();
        let inner = self.filter.parse(FilterArguments {
            positional: Box::new(positional.clone().into_iter()),
            keyword: Box::new(keyword.iter().map(|(k, e)| (k.as_str(), e.clone()))),
        })?;
        Ok(Box::new(BoundedFilter {
            inner,
            check: self.check,
            name: KString::from_ref(self.filter.reflection().name()),
            positional,
        }))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self.filter.reflection()
    }
}

#[derive(Debug)]
struct BoundedFilter {
    inner: Box<dyn Filter>,
    check: Check,
    name: KString,
    positional: Vec<Expression>,
}

impl std::fmt::Display for BoundedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

fn budget_error(e: budget::Exhausted) -> Error {
    Error::with_msg(e.message())
}

fn integer(v: &dyn ValueView) -> Option<i64> {
    v.as_scalar().and_then(|s| s.to_integer())
}

/// The bytes `v` renders to (strings, numbers) or holds (arrays, objects), counted up to `cap`
/// (anything larger returns `cap + 1`).
pub fn size_of(v: &dyn ValueView, cap: usize) -> usize {
    fn walk(v: &dyn ValueView, cap: usize, total: &mut usize) {
        if *total > cap {
            return;
        }
        if let Some(s) = v.as_scalar() {
            *total = total.saturating_add(s.to_kstr().len());
        } else if let Some(a) = v.as_array() {
            for item in a.values() {
                *total = total.saturating_add(1);
                walk(item, cap, total);
                if *total > cap {
                    return;
                }
            }
        } else if let Some(o) = v.as_object() {
            for (k, item) in o.iter() {
                *total = total.saturating_add(k.len() + 1);
                walk(item, cap, total);
                if *total > cap {
                    return;
                }
            }
        }
    }
    let mut total = 0;
    walk(v, cap, &mut total);
    total.min(cap.saturating_add(1))
}

impl BoundedFilter {
    fn argument<'r>(&'r self, i: usize, runtime: &'r dyn Runtime) -> Result<Option<liquid_core::ValueCow<'r>>> {
        self.positional.get(i).map(|e| e.evaluate(runtime)).transpose()
    }

    fn too_big(&self, size: u128) -> Error {
        Error::with_msg(format!("the {} filter would produce {size} bytes; the limit is {MAX_VALUE_BYTES}", self.name))
    }

    /// Refuses what the filter cannot do within bounds, before it runs.
    fn precheck(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<()> {
        let overflow = || Error::with_msg(format!("the {} filter overflows a 64-bit integer", self.name));
        let operand = || -> Result<Option<i64>> { Ok(self.argument(0, runtime)?.and_then(|v| integer(v.as_view()))) };
        match self.check {
            Check::Plain => Ok(()),
            Check::Replace { first } => {
                let (Some(pattern), Some(replacement)) = (self.argument(0, runtime)?, self.argument(1, runtime)?)
                else {
                    return Ok(());
                };
                let (input, pattern, replacement) = (input.to_kstr(), pattern.to_kstr(), replacement.to_kstr());
                let matches = if pattern.is_empty() {
                    input.chars().count() as u128 + 1
                } else {
                    input.matches(pattern.as_str()).count() as u128
                };
                let matches = if first { matches.min(1) } else { matches };
                let size = input.len() as u128 - matches * pattern.len() as u128 + matches * replacement.len() as u128;
                if size > MAX_VALUE_BYTES as u128 { Err(self.too_big(size)) } else { Ok(()) }
            }
            Check::Join => {
                let Some(items) = input.as_array() else { return Ok(()) };
                let separator = match self.argument(0, runtime)? {
                    Some(s) => s.to_kstr().len(),
                    None => 1,
                };
                let size = size_of(input, MAX_VALUE_BYTES) as u128
                    + separator as u128 * u128::from(items.size().max(1) as u64 - 1);
                if size > MAX_VALUE_BYTES as u128 { Err(self.too_big(size)) } else { Ok(()) }
            }
            Check::Abs => match integer(input) {
                Some(i64::MIN) => Err(overflow()),
                _ => Ok(()),
            },
            check => {
                let (Some(a), Some(b)) = (integer(input), operand()?) else { return Ok(()) };
                let fits = match check {
                    Check::Add => a.checked_add(b).is_some(),
                    Check::Sub => a.checked_sub(b).is_some(),
                    Check::Mul => a.checked_mul(b).is_some(),
                    // Division by zero is refused by the filter itself, with its own message.
                    Check::Div => b == 0 || a.checked_div(b).is_some(),
                    Check::Rem => b == 0 || a.checked_rem(b).is_some(),
                    _ => true,
                };
                if fits { Ok(()) } else { Err(overflow()) }
            }
        }
    }
}

impl Filter for BoundedFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        budget::check_time().map_err(budget_error)?;
        self.precheck(input, runtime)?;
        let value = catch_unwind(AssertUnwindSafe(|| self.inner.evaluate(input, runtime))).map_err(|_| {
            panic_caught();
            Error::with_msg(format!("the {} filter failed on this input", self.name))
        })??;
        if value.as_array().is_some_and(|a| a.size() as usize > MAX_ITEMS) {
            return Err(Error::with_msg(format!("the {} filter produced more than {MAX_ITEMS} items", self.name)));
        }
        let size = size_of(&value, MAX_VALUE_BYTES);
        if size > MAX_VALUE_BYTES {
            return Err(Error::with_msg(format!(
                "the {} filter produced more than {MAX_VALUE_BYTES} bytes",
                self.name
            )));
        }
        budget::charge_bytes(size).map_err(budget_error)?;
        Ok(value)
    }
}

/// `{% assign name = value | filters %}`, charging the stored value to the render's byte budget
/// (the stdlib's copies any value, however large, as often as the template says).
#[derive(Clone, Copy, Debug, Default)]
pub struct AssignTag;

impl TagReflection for AssignTag {
    fn tag(&self) -> &'static str {
        "assign"
    }

    fn description(&self) -> &'static str {
        "Stores a value in a variable, within the render's byte budget."
    }
}

impl ParseTag for AssignTag {
    fn parse(&self, mut arguments: TagTokenIter<'_>, options: &Language) -> Result<Box<dyn Renderable>> {
        let dst = arguments.expect_next("Identifier expected.")?.expect_identifier().into_result()?.to_owned().into();
        arguments
            .expect_next("Assignment operator \"=\" expected.")?
            .expect_str("=")
            .into_result_custom_msg("Assignment operator \"=\" expected.")?;
        let src = arguments.expect_next("FilterChain expected.")?.expect_filter_chain(options).into_result()?;
        arguments.expect_nothing()?;
        Ok(Box::new(Assign { dst, src }))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self
    }
}

#[derive(Debug)]
struct Assign {
    dst: KString,
    src: FilterChain,
}

impl Renderable for Assign {
    fn render_to(&self, _writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        budget::check_time().map_err(budget_error)?;
        let value = self.src.evaluate(runtime)?;
        budget::charge_bytes(size_of(value.as_view(), budget::MAX_VALUE_BYTES_PER_RENDER)).map_err(budget_error)?;
        runtime.set_global(self.dst.clone(), value.into_owned());
        Ok(())
    }
}

/// A filter that panics, to prove in tests that a panic inside rendering fails one
/// notification and nothing else. Only in debug builds (tests); release builds do not know it.
#[cfg(debug_assertions)]
#[derive(Clone, Debug, Default)]
pub struct TestPanic;

#[cfg(debug_assertions)]
mod test_panic {
    use super::*;
    use liquid_core::parser::ParameterReflection;

    impl FilterReflection for TestPanic {
        fn name(&self) -> &str {
            "pushgate_test_panic"
        }

        fn description(&self) -> &str {
            "Panics (debug builds only: tests of panic isolation)."
        }

        fn positional_parameters(&self) -> &'static [ParameterReflection] {
            &[]
        }

        fn keyword_parameters(&self) -> &'static [ParameterReflection] {
            &[]
        }
    }

    impl ParseFilter for TestPanic {
        fn parse(&self, _arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
            Ok(Box::new(Panics))
        }

        fn reflection(&self) -> &dyn FilterReflection {
            self
        }
    }

    #[derive(Debug)]
    struct Panics;

    impl std::fmt::Display for Panics {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("pushgate_test_panic")
        }
    }

    impl Filter for Panics {
        fn evaluate(&self, _input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
            panic!("pushgate_test_panic: a deliberate panic inside rendering");
        }
    }
}
