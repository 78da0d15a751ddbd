//! Credentials and Apps: create, list, fetch, make default, delete (with the App cascade).

use tracing::{instrument, warn};

use crate::domain::credential::{BookError, CredentialBook};
use crate::domain::{
    AccountId, App, AppName, Credential, CredentialId, CredentialSecret, CredentialType, FieldError, Timestamp,
};

use super::paging::page_newest_first;
use super::ports::{CredentialProblem, Page, PageRequest, StoreError};
use super::{AppError, Deps};
use crate::domain::credential::secret_aad;

/// How often an optimistic book update is retried when another writer got there first.
const BOOK_RETRIES: usize = 8;

/// Filters of the credential list.
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    /// Only this App's.
    pub app_name: Option<AppName>,
    /// Only this type.
    pub credential_type: Option<CredentialType>,
    /// Only (non-)defaults.
    pub is_default: Option<bool>,
    /// Created at or after.
    pub start: Option<Timestamp>,
    /// Created at or before.
    pub end: Option<Timestamp>,
}

/// Filters of the App list.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Only the default (or the others).
    pub is_default: Option<bool>,
    /// Created at or after.
    pub start: Option<Timestamp>,
    /// Created at or before.
    pub end: Option<Timestamp>,
}

fn book_error(e: BookError) -> AppError {
    match e {
        BookError::TooManyApps => AppError::field("appName", e.to_string()),
        BookError::TooManyCredentials => AppError::field("appName", e.to_string()),
        BookError::CredentialNotFound => AppError::NotFound("Credential"),
        BookError::AppNotFound => AppError::NotFound("App"),
    }
}

/// Applies `change` to the account's book with optimistic concurrency.
async fn update_book<T>(
    deps: &Deps,
    account: &AccountId,
    mut change: impl FnMut(&mut CredentialBook) -> Result<T, BookError>,
) -> Result<T, AppError> {
    for _ in 0..BOOK_RETRIES {
        let (mut book, version) = deps.credentials.load_book(account).await?;
        let out = change(&mut book).map_err(book_error)?;
        match deps.credentials.save_book(account, &book, version).await {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Unavailable { retry_after: 1 })
}

/// What `POST /Credentials` asks for: a credential of `credential_type` in the App
/// `app_name` (created with its first credential), holding `secret`.
#[derive(Clone)]
pub struct NewCredential {
    pub credential_type: CredentialType,
    pub app_name: AppName,
    /// Make it its App's default for its type (the first of a type always is).
    pub is_default: bool,
    pub secret: CredentialSecret,
}

/// Creates a credential, once the provider's rules accept its secret.
#[instrument(skip_all, fields(account_id = %account))]
pub async fn create_credential(
    deps: &Deps,
    account: &AccountId,
    request: NewCredential,
) -> Result<Credential, AppError> {
    let NewCredential { credential_type, app_name, is_default, secret } = request;
    // Validated against what the provider accepts, before anything is stored.
    let errors: Vec<FieldError> = deps
        .checker
        .check(&secret)
        .into_iter()
        .map(|problem| match problem {
            CredentialProblem::PrivateKey(m) | CredentialProblem::TokenUri(m) => {
                FieldError::new("content.privateKey", m)
            }
            CredentialProblem::Certificate(m) => FieldError::new("content.certificate", m),
        })
        .collect();
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }

    let now = deps.clock.now();
    let id = CredentialId::from_ulid(deps.ids.ulid(now));
    let plain = serde_json::to_vec(&secret).map_err(|e| AppError::Unexpected(e.to_string()))?;
    let sealed = deps.secrets.seal(&plain, &secret_aad(account, &id)).await?;
    deps.credentials.put_secret(account, &id, sealed).await?;
    let credential = Credential {
        id: id.clone(),
        account_id: account.clone(),
        credential_type,
        app_name,
        is_default,
        created_at: now,
        updated_at: now,
    };
    let result = update_book(deps, account, |book| book.add(credential.clone(), is_default)).await;
    if result.is_err()
        && let Err(e) = deps.credentials.delete_secret(account, &id).await
    {
        warn!(error = %e, "could not remove the secret of a credential that was not created");
    }
    result
}

/// One credential.
pub async fn fetch_credential(deps: &Deps, account: &AccountId, id: CredentialId) -> Result<Credential, AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    book.credential(&id).cloned().ok_or(AppError::NotFound("Credential"))
}

/// Credentials matching `filter`, newest first.
pub async fn list_credentials(
    deps: &Deps,
    account: &AccountId,
    filter: &CredentialFilter,
    page: &PageRequest,
) -> Result<Page<Credential>, AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    let items = book.credentials.into_iter().filter(|c| {
        filter.app_name.as_ref().is_none_or(|n| &c.app_name == n)
            && filter.credential_type.is_none_or(|t| c.credential_type == t)
            && filter.is_default.is_none_or(|d| c.is_default == d)
            && filter.start.is_none_or(|s| c.created_at >= s)
            && filter.end.is_none_or(|e| c.created_at <= e)
    });
    Ok(page_newest_first(items.map(|c| (c.id.to_string(), c)).collect(), page))
}

/// Makes a credential its App's default for its type (`isDefault: true` is the only change).
pub async fn patch_credential(deps: &Deps, account: &AccountId, id: CredentialId) -> Result<Credential, AppError> {
    let now = deps.clock.now();
    update_book(deps, account, |book| book.set_default(&id, now)).await
}

/// Deletes a credential; its App goes with its last credential, and the App's DeviceRegistrations
/// with the App.
pub async fn delete_credential(deps: &Deps, account: &AccountId, id: CredentialId) -> Result<Credential, AppError> {
    let now = deps.clock.now();
    let removal = update_book(deps, account, |book| book.remove(&id, now)).await?;
    deps.credentials.delete_secret(account, &id).await?;
    if let Some(app) = &removal.app_removed {
        super::directory::delete_app_registrations(deps, account, app).await?;
    }
    Ok(removal.credential)
}

/// One App.
pub async fn fetch_app(deps: &Deps, account: &AccountId, name: &AppName) -> Result<App, AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    book.app(name).ok_or(AppError::NotFound("App"))
}

/// Apps matching `filter`, newest first.
pub async fn list_apps(
    deps: &Deps,
    account: &AccountId,
    filter: &AppFilter,
    page: &PageRequest,
) -> Result<Page<App>, AppError> {
    let (book, _) = deps.credentials.load_book(account).await?;
    let items = book.apps().into_iter().filter(|a| {
        filter.is_default.is_none_or(|d| a.is_default == d)
            && filter.start.is_none_or(|s| a.created_at >= s)
            && filter.end.is_none_or(|e| a.created_at <= e)
    });
    // Apps are keyed by creation time then name so the order is stable.
    Ok(page_newest_first(
        items.map(|a| (format!("{:020}/{}", a.created_at.timestamp_micros(), a.name), a)).collect(),
        page,
    ))
}

/// Makes an App the account's default.
pub async fn patch_app(deps: &Deps, account: &AccountId, name: &AppName) -> Result<App, AppError> {
    let now = deps.clock.now();
    update_book(deps, account, |book| book.set_default_app(name, now)).await
}
