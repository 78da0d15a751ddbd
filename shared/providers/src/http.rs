//! Shared HTTP client settings for the providers: no redirects followed, replies read only up to
//! [`MAX_REPLY_BYTES`].

use std::time::Duration;

use http::HeaderMap;

/// How provider clients are built.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// An extra CA (PEM) to trust, for test servers on `https://`.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { extra_ca_pem: None, timeout: Duration::from_secs(15) }
    }
}

/// The most of a provider's reply that is read (APNs and FCM errors are a few hundred bytes).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A client builder for `base`: `http://` speaks HTTP/2 with prior knowledge (h2c), `https://`
/// negotiates HTTP/2 by ALPN. Connections are pooled and kept alive so many notifications share
/// a few multiplexed connections. Redirects are not followed: a provider that redirects is
/// answering, not pointing pushgate (and its credentials) somewhere else.
pub fn client_builder(base: &str, settings: &HttpSettings) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(600))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .http2_adaptive_window(true);
    if base.starts_with("http://") {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(pem) = &settings.extra_ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    Ok(builder)
}

/// `Retry-After` in seconds, if present.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The first `limit` bytes of `response`'s body; the rest is never read (a failed read ends it).
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    body
}
