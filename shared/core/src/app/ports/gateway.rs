//! The providers: delivering one notification; checking a credential before it is stored.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Content, CredentialId, CredentialSecret, CredentialType, ErrorCode, Priority};

/// What the provider needs to deliver one notification.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The credential (cache key for clients and tokens).
    pub credential_id: CredentialId,
    /// Its type (APN vs APN_SANDBOX picks the host).
    pub credential_type: CredentialType,
    /// Its decrypted content.
    pub secret: &'a Arc<CredentialSecret>,
    /// Device token.
    pub token: &'a str,
    /// Rendered content.
    pub content: &'a Content,
    pub priority: Priority,
    pub sound: Option<&'a str>,
}

/// How a provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Accepted.
    Sent,
    /// The token is not (or no longer) valid: fail and forget the device.
    InvalidToken {
        /// The provider's reason.
        reason: String,
    },
    /// Try again later (429/5xx/timeouts).
    Retryable {
        /// The provider's Retry-After, if any.
        after: Option<Duration>,
        /// The provider's reason.
        reason: String,
    },
    /// Refused for good.
    Permanent {
        /// The pushgate code.
        code: ErrorCode,
        /// Explanation.
        message: String,
        /// The provider's reason, if any.
        reason: Option<String>,
    },
}

/// Why a provider would refuse a credential's content, found when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialProblem {
    /// The private key cannot sign what the provider requires (APNs: ES256 with a P-256 key;
    /// FCM: RS256 with an RSA key). The text says what is needed.
    PrivateKey(String),
    /// The certificate and its key do not make a client identity.
    Certificate(String),
    /// The service account's `token_uri` is not one of the OAuth token endpoints this
    /// deployment talks to.
    TokenUri(String),
}

/// Delivers one notification to APNs or FCM.
#[async_trait]
pub trait PushGateway: Send + Sync {
    /// Sends once (no retries: the dispatcher owns the retry policy) and classifies the answer.
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryOutcome;
}

/// Checks a new credential against what its provider accepts, the way the [`PushGateway`] will
/// use it (signing a provider token or an OAuth assertion; the allowed OAuth endpoints),
/// without a client or a request: a separate port so that the function creating credentials
/// links no provider client.
pub trait CredentialChecker: Send + Sync {
    /// The problems with `secret`; empty when usable.
    fn check(&self, secret: &CredentialSecret) -> Vec<CredentialProblem>;
}
