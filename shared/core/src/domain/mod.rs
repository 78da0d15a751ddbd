//! The domain: types, rules and state machines. No I/O, no SDKs.

pub mod account;
pub mod credential;
pub mod device_token;
pub mod directory;
pub mod event;
pub mod ids;
pub mod model;
pub mod send;
pub mod status;
pub mod template;

pub use account::{Account, AccountLimits, ApiKey, ApiKeySid, AuthToken, PreviousToken, TokenHash};
pub use credential::{App, Credential, CredentialSecret, CredentialType};
pub use directory::{Device, DeviceRegistration, User};
pub use event::{EventType, OperationEvent};
pub use ids::{AccountId, AppName, CredentialId, DeviceRegistrationId, InvalidId, NotificationId, OperationId, UserId};
pub use model::*;
pub use send::{CompiledContent, FieldError, Recipient, SendRequest, SenderSpec};
pub use status::{IllegalTransition, NotificationStatus, OperationStatus};
