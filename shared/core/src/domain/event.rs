//! Operation events: `operation.scheduled`, `operation.processing`,
//! `operation.completed`, posted to an account's webhook with an HMAC-SHA256 signature.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ids::{AccountId, OperationId};
use super::model::{Operation, Stats, Timestamp};
use super::status::OperationStatus;

/// Which moment of an operation an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A scheduled send was accepted.
    #[serde(rename = "operation.scheduled")]
    Scheduled,
    /// Delivery started (at once for an immediate send, at the first instant for a scheduled one).
    #[serde(rename = "operation.processing")]
    Processing,
    /// Every notification is final.
    #[serde(rename = "operation.completed")]
    Completed,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "operation.scheduled",
            Self::Processing => "operation.processing",
            Self::Completed => "operation.completed",
        }
    }
}

/// The body posted to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationEvent {
    /// `{operationId}.{type}`: the same for every delivery of one event (receivers dedupe on it;
    /// delivery is at least once).
    pub id: String,
    /// The event.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Owner.
    pub account_id: AccountId,
    pub operation_id: OperationId,
    /// Its status when the event happened.
    pub status: OperationStatus,
    /// Its counters when the event happened.
    pub stats: Stats,
    /// When.
    pub occurred_at: Timestamp,
}

impl OperationEvent {
    /// The `kind` event of `op`, now.
    pub fn new(kind: EventType, op: &Operation, now: Timestamp) -> Self {
        Self {
            id: format!("{}.{}", op.id, kind.as_str()),
            kind,
            account_id: op.account_id.clone(),
            operation_id: op.id,
            status: op.status,
            stats: op.stats,
            occurred_at: now,
        }
    }
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds):
/// `t={timestamp},v1={hex HMAC-SHA256(secret, "{timestamp}.{body}")}`. Receivers recompute it
/// and refuse stale timestamps (replays).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature(b"Jefe", 1, b"what do ya want for nothing?");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"1.what do ya want for nothing?");
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sig, format!("t=1,v1={expected}"));
        assert_ne!(signature(b"Jefe", 2, b"what do ya want for nothing?"), sig, "the timestamp is signed");
    }

    #[test]
    fn event_types_have_their_dotted_wire_names() {
        for kind in [EventType::Scheduled, EventType::Processing, EventType::Completed] {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), serde_json::json!(kind.as_str()));
        }
    }
}
