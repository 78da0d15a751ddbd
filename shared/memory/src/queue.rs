use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use pushgate_core::app::Deps;
use pushgate_core::app::dispatch::{ChunkResult, process_chunk};
use pushgate_core::app::ports::{Chunk, FanoutQueue, QueueError};
use pushgate_core::domain::OperationId;

/// Chunks of one operation processed at once: a heavy operation can hold only this many of the
/// slots, so other operations' chunks start at once instead of waiting behind its backlog.
pub const CHUNKS_PER_OPERATION: usize = 8;

struct Message {
    chunk: Chunk,
    receive_count: u32,
    /// When it (last) became waiting.
    since: std::time::Instant,
}

/// Waiting chunks, one queue per operation, served round-robin.
#[derive(Default)]
struct Waiting {
    queues: HashMap<OperationId, VecDeque<Message>>,
    /// Operations with waiting chunks, in serving order.
    ring: VecDeque<OperationId>,
    /// Chunks being processed, per operation.
    running: HashMap<OperationId, usize>,
    closed: bool,
}

impl Waiting {
    fn push(&mut self, message: Message) {
        let op = message.chunk.operation_id;
        let queue = self.queues.entry(op).or_default();
        queue.push_back(message);
        if queue.len() == 1 {
            self.ring.push_back(op);
        }
    }

    /// The next chunk of the first operation (in ring order) below its share of the slots.
    fn next(&mut self, per_operation: usize) -> Option<Message> {
        for _ in 0..self.ring.len() {
            let op = self.ring.pop_front()?;
            if self.running.get(&op).copied().unwrap_or(0) >= per_operation {
                self.ring.push_back(op);
                continue;
            }
            let queue = self.queues.get_mut(&op)?;
            let message = queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&op);
            } else {
                self.ring.push_back(op);
            }
            if message.is_some() {
                *self.running.entry(op).or_default() += 1;
                return message;
            }
        }
        None
    }

    fn done(&mut self, op: OperationId) {
        if let Some(n) = self.running.get_mut(&op) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(&op);
            }
        }
    }
}

struct Shared {
    waiting: Mutex<Waiting>,
    /// Something changed: a chunk arrived or a slot freed.
    wake: Notify,
    /// Chunks accepted and not yet done (including those waiting for a retry).
    outstanding: AtomicUsize,
    idle: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding the lock; keep going with the state as it is.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The local fan-out queue: chunks wait per operation and are processed — by the same
/// `process_chunk` the dispatch Lambda runs — with at most `slots` at once and at most
/// [`CHUNKS_PER_OPERATION`] of one operation, taking operations in turn. Retries come back after
/// their delay, like an SQS visibility timeout. It survives nothing: local use only (SQS is the
/// queue on AWS).
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                waiting: Mutex::default(),
                wake: Notify::new(),
                outstanding: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }
}

#[async_trait]
impl FanoutQueue for MemoryQueue {
    async fn enqueue(&self, chunks: Vec<Chunk>) -> Result<(), QueueError> {
        let mut waiting = self.shared.lock();
        if waiting.closed {
            return Err(QueueError("the local queue is shut down".into()));
        }
        self.shared.outstanding.fetch_add(chunks.len(), Ordering::SeqCst);
        for chunk in chunks {
            waiting.push(Message { chunk, receive_count: 1, since: std::time::Instant::now() });
        }
        drop(waiting);
        self.shared.wake.notify_one();
        Ok(())
    }
}

/// The running dispatcher; [`QueueWorkers::drain`] waits for in-flight work before shutdown.
pub struct QueueWorkers {
    queue: MemoryQueue,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl MemoryQueue {
    /// Starts processing chunks with `deps`, `slots` chunks at a time (at least one).
    pub fn start(&self, deps: Deps, slots: usize) -> QueueWorkers {
        let shared = self.shared.clone();
        let deps = Arc::new(deps);
        let slots = slots.max(1);
        let per_operation = CHUNKS_PER_OPERATION.min(slots);
        let dispatcher = tokio::spawn(async move {
            let mut running = JoinSet::new();
            loop {
                // Reap finished chunks (their slot was given back already).
                while running.try_join_next().is_some() {}
                let wake = shared.wake.notified();
                let next = if running.len() < slots { shared.lock().next(per_operation) } else { None };
                let Some(message) = next else {
                    wake.await;
                    continue;
                };
                let (shared, deps) = (shared.clone(), deps.clone());
                running.spawn(async move {
                    let op = message.chunk.operation_id;
                    process(&shared, &deps, message).await;
                    shared.lock().done(op);
                    shared.wake.notify_one();
                });
            }
        });
        QueueWorkers { queue: self.clone(), dispatcher }
    }

    /// Chunks waiting to be processed, and how long the oldest of them has waited.
    pub fn waiting(&self) -> (usize, Duration) {
        let waiting = self.shared.lock();
        let depth = waiting.queues.values().map(VecDeque::len).sum();
        let oldest = waiting.queues.values().filter_map(|q| q.front()).map(|m| m.since.elapsed()).max();
        (depth, oldest.unwrap_or_default())
    }

    /// Chunks accepted and not yet done.
    pub fn outstanding(&self) -> usize {
        self.shared.outstanding.load(Ordering::SeqCst)
    }

    /// Waits until nothing is outstanding, or `timeout` passes; returns whether it went idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.idle.notified();
                if self.outstanding() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    fn finished(shared: &Shared) {
        if shared.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.idle.notify_waiters();
        }
    }
}

/// Processes one chunk. Whatever happens to it, the queue goes on: a panic that escaped the
/// per-recipient guards sends the chunk back like a retry (as SQS would redeliver it), and after
/// the last allowed receive drops it, as the dead-letter queue would take it.
async fn process(shared: &Arc<Shared>, deps: &Deps, message: Message) {
    let processed = AssertUnwindSafe(process_chunk(deps, &message.chunk, message.receive_count)).catch_unwind();
    let result = match processed.await {
        Ok(result) => result,
        Err(_) if message.receive_count >= deps.settings.max_receives => {
            error!(
                operation_id = %message.chunk.operation_id,
                receive_count = message.receive_count,
                "processing a chunk panicked on its last allowed receive; dropping it"
            );
            ChunkResult::Done
        }
        Err(_) => {
            error!(operation_id = %message.chunk.operation_id, "processing a chunk panicked; it comes back later");
            ChunkResult::RetryAfter(Duration::from_secs(30))
        }
    };
    match result {
        ChunkResult::Done => MemoryQueue::finished(shared),
        ChunkResult::RetryAfter(delay) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let retry = Message {
                    chunk: message.chunk,
                    receive_count: message.receive_count + 1,
                    since: std::time::Instant::now(),
                };
                let mut waiting = shared.lock();
                if waiting.closed {
                    warn!("queue shut down before a retry could be redelivered");
                    drop(waiting);
                    MemoryQueue::finished(&shared);
                    return;
                }
                waiting.push(retry);
                drop(waiting);
                shared.wake.notify_one();
            });
        }
    }
}

impl QueueWorkers {
    /// Graceful shutdown: waits up to `timeout` for in-flight chunks, then stops the workers.
    pub async fn drain(self, timeout: Duration) {
        let idle = self.queue.wait_idle(timeout).await;
        if idle {
            info!("fan-out queue drained");
        } else {
            warn!(outstanding = self.queue.outstanding(), "shutting down with chunks still outstanding");
        }
        self.queue.shared.lock().closed = true;
        self.dispatcher.abort();
        let _ = self.dispatcher.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(op: u128) -> Message {
        let chunk: Chunk = serde_json::from_value(serde_json::json!({
            "v": 1,
            "accountId": "AC0123456789abcdef0123456789abcdef",
            "operationId": OperationId::from_ulid(ulid::Ulid(op)).to_string(),
            "createdAt": "2026-11-30T10:00:00Z",
            "content": {"title": "t"},
            "priority": "HIGH",
            "sound": null,
            "senders": {},
            "recipients": [],
        }))
        .expect("a chunk");
        Message { chunk, receive_count: 1, since: std::time::Instant::now() }
    }

    #[test]
    fn operations_take_turns_and_none_holds_more_than_its_share_of_slots() {
        let mut waiting = Waiting::default();
        for _ in 0..10 {
            waiting.push(message(1));
        }
        waiting.push(message(2));
        let op = |m: Option<Message>| m.map(|m| m.chunk.operation_id.ulid().0);
        assert_eq!(op(waiting.next(2)), Some(1));
        assert_eq!(op(waiting.next(2)), Some(2), "the other operation's chunk is next, not the backlog");
        assert_eq!(op(waiting.next(2)), Some(1));
        assert_eq!(op(waiting.next(2)), None, "operation 1 has its 2 slots; nothing else waits");
        waiting.done(OperationId::from_ulid(ulid::Ulid(1)));
        assert_eq!(op(waiting.next(2)), Some(1));
    }
}
