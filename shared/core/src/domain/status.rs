//! Statuses and their legal transitions.

use serde::{Deserialize, Serialize};

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot move from {from:?} to {to:?}")]
pub struct IllegalTransition<S: std::fmt::Debug> {
    /// Current status.
    pub from: S,
    /// Requested status.
    pub to: S,
}

/// A PushNotification's status.
///
/// `SCHEDULED → QUEUED → SENT | FAILED`; `SCHEDULED | QUEUED → CANCELED`. `SENT`, `FAILED` and
/// `CANCELED` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NotificationStatus {
    /// Waiting for its `sendAt` instant.
    Scheduled,
    /// Waiting for (or being handed to) a provider.
    Queued,
    /// Accepted by APNs or FCM.
    Sent,
    /// Failed; `error` says why.
    Failed,
    /// Canceled through the API.
    Canceled,
}

impl NotificationStatus {
    /// All statuses, for parsing and docs.
    pub const ALL: [Self; 5] = [Self::Scheduled, Self::Queued, Self::Sent, Self::Failed, Self::Canceled];

    /// Is this status final?
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Failed | Self::Canceled)
    }

    /// Moves to `to` if the state machine allows it.
    pub fn transition(self, to: Self) -> Result<Self, IllegalTransition<Self>> {
        use NotificationStatus::*;
        let ok = matches!(
            (self, to),
            (Scheduled, Queued) | (Queued, Sent) | (Queued, Failed) | (Scheduled | Queued, Canceled)
        );
        if ok { Ok(to) } else { Err(IllegalTransition { from: self, to }) }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// An Operation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OperationStatus {
    /// Every notification waits for a `sendAt` instant.
    Scheduled,
    /// Notifications are being delivered.
    Processing,
    /// Every notification is final (or the recipient was unaddressable).
    Completed,
    /// Canceled through the API.
    Canceled,
}

impl OperationStatus {
    /// All statuses.
    pub const ALL: [Self; 4] = [Self::Scheduled, Self::Processing, Self::Completed, Self::Canceled];

    /// Moves to `to` if allowed: `SCHEDULED → PROCESSING → COMPLETED`, `SCHEDULED | PROCESSING → CANCELED`.
    pub fn transition(self, to: Self) -> Result<Self, IllegalTransition<Self>> {
        use OperationStatus::*;
        let ok = matches!(
            (self, to),
            (Scheduled, Processing) | (Processing, Completed) | (Scheduled | Processing, Canceled)
        );
        if ok { Ok(to) } else { Err(IllegalTransition { from: self, to }) }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Canceled => "CANCELED",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::NotificationStatus::*;
    use super::*;

    #[test]
    fn only_the_documented_notification_transitions_are_legal() {
        let legal = [(Scheduled, Queued), (Queued, Sent), (Queued, Failed), (Scheduled, Canceled), (Queued, Canceled)];
        for from in NotificationStatus::ALL {
            for to in NotificationStatus::ALL {
                assert_eq!(from.transition(to).is_ok(), legal.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn final_statuses_never_move() {
        for from in [Sent, Failed, Canceled] {
            assert!(from.is_final());
            assert!(NotificationStatus::ALL.iter().all(|to| from.transition(*to).is_err()));
        }
    }

    #[test]
    fn a_completed_operation_cannot_be_canceled() {
        assert!(OperationStatus::Completed.transition(OperationStatus::Canceled).is_err());
        assert!(OperationStatus::Processing.transition(OperationStatus::Completed).is_ok());
    }

    #[test]
    fn statuses_parse_only_their_upper_case_wire_names() {
        assert_eq!(NotificationStatus::parse("SENT"), Some(Sent));
        assert_eq!(NotificationStatus::parse("sent"), None);
        assert_eq!(OperationStatus::parse("PROCESSING"), Some(OperationStatus::Processing));
    }
}
