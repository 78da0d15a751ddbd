//! The push gateway: routes each delivery to APNs or FCM by its credential.

use std::sync::Arc;

use async_trait::async_trait;

use super::apns::ApnsSender;
use super::fcm::FcmSender;
use super::http::HttpSettings;
use pushgate_core::app::ports::{Delivery, DeliveryOutcome, PushGateway, TokenCache};
use pushgate_core::domain::CredentialSecret;

/// Where the providers are.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    /// `APNS_ENDPOINT`: overrides Apple's hosts.
    pub apns_endpoint: Option<String>,
    /// `FCM_ENDPOINT`: overrides Google's FCM host.
    pub fcm_endpoint: Option<String>,
    /// `PUSHGATE_FCM_TOKEN_URIS`: the only OAuth token endpoints a service account may name
    /// (exact URLs); empty: Google's ([`super::fcm::DEFAULT_TOKEN_URIS`]).
    pub fcm_token_uris: Vec<String>,
    /// Client settings (extra CA, timeout).
    pub http: HttpSettings,
}

/// Parses `PUSHGATE_FCM_TOKEN_URIS`: comma-separated absolute `https://` (or, listed explicitly,
/// `http://`) URLs without credentials or fragment. Empty entries are ignored.
pub fn parse_token_uris(value: &str) -> Result<Vec<String>, String> {
    let mut uris = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let url = url::Url::parse(entry).map_err(|e| format!("{entry} is not a URL: {e}"))?;
        let usable = matches!(url.scheme(), "https" | "http")
            && url.host_str().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.fragment().is_none();
        if !usable {
            return Err(format!("{entry} must be an http(s) URL with a host, no credentials and no fragment"));
        }
        uris.push(entry.to_owned());
    }
    Ok(uris)
}

/// APNs and FCM behind one port; built once per process, clients reused.
pub struct ProviderGateway {
    apns: ApnsSender,
    fcm: FcmSender,
}

impl ProviderGateway {
    /// Builds both senders.
    pub fn new(config: &ProviderConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            apns: ApnsSender::new(config.apns_endpoint.as_deref(), config.http.clone())?,
            fcm: FcmSender::new(config.fcm_endpoint.as_deref(), &config.fcm_token_uris, config.http.clone())?,
        })
    }

    /// Shares APNs provider tokens with other processes through `cache`.
    pub fn with_token_cache(self, cache: Arc<dyn TokenCache>) -> Self {
        Self { apns: self.apns.with_token_cache(cache), fcm: self.fcm }
    }
}

#[async_trait]
impl PushGateway for ProviderGateway {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryOutcome {
        match delivery.secret.as_ref() {
            CredentialSecret::Fcm { .. } => self.fcm.send(delivery).await,
            CredentialSecret::ApnToken { .. } | CredentialSecret::ApnCertificate { .. } => {
                self.apns.send(delivery).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_uris_are_exact_http_or_https_urls() {
        assert_eq!(
            parse_token_uris(" https://oauth2.googleapis.com/token, http://127.0.0.1:9/token ,"),
            Ok(vec!["https://oauth2.googleapis.com/token".to_owned(), "http://127.0.0.1:9/token".to_owned()])
        );
        assert_eq!(parse_token_uris(""), Ok(vec![]));
        for bad in
            ["oauth2.googleapis.com/token", "ftp://x.test/token", "https://u:p@x.test/token", "https://x.test/#f"]
        {
            assert!(parse_token_uris(bad).is_err(), "{bad}");
        }
    }
}
