//! The push gateway: routes each delivery to APNs or FCM by its credential.

use std::sync::Arc;

use async_trait::async_trait;

use super::apns::ApnsSender;
use super::fcm::FcmSender;
use super::http::HttpSettings;
use crate::app::ports::{Delivery, DeliveryOutcome, PushGateway, TokenCache};
use crate::domain::CredentialSecret;

/// Where the providers are.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    /// `APNS_ENDPOINT`: overrides Apple's hosts.
    pub apns_endpoint: Option<String>,
    /// `FCM_ENDPOINT`: overrides Google's FCM host.
    pub fcm_endpoint: Option<String>,
    /// Client settings (extra CA, timeout).
    pub http: HttpSettings,
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
            fcm: FcmSender::new(config.fcm_endpoint.as_deref(), config.http.clone())?,
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
