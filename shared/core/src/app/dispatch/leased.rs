//! A chunk of an immediate send, processed under one lease: the write path shaped for
//! DynamoDB's per-partition limits.
//!
//! Per chunk, not per notification: one lease (renewed while the chunk takes long), one
//! operation read, and once every recipient is final one atomic count of the chunk's outcomes
//! into the operation's stats (so the operation item takes one write per chunk, not one per
//! notification). Per notification: one stored record, written once when its outcome is
//! decided, in batches ([`DECIDED_BATCH`]). A notification therefore becomes visible when it is
//! final; one that waits for a retry is stored QUEUED so it can be fetched and canceled.
//!
//! Why nothing is sent twice:
//! - Only the lease holder decides a notification. A second dispatcher of the same chunk finds
//!   the lease busy and gives its message back; one that comes after the count finds the chunk
//!   counted and deletes it.
//! - A fresh lease (no pass ever held the chunk) means nothing of it is stored: no read. A later
//!   pass reads the chunk's stored notifications first: final ones are done, QUEUED ones (those
//!   waiting for a retry) go through the per-notification claim, so a cancel of one of them and
//!   its redelivery have exactly one winner.
//! - The holder checks its lease before each delivery and renews it when half of it is gone;
//!   a holder that lost it stops. What a holder that died had delivered but not yet stored (at
//!   most one batch plus the deliveries in flight) is delivered again by the next holder: the
//!   same at-least-once edge the per-notification claim had.
//!
//! Why the stats add up: the lease item keeps what the chunk has added to the operation's
//! counters so far; a pass adds only the difference between the chunk's final notifications now
//! and that, changing both in one atomic step under its lease. A pass that leaves some
//! recipients for a retry counts what is final (the stats show progress); the pass that
//! leaves none marks the chunk done. Notifications stored this way never move a counter on
//! their own.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{error, info, warn};

use super::ChunkResult;
use super::recipient::{Ctx, Delivered, Outcome, RecipientResult};
use crate::app::ports::{ChunkCount, ChunkKey, ChunkRecipient, ChunkTally, Delivery, Lease, StoreError};
use crate::domain::{
    Content, DeliveryError, ErrorCode, EventType, Notification, NotificationId, NotificationStatus, Senders, Timestamp,
};

/// Decided notifications stored per write (DynamoDB's `BatchWriteItem` takes 25 items).
pub const DECIDED_BATCH: usize = 25;

/// How long a pass keeps trying to store what it decided before giving the chunk back.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// What one recipient came to in this pass.
enum Step {
    /// Final: decided now (`new`) or found final from an earlier pass.
    Final { status: NotificationStatus, new: bool },
    /// Not final: the chunk comes back after this wait.
    Retry(Duration),
    /// The lease was lost: another pass has the chunk.
    Lost,
}

/// The lease this pass holds on its chunk.
struct Held {
    key: ChunkKey,
    holder: String,
    until: tokio::sync::Mutex<Timestamp>,
    lost: AtomicBool,
}

/// The pass over one chunk.
struct Pass<'a, 'c> {
    ctx: &'a Ctx<'c>,
    lease: Held,
    decided: std::sync::Mutex<Vec<Notification>>,
    store_failed: AtomicBool,
    /// The chunk's tags are the same for every recipient and indexed once for the operation.
    tags_by_operation: bool,
}

/// Processes a chunk of an immediate send (see the module docs).
pub(super) async fn process(ctx: &Ctx<'_>) -> ChunkResult {
    let (deps, chunk) = (ctx.deps, ctx.chunk);
    let key = ChunkKey { operation: chunk.operation_id, first_slot: chunk.recipients.first().map_or(0, |r| r.slot) };
    let now = deps.clock.now();
    let holder = deps.ids.ulid(now).to_string();
    let until = now + lease_length(ctx);
    let (fresh, counted) = match deps.push.lease_chunk(&chunk.account_id, key, &holder, until, now).await {
        Ok(Lease::Held { fresh, counted }) => (fresh, counted),
        Ok(Lease::Counted) => {
            info!("chunk counted already; nothing to do");
            return ChunkResult::Done;
        }
        Ok(Lease::Busy { until }) => {
            info!("another dispatcher holds this chunk; it comes back after that lease");
            let wait = (until - now).to_std().unwrap_or_default();
            return ChunkResult::RetryAfter(wait.clamp(Duration::from_secs(1), ctx.deps.settings.claim_lease));
        }
        Err(e) => {
            warn!(error = %e, "store unavailable; chunk goes back to the queue");
            return ChunkResult::RetryAfter(Duration::from_secs(5));
        }
    };
    let pass = Pass {
        ctx,
        lease: Held { key, holder, until: tokio::sync::Mutex::new(until), lost: AtomicBool::new(false) },
        decided: std::sync::Mutex::new(Vec::new()),
        store_failed: AtomicBool::new(false),
        tags_by_operation: ctx.compiled.as_ref().as_ref().is_ok_and(|c| c.tags_are_static()),
    };
    if pass.tags_by_operation
        && !chunk.tags.is_empty()
        && let Err(e) = deps.push.index_operation_tags(&chunk.account_id, chunk.operation_id, &chunk.tags).await
    {
        warn!(error = %e, "store unavailable; chunk goes back to the queue");
        pass.release().await;
        return ChunkResult::RetryAfter(Duration::from_secs(5));
    }
    let stored = if fresh {
        HashMap::new()
    } else {
        let ids: Vec<NotificationId> =
            chunk.recipients.iter().map(|r| NotificationId::derive(chunk.operation_id, r.slot)).collect();
        match deps.push.get_notifications(&chunk.account_id, &ids).await {
            Ok(found) => found.into_iter().map(|n| (n.id, n)).collect(),
            Err(e) => {
                warn!(error = %e, "store unavailable; chunk goes back to the queue");
                pass.release().await;
                return ChunkResult::RetryAfter(Duration::from_secs(5));
            }
        }
    };
    pass.run(&stored, counted).await
}

/// How long a lease lasts.
fn lease_length(ctx: &Ctx<'_>) -> chrono::Duration {
    chrono::Duration::from_std(ctx.deps.settings.claim_lease).unwrap_or(chrono::Duration::minutes(2))
}

impl Pass<'_, '_> {
    async fn run(&self, stored: &HashMap<NotificationId, Notification>, counted: ChunkTally) -> ChunkResult {
        let (deps, chunk) = (self.ctx.deps, self.ctx.chunk);
        let limit = deps.settings.delivery_concurrency.max(1);
        let mut pending = FuturesUnordered::new();
        let mut recipients = chunk.recipients.iter();
        let mut tally = ChunkTally::default();
        let (mut unchanged, mut retry, mut lost) = (0u32, 0u32, false);
        let mut retry_after = Duration::ZERO;
        loop {
            while pending.len() < limit {
                match recipients.next() {
                    Some(r) => {
                        let id = NotificationId::derive(chunk.operation_id, r.slot);
                        pending.push(self.recipient(r, stored.get(&id)));
                    }
                    None => break,
                }
            }
            match pending.next().await {
                Some(Step::Final { status, new }) => {
                    tally.add(status);
                    unchanged += u32::from(!new);
                    if new {
                        crate::app::metrics::notifications(status_label(status), 1);
                    }
                }
                Some(Step::Retry(after)) => {
                    retry += 1;
                    retry_after = retry_after.max(after);
                }
                Some(Step::Lost) => lost = true,
                None => break,
            }
        }
        self.store_the_rest().await;
        let ChunkTally { sent, failed, canceled, .. } = tally;
        if lost || self.lease.lost.load(Ordering::SeqCst) {
            warn!(sent, failed, canceled, "lost the chunk's lease; its new holder finishes it");
            return ChunkResult::RetryAfter(deps.settings.claim_lease);
        }
        if self.store_failed.load(Ordering::SeqCst) {
            warn!(sent, failed, canceled, "could not store decided notifications; the chunk goes back to the queue");
            self.release().await;
            return ChunkResult::RetryAfter(Duration::from_secs(2));
        }
        let at = deps.clock.now();
        let count = ChunkCount { before: counted, after: tally, last: retry == 0 };
        if retry > 0 {
            warn!(sent, failed, canceled, unchanged, retry, "chunk processed; some recipients go back to the queue");
            // What is final shows in the stats now, not only once the retries are done.
            if tally != counted
                && let Err(e) =
                    deps.push.count_chunk(&chunk.account_id, self.lease.key, &self.lease.holder, count, at).await
            {
                warn!(error = %e, "could not count the chunk's final notifications yet; a later pass does");
            }
            self.release().await;
            return ChunkResult::RetryAfter(retry_after);
        }
        match deps.push.count_chunk(&chunk.account_id, self.lease.key, &self.lease.holder, count, at).await {
            Ok(finished) => {
                info!(sent, failed, canceled, unchanged, "chunk processed and counted");
                if finished.completed {
                    crate::app::events::announce(deps, EventType::Completed, &finished.operation).await;
                }
                ChunkResult::Done
            }
            Err(StoreError::Conflict) => {
                info!(sent, failed, canceled, unchanged, "chunk processed; counted by another pass");
                ChunkResult::Done
            }
            Err(e) => {
                warn!(error = %e, "could not count the chunk; it goes back to the queue");
                self.release().await;
                ChunkResult::RetryAfter(Duration::from_secs(2))
            }
        }
    }

    /// One recipient: found final, through the per-notification claim when it waits stored
    /// QUEUED, or decided now.
    async fn recipient(&self, recipient: &ChunkRecipient, stored: Option<&Notification>) -> Step {
        match stored {
            Some(n) if n.status.is_final() => Step::Final { status: n.status, new: false },
            Some(n) => self.claimed(recipient, n.id).await,
            None => match AssertUnwindSafe(self.decide(recipient)).catch_unwind().await {
                Ok(Ok(step)) => step,
                Ok(Err(e)) => {
                    warn!(error = %e, slot = recipient.slot, "store failure while dispatching; will retry");
                    Step::Retry(Duration::from_secs(2))
                }
                Err(_) => {
                    error!(slot = recipient.slot, "processing one recipient panicked; it is FAILED (30500)");
                    let message = "pushgate failed while processing this notification; the failure is logged";
                    let error = DeliveryError::new(ErrorCode::Internal, message, None);
                    let record = self.record(
                        recipient,
                        self.ctx.chunk.content.clone(),
                        self.ctx.chunk.tags.clone(),
                        Senders::default(),
                        NotificationStatus::Failed,
                        Some(error),
                    );
                    self.decided(record).await
                }
            },
        }
    }

    /// A notification stored QUEUED by an earlier pass: the per-notification path (claim,
    /// deliver, finish), then its status.
    async fn claimed(&self, recipient: &ChunkRecipient, id: NotificationId) -> Step {
        let status = match self.ctx.process_guarded(recipient).await {
            RecipientResult::Retry(after) => return Step::Retry(after),
            RecipientResult::Done(Outcome::Sent) => NotificationStatus::Sent,
            RecipientResult::Done(Outcome::Failed) => NotificationStatus::Failed,
            RecipientResult::Done(Outcome::Canceled) => NotificationStatus::Canceled,
            RecipientResult::Done(Outcome::Unchanged) => {
                match self.ctx.deps.push.get_notification(&self.ctx.chunk.account_id, id).await {
                    Ok(Some(n)) if n.status.is_final() => n.status,
                    Ok(_) => return Step::Retry(self.ctx.deps.settings.claim_lease),
                    Err(_) => return Step::Retry(Duration::from_secs(2)),
                }
            }
        };
        Step::Final { status, new: true }
    }

    /// Decides a recipient no pass has stored: canceled, failed, sent, or waiting for a retry.
    async fn decide(&self, recipient: &ChunkRecipient) -> Result<Step, StoreError> {
        let ctx = self.ctx;
        let deps = ctx.deps;
        let (credential, from) = ctx.sender(recipient);
        let Some(rendered) = ctx.render(recipient).await else {
            return Ok(Step::Retry(Duration::from_secs(5)));
        };
        let (content, tags, render_error) = match rendered {
            Ok((content, tags)) => (content, tags, None),
            Err(e) => (ctx.chunk.content.clone(), ctx.chunk.tags.clone(), Some(e)),
        };
        let outcome =
            |status, error| self.record(recipient, content.clone(), tags.clone(), from.clone(), status, error);
        let failed = |code, message: String, reason| {
            outcome(NotificationStatus::Failed, Some(DeliveryError::new(code, message, reason)))
        };
        if ctx.watch.canceled(deps, ctx.chunk).await? {
            return Ok(self.decided(outcome(NotificationStatus::Canceled, None)).await);
        }
        if let Some(e) = render_error {
            let message = format!("template rendering failed: {e}");
            crate::app::metrics::render_failed(&message);
            return Ok(self.decided(failed(ErrorCode::RenderFailed, message, None)).await);
        }
        let Some((credential_id, credential_type, secret)) = credential else {
            let message = ctx.no_credential_message(recipient);
            return Ok(self.decided(failed(ErrorCode::NoCredential, message, None)).await);
        };
        let delivery = Delivery {
            credential_id,
            credential_type,
            secret: &secret,
            token: &recipient.token,
            content: &content,
            priority: ctx.chunk.priority,
            sound: ctx.chunk.sound.as_deref(),
        };
        let Some(delivered) = ctx.deliver_with_retries(&delivery, || self.hold()).await? else {
            return Ok(Step::Lost);
        };
        let record = match delivered {
            Delivered::Sent => outcome(NotificationStatus::Sent, None),
            Delivered::InvalidToken { reason } => {
                let message = "the provider reports the device token as invalid".to_owned();
                let step = self.decided(failed(ErrorCode::InvalidToken, message, Some(reason))).await;
                ctx.forget_dead_device(recipient).await;
                return Ok(step);
            }
            Delivered::Failed { code, message, reason } => failed(code, message, reason),
            Delivered::Later(wait) => {
                // Canceled meanwhile? Then it is not retried.
                if ctx.watch.canceled(deps, ctx.chunk).await? {
                    return Ok(self.decided(outcome(NotificationStatus::Canceled, None)).await);
                }
                return Ok(match self.decided(outcome(NotificationStatus::Queued, None)).await {
                    Step::Final { .. } => Step::Retry(wait),
                    other => other,
                });
            }
        };
        Ok(self.decided(record).await)
    }

    /// The record of `recipient`'s notification as decided now.
    fn record(
        &self,
        recipient: &ChunkRecipient,
        content: Arc<Content>,
        tags: std::collections::BTreeMap<String, String>,
        from: Senders,
        status: NotificationStatus,
        error: Option<DeliveryError>,
    ) -> Notification {
        let mut n = self.ctx.record(recipient, content, tags, from);
        let now = self.ctx.deps.clock.now();
        n.status = status;
        n.error = error;
        n.updated_at = now;
        n.completed_at = status.is_final().then_some(now);
        n
    }

    /// Queues a decided record for storing (storing a batch when one is full); its step.
    async fn decided(&self, n: Notification) -> Step {
        let status = n.status;
        let full = {
            let mut decided = self.decided.lock().unwrap_or_else(|e| e.into_inner());
            decided.push(n);
            (decided.len() >= DECIDED_BATCH).then(|| std::mem::take(&mut *decided))
        };
        if let Some(batch) = full {
            self.store(batch).await;
        }
        Step::Final { status, new: true }
    }

    /// Stores decided records. On failure (a hot partition, an outage) they go back to the
    /// buffer for the next store: they are delivered already, so dropping them would send them
    /// again on the chunk's redelivery.
    async fn store(&self, batch: Vec<Notification>) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self.ctx.deps.push.store_decided(batch.clone(), self.tags_by_operation).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, notifications = batch.len(), "storing decided notifications failed; trying again");
                self.decided.lock().unwrap_or_else(|e| e.into_inner()).extend(batch);
                false
            }
        }
    }

    /// Stores what is left in the buffer, trying again while the lease holds (renewed) and
    /// within [`STORE_PATIENCE`]; past that the chunk is not counted in this pass.
    async fn store_the_rest(&self) {
        let started = tokio::time::Instant::now();
        let mut failures = 0;
        loop {
            let rest = std::mem::take(&mut *self.decided.lock().unwrap_or_else(|e| e.into_inner()));
            if self.store(rest).await {
                return;
            }
            failures += 1;
            let held = matches!(self.hold().await, Ok(true));
            if !held || started.elapsed() > STORE_PATIENCE {
                error!(failures, "could not store decided notifications; their chunk goes back to the queue");
                self.store_failed.store(true, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(500 << failures.min(4))).await;
        }
    }

    /// Does this pass still hold its lease? Renews it when half of it is gone; `false` once
    /// another pass has it (from then on this pass delivers nothing).
    async fn hold(&self) -> Result<bool, StoreError> {
        if self.lease.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let deps = self.ctx.deps;
        let length = lease_length(self.ctx);
        let mut until = self.lease.until.lock().await;
        let now = deps.clock.now();
        if *until - now > length / 2 {
            return Ok(true);
        }
        let account = &self.ctx.chunk.account_id;
        match deps.push.lease_chunk(account, self.lease.key, &self.lease.holder, now + length, now).await? {
            Lease::Held { .. } => {
                *until = now + length;
                Ok(true)
            }
            Lease::Busy { .. } | Lease::Counted => {
                self.lease.lost.store(true, Ordering::SeqCst);
                Ok(false)
            }
        }
    }

    /// Gives the lease back so the redelivery need not wait for it (best effort).
    async fn release(&self) {
        let (deps, chunk) = (self.ctx.deps, self.ctx.chunk);
        if let Err(e) = deps.push.release_chunk(&chunk.account_id, self.lease.key, &self.lease.holder).await {
            warn!(error = %e, "could not give the chunk's lease back; the redelivery waits for it to expire");
        }
    }
}

/// The metrics label of a final status.
fn status_label(status: NotificationStatus) -> &'static str {
    match status {
        NotificationStatus::Sent => "sent",
        NotificationStatus::Canceled => "canceled",
        _ => "failed",
    }
}
