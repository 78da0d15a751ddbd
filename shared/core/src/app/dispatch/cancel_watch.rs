//! Reading the operation's cancel so that no claim misses one that came before it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::app::Deps;
use crate::app::ports::{Chunk, StoreError};
use crate::domain::OperationStatus;

/// Whether the chunk's operation has been canceled, read so that a claim never misses a cancel
/// that came before it: after claiming a notification, a dispatcher asks [`Self::canceled`],
/// which answers from an operation read that started after that claim. The operation is marked
/// CANCELED before the API sweeps its notifications, so either the claim came first (the
/// notification was handed to the provider before the cancel: it is sent) or the read sees
/// CANCELED (it is canceled, not sent). Reads are shared: one read serves every claim that
/// finished before it started, so a chunk costs a few operation reads, not one per recipient.
pub(super) struct CancelWatch {
    /// Claims finished so far (ticket numbers).
    claims: AtomicU64,
    /// The latest read: the claims it covers, and whether it saw CANCELED (final: never reset).
    read: tokio::sync::Mutex<(u64, bool)>,
}

impl CancelWatch {
    pub(super) fn new(canceled: bool) -> Self {
        Self { claims: AtomicU64::new(0), read: tokio::sync::Mutex::new((0, canceled)) }
    }

    /// Is the operation canceled, as seen by a read that started after the caller's claim?
    pub(super) async fn canceled(&self, deps: &Deps, chunk: &Chunk) -> Result<bool, StoreError> {
        let ticket = self.claims.fetch_add(1, Ordering::SeqCst) + 1;
        let mut read = self.read.lock().await;
        if read.1 || read.0 >= ticket {
            return Ok(read.1);
        }
        // Let sibling deliveries finish their claims first, so one read serves them all.
        tokio::task::yield_now().await;
        let covers = self.claims.load(Ordering::SeqCst);
        let op = deps.push.get_operation(&chunk.account_id, chunk.operation_id).await?;
        *read = (covers, op.is_some_and(|op| op.status == OperationStatus::Canceled));
        Ok(read.1)
    }
}
