use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::app::Deps;
use crate::app::dispatch::{ChunkResult, process_chunk};
use crate::app::ports::{Chunk, FanoutQueue, QueueError};

struct Message {
    chunk: Chunk,
    receive_count: u32,
}

struct Shared {
    tx: mpsc::UnboundedSender<Message>,
    rx: Mutex<mpsc::UnboundedReceiver<Message>>,
    /// Chunks accepted and not yet done (including those waiting for a retry).
    outstanding: AtomicUsize,
    idle: Notify,
}

/// The local fan-out queue: an in-process channel drained by worker tasks that run the same
/// `process_chunk` the dispatch Lambda runs. Retries come back after their delay, like an SQS
/// visibility timeout. It survives nothing: local use only (SQS is the queue on AWS).
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared { tx, rx: Mutex::new(rx), outstanding: AtomicUsize::new(0), idle: Notify::new() }),
        }
    }
}

#[async_trait]
impl FanoutQueue for MemoryQueue {
    async fn enqueue(&self, chunks: Vec<Chunk>) -> Result<(), QueueError> {
        let n = chunks.len();
        self.shared.outstanding.fetch_add(n, Ordering::SeqCst);
        for chunk in chunks {
            if self.shared.tx.send(Message { chunk, receive_count: 1 }).is_err() {
                return Err(QueueError("the local queue is shut down".into()));
            }
        }
        Ok(())
    }
}

/// Running workers; [`QueueWorkers::drain`] waits for in-flight work before shutdown.
pub struct QueueWorkers {
    queue: MemoryQueue,
    tasks: JoinSet<()>,
}

impl MemoryQueue {
    /// Starts `workers` tasks processing chunks with `deps`.
    pub fn start(&self, deps: Deps, workers: usize) -> QueueWorkers {
        let mut tasks = JoinSet::new();
        let deps = Arc::new(deps);
        for _ in 0..workers.max(1) {
            let shared = self.shared.clone();
            let deps = deps.clone();
            tasks.spawn(async move {
                loop {
                    let message = { shared.rx.lock().await.recv().await };
                    let Some(message) = message else { break };
                    // Whatever happens to one chunk, the worker goes on: a panic that escaped
                    // the per-recipient guards sends the chunk back like a retry (as SQS would
                    // redeliver it), and after the last allowed receive drops it, as the
                    // dead-letter queue would take it.
                    let processed =
                        AssertUnwindSafe(process_chunk(&deps, &message.chunk, message.receive_count)).catch_unwind();
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
                        ChunkResult::Done => {
                            if shared.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
                                shared.idle.notify_waiters();
                            }
                        }
                        ChunkResult::RetryAfter(delay) => {
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let retry = Message { chunk: message.chunk, receive_count: message.receive_count + 1 };
                                if shared.tx.send(retry).is_err() {
                                    warn!("queue shut down before a retry could be redelivered");
                                }
                            });
                        }
                    }
                }
            });
        }
        QueueWorkers { queue: self.clone(), tasks }
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
}

impl QueueWorkers {
    /// Graceful shutdown: waits up to `timeout` for in-flight chunks, then stops the workers.
    pub async fn drain(mut self, timeout: Duration) {
        let idle = self.queue.wait_idle(timeout).await;
        if idle {
            info!("fan-out queue drained");
        } else {
            warn!(outstanding = self.queue.outstanding(), "shutting down with chunks still outstanding");
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
