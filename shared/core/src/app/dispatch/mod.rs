//! Dispatch: process one queued chunk. The dispatch Lambda and the local worker both call
//! [`process_chunk`].
//!
//! A chunk of an immediate send goes through [`leased`]: one lease per chunk, each
//! notification stored once when decided, the chunk's outcomes counted once. A chunk of a
//! scheduled send (whose notifications exist SCHEDULED from the send on) goes recipient by
//! recipient, as below.
//!
//! Per recipient: render → create the notification idempotently (deterministic id) → claim it →
//! deliver → record the final status and the operation's counters in one atomic step. A chunk
//! processed twice finds its notifications final or claimed and sends nothing twice (promise 3).
//! Retryable provider failures are retried here with exponential backoff and full jitter; when a
//! wait would be too long or attempts run out, the claim is released and the chunk goes back to
//! the queue. On the last allowed receive they become FAILED, so every recipient ends final
//! (promise 2).

//!
//! [`messages`] turns queue messages into chunks, releases and webhook posts; this module
//! processes a chunk; [`leased`] an immediate send's chunk; [`recipient`] takes one recipient
//! from render to final status;
//! [`cancel_watch`] lets every claim see a cancel that came before it.

mod cancel_watch;
mod leased;
mod messages;
pub mod pacing;
mod recipient;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{error, info, instrument, warn};

use crate::domain::credential::secret_aad;
use crate::domain::{CompiledContent, CredentialSecret, OperationStatus, Provider};

use super::Deps;
use super::ports::{Chunk, StoreError};
use cancel_watch::CancelWatch;
pub use leased::DECIDED_BATCH;
pub use messages::{QueueMessage, process_messages};
use recipient::{Ctx, Outcome, RecipientResult, ResolvedCredential};

/// What the queue should do with a processed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkResult {
    /// Every recipient is final: delete the message.
    Done,
    /// Some recipients must be retried: redeliver the chunk after this delay.
    RetryAfter(Duration),
}

/// Counts of one processing of a chunk, logged once (not per recipient: a provider outage
/// during a 10,000-recipient send is a few lines, not 150,000).
#[derive(Debug, Default)]
struct Tally {
    sent: u32,
    failed: u32,
    canceled: u32,
    unchanged: u32,
    retry: u32,
}

impl Tally {
    fn add(&mut self, result: &RecipientResult) {
        match result {
            RecipientResult::Done(Outcome::Sent) => self.sent += 1,
            RecipientResult::Done(Outcome::Failed) => self.failed += 1,
            RecipientResult::Done(Outcome::Canceled) => self.canceled += 1,
            RecipientResult::Done(Outcome::Unchanged) => self.unchanged += 1,
            RecipientResult::Retry(_) => self.retry += 1,
        }
    }
}

/// Processes one chunk; `receive_count` is how many times the queue has delivered it (1 first).
#[instrument(skip_all, fields(operation_id = %chunk.operation_id, recipients = chunk.recipients.len(), receive_count))]
pub async fn process_chunk(deps: &Deps, chunk: &Chunk, receive_count: u32) -> ChunkResult {
    if chunk.v != Chunk::VERSION {
        error!(version = chunk.v, "unknown chunk version; leaving it for the dead-letter queue");
        return ChunkResult::RetryAfter(Duration::from_secs(60));
    }
    let compiled = CompiledContent::compile(&chunk.content, &chunk.tags).map_err(|errors| {
        let fields: Vec<_> = errors.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        fields.join("; ")
    });
    // A chunk of an operation that was never accepted (its send failed to enqueue every chunk and
    // discarded it) must not send anything: promise 1 holds even if some chunks made it.
    let watch = match deps.push.get_operation(&chunk.account_id, chunk.operation_id).await {
        Ok(Some(op)) => CancelWatch::new(op.status == OperationStatus::Canceled),
        Ok(None) => {
            warn!("chunk of an operation that was not accepted; dropping it");
            return ChunkResult::Done;
        }
        Err(e) => {
            warn!(error = %e, "store unavailable; chunk goes back to the queue");
            return ChunkResult::RetryAfter(Duration::from_secs(5));
        }
    };
    let credentials = match resolve_credentials(deps, chunk).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "credential store unavailable; chunk goes back to the queue");
            return ChunkResult::RetryAfter(Duration::from_secs(5));
        }
    };
    let compiled = Arc::new(compiled);
    let ctx = Ctx { deps, chunk, compiled: &compiled, credentials: &credentials, receive_count, watch: &watch };
    if chunk.scheduled_for.is_none() {
        return leased::process(&ctx).await;
    }
    let limit = deps.settings.delivery_concurrency.max(1);
    let mut pending = FuturesUnordered::new();
    let mut recipients = chunk.recipients.iter();
    let mut tally = Tally::default();
    let mut retry_after = None;
    loop {
        while pending.len() < limit {
            match recipients.next() {
                Some(r) => pending.push(ctx.process_guarded(r)),
                None => break,
            }
        }
        match pending.next().await {
            Some(r) => {
                tally.add(&r);
                if let RecipientResult::Retry(after) = r {
                    retry_after = retry_after.max(Some(after));
                }
            }
            None => break,
        }
    }
    let Tally { sent, failed, canceled, unchanged, retry } = tally;
    crate::app::metrics::notifications("sent", u64::from(sent));
    crate::app::metrics::notifications("failed", u64::from(failed));
    crate::app::metrics::notifications("canceled", u64::from(canceled));
    if retry > 0 {
        warn!(sent, failed, canceled, unchanged, retry, "chunk processed; some recipients go back to the queue");
    } else {
        info!(sent, failed, canceled, unchanged, "chunk processed");
    }
    retry_after.map_or(ChunkResult::Done, ChunkResult::RetryAfter)
}

async fn resolve_credentials(deps: &Deps, chunk: &Chunk) -> Result<HashMap<Provider, ResolvedCredential>, StoreError> {
    let mut out = HashMap::new();
    for provider in [Provider::Apn, Provider::Fcm] {
        if !chunk.recipients.iter().any(|r| r.provider == provider) {
            continue;
        }
        let resolved = match chunk.senders.for_provider(provider) {
            None => None,
            Some(id) => {
                let (book, _) = deps.credentials.load_book(&chunk.account_id).await?;
                let sealed = deps.credentials.get_secret(&chunk.account_id, &id).await?;
                match (book.credential(&id), sealed) {
                    (Some(meta), Some(sealed)) => {
                        let aad = secret_aad(&chunk.account_id, &id);
                        let plain = deps.secrets.open(&sealed, &aad).await?;
                        let secret: CredentialSecret = serde_json::from_slice(&plain)
                            .map_err(|_| StoreError::Unexpected("stored credential content is unreadable".into()))?;
                        Some((id, meta.credential_type, Arc::new(secret)))
                    }
                    _ => None,
                }
            }
        };
        out.insert(provider, resolved);
    }
    Ok(out)
}
