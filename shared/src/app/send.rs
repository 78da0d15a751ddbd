//! Send: validate everything, store the Operation, enqueue its chunks, then answer 202.
//!
//! Promise 1 (no partial operations) lives here: the operation is stored first and only
//! acknowledged once every chunk is on the queue; if enqueueing fails the operation is discarded
//! and the caller gets 503, so nothing was promised and nothing is sent.

use serde_json::Value;
use tracing::{instrument, warn};

use crate::domain::send::parse_send;
use crate::domain::{
    AccountId, FieldError, Operation, OperationId, OperationStatus, Provider, Recipient, SendRequest, SenderSpec,
    Senders, Stats,
};

use super::ports::{Chunk, ChunkRecipient};
use super::{AppError, Deps};

/// Accepts a send request; returns the new operation's id.
#[instrument(skip_all, fields(account_id = %account, operation_id))]
pub async fn send(deps: &Deps, account: &AccountId, body: Value) -> Result<OperationId, AppError> {
    let now = deps.clock.now();
    let (request, _compiled) = parse_send(body, now).map_err(AppError::Validation)?;
    if !request.send_at.is_empty() {
        return Err(AppError::field("schedule", "scheduled sends are not available yet in this version of pushgate"));
    }
    let senders = resolve_senders(deps, account, &request.from).await?;

    let id = OperationId::from_ulid(deps.ids.ulid(now));
    tracing::Span::current().record("operation_id", tracing::field::display(id));
    let direct = request.to.iter().filter(|r| matches!(r, Recipient::Device { .. })).count() as u64;
    let stats = Stats {
        total: direct,
        recipients: request.to.len() as u64,
        // Users and device registrations arrive with the next issue: until then no User has a
        // device, so a user recipient is unaddressable (spec §5).
        unaddressable: request.to.len() as u64 - direct,
        queued: direct,
        ..Stats::default()
    };
    let status = if direct == 0 { OperationStatus::Completed } else { OperationStatus::Processing };
    let operation = Operation { id, account_id: account.clone(), status, stats, created_at: now, updated_at: now };
    deps.push.create_operation(&operation).await?;

    let chunks = chunks(deps, account, id, request, &senders, now);
    if let Err(e) = deps.queue.enqueue(chunks).await {
        warn!(error = %e, "enqueue failed; discarding the operation");
        if let Err(e) = deps.push.discard_operation(account, id).await {
            warn!(error = %e, "could not discard the unaccepted operation");
        }
        return Err(e.into());
    }
    Ok(id)
}

/// Resolves the credential per provider: explicit ids → the named App's defaults → the
/// account's default App. Explicit ids and App names that do not exist are a 400.
async fn resolve_senders(deps: &Deps, account: &AccountId, from: &SenderSpec) -> Result<Senders, AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    match from {
        SenderSpec::Credentials(senders) => {
            let mut errors = Vec::new();
            for (field, provider, id) in
                [("from.apn", Provider::Apn, &senders.apn), ("from.fcm", Provider::Fcm, &senders.fcm)]
            {
                let Some(id) = id else { continue };
                // An id that does not exist is accepted: its recipients fail with a clear error
                // (spec §4), as Twilio's own example request (with made-up ids) expects.
                match book.credential(id) {
                    None => {}
                    Some(c) if c.credential_type.provider() != provider => {
                        errors.push(FieldError::new(field, format!("is a {} credential", c.credential_type.as_str())))
                    }
                    Some(_) => {}
                }
            }
            if errors.is_empty() { Ok(senders.clone()) } else { Err(AppError::Validation(errors)) }
        }
        SenderSpec::App(name) => {
            let app = book.app(name).ok_or_else(|| AppError::field("from.appName", "no such App"))?;
            Ok(Senders { apn: app.default_for(Provider::Apn), fcm: app.default_for(Provider::Fcm) })
        }
        SenderSpec::DefaultApp => Ok(book
            .default_app()
            .map(|app| Senders { apn: app.default_for(Provider::Apn), fcm: app.default_for(Provider::Fcm) })
            .unwrap_or_default()),
    }
}

/// Splits the direct recipients into chunks bounded by count and by estimated message size.
fn chunks(
    deps: &Deps,
    account: &AccountId,
    operation_id: OperationId,
    request: SendRequest,
    senders: &Senders,
    now: crate::domain::Timestamp,
) -> Vec<Chunk> {
    let settings = &deps.settings;
    let base_bytes = json_len(&request.content) + json_len(&request.tags) + 512;
    let empty = || Chunk {
        v: Chunk::VERSION,
        account_id: account.clone(),
        operation_id,
        created_at: now,
        content: request.content.clone(),
        tags: request.tags.clone(),
        priority: request.priority,
        sound: request.sound.clone(),
        senders: senders.clone(),
        recipients: Vec::new(),
    };
    let mut out = Vec::new();
    let mut current = empty();
    let mut bytes = base_bytes;
    for (slot, recipient) in request.to.into_iter().enumerate() {
        let Recipient::Device { token, provider, variables } = recipient else { continue };
        let size = token.len() + json_len(&variables) + 64;
        if !current.recipients.is_empty()
            && (current.recipients.len() >= settings.chunk_size || bytes + size > settings.chunk_bytes)
        {
            out.push(std::mem::replace(&mut current, empty()));
            bytes = base_bytes;
        }
        bytes += size;
        current.recipients.push(ChunkRecipient { slot: slot as u32, token, provider, variables });
    }
    if !current.recipients.is_empty() {
        out.push(current);
    }
    out
}

/// The exact length of `value` serialized as JSON, without allocating it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing plain data into a counter cannot fail; an error would only undercount.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
