//! The errors use cases return; `api::error` maps them to HTTP in one place.

use crate::domain::FieldError;

use super::ports::{QueueError, StoreError};

/// A use case failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The request is invalid; every problem is listed.
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// Missing or wrong credentials.
    #[error("authentication required")]
    Unauthorized,
    /// The resource does not exist (or belongs to another account).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The resource is in a state that forbids the change.
    #[error("{message}")]
    NotAllowed {
        /// Twilio-style error code.
        code: u32,
        /// Why.
        message: String,
    },
    /// A dependency is temporarily unavailable; nothing was changed.
    #[error("service unavailable")]
    Unavailable {
        /// Seconds the client should wait.
        retry_after: u64,
    },
    /// A per-account limit is reached; nothing was changed, the same request may succeed later.
    #[error("{message}")]
    Limit {
        /// Why.
        message: String,
        /// Seconds the client should wait.
        retry_after: u64,
    },
    /// A bug or an unexpected dependency failure (details are logged, not returned).
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl AppError {
    /// A validation failure on one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Conflict => Self::Unavailable { retry_after: 1 },
            StoreError::Unexpected(m) => Self::Unexpected(m),
        }
    }
}

impl From<QueueError> for AppError {
    fn from(_: QueueError) -> Self {
        Self::Unavailable { retry_after: 5 }
    }
}
