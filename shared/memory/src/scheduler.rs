//! The local scheduler: one in-process timer per (operation, instant). It survives nothing (a
//! restart forgets pending releases): local use only; EventBridge Scheduler is the scheduler on
//! AWS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use pushgate_core::app::ports::{QueueError, Release, Scheduler};
use pushgate_core::domain::{AccountId, OperationId};

type Key = (AccountId, OperationId, u8);

/// Timers that hand each release, at its instant, to the receiver [`MemoryScheduler::new`]
/// returns (the local process runs `app::schedule::release` on them).
#[derive(Clone)]
pub struct MemoryScheduler {
    timers: Arc<Mutex<HashMap<Key, AbortHandle>>>,
    fired: mpsc::UnboundedSender<Release>,
}

impl MemoryScheduler {
    /// A scheduler and the receiver of the releases it fires.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Release>) {
        let (fired, rx) = mpsc::unbounded_channel();
        (Self { timers: Arc::default(), fired }, rx)
    }

    /// How many releases are pending.
    pub fn pending(&self) -> usize {
        self.timers.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Scheduler for MemoryScheduler {
    async fn schedule(&self, release: &Release) -> Result<(), QueueError> {
        let key = (release.account_id.clone(), release.operation_id, release.instant);
        let wait = (release.at - chrono::Utc::now()).to_std().unwrap_or_default();
        let (timers, fired, release) = (self.timers.clone(), self.fired.clone(), release.clone());
        let mut guard = self.timers.lock().map_err(|_| QueueError("the scheduler lock was poisoned".into()))?;
        let task = tokio::spawn({
            let key = key.clone();
            async move {
                // Timers never fire early; the extra millisecond covers sub-millisecond instants.
                tokio::time::sleep(wait + std::time::Duration::from_millis(1)).await;
                if let Ok(mut timers) = timers.lock() {
                    timers.remove(&key);
                }
                let _ = fired.send(release);
            }
        });
        if let Some(previous) = guard.insert(key, task.abort_handle()) {
            previous.abort();
        }
        Ok(())
    }

    async fn unschedule(&self, account: &AccountId, operation: OperationId, instant: u8) -> Result<(), QueueError> {
        let mut timers = self.timers.lock().map_err(|_| QueueError("the scheduler lock was poisoned".into()))?;
        if let Some(task) = timers.remove(&(account.clone(), operation, instant)) {
            task.abort();
        }
        Ok(())
    }
}

/// Runs every release `fired` hands over (what EventBridge Scheduler plus the dispatch function
/// do on AWS), retrying a failed one every second up to a minute.
pub fn run_releases(deps: pushgate_core::app::Deps, mut fired: mpsc::UnboundedReceiver<Release>) {
    tokio::spawn(async move {
        while let Some(release) = fired.recv().await {
            let deps = deps.clone();
            tokio::spawn(async move {
                for attempt in 1..=60 {
                    match pushgate_core::app::schedule::release(&deps, &release).await {
                        Ok(()) => return,
                        Err(e) => tracing::warn!(error = %e, attempt, "release failed; retrying in 1 s"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                tracing::error!(operation_id = %release.operation_id, "release failed for a minute; giving up");
            });
        }
    });
}
