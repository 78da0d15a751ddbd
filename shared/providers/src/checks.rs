//! Checking a new credential the way the senders will use it (signing an ES256 provider token,
//! making a TLS client identity, signing an RS256 OAuth assertion for an allowed endpoint),
//! without a client or a request: the `credentials` function links this, not the senders.

use chrono::Utc;

use super::{apns, fcm};
use pushgate_core::app::ports::{CredentialChecker, CredentialProblem};
use pushgate_core::domain::CredentialSecret;

/// The providers' rules for credentials, with this deployment's allowed OAuth endpoints.
pub struct CredentialRules {
    token_uris: Vec<String>,
}

impl CredentialRules {
    /// Service accounts may name only the OAuth endpoints in `token_uris` (empty:
    /// [`fcm::DEFAULT_TOKEN_URIS`]), the ones the FCM sender talks to.
    pub fn new(token_uris: &[String]) -> Self {
        Self { token_uris: fcm::allowed_token_uris(token_uris) }
    }
}

impl CredentialChecker for CredentialRules {
    fn check(&self, secret: &CredentialSecret) -> Vec<CredentialProblem> {
        match secret {
            CredentialSecret::ApnToken { key_id, team_id, private_key_pem, .. } => {
                apns::check_signing_key(key_id, team_id, private_key_pem)
                    .err()
                    .map(CredentialProblem::PrivateKey)
                    .into_iter()
                    .collect()
            }
            CredentialSecret::ApnCertificate { certificate_pem, private_key_pem, .. } => {
                apns::check_identity(certificate_pem, private_key_pem)
                    .err()
                    .map(CredentialProblem::Certificate)
                    .into_iter()
                    .collect()
            }
            CredentialSecret::Fcm { client_email, private_key_pem, token_uri, .. } => {
                let mut problems = Vec::new();
                if !self.token_uris.iter().any(|u| u == token_uri) {
                    problems.push(CredentialProblem::TokenUri(format!(
                        "service-account token_uri must be one of the OAuth token endpoints this deployment uses: {}",
                        self.token_uris.join(", ")
                    )));
                }
                if fcm::assertion(client_email, private_key_pem, token_uri, Utc::now().timestamp()).is_err() {
                    problems.push(CredentialProblem::PrivateKey(
                        "service-account private_key must be an RSA private key (PEM): it signs the RS256 OAuth \
                         assertion"
                            .into(),
                    ));
                }
                problems
            }
        }
    }
}
