//! Idempotent POSTs: a client that sends `Idempotency-Key: K` with a POST and retries it (its
//! answer lost to a timeout) gets the first answer again, and nothing happens twice.
//!
//! - The same key with the same request (method, path, body) within 24 hours: the first answer
//!   again (same `operationId`), nothing sent again.
//! - The same key with a different request: 422.
//! - Concurrent requests with one key: one runs; the others wait for its answer (up to
//!   [`WAIT`]), then get 409 with `Retry-After` if it is still running.
//! - A request that fails in a way worth retrying (5xx, 429, 408, 409) leaves no record, so its
//!   retry runs.
//!
//! Keys are scoped by account: two accounts may use the same key.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration as StdDuration;

use chrono::Duration;
use sha2::{Digest, Sha256};

use crate::domain::{AccountId, FieldError};

use super::ports::{Begin, Replay};
use super::{AppError, Deps};

/// How long a key's answer is kept.
pub const WINDOW: Duration = Duration::hours(24);

/// How long a running request holds its key before another may take over (longer than any
/// request runs: Lambda stops the HTTP functions at 29 s, pushgate-local's body timeout is 30 s).
pub const LEASE: Duration = Duration::seconds(60);

/// How long a concurrent request waits for the running one's answer before a 409.
pub const WAIT: StdDuration = StdDuration::from_secs(10);

/// Longest idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";

/// Checks a key: 1–255 visible ASCII characters (no spaces, no control characters).
pub fn validate_key(key: &str) -> Result<(), AppError> {
    let ok = !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(AppError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_BYTES} visible ASCII characters"),
        )]))
    }
}

/// What identifies a request: its method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// Requests with one key in this process: the first to arrive holds the key's lock while it
/// claims and (if it runs the request) until its answer is kept; the others wait for the lock,
/// then read the answer once. Only requests in other processes poll the store. The store alone
/// decides who runs: the lock only keeps a popular key's waiters from becoming the load.
type KeyLock = Arc<tokio::sync::RwLock<()>>;

/// Every key's lock in this process, by account and key (dropped with its last request).
type KeyLocks = Mutex<HashMap<(AccountId, String), Weak<tokio::sync::RwLock<()>>>>;

fn key_lock(account: &AccountId, key: &str) -> KeyLock {
    static LOCKS: LazyLock<KeyLocks> = LazyLock::new(KeyLocks::default);
    let mut locks = LOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if locks.len() >= 4096 {
        locks.retain(|_, lock| lock.strong_count() > 0);
    }
    let id = (account.clone(), key.to_owned());
    if let Some(lock) = locks.get(&id).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = KeyLock::default();
    locks.insert(id, Arc::downgrade(&lock));
    lock
}

/// What a claim holds until the request's answer is kept (drop it after [`settle`]).
pub struct Held {
    _write: Option<tokio::sync::OwnedRwLockWriteGuard<()>>,
}

/// Claims the key, or finds its answer; waits (up to [`WAIT`]) while another request with the
/// key runs. `Begin::InProgress` only when it is still running after the wait.
pub async fn begin(
    deps: &Deps,
    account: &AccountId,
    key: &str,
    fingerprint: [u8; 32],
) -> Result<(Begin, Held), AppError> {
    let started = tokio::time::Instant::now();
    let lock = key_lock(account, key);
    let write = match lock.clone().try_write_owned() {
        Ok(first) => Some(first),
        Err(_) => {
            // Another request with this key runs here: its answer is kept before it lets go.
            if tokio::time::timeout(WAIT, lock.read()).await.is_err() {
                return Ok((Begin::InProgress, Held { _write: None }));
            }
            None
        }
    };
    let mut pause = StdDuration::from_millis(50);
    loop {
        let now = deps.clock.now();
        let found = deps.idempotency.begin(account, key, fingerprint, now, now + LEASE, now + WINDOW).await?;
        if found != Begin::InProgress || started.elapsed() + pause > WAIT {
            let write = if found == Begin::Started { write } else { None };
            return Ok((found, Held { _write: write }));
        }
        tokio::time::sleep(pause).await;
        // Each look is a conditional write that loses: a growing pause keeps the waiters of a
        // popular key from becoming the load.
        pause = (pause * 2).min(StdDuration::from_secs(1));
    }
}

/// Is an answer with this status final (kept and replayed), rather than worth retrying?
pub fn is_final(status: u16) -> bool {
    status < 500 && !matches!(status, 408 | 409 | 429)
}

/// Records the answer of the request that claimed the key — or, when the answer is worth
/// retrying, releases the key. A failure here is logged: the answer itself already exists.
pub async fn settle(deps: &Deps, account: &AccountId, key: &str, fingerprint: [u8; 32], replay: Replay) {
    let result = if is_final(replay.status) {
        let expires = deps.clock.now() + WINDOW;
        deps.idempotency.finish(account, key, fingerprint, &replay, expires).await
    } else {
        deps.idempotency.abandon(account, key, fingerprint).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, status = replay.status, "the idempotency record could not be settled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(validate_key("order-1234:retry").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        for bad in [String::new(), "k".repeat(256), "with space".into(), "tab\t".into(), "é".into()] {
            assert!(validate_key(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fingerprint_changes_with_the_method_the_path_or_the_body_and_parts_cannot_be_shifted() {
        let base = fingerprint("POST", "/v1/PushNotifications", b"{}");
        assert_eq!(base, fingerprint("POST", "/v1/PushNotifications", b"{}"));
        assert_ne!(base, fingerprint("POST", "/v1/PushNotifications", b"{ }"));
        assert_ne!(base, fingerprint("POST", "/v1/PushNotifications/Credentials", b"{}"));
        assert_ne!(fingerprint("POST", "/a", b"b"), fingerprint("POST", "/ab", b""));
    }

    #[test]
    fn only_answers_worth_retrying_are_forgotten() {
        for status in [200, 201, 202, 204, 400, 401, 404, 413, 422] {
            assert!(is_final(status), "{status}");
        }
        for status in [408, 409, 429, 500, 503] {
            assert!(!is_final(status), "{status}");
        }
    }
}
