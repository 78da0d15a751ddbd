//! Blocks with bounded work: pushgate's own `for` loop, and a nesting guard around the stdlib
//! blocks it keeps.
//!
//! liquid's stdlib `for` materialises its whole range (`(1..1000000000)` is a 56 GB vector)
//! before the first iteration and never asks anyone before the next one. Ours counts a range's
//! length with checked arithmetic, refuses at parse time a literal range that can never fit the
//! budget and at render time any range longer than what is left of it, iterates lazily, and
//! draws every iteration from the render's budget (see [`super::budget`]). Nesting is counted on
//! the parse tree, for loops and for every other block (`if` inside `if` inside … is recursion
//! in the parser and the renderer).

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;

use liquid_core::model::{KString, KStringRef, Object, Scalar, Value, ValueCow, ValueView};
use liquid_core::parser::{BlockElement, TryMatchToken};
use liquid_core::runtime::{Interrupt, InterruptRegister, StackFrame};
use liquid_core::{
    BlockReflection, Error, Expression, Language, ParseBlock, Renderable, Result, Runtime, TagBlock, TagTokenIter,
    Template,
};

use super::budget;

/// Loops nest at most this deep.
pub const MAX_LOOP_DEPTH: usize = 2;
/// Blocks of any kind nest at most this deep.
pub const MAX_BLOCK_DEPTH: usize = 16;

thread_local! {
    static BLOCK_DEPTH: Cell<usize> = const { Cell::new(0) };
    static LOOP_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One level of nesting while a block's body is parsed (undone on drop, errors included).
struct Depth(&'static std::thread::LocalKey<Cell<usize>>);

impl Depth {
    fn enter(key: &'static std::thread::LocalKey<Cell<usize>>, max: usize, what: &str) -> Result<Self> {
        let depth = key.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        let guard = Depth(key);
        if depth > max {
            return Err(Error::with_msg(format!("{what} may nest at most {max} deep")));
        }
        Ok(guard)
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        self.0.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A stdlib block whose nesting is counted.
#[derive(Clone)]
pub struct Nested<B>(pub B);

impl<B: ParseBlock + Clone + 'static> ParseBlock for Nested<B> {
    fn parse(
        &self,
        arguments: TagTokenIter<'_>,
        block: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let _depth = Depth::enter(&BLOCK_DEPTH, MAX_BLOCK_DEPTH, "blocks")?;
        self.0.parse(arguments, block, options)
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self.0.reflection()
    }
}

/// `{% for item in collection|(start..end) [limit: n] [offset: n] [reversed] %}…{% else %}…{% endfor %}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForBlock;

impl BlockReflection for ForBlock {
    fn start_tag(&self) -> &str {
        "for"
    }

    fn end_tag(&self) -> &str {
        "endfor"
    }

    fn description(&self) -> &str {
        "Iterates over an array or a range, within the render's iteration budget."
    }
}

#[derive(Debug)]
enum Range {
    Array(Expression),
    Counted(Expression, Expression),
}

impl ParseBlock for ForBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let _block = Depth::enter(&BLOCK_DEPTH, MAX_BLOCK_DEPTH, "blocks")?;
        let _loop = Depth::enter(&LOOP_DEPTH, MAX_LOOP_DEPTH, "loops")?;
        let var_name = arguments.expect_next("Identifier expected.")?.expect_identifier().into_result()?;
        arguments.expect_next("\"in\" expected.")?.expect_str("in").into_result_custom_msg("\"in\" expected.")?;
        let range = arguments.expect_next("Array or range expected.")?;
        let range = match range.expect_value() {
            TryMatchToken::Matches(array) => Range::Array(array),
            TryMatchToken::Fails(range) => match range.expect_range() {
                TryMatchToken::Matches((start, stop)) => Range::Counted(start, stop),
                TryMatchToken::Fails(range) => return Err(range.raise_error()),
            },
        };
        if let Range::Counted(Expression::Literal(start), Expression::Literal(stop)) = &range {
            let ends = (start.as_scalar().and_then(|s| s.to_integer()), stop.as_scalar().and_then(|s| s.to_integer()));
            if let (Some(start), Some(stop)) = ends
                && span(start, stop) > u128::from(budget::MAX_ITERATIONS)
            {
                return Err(Error::with_msg(format!(
                    "the range ({start}..{stop}) is longer than the {} iterations a render may run",
                    budget::MAX_ITERATIONS
                )));
            }
        }
        let (mut limit, mut offset, mut reversed) = (None, None, false);
        while let Some(token) = arguments.next() {
            match token.as_str() {
                "limit" => limit = Some(parse_attr(&mut arguments)?),
                "offset" => offset = Some(parse_attr(&mut arguments)?),
                "reversed" => reversed = true,
                _ => return Err(token.raise_custom_error("\"limit\", \"offset\" or \"reversed\" expected.")),
            }
        }
        arguments.expect_nothing()?;

        let mut body = Vec::new();
        let mut otherwise = None;
        while let Some(element) = tokens.next()? {
            match element {
                BlockElement::Tag(mut tag) if tag.name() == "else" => {
                    tag.tokens().expect_nothing()?;
                    otherwise = Some(Template::new(tokens.parse_all(options)?));
                    break;
                }
                BlockElement::Tag(tag) => body.push(tag.parse(&mut tokens, options)?),
                element => body.push(element.parse(&mut tokens, options)?),
            }
        }
        tokens.assert_empty();
        Ok(Box::new(For {
            var_name: KString::from_ref(var_name),
            range,
            body: Template::new(body),
            otherwise,
            limit,
            offset,
            reversed,
        }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

fn parse_attr(arguments: &mut TagTokenIter<'_>) -> Result<Expression> {
    arguments.expect_next("\":\" expected.")?.expect_str(":").into_result_custom_msg("\":\" expected.")?;
    arguments.expect_next("Value expected.")?.expect_value().into_result()
}

/// How many values `start..=stop` holds (0 when `stop < start`), without overflow.
fn span(start: i64, stop: i64) -> u128 {
    if stop < start { 0 } else { (i128::from(stop) - i128::from(start) + 1) as u128 }
}

#[derive(Debug)]
struct For {
    var_name: KString,
    range: Range,
    body: Template,
    otherwise: Option<Template>,
    limit: Option<Expression>,
    offset: Option<Expression>,
    reversed: bool,
}

/// The collection a loop walks: a lazily counted range, or the values of an array (an object
/// walks its `[key, value]` pairs).
enum Items<'a> {
    Counted(i64),
    Values(Vec<ValueCow<'a>>),
}

impl Items<'_> {
    fn get(&self, i: usize) -> ValueCow<'_> {
        match self {
            // `i` < the span, which fits i64 arithmetic from `start` by construction.
            Items::Counted(start) => ValueCow::Owned(Value::scalar(start.saturating_add(i as i64))),
            Items::Values(values) => match values.get(i) {
                Some(v) => ValueCow::Borrowed(v.as_view()),
                None => ValueCow::Owned(Value::Nil),
            },
        }
    }
}

fn whole_number(expr: &Expression, runtime: &dyn Runtime, what: &str) -> Result<i64> {
    let value = expr.evaluate(runtime)?;
    value.as_scalar().and_then(|s| s.to_integer()).ok_or_else(|| {
        Error::with_msg(format!("Expected a whole number for the loop's {what}, found `{}`", value.type_name()))
    })
}

fn budget_error(e: budget::Exhausted) -> Error {
    Error::with_msg(e.message())
}

impl Renderable for For {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let evaluated;
        let (items, total) = match &self.range {
            Range::Counted(start, stop) => {
                let start = whole_number(start, runtime, "start")?;
                let stop = whole_number(stop, runtime, "end")?;
                (Items::Counted(start), span(start, stop))
            }
            Range::Array(expr) => {
                evaluated = expr.evaluate(runtime)?;
                let values = values_of(evaluated.as_view())?;
                let n = values.len() as u128;
                (Items::Values(values), n)
            }
        };
        let offset = match &self.offset {
            Some(e) => u128::try_from(whole_number(e, runtime, "offset")?).unwrap_or(0),
            None => 0,
        };
        let available = total.saturating_sub(offset);
        let len = match &self.limit {
            Some(e) => available.min(u128::try_from(whole_number(e, runtime, "limit")?).unwrap_or(0)),
            None => available,
        };
        if len == 0 {
            if let Some(otherwise) = &self.otherwise {
                otherwise.render_to(writer, runtime)?;
            }
            return Ok(());
        }
        budget::can_iterate(u64::try_from(len).unwrap_or(u64::MAX)).map_err(budget_error)?;
        // Within the budget, so these fit a usize.
        let (offset, len) = (offset as usize, len as usize);
        let parent = runtime.try_get(&[Scalar::new("forloop").as_ref()]).map(|v| v.into_owned());
        for n in 0..len {
            budget::iterate().map_err(budget_error)?;
            let i = if self.reversed { offset + len - 1 - n } else { offset + n };
            let item = items.get(i);
            let forloop = forloop_object(n, len, parent.as_ref());
            let mut root = HashMap::<KStringRef<'_>, &dyn ValueView>::new();
            root.insert("forloop".into(), &forloop);
            root.insert(self.var_name.as_ref(), item.as_view());
            let scope = StackFrame::new(runtime, &root);
            self.body.render_to(writer, &scope)?;
            // A `continue` ended the body early: carry on. A `break`: stop.
            if let Some(Interrupt::Break) = scope.registers().get_mut::<InterruptRegister>().reset() {
                break;
            }
        }
        Ok(())
    }
}

fn values_of(value: &dyn ValueView) -> Result<Vec<ValueCow<'_>>> {
    if let Some(array) = value.as_array() {
        Ok(array.values().map(ValueCow::Borrowed).collect())
    } else if let Some(object) = value.as_object() {
        Ok(object
            .iter()
            .map(|(k, v)| ValueCow::Owned(Value::Array(vec![Value::scalar(k.into_owned()), v.to_value()])))
            .collect())
    } else if value.is_state() || value.is_nil() {
        Ok(Vec::new())
    } else {
        Err(Error::with_msg(format!("Expected an array or a range to loop over, found `{}`", value.type_name())))
    }
}

fn forloop_object(i: usize, len: usize, parent: Option<&Value>) -> Value {
    let (i, len) = (i as i64, len as i64);
    let mut object = Object::new();
    object.insert("length".into(), Value::scalar(len));
    object.insert("index0".into(), Value::scalar(i));
    object.insert("index".into(), Value::scalar(i + 1));
    object.insert("rindex0".into(), Value::scalar(len - i - 1));
    object.insert("rindex".into(), Value::scalar(len - i));
    object.insert("first".into(), Value::scalar(i == 0));
    object.insert("last".into(), Value::scalar(i == len - 1));
    if let Some(parent) = parent {
        object.insert("parentloop".into(), parent.clone());
    }
    Value::Object(object)
}
