//! A small pool of threads for CPU-heavy work (rendering templates), fair between keys.
//!
//! Rendering is synchronous and, for a hostile template, takes up to its whole budget. On the
//! async runtime's threads it would stall every request and delivery sharing them; on a plain
//! FIFO pool one operation with 10,000 expensive recipients would make every other operation
//! wait behind all of them. Here each job carries a key (the operation), every key has its own
//! queue, and the threads serve the keys round-robin: a one-recipient send waits for at most one
//! job of each other busy operation, not for their backlogs.
//!
//! A panic inside a job is caught and reported to its caller; the thread goes on.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queues: HashMap<u128, VecDeque<Job>>,
    /// Keys with queued jobs, in the order they are served.
    ring: VecDeque<u128>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned lock can only come from this module's own
        // bookkeeping, which does not panic; carry on with the state as it is.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts the threads with the first job; closes the pool when the last handle goes (the
/// threads then finish what is queued and exit).
struct Owner {
    shared: Arc<Shared>,
    threads: usize,
    started: std::sync::Once,
}

impl Owner {
    fn start(&self) {
        self.started.call_once(|| {
            for n in 0..self.threads {
                let shared = self.shared.clone();
                let spawned =
                    std::thread::Builder::new().name(format!("pushgate-cpu-{n}")).spawn(move || serve(&shared));
                if let Err(e) = spawned {
                    // Fewer threads than asked is slower, not wrong; none at all is caught below.
                    tracing::error!(error = %e, "could not start a CPU pool thread");
                }
            }
        });
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// Why a job did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job panicked (the pool is fine).
    #[error("the job panicked")]
    Panicked,
    /// The pool was closed before the job ran.
    #[error("the CPU pool is closed")]
    Closed,
}

/// Fair CPU pool handle; cheap to clone. Threads stop when the last handle is dropped.
#[derive(Clone)]
pub struct CpuPool {
    owner: Arc<Owner>,
}

impl CpuPool {
    /// A pool of `threads` (at least one) worker threads, started with the first job: a
    /// process that never renders (every HTTP function but send) never starts them.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), ready: Condvar::new() });
        Self { owner: Arc::new(Owner { shared, threads: threads.max(1), started: std::sync::Once::new() }) }
    }

    /// A pool sized for this machine: one thread per core but one (left to the async runtime
    /// for requests and deliveries), at least one.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores.saturating_sub(1).max(1))
    }

    /// Runs `job` on the pool, queued under `key`, and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        key: u128,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobError> {
        let (tx, rx) = oneshot::channel();
        let wrapped: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(job)).map_err(|_| JobError::Panicked);
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(result);
        });
        self.owner.start();
        {
            let shared = &self.owner.shared;
            let mut state = shared.lock();
            if state.closed {
                return Err(JobError::Closed);
            }
            let queue = state.queues.entry(key).or_default();
            queue.push_back(wrapped);
            if queue.len() == 1 {
                state.ring.push_back(key);
            }
            drop(state);
            shared.ready.notify_one();
        }
        rx.await.unwrap_or(Err(JobError::Closed))
    }

    /// Jobs waiting for a thread, over all keys.
    pub fn queued(&self) -> usize {
        self.owner.shared.lock().queues.values().map(VecDeque::len).sum()
    }
}

/// A worker thread: takes the next key in the ring, runs one of its jobs, puts the key at the
/// back if it has more.
fn serve(shared: &Shared) {
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if let Some(key) = state.ring.pop_front() {
                    let Some(queue) = state.queues.get_mut(&key) else { continue };
                    let job = queue.pop_front();
                    if queue.is_empty() {
                        state.queues.remove(&key);
                    } else {
                        state.ring.push_back(key);
                    }
                    if let Some(job) = job {
                        break job;
                    }
                } else if state.closed {
                    return;
                } else {
                    state = shared.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pool_starts_its_threads_with_its_first_job_not_before() {
        let pool = CpuPool::new(2);
        assert!(!pool.owner.started.is_completed(), "no thread before the first job");
        assert_eq!(pool.run(1, || 6 * 7).await, Ok(42));
        assert!(pool.owner.started.is_completed());
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_pool_goes_on() {
        let pool = CpuPool::new(1);
        let result: Result<(), _> = pool.run(1, || panic!("boom")).await;
        assert_eq!(result, Err(JobError::Panicked));
        assert_eq!(pool.run(1, || 40 + 2).await, Ok(42));
    }

    #[tokio::test]
    async fn keys_are_served_round_robin_so_a_backlog_does_not_delay_another_key() {
        let pool = CpuPool::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the only thread so the queue builds up.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let held = {
            let (gate, pool) = (gate.clone(), pool.clone());
            async move {
                pool.run(0, move || {
                    let (lock, cv) = &*gate;
                    let mut open = lock.lock().unwrap_or_else(|p| p.into_inner());
                    while !*open {
                        open = cv.wait(open).unwrap_or_else(|p| p.into_inner());
                    }
                })
                .await
            }
        };
        let held = tokio::spawn(held);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut waiting = Vec::new();
        for i in 0..20 {
            let (order, pool) = (order.clone(), pool.clone());
            waiting.push(tokio::spawn(async move {
                pool.run(1, move || order.lock().map(|mut o| o.push(("busy", i))).ok()).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (late, p) = (order.clone(), pool.clone());
        let other =
            tokio::spawn(async move { p.run(2, move || late.lock().map(|mut o| o.push(("other", 0))).ok()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.queued(), 21);
        {
            let (lock, cv) = &*gate;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        held.await.expect("joins").expect("runs");
        other.await.expect("joins").expect("runs");
        for w in waiting {
            w.await.expect("joins").expect("runs");
        }
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        let position = order.iter().position(|(k, _)| *k == "other").expect("ran");
        assert!(position <= 1, "the other key ran after at most one job of the busy key: {order:?}");
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_threads() {
        let ran = Arc::new(AtomicUsize::new(0));
        let pool = CpuPool::new(2);
        let r = ran.clone();
        pool.run(7, move || r.fetch_add(1, Ordering::SeqCst)).await.expect("runs");
        let clone = pool.clone();
        drop(pool);
        assert!(clone.run(7, || ()).await.is_ok(), "a clone keeps the pool open");
        drop(clone);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
