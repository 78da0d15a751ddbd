//! The work budget of one render: loop iterations, wall-clock time, and output bytes per field.
//!
//! Rendering is synchronous, so the budget of the render in progress lives in a thread-local:
//! the loop block, the filters and the output writer all draw from it without liquid having to
//! pass anything along. A budget covers one recipient (every field of its content and its tags),
//! so a template cannot multiply its allowance by being split across fields.

use std::cell::Cell;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Loop iterations one recipient's render may run, across every loop of every field.
pub const MAX_ITERATIONS: u64 = 10_000;
/// Wall-clock budget for rendering one recipient (every field).
pub const RENDER_BUDGET: Duration = Duration::from_millis(50);
/// Rendered output of one field may not exceed this many bytes.
pub const MAX_OUTPUT_BYTES: usize = 4096;
/// Bytes of values one recipient's render may produce with filters and `assign`, in total
/// (what it allocates, not what it keeps: a bound on memory and on work alike).
pub const MAX_VALUE_BYTES_PER_RENDER: usize = 1024 * 1024;

/// Which bound a render ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// [`MAX_ITERATIONS`].
    Iterations,
    /// [`RENDER_BUDGET`].
    Time,
    /// [`MAX_OUTPUT_BYTES`] in one field.
    Output,
    /// [`MAX_VALUE_BYTES_PER_RENDER`].
    Bytes,
}

impl Exhausted {
    /// Every bound.
    pub const ALL: [Self; 4] = [Self::Iterations, Self::Time, Self::Output, Self::Bytes];

    /// Does a render failure's `message` say that one of the bounds ran out?
    pub fn named_in(message: &str) -> bool {
        Self::ALL.iter().any(|bound| message.contains(&bound.message()))
    }

    /// The message a failed render reports.
    pub fn message(self) -> String {
        match self {
            Self::Iterations => format!("template loops exceed {MAX_ITERATIONS} iterations for one recipient"),
            Self::Time => format!("template rendering exceeded its time budget ({} ms)", RENDER_BUDGET.as_millis()),
            Self::Output => format!("rendered output exceeds {MAX_OUTPUT_BYTES} bytes"),
            Self::Bytes => {
                format!("template values exceed {MAX_VALUE_BYTES_PER_RENDER} bytes for one recipient")
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Work {
    deadline: Instant,
    iterations_left: u64,
    bytes_left: usize,
    exhausted: Option<Exhausted>,
}

thread_local! {
    static WORK: Cell<Option<Work>> = const { Cell::new(None) };
}

/// The budget of the render in progress on this thread. The first scope entered on a thread
/// starts a budget; nested scopes (a field inside a recipient's render) share it. The budget
/// ends when the scope that started it is dropped.
pub struct Scope {
    owner: bool,
}

impl Scope {
    /// Enters a render: starts a fresh budget unless one is running already.
    pub fn enter() -> Self {
        Self::enter_with(MAX_ITERATIONS, RENDER_BUDGET)
    }

    /// A budget whose clock cannot run out first (tests of the other bounds: on a loaded
    /// machine a debug build can spend 50 ms before 10,000 iterations).
    #[cfg(test)]
    pub(crate) fn without_clock() -> Self {
        Self::enter_with(MAX_ITERATIONS, Duration::from_secs(60))
    }

    fn enter_with(iterations: u64, time: Duration) -> Self {
        WORK.with(|w| match w.get() {
            Some(_) => Self { owner: false },
            None => {
                w.set(Some(Work {
                    deadline: Instant::now() + time,
                    iterations_left: iterations,
                    bytes_left: MAX_VALUE_BYTES_PER_RENDER,
                    exhausted: None,
                }));
                Self { owner: true }
            }
        })
    }

    /// The bound the render ran into, if any.
    pub fn exhausted(&self) -> Option<Exhausted> {
        WORK.with(|w| w.get().and_then(|w| w.exhausted))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.owner {
            WORK.with(|w| w.set(None));
        }
    }
}

fn update<T>(f: impl FnOnce(&mut Work) -> T) -> Option<T> {
    WORK.with(|cell| {
        let mut work = cell.get()?;
        let out = f(&mut work);
        cell.set(Some(work));
        Some(out)
    })
}

/// Records `why` as the reason the render stops and returns it as an error.
fn exhaust(work: &mut Work, why: Exhausted) -> Result<(), Exhausted> {
    work.exhausted.get_or_insert(why);
    Err(why)
}

/// Checks the clock (no budget running: nothing to check).
pub fn check_time() -> Result<(), Exhausted> {
    update(|w| {
        if let Some(why) = w.exhausted {
            return Err(why);
        }
        if Instant::now() > w.deadline { exhaust(w, Exhausted::Time) } else { Ok(()) }
    })
    .unwrap_or(Ok(()))
}

/// Will `n` more iterations fit? (A loop asks before it starts, so an oversized range fails
/// at once instead of after burning the budget.)
pub fn can_iterate(n: u64) -> Result<(), Exhausted> {
    update(|w| if n > w.iterations_left { exhaust(w, Exhausted::Iterations) } else { Ok(()) }).unwrap_or(Ok(()))
}

/// Draws one loop iteration (and checks the clock).
pub fn iterate() -> Result<(), Exhausted> {
    update(|w| {
        if let Some(why) = w.exhausted {
            return Err(why);
        }
        if w.iterations_left == 0 {
            return exhaust(w, Exhausted::Iterations);
        }
        w.iterations_left -= 1;
        if Instant::now() > w.deadline { exhaust(w, Exhausted::Time) } else { Ok(()) }
    })
    .unwrap_or(Ok(()))
}

/// Draws `n` bytes of values produced by a filter or stored by `assign` (and checks the clock).
pub fn charge_bytes(n: usize) -> Result<(), Exhausted> {
    update(|w| {
        if let Some(why) = w.exhausted {
            return Err(why);
        }
        if n > w.bytes_left {
            return exhaust(w, Exhausted::Bytes);
        }
        w.bytes_left -= n;
        if Instant::now() > w.deadline { exhaust(w, Exhausted::Time) } else { Ok(()) }
    })
    .unwrap_or(Ok(()))
}

/// Records that a field's output went over [`MAX_OUTPUT_BYTES`].
fn output_exceeded() {
    update(|w| {
        let _ = exhaust(w, Exhausted::Output);
    });
}

/// The output of one field: at most [`MAX_OUTPUT_BYTES`], written only while the budget lasts.
pub struct CappedWriter {
    buf: Vec<u8>,
}

impl CappedWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self { buf: Vec::with_capacity(64) }
    }

    /// What was written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl Default for CappedWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            output_exceeded();
            return Err(io::Error::other("output limit"));
        }
        check_time().map_err(|_| io::Error::other("time budget"))?;
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scopes_share_one_budget_and_the_outer_one_ends_it() {
        let outer = Scope::enter_with(3, Duration::from_secs(60));
        {
            let _inner = Scope::enter();
            assert_eq!(iterate(), Ok(()));
            assert_eq!(iterate(), Ok(()));
        }
        assert_eq!(can_iterate(2), Err(Exhausted::Iterations), "the inner scope drew from the outer budget");
        assert_eq!(outer.exhausted(), Some(Exhausted::Iterations));
        drop(outer);
        let fresh = Scope::enter();
        assert_eq!(fresh.exhausted(), None);
        assert_eq!(can_iterate(MAX_ITERATIONS), Ok(()));
    }

    #[test]
    fn an_expired_deadline_stops_iterations_and_writes() {
        let scope = Scope::enter_with(100, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(iterate(), Err(Exhausted::Time));
        assert!(CappedWriter::new().write(b"x").is_err());
        assert_eq!(scope.exhausted(), Some(Exhausted::Time));
    }

    #[test]
    fn without_a_scope_nothing_is_limited_but_the_output_cap() {
        assert_eq!(iterate(), Ok(()));
        assert_eq!(check_time(), Ok(()));
        let mut w = CappedWriter::new();
        assert!(w.write(&[b'x'; MAX_OUTPUT_BYTES]).is_ok());
        assert!(w.write(b"y").is_err());
    }
}
