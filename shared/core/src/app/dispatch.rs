//! Dispatch: process one queued chunk. The dispatch Lambda and the local worker both call
//! [`process_chunk`].
//!
//! Per recipient: render → create the notification idempotently (deterministic id) → claim it →
//! deliver → record the final status and the operation's counters in one atomic step. A chunk
//! processed twice finds its notifications final or claimed and sends nothing twice (promise 3).
//! Retryable provider failures are retried here with exponential backoff and full jitter; when a
//! wait would be too long or attempts run out, the claim is released and the chunk goes back to
//! the queue. On the last allowed receive they become FAILED, so every recipient ends final
//! (promise 2).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tracing::{debug, error, info, instrument, warn};

use crate::domain::{
    CompiledContent, CredentialSecret, CredentialType, DeliveryError, Destination, ErrorCode, EventType, Notification,
    NotificationId, NotificationStatus, OperationStatus, Provider, Senders,
};

use super::Deps;
use super::backoff::Backoff;
use super::ports::{Chunk, ChunkRecipient, Delivery, DeliveryOutcome, Finish, QueueBody, StoreError};
use crate::domain::credential::secret_aad;

/// What the queue should do with a processed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkResult {
    /// Every recipient is final: delete the message.
    Done,
    /// Some recipients must be retried: redeliver the chunk after this delay.
    RetryAfter(Duration),
}

enum RecipientResult {
    Done(Outcome),
    Retry(Duration),
}

/// What processing did to one recipient (for the chunk's summary line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Failed,
    Canceled,
    /// Nothing to do: final already, or a scheduled notification created ahead of its instant.
    Unchanged,
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

/// One recipient's rendered content and tags, or why rendering failed.
type Rendered = Result<(Arc<crate::domain::Content>, std::collections::BTreeMap<String, String>), String>;

type ResolvedCredential = Option<(crate::domain::CredentialId, CredentialType, Arc<CredentialSecret>)>;

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

/// A message as the queue delivered it.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// The queue's message id (reported back for messages to retry).
    pub id: String,
    /// The body: a JSON [`Chunk`].
    pub body: String,
    /// How many times the queue has delivered it (1 the first time).
    pub receive_count: u32,
}

/// Processes a batch of queue messages (what the dispatch Lambda gets from SQS); returns the ids
/// of the messages the queue must deliver again. A body that does not decode is reported too, so
/// it ends in the dead-letter queue instead of vanishing.
pub async fn process_messages(deps: &Deps, messages: &[QueueMessage]) -> Vec<String> {
    let results = futures::future::join_all(messages.iter().map(|m| async move {
        // A panic in one message fails that message alone (it is redelivered, then
        // dead-lettered), never the batch around it.
        AssertUnwindSafe(process_message(deps, m)).catch_unwind().await.unwrap_or_else(|_| {
            error!(message_id = %m.id, "processing a queue message panicked; it goes back to the queue");
            Some(m.id.clone())
        })
    }))
    .await;
    results.into_iter().flatten().collect()
}

/// Processes one queue message; returns its id if the queue must deliver it again.
async fn process_message(deps: &Deps, m: &QueueMessage) -> Option<String> {
    match serde_json::from_str::<QueueBody>(&m.body) {
        Ok(QueueBody::Chunk(chunk)) => match process_chunk(deps, &chunk, m.receive_count).await {
            ChunkResult::Done => None,
            ChunkResult::RetryAfter(_) => Some(m.id.clone()),
        },
        Ok(QueueBody::Event { event }) => match deliver_event(deps, &event).await {
            Ok(()) => None,
            Err(e) => {
                warn!(message_id = %m.id, event = %event.id, error = %e, "webhook failed; the event goes back to the queue");
                Some(m.id.clone())
            }
        },
        Ok(QueueBody::Release { release }) => match super::schedule::release(deps, &release).await {
            Ok(()) => None,
            Err(e) => {
                warn!(message_id = %m.id, error = %e, "release failed; it goes back to the queue");
                Some(m.id.clone())
            }
        },
        Err(e) => {
            error!(message_id = %m.id, error = %e, "queue message is not a chunk; leaving it for the dead-letter queue");
            Some(m.id.clone())
        }
    }
}

/// How the dispatcher retries an event's webhook post inline before the queue's redelivery takes
/// over: three tries, pauses of about 0.5 s and 1 s.
const EVENT_RETRIES: Backoff = Backoff::new(3, Duration::from_secs(1), Duration::from_secs(2));

/// Posts an event to its webhook, retrying as [`EVENT_RETRIES`] says.
async fn deliver_event(deps: &Deps, event: &crate::domain::OperationEvent) -> Result<(), super::ports::WebhookError> {
    let mut failures = 0;
    loop {
        match deps.events.deliver(event).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures += 1;
                if !EVENT_RETRIES.retries_after(failures) {
                    return Err(e);
                }
                tokio::time::sleep(EVENT_RETRIES.wait(failures)).await;
            }
        }
    }
}

struct Ctx<'a> {
    deps: &'a Deps,
    chunk: &'a Chunk,
    compiled: &'a Arc<Result<CompiledContent, String>>,
    credentials: &'a HashMap<Provider, ResolvedCredential>,
    receive_count: u32,
    watch: &'a CancelWatch,
}

/// Whether the chunk's operation has been canceled, read so that a claim never misses a cancel
/// that came before it: after claiming a notification, a dispatcher asks [`Self::canceled`],
/// which answers from an operation read that started after that claim. The operation is marked
/// CANCELED before the API sweeps its notifications, so either the claim came first (the
/// notification was handed to the provider before the cancel: it is sent) or the read sees
/// CANCELED (it is canceled, not sent). Reads are shared: one read serves every claim that
/// finished before it started, so a chunk costs a few operation reads, not one per recipient.
struct CancelWatch {
    /// Claims finished so far (ticket numbers).
    claims: AtomicU64,
    /// The latest read: the claims it covers, and whether it saw CANCELED (final: never reset).
    read: tokio::sync::Mutex<(u64, bool)>,
}

impl CancelWatch {
    fn new(canceled: bool) -> Self {
        Self { claims: AtomicU64::new(0), read: tokio::sync::Mutex::new((0, canceled)) }
    }

    /// Is the operation canceled, as seen by a read that started after the caller's claim?
    async fn canceled(&self, deps: &Deps, chunk: &Chunk) -> Result<bool, StoreError> {
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

impl Ctx<'_> {
    /// Processes one recipient; a panic anywhere in it fails that recipient alone.
    async fn process_guarded(&self, recipient: &ChunkRecipient) -> RecipientResult {
        match AssertUnwindSafe(self.process(recipient)).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                error!(slot = recipient.slot, "processing one recipient panicked; it is FAILED (30500)");
                self.fail_after_panic(recipient).await
            }
        }
    }

    async fn process(&self, recipient: &ChunkRecipient) -> RecipientResult {
        match self.try_process(recipient).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, slot = recipient.slot, "store failure while dispatching; will retry");
                RecipientResult::Retry(Duration::from_secs(2))
            }
        }
    }

    /// After a panic: the notification (created now if it was not yet) becomes FAILED with
    /// [`ErrorCode::Internal`], so the recipient ends final and its chunk is not redelivered
    /// for it. If even that fails, the recipient is retried with the chunk.
    async fn fail_after_panic(&self, recipient: &ChunkRecipient) -> RecipientResult {
        let deps = self.deps;
        let id = NotificationId::derive(self.chunk.operation_id, recipient.slot);
        let record = self.record(recipient, self.chunk.content.clone(), self.chunk.tags.clone(), Senders::default());
        let failed = async {
            deps.push.create_notification(record).await?;
            let error = DeliveryError::new(
                ErrorCode::Internal,
                "pushgate failed while processing this notification; the failure is logged",
                None,
            );
            self.finish(
                id,
                Finish::by_dispatcher(NotificationStatus::Failed, Senders::default(), Some(error), deps.clock.now()),
            )
            .await
        };
        match failed.await {
            Ok(result) => result,
            Err(e) => {
                warn!(error = %e, slot = recipient.slot, "could not record the failure; will retry");
                RecipientResult::Retry(Duration::from_secs(30))
            }
        }
    }

    /// The record of `recipient`'s notification as first created.
    fn record(
        &self,
        recipient: &ChunkRecipient,
        content: Arc<crate::domain::Content>,
        tags: std::collections::BTreeMap<String, String>,
        from: Senders,
    ) -> Notification {
        let chunk = self.chunk;
        let now = self.deps.clock.now();
        Notification {
            id: NotificationId::derive(chunk.operation_id, recipient.slot),
            account_id: chunk.account_id.clone(),
            operation_id: chunk.operation_id,
            to: Destination {
                token: recipient.token.clone(),
                provider: recipient.provider,
                user_id: recipient.user_id,
            },
            from,
            content,
            priority: chunk.priority,
            sound: chunk.sound.clone(),
            status: if chunk.scheduled_for.is_some() {
                NotificationStatus::Scheduled
            } else {
                NotificationStatus::Queued
            },
            tags,
            scheduled_for: chunk.scheduled_for,
            created_at: chunk.created_at,
            updated_at: now,
            error: None,
            completed_at: None,
        }
    }

    /// Renders `recipient`'s content: templates on the CPU pool (fair between operations, off
    /// the async threads), plain content in place. `None`: the pool is shutting down, try again
    /// later.
    async fn render(&self, recipient: &ChunkRecipient) -> Option<Rendered> {
        match self.compiled.as_ref() {
            Err(e) => Some(Err(e.clone())),
            Ok(compiled) if !compiled.is_dynamic() => Some(compiled.render(&recipient.variables).map_err(|e| e.0)),
            Ok(_) => {
                let (compiled, variables) = (self.compiled.clone(), recipient.variables.clone());
                let key = self.chunk.operation_id.ulid().0;
                let job = move || match compiled.as_ref() {
                    Ok(compiled) => compiled.render(&variables).map_err(|e| e.0),
                    Err(e) => Err(e.clone()),
                };
                match self.deps.cpu.run(key, job).await {
                    Ok(rendered) => Some(rendered),
                    Err(super::cpu::JobError::Panicked) => {
                        error!(slot = recipient.slot, "rendering panicked");
                        Some(Err("template rendering failed unexpectedly".to_owned()))
                    }
                    Err(super::cpu::JobError::Closed) => None,
                }
            }
        }
    }

    async fn try_process(&self, recipient: &ChunkRecipient) -> Result<RecipientResult, StoreError> {
        let deps = self.deps;
        let chunk = self.chunk;
        let account = &chunk.account_id;
        let id = NotificationId::derive(chunk.operation_id, recipient.slot);
        let credential = self.credentials.get(&recipient.provider).cloned().flatten();
        let from = match &credential {
            Some((cid, _, _)) => match recipient.provider {
                Provider::Apn => Senders { apn: Some(cid.clone()), fcm: None },
                Provider::Fcm => Senders { apn: None, fcm: Some(cid.clone()) },
            },
            None => Senders::default(),
        };
        let Some(rendered) = self.render(recipient).await else {
            return Ok(RecipientResult::Retry(Duration::from_secs(5)));
        };
        // The record and the delivery share the rendered content.
        let (content, tags, render_error) = match rendered {
            Ok((content, tags)) => (content, tags, None),
            Err(e) => (chunk.content.clone(), chunk.tags.clone(), Some(e)),
        };
        let now = deps.clock.now();
        let record = self.record(recipient, content.clone(), tags, from.clone());
        let stored = deps.push.create_notification(record).await?;
        if stored.is_final() {
            return Ok(RecipientResult::Done(Outcome::Unchanged));
        }
        if chunk.scheduled_for.is_some() && stored == NotificationStatus::Scheduled {
            if !chunk.released {
                // Created ahead of its instant. If the operation was canceled before this
                // notification existed, the cancel's sweep may have missed it: cancel it here.
                if self.watch.canceled(deps, chunk).await? {
                    let canceled = Finish {
                        unclaimed: true,
                        ..Finish::by_dispatcher(NotificationStatus::Canceled, from.clone(), None, now)
                    };
                    return self.finish(id, canceled).await;
                }
                return Ok(RecipientResult::Done(Outcome::Unchanged));
            }
            match deps.push.promote(account, id, now).await {
                Ok(true) => {
                    if let Some(op) = deps.push.get_operation(account, chunk.operation_id).await? {
                        super::events::announce(deps, EventType::Processing, &op).await;
                    }
                }
                Ok(false) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        } else if !chunk.released && chunk.scheduled_for.is_some() {
            // Created already (released, or a redelivered creation pass): nothing to create.
            return Ok(RecipientResult::Done(Outcome::Unchanged));
        }
        let lease = chrono::Duration::from_std(deps.settings.claim_lease).unwrap_or(chrono::Duration::minutes(2));
        match deps.push.claim(account, id, now + lease, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                // Final already, or another dispatcher holds it: retry after its lease unless final.
                let current = deps.push.get_notification(account, id).await?;
                return Ok(match current {
                    Some(n) if !n.status.is_final() => RecipientResult::Retry(deps.settings.claim_lease),
                    _ => RecipientResult::Done(Outcome::Unchanged),
                });
            }
            Err(e) => return Err(e),
        }
        if self.watch.canceled(deps, chunk).await? {
            let canceled = Finish::by_dispatcher(NotificationStatus::Canceled, from.clone(), None, deps.clock.now());
            return self.finish(id, canceled).await;
        }

        let fail = |code: ErrorCode, message: String, reason: Option<String>| {
            Finish::by_dispatcher(
                NotificationStatus::Failed,
                from.clone(),
                Some(DeliveryError::new(code, message, reason)),
                deps.clock.now(),
            )
        };
        if let Some(e) = render_error {
            return self
                .finish(id, fail(ErrorCode::RenderFailed, format!("template rendering failed: {e}"), None))
                .await;
        }
        let Some((credential_id, credential_type, secret)) = credential else {
            let message = match chunk.senders.for_provider(recipient.provider) {
                Some(cid) => format!("credential {cid} does not exist (or was deleted)"),
                None => format!("no {} credential resolved for this send", recipient.provider.as_str()),
            };
            return self.finish(id, fail(ErrorCode::NoCredential, message, None)).await;
        };
        let delivery = Delivery {
            credential_id,
            credential_type,
            secret: &secret,
            token: &recipient.token,
            content: &content,
            priority: chunk.priority,
            sound: chunk.sound.as_deref(),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = deps.gateway.deliver(&delivery).await;
            let finish = match outcome {
                DeliveryOutcome::Sent => {
                    Finish::by_dispatcher(NotificationStatus::Sent, from.clone(), None, deps.clock.now())
                }
                DeliveryOutcome::InvalidToken { reason } => {
                    let result = self
                        .finish(
                            id,
                            fail(
                                ErrorCode::InvalidToken,
                                "the provider reports the device token as invalid".into(),
                                Some(reason),
                            ),
                        )
                        .await?;
                    self.forget_dead_device(recipient).await;
                    return Ok(result);
                }
                DeliveryOutcome::Permanent { code, message, reason } => fail(code, message, reason),
                DeliveryOutcome::Retryable { after, reason } => {
                    let backoff = self.backoff(attempt);
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    if attempt < deps.settings.max_attempts && wait <= deps.settings.max_inline_wait {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if self.receive_count >= deps.settings.max_receives {
                        fail(
                            ErrorCode::ProviderUnavailable,
                            format!(
                                "the provider stayed unavailable after {} deliveries of this batch",
                                self.receive_count
                            ),
                            Some(reason),
                        )
                    } else {
                        deps.push.release(account, id).await?;
                        // Canceled meanwhile? Then this notification is not retried: cancel it
                        // now (released first, so either this read sees the cancel or the
                        // cancel's sweep sees the notification unclaimed).
                        if self.watch.canceled(deps, chunk).await? {
                            let canceled = Finish {
                                unclaimed: true,
                                ..Finish::by_dispatcher(
                                    NotificationStatus::Canceled,
                                    from.clone(),
                                    None,
                                    deps.clock.now(),
                                )
                            };
                            return self.finish(id, canceled).await;
                        }
                        return Ok(RecipientResult::Retry(wait));
                    }
                }
            };
            return self.finish(id, finish).await;
        }
    }

    /// Records the outcome. If the store fails here after a successful send, the recipient is
    /// retried: once the claim lease has expired a redelivery can send that one notification
    /// again. This at-least-once edge needs a store outage between send and record; closing it
    /// would need the provider's idempotency (APNs `apns-id`, FCM has none).
    async fn finish(&self, id: NotificationId, finish: Finish) -> Result<RecipientResult, StoreError> {
        let outcome = match finish.status {
            NotificationStatus::Sent => Outcome::Sent,
            NotificationStatus::Failed => Outcome::Failed,
            NotificationStatus::Canceled => Outcome::Canceled,
            _ => Outcome::Unchanged,
        };
        match super::events::finish(self.deps, &self.chunk.account_id, id, finish).await {
            Ok(()) => Ok(RecipientResult::Done(outcome)),
            Err(StoreError::Conflict) => Ok(RecipientResult::Done(Outcome::Unchanged)),
            Err(e) => Err(e),
        }
    }

    /// Removes a dead device from the registration of the send's App that holds it. Best
    /// effort: the notification is final already, so a store failure here is logged and the
    /// device stays registered until its next send reports it again.
    async fn forget_dead_device(&self, recipient: &ChunkRecipient) {
        let Some(app) = &self.chunk.app else { return };
        let forgotten = super::directory::forget_dead_device(
            self.deps,
            &self.chunk.account_id,
            app,
            recipient.provider,
            &recipient.token,
        )
        .await;
        if let Err(e) = forgotten {
            warn!(error = %e, slot = recipient.slot, "could not remove a dead device from its registration");
        }
    }

    /// The pause after `attempt` failed tries: from `retry_base`, doubling; a pause longer than
    /// `max_inline_wait` goes back to the queue instead.
    fn backoff(&self, attempt: u32) -> Duration {
        let settings = &self.deps.settings;
        Backoff::new(settings.max_attempts, settings.retry_base, Duration::MAX).wait(attempt)
    }
}
