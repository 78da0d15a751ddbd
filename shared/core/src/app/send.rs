//! Send: validate everything, store the Operation, enqueue its chunks (a scheduled send also
//! stores them and schedules their release), then answer 202.
//!
//! Promise 1 (no partial operations) lives here: the operation is stored first and only
//! acknowledged once every chunk is on the queue; if enqueueing fails the operation is discarded
//! and the caller gets 503, so nothing was promised and nothing is sent.

use tracing::{instrument, warn};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::domain::directory::Device;
use crate::domain::send::json_len;
use crate::domain::{
    AccountId, AppName, EventType, FieldError, Operation, OperationId, OperationStatus, Provider, Recipient,
    SendRequest, SenderSpec, Senders, Stats, UserId,
};

use super::ports::{Chunk, ChunkRecipient, Release};
use super::{AppError, Deps, Limits, events};

/// Accepts a validated send request; returns the new operation's id.
#[instrument(skip_all, fields(account_id = %account, operation_id))]
pub async fn send(
    deps: &Deps,
    account: &AccountId,
    limits: &Limits,
    request: SendRequest,
) -> Result<OperationId, AppError> {
    let now = deps.clock.now();
    let has_users = request.to.iter().any(|r| matches!(r, Recipient::User { .. }));
    let (senders, app) = resolve_senders(deps, account, &request.from, has_users).await?;
    let recipient_count = request.to.len() as u64;
    let SendRequest { to, content, priority, sound, tags, send_at, .. } = request;
    let (recipients, unaddressable) = expand(deps, account, app.as_ref(), to).await?;

    let adding = recipients.len() as u64 * send_at.len().max(1) as u64;
    check_live_cap(deps, account, limits.live_notifications, adding).await?;
    check_budget(deps, account, limits, adding, now).await?;

    let id = OperationId::from_ulid(deps.ids.ulid(now));
    tracing::Span::current().record("operation_id", tracing::field::display(id));
    let total = recipients.len() as u64 * send_at.len().max(1) as u64;
    let scheduled = !send_at.is_empty();
    let stats = Stats {
        total,
        recipients: recipient_count,
        unaddressable,
        scheduled: if scheduled { total } else { 0 },
        queued: if scheduled { 0 } else { total },
        ..Stats::default()
    };
    let status = match (total, scheduled) {
        (0, _) => OperationStatus::Completed,
        (_, true) => OperationStatus::Scheduled,
        (_, false) => OperationStatus::Processing,
    };
    let operation = Operation { id, account_id: account.clone(), status, stats, created_at: now, updated_at: now };
    deps.push.create_operation(&operation).await?;
    if total == 0 {
        events::announce(deps, EventType::Completed, &operation).await;
        return Ok(id);
    }

    let template = Chunk {
        v: Chunk::VERSION,
        account_id: account.clone(),
        operation_id: id,
        created_at: now,
        content,
        tags,
        priority,
        sound,
        senders,
        app,
        recipients: Vec::new(),
        scheduled_for: None,
        released: false,
    };
    let accepted = if scheduled {
        schedule(deps, template, recipients, &send_at).await
    } else {
        deps.queue.enqueue(chunks(deps, template, recipients)).await.map_err(AppError::from)
    };
    if let Err(e) = accepted {
        warn!(error = %e, "the operation could not be made durable; discarding it");
        if let Err(e) = deps.push.discard_operation(account, id).await {
            warn!(error = %e, "could not discard the unaccepted operation");
        }
        return Err(e);
    }
    let kind = if scheduled { EventType::Scheduled } else { EventType::Processing };
    events::announce(deps, kind, &operation).await;
    Ok(id)
}

/// Refuses a send that would take the account over its cap on live notifications (those queued
/// or scheduled): 429 with Retry-After, nothing stored. Concurrent sends may each pass the check,
/// so the cap can be exceeded by the sends in flight at that moment.
async fn check_live_cap(deps: &Deps, account: &AccountId, cap: Option<u64>, adding: u64) -> Result<(), AppError> {
    let Some(cap) = cap else { return Ok(()) };
    let Some(live) = deps.push.live_notifications(account).await? else { return Ok(()) };
    if live.saturating_add(adding) > cap {
        super::metrics::rate_limited("live");
        return Err(AppError::Limit {
            message: format!(
                "The account has {live} notifications queued or scheduled; this send would add {adding} and the \
                 limit is {cap}. Retry once some are delivered (or cancel scheduled ones)"
            ),
            retry_after: 30,
        });
    }
    Ok(())
}

/// Counts the send's notifications into the account's minute (one store write per send): 429
/// with `Retry-After` (the seconds left in the minute) when the minute's budget would be passed;
/// a send larger than a whole minute's budget can never pass and is refused for good (400).
async fn check_budget(
    deps: &Deps,
    account: &AccountId,
    limits: &Limits,
    adding: u64,
    now: crate::domain::Timestamp,
) -> Result<(), AppError> {
    let per_minute = u64::from(limits.notifications_per_minute);
    if adding == 0 {
        return Ok(());
    }
    if adding > per_minute {
        return Err(AppError::NotAllowed {
            code: 20430,
            message: format!(
                "This send has {adding} notifications; the account may send {per_minute} a minute. Split it into \
                 smaller sends"
            ),
        });
    }
    if deps.budget.admit(account, now, adding, per_minute).await? {
        return Ok(());
    }
    super::metrics::rate_limited("notifications");
    let into_minute = now.timestamp().rem_euclid(60) as u64;
    Err(AppError::Limit {
        message: format!(
            "The account may send {per_minute} notifications a minute and this send of {adding} would pass that; \
             retry after the minute turns"
        ),
        retry_after: (60 - into_minute).max(1),
    })
}

/// Makes a scheduled send durable: per `sendAt` instant its chunks are stored and a release is
/// scheduled; then every chunk is queued unreleased, so the dispatcher creates the
/// notifications SCHEDULED right away. Instant `k` numbers its notifications from
/// `k × recipients`. On failure everything done so far is undone (the caller discards the
/// operation).
async fn schedule(
    deps: &Deps,
    template: Chunk,
    recipients: Vec<ChunkRecipient>,
    send_at: &[crate::domain::Timestamp],
) -> Result<(), AppError> {
    let (account, operation) = (template.account_id.clone(), template.operation_id);
    let per_instant = recipients.len() as u32;
    let mut all = Vec::new();
    let mut scheduled = Vec::new();
    let mut result = Ok(());
    for (k, at) in send_at.iter().enumerate() {
        let instant = k as u8;
        let offset = per_instant * instant as u32;
        let shifted = recipients.iter().map(|r| ChunkRecipient { slot: r.slot + offset, ..r.clone() }).collect();
        let instant_chunks = chunks(deps, Chunk { scheduled_for: Some(*at), ..template.clone() }, shifted);
        if let Err(e) = deps.push.put_scheduled_chunks(&account, operation, instant, &instant_chunks).await {
            result = Err(AppError::from(e));
            break;
        }
        let release = Release { account_id: account.clone(), operation_id: operation, instant, at: *at };
        if let Err(e) = deps.scheduler.schedule(&release).await {
            result = Err(AppError::from(e));
            break;
        }
        scheduled.push(instant);
        all.extend(instant_chunks);
    }
    if result.is_ok() {
        result = deps.queue.enqueue(all).await.map_err(AppError::from);
    }
    if result.is_err() {
        for instant in scheduled {
            if let Err(e) = deps.scheduler.unschedule(&account, operation, instant).await {
                warn!(error = %e, instant, "could not delete the schedule of an unaccepted operation");
            }
        }
        if let Err(e) = deps.push.delete_scheduled_chunks(&account, operation, None).await {
            warn!(error = %e, "could not delete the stored chunks of an unaccepted operation");
        }
    }
    result
}

/// Resolves the credential per provider (explicit ids → the named App's defaults → the
/// account's default App) and the App whose registrations user recipients reach (the named or
/// default App, or the App of the explicit credentials). Explicit ids and App names that do not
/// exist are a 400, and so are user recipients with explicit credentials of two Apps.
async fn resolve_senders(
    deps: &Deps,
    account: &AccountId,
    from: &SenderSpec,
    has_users: bool,
) -> Result<(Senders, Option<AppName>), AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    match from {
        SenderSpec::Credentials(senders) => {
            let mut errors = Vec::new();
            let mut apps: Vec<AppName> = Vec::new();
            for (field, provider, id) in
                [("from.apn", Provider::Apn, &senders.apn), ("from.fcm", Provider::Fcm, &senders.fcm)]
            {
                let Some(id) = id else { continue };
                // An id that does not exist is accepted: its recipients fail with a clear error,
                // as Twilio's own example request (with made-up ids) expects.
                match book.credential(id) {
                    None => {}
                    Some(c) if c.credential_type.provider() != provider => {
                        errors.push(FieldError::new(field, format!("is a {} credential", c.credential_type.as_str())))
                    }
                    Some(c) if !apps.contains(&c.app_name) => apps.push(c.app_name.clone()),
                    Some(_) => {}
                }
            }
            if has_users && apps.len() > 1 {
                errors.push(FieldError::new(
                    "from",
                    format!(
                        "names credentials of two Apps ({} and {}): user recipients are reached through one App",
                        apps[0], apps[1]
                    ),
                ));
            }
            if errors.is_empty() { Ok((senders.clone(), apps.pop())) } else { Err(AppError::Validation(errors)) }
        }
        SenderSpec::App(name) => {
            let app = book.app(name).ok_or_else(|| AppError::field("from.appName", "no such App"))?;
            Ok((Senders { apn: app.default_for(Provider::Apn), fcm: app.default_for(Provider::Fcm) }, Some(app.name)))
        }
        SenderSpec::DefaultApp => Ok(book
            .default_app()
            .map(|app| {
                (Senders { apn: app.default_for(Provider::Apn), fcm: app.default_for(Provider::Fcm) }, Some(app.name))
            })
            .unwrap_or_default()),
    }
}

/// Turns `to` into one chunk recipient per notification, in request order: a direct recipient
/// is one; a user recipient is one per device of the User's registration in `app` (all of them
/// read in one store call). Slots number the notifications from 0. Returns them and how many
/// recipients reached no device (unknown or deleted Users, Users without a registration in the
/// App, every User when no App resolved).
async fn expand(
    deps: &Deps,
    account: &AccountId,
    app: Option<&AppName>,
    to: Vec<Recipient>,
) -> Result<(Vec<ChunkRecipient>, u64), AppError> {
    let mut users: Vec<UserId> = Vec::new();
    let mut seen = HashSet::new();
    for r in &to {
        if let Recipient::User { user_id, .. } = r
            && seen.insert(*user_id)
        {
            users.push(*user_id);
        }
    }
    let mut devices: HashMap<UserId, Vec<Device>> = HashMap::new();
    if let (Some(app), false) = (app, users.is_empty()) {
        for registration in deps.directory.registrations_of_users(account, app, &users).await? {
            devices.insert(registration.user_id, registration.devices);
        }
    }
    let mut out = Vec::with_capacity(to.len());
    let mut unaddressable = 0;
    for recipient in to {
        let slot = out.len() as u32;
        match recipient {
            Recipient::Device { token, provider, variables } => {
                out.push(ChunkRecipient { slot, token, provider, variables: Arc::new(variables), user_id: None })
            }
            Recipient::User { user_id, variables } => match devices.get(&user_id) {
                Some(found) if !found.is_empty() => {
                    let variables = Arc::new(variables);
                    out.extend(found.iter().enumerate().map(|(i, d)| ChunkRecipient {
                        slot: slot + i as u32,
                        token: d.token.clone(),
                        provider: d.provider,
                        variables: variables.clone(),
                        user_id: Some(user_id),
                    }));
                }
                _ => unaddressable += 1,
            },
        }
    }
    Ok((out, unaddressable))
}

/// Splits the recipients into copies of `template` bounded by count and by estimated message
/// size.
fn chunks(deps: &Deps, template: Chunk, recipients: Vec<ChunkRecipient>) -> Vec<Chunk> {
    let settings = &deps.settings;
    let base_bytes = json_len(&template.content) + json_len(&template.tags) + 512;
    let mut out = Vec::new();
    let mut current = template.clone();
    let mut bytes = base_bytes;
    for recipient in recipients {
        let size = recipient.token.len() + json_len(&recipient.variables) + 128;
        if !current.recipients.is_empty()
            && (current.recipients.len() >= settings.chunk_size || bytes + size > settings.chunk_bytes)
        {
            out.push(std::mem::replace(&mut current, template.clone()));
            bytes = base_bytes;
        }
        bytes += size;
        current.recipients.push(recipient);
    }
    if !current.recipients.is_empty() {
        out.push(current);
    }
    out
}
