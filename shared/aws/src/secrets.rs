//! Secrets Manager: the keys a deployment generates for itself at deploy time (the page-token
//! key, the webhook's signing key), read by a function once per cold start so that they are
//! never in its environment, where anyone allowed to read the function's configuration sees them.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

/// Why a secret could not be read (never the secret: it is not known then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// The `SecretString` of the secret `arn` (its current version).
pub async fn read_secret_string(client: &Client, arn: &str) -> Result<String, SecretError> {
    let answer = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError(format!("Secrets Manager GetSecretValue failed: {}", DisplayErrorContext(&e))))?;
    answer.secret_string().map(str::to_owned).ok_or_else(|| SecretError("the secret has no SecretString".into()))
}
