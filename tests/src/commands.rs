//! The use cases called with JSON bodies, as the API calls them: each body is read into its
//! command by the API crate's `TryFrom` first (a body the API would refuse is refused here the
//! same way, as `AppError::Validation`).

use serde_json::Value;

use pushgate_api::requests::{CredentialBody, RegistrationBody, SendBody};
use pushgate_core::app::credentials::NewCredential;
use pushgate_core::app::directory::RegisterDevice;
use pushgate_core::app::{AppError, Deps};
use pushgate_core::domain::{AccountId, Credential, DeviceRegistration, OperationId, SendRequest};

/// `POST /v1/PushNotifications` with `body`, received now by `deps`' clock.
pub async fn send(deps: &Deps, account: &AccountId, body: Value) -> Result<OperationId, AppError> {
    let request =
        SendRequest::try_from(SendBody { json: body, received_at: deps.clock.now() }).map_err(AppError::Validation)?;
    pushgate_core::app::send::send(deps, account, &deps.settings.limits_for(&Default::default()), request).await
}

/// `POST /v1/PushNotifications/Credentials` with `body`.
pub async fn create_credential(deps: &Deps, account: &AccountId, body: &Value) -> Result<Credential, AppError> {
    let request = NewCredential::try_from(CredentialBody(body.clone())).map_err(AppError::Validation)?;
    pushgate_core::app::credentials::create_credential(deps, account, request).await
}

/// `POST /v1/PushNotifications/DeviceRegistrations` with `body`.
pub async fn register(deps: &Deps, account: &AccountId, body: &Value) -> Result<DeviceRegistration, AppError> {
    let request = RegisterDevice::try_from(RegistrationBody(body.clone())).map_err(AppError::Validation)?;
    pushgate_core::app::directory::register(deps, account, request).await
}
