//! One recipient of a chunk: render → create the notification idempotently → claim → deliver →
//! record the final status and the operation's counters in one atomic step.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tracing::{debug, error, warn};

use super::cancel_watch::CancelWatch;
use crate::app::Deps;
use crate::app::backoff::Backoff;
use crate::app::cpu::JobError;
use crate::app::ports::{Chunk, ChunkRecipient, Delivery, DeliveryOutcome, Finish, StoreError};
use crate::domain::{
    CompiledContent, Content, CredentialId, CredentialSecret, CredentialType, DeliveryError, Destination, ErrorCode,
    EventType, Notification, NotificationId, NotificationStatus, Provider, Senders,
};

/// How a delivery with its inline retries ended.
pub(super) enum Delivered {
    Sent,
    /// The provider reports the token dead (FAILED 30410; the device is forgotten).
    InvalidToken {
        reason: String,
    },
    /// FAILED with this code: a permanent answer, or retries exhausted on the last receive.
    Failed {
        code: ErrorCode,
        message: String,
        reason: Option<String>,
    },
    /// Retryable, but not within this processing: the chunk comes back after this wait.
    Later(Duration),
}

pub(super) enum RecipientResult {
    Done(Outcome),
    Retry(Duration),
}

/// What processing did to one recipient (for the chunk's summary line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Sent,
    Failed,
    Canceled,
    /// Nothing to do: final already, or a scheduled notification created ahead of its instant.
    Unchanged,
}

/// One recipient's rendered content and tags, or why rendering failed.
pub(super) type Rendered = Result<(Arc<crate::domain::Content>, std::collections::BTreeMap<String, String>), String>;

pub(super) type ResolvedCredential = Option<(CredentialId, CredentialType, Arc<CredentialSecret>)>;

pub(super) struct Ctx<'a> {
    pub(super) deps: &'a Deps,
    pub(super) chunk: &'a Chunk,
    pub(super) compiled: &'a Arc<Result<CompiledContent, String>>,
    pub(super) credentials: &'a HashMap<Provider, ResolvedCredential>,
    pub(super) receive_count: u32,
    pub(super) watch: &'a CancelWatch,
}

impl Ctx<'_> {
    /// Processes one recipient; a panic anywhere in it fails that recipient alone.
    pub(super) async fn process_guarded(&self, recipient: &ChunkRecipient) -> RecipientResult {
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
    pub(super) fn record(
        &self,
        recipient: &ChunkRecipient,
        content: Arc<Content>,
        tags: BTreeMap<String, String>,
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

    /// The credential resolved for `recipient`'s provider, and the `from` its notification shows.
    pub(super) fn sender(&self, recipient: &ChunkRecipient) -> (ResolvedCredential, Senders) {
        let credential = self.credentials.get(&recipient.provider).cloned().flatten();
        let from = match &credential {
            Some((cid, _, _)) => match recipient.provider {
                Provider::Apn => Senders { apn: Some(cid.clone()), fcm: None },
                Provider::Fcm => Senders { apn: None, fcm: Some(cid.clone()) },
            },
            None => Senders::default(),
        };
        (credential, from)
    }

    /// The message of a recipient with no usable credential.
    pub(super) fn no_credential_message(&self, recipient: &ChunkRecipient) -> String {
        match self.chunk.senders.for_provider(recipient.provider) {
            Some(cid) => format!("credential {cid} does not exist (or was deleted)"),
            None => format!("no {} credential resolved for this send", recipient.provider.as_str()),
        }
    }

    /// Renders `recipient`'s content: templates on the CPU pool (fair between operations, off
    /// the async threads), plain content in place. `None`: the pool is shutting down, try again
    /// later.
    pub(super) async fn render(&self, recipient: &ChunkRecipient) -> Option<Rendered> {
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
                    Err(JobError::Panicked) => {
                        error!(slot = recipient.slot, "rendering panicked");
                        Some(Err("template rendering failed unexpectedly".to_owned()))
                    }
                    Err(JobError::Closed) => None,
                }
            }
        }
    }

    async fn try_process(&self, recipient: &ChunkRecipient) -> Result<RecipientResult, StoreError> {
        let id = NotificationId::derive(self.chunk.operation_id, recipient.slot);
        let (credential, from) = self.sender(recipient);
        let Some(rendered) = self.render(recipient).await else {
            return Ok(RecipientResult::Retry(Duration::from_secs(5)));
        };
        // The record and the delivery share the rendered content.
        let (content, tags, render_error) = match rendered {
            Ok((content, tags)) => (content, tags, None),
            Err(e) => (self.chunk.content.clone(), self.chunk.tags.clone(), Some(e)),
        };
        if let Some(done) = self.create(recipient, id, content.clone(), tags, &from).await? {
            return Ok(done);
        }
        if let Some(done) = self.claim(id).await? {
            return Ok(done);
        }
        if self.watch.canceled(self.deps, self.chunk).await? {
            return self.finish(id, self.canceled(&from, false)).await;
        }
        if let Some(e) = render_error {
            let message = format!("template rendering failed: {e}");
            crate::app::metrics::render_failed(&message);
            return self.finish(id, self.failed(&from, ErrorCode::RenderFailed, message, None)).await;
        }
        let Some((credential_id, credential_type, secret)) = credential else {
            let message = self.no_credential_message(recipient);
            return self.finish(id, self.failed(&from, ErrorCode::NoCredential, message, None)).await;
        };
        let delivery = Delivery {
            credential_id,
            credential_type,
            secret: &secret,
            token: &recipient.token,
            content: &content,
            priority: self.chunk.priority,
            sound: self.chunk.sound.as_deref(),
        };
        self.deliver(recipient, id, &from, &delivery).await
    }

    /// Creates the notification (idempotently: a redelivered chunk finds it). `Some`: nothing
    /// more to do now — it is final, or scheduled and not yet released (canceled here if its
    /// operation was canceled before it existed), or created by an earlier pass.
    async fn create(
        &self,
        recipient: &ChunkRecipient,
        id: NotificationId,
        content: Arc<Content>,
        tags: BTreeMap<String, String>,
        from: &Senders,
    ) -> Result<Option<RecipientResult>, StoreError> {
        let (deps, chunk) = (self.deps, self.chunk);
        let stored = deps.push.create_notification(self.record(recipient, content, tags, from.clone())).await?;
        if stored.is_final() {
            return Ok(Some(RecipientResult::Done(Outcome::Unchanged)));
        }
        if chunk.scheduled_for.is_some() && stored == NotificationStatus::Scheduled {
            if !chunk.released {
                // Created ahead of its instant. If the operation was canceled before this
                // notification existed, the cancel's sweep may have missed it: cancel it here.
                if self.watch.canceled(deps, chunk).await? {
                    return self.finish(id, self.canceled(from, true)).await.map(Some);
                }
                return Ok(Some(RecipientResult::Done(Outcome::Unchanged)));
            }
            match deps.push.promote(&chunk.account_id, id, deps.clock.now()).await {
                Ok(true) => {
                    if let Some(op) = deps.push.get_operation(&chunk.account_id, chunk.operation_id).await? {
                        crate::app::events::announce(deps, EventType::Processing, &op).await;
                    }
                }
                Ok(false) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        } else if !chunk.released && chunk.scheduled_for.is_some() {
            // Created already (released, or a redelivered creation pass): nothing to create.
            return Ok(Some(RecipientResult::Done(Outcome::Unchanged)));
        }
        Ok(None)
    }

    /// Claims the notification for one lease. `Some`: it is final, or another dispatcher holds
    /// it (retry after its lease).
    async fn claim(&self, id: NotificationId) -> Result<Option<RecipientResult>, StoreError> {
        let (deps, account) = (self.deps, &self.chunk.account_id);
        let now = deps.clock.now();
        let lease = chrono::Duration::from_std(deps.settings.claim_lease).unwrap_or(chrono::Duration::minutes(2));
        match deps.push.claim(account, id, now + lease, now).await {
            Ok(()) => Ok(None),
            Err(StoreError::Conflict) => Ok(Some(match deps.push.get_notification(account, id).await? {
                Some(n) if !n.status.is_final() => RecipientResult::Retry(deps.settings.claim_lease),
                _ => RecipientResult::Done(Outcome::Unchanged),
            })),
            Err(e) => Err(e),
        }
    }

    /// Delivers, retrying inline while the waits are short, and records the outcome. A
    /// retryable failure that outlasts them releases the claim (the chunk comes back), unless
    /// this was the chunk's last allowed receive: then it is FAILED.
    async fn deliver(
        &self,
        recipient: &ChunkRecipient,
        id: NotificationId,
        from: &Senders,
        delivery: &Delivery<'_>,
    ) -> Result<RecipientResult, StoreError> {
        let deps = self.deps;
        let always = || std::future::ready(Ok(true));
        let Some(delivered) = self.deliver_with_retries(delivery, always).await? else {
            // Not reached: `always` never says stop.
            return Ok(RecipientResult::Retry(deps.settings.claim_lease));
        };
        let finish = match delivered {
            Delivered::Sent => Finish::by_dispatcher(NotificationStatus::Sent, from.clone(), None, deps.clock.now()),
            Delivered::InvalidToken { reason } => {
                let message = "the provider reports the device token as invalid".to_owned();
                let failed = self.failed(from, ErrorCode::InvalidToken, message, Some(reason));
                let result = self.finish(id, failed).await?;
                self.forget_dead_device(recipient).await;
                return Ok(result);
            }
            Delivered::Failed { code, message, reason } => self.failed(from, code, message, reason),
            Delivered::Later(wait) => {
                deps.push.release(&self.chunk.account_id, id).await?;
                // Canceled meanwhile? Then this notification is not retried: cancel it now
                // (released first, so either this read sees the cancel or the cancel's sweep
                // sees the notification unclaimed).
                if self.watch.canceled(deps, self.chunk).await? {
                    return self.finish(id, self.canceled(from, true)).await;
                }
                return Ok(RecipientResult::Retry(wait));
            }
        };
        self.finish(id, finish).await
    }

    /// Delivers, retrying inline while the waits are short (from `retry_base`, doubling, with
    /// jitter, at least the provider's `Retry-After`; at most `max_attempts` tries). A retryable
    /// failure that outlasts them is [`Delivered::Later`], or, on the chunk's last allowed
    /// receive, FAILED (30503). `go_on` is asked before each try; `None` when it says stop.
    pub(super) async fn deliver_with_retries<F, Fut>(
        &self,
        delivery: &Delivery<'_>,
        go_on: F,
    ) -> Result<Option<Delivered>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool, StoreError>>,
    {
        let settings = &self.deps.settings;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if !go_on().await? {
                return Ok(None);
            }
            let provider = delivery.credential_type.provider();
            let started = std::time::Instant::now();
            let paused = self.deps.pacing.paused_for(&delivery.credential_id);
            let answer = match paused {
                // The provider asked this credential to wait: no request until then.
                Some(left) => DeliveryOutcome::Retryable {
                    after: Some(left),
                    reason: "the provider asked this credential to slow down (Retry-After)".into(),
                },
                None => self.deps.gateway.deliver(delivery).await,
            };
            if let (None, DeliveryOutcome::Retryable { after: Some(after), .. }) = (paused, &answer) {
                self.deps.pacing.pause(&delivery.credential_id, *after);
            }
            let outcome = match &answer {
                _ if paused.is_some() => "paused",
                DeliveryOutcome::Sent => "sent",
                DeliveryOutcome::InvalidToken { .. } => "invalid_token",
                DeliveryOutcome::Permanent { .. } => "rejected",
                DeliveryOutcome::Retryable { .. } => "retryable",
            };
            crate::app::metrics::provider_answer(provider, outcome, started.elapsed());
            return Ok(Some(match answer {
                DeliveryOutcome::Sent => Delivered::Sent,
                DeliveryOutcome::InvalidToken { reason } => Delivered::InvalidToken { reason },
                DeliveryOutcome::Permanent { code, message, reason } => Delivered::Failed { code, message, reason },
                DeliveryOutcome::Retryable { after, reason } => {
                    let backoff = self.backoff(attempt);
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    if attempt < settings.max_attempts && wait <= settings.max_inline_wait {
                        crate::app::metrics::retry(provider);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if self.receive_count < settings.max_receives {
                        Delivered::Later(wait)
                    } else {
                        let message = format!(
                            "the provider stayed unavailable after {} deliveries of this batch",
                            self.receive_count
                        );
                        Delivered::Failed { code: ErrorCode::ProviderUnavailable, message, reason: Some(reason) }
                    }
                }
            }));
        }
    }

    /// FAILED with `code`, by this dispatcher, now.
    pub(super) fn failed(&self, from: &Senders, code: ErrorCode, message: String, reason: Option<String>) -> Finish {
        let error = DeliveryError::new(code, message, reason);
        Finish::by_dispatcher(NotificationStatus::Failed, from.clone(), Some(error), self.deps.clock.now())
    }

    /// CANCELED by this dispatcher, now; `unclaimed` when it holds no claim on the notification.
    fn canceled(&self, from: &Senders, unclaimed: bool) -> Finish {
        let finish = Finish::by_dispatcher(NotificationStatus::Canceled, from.clone(), None, self.deps.clock.now());
        Finish { unclaimed, ..finish }
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
        match crate::app::events::finish(self.deps, &self.chunk.account_id, id, finish).await {
            Ok(()) => Ok(RecipientResult::Done(outcome)),
            Err(StoreError::Conflict) => Ok(RecipientResult::Done(Outcome::Unchanged)),
            Err(e) => Err(e),
        }
    }

    /// Removes a dead device from the registration of the send's App that holds it. Best
    /// effort: the notification is final already, so a store failure here is logged and the
    /// device stays registered until its next send reports it again.
    pub(super) async fn forget_dead_device(&self, recipient: &ChunkRecipient) {
        let Some(app) = &self.chunk.app else { return };
        let forgotten = crate::app::directory::forget_dead_device(
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
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let settings = &self.deps.settings;
        Backoff::new(settings.max_attempts, settings.retry_base, Duration::MAX).wait(attempt)
    }
}
