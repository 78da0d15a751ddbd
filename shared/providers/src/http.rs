//! Shared HTTP client settings for the providers: no redirects followed, replies read only up to
//! [`MAX_REPLY_BYTES`], the system's root certificates loaded once per process ([`trusting`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderMap;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tracing::warn;

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
/// answering, not pointing pushgate (and its credentials) somewhere else. The roots it trusts are
/// the process's shared ones ([`trusting`]).
pub fn client_builder(base: &str, settings: &HttpSettings) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    trusting(pooled_builder(base, settings), settings.extra_ca_pem.as_deref())
}

/// [`client_builder`] for a client that authenticates with `identity` (an APNs certificate): TLS
/// is then reqwest's own (which loads the system's roots once more, when the credential is first
/// used), as a preconfigured one would leave the identity out.
pub fn identity_client_builder(
    base: &str,
    settings: &HttpSettings,
    identity: reqwest::Identity,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = pooled_builder(base, settings).identity(identity);
    if let Some(pem) = &settings.extra_ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    Ok(builder)
}

fn pooled_builder(base: &str, settings: &HttpSettings) -> reqwest::ClientBuilder {
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
    builder
}

/// `builder` trusting the system's root certificates plus `extra_ca_pem`, with the roots loaded
/// from disk once per process and shared by every client (reqwest would load and parse them
/// again for each client it builds: 4 or 5 times in a cold start of the dispatch function). The
/// TLS configuration is the one reqwest builds itself: aws-lc, TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`. If that cannot be built (no system roots, a bad extra PEM), reqwest builds its
/// own and reports the problem.
pub fn trusting(
    builder: reqwest::ClientBuilder,
    extra_ca_pem: Option<&[u8]>,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    if let Some(tls) = tls_config(extra_ca_pem) {
        return Ok(builder.tls_backend_preconfigured(tls));
    }
    match extra_ca_pem {
        Some(pem) => Ok(builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?)),
        None => Ok(builder),
    }
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(loaded.certs);
        if ignored > 0 || !loaded.errors.is_empty() {
            warn!(ignored, errors = loaded.errors.len(), "some system root certificates could not be loaded");
        }
        Arc::new(roots)
    })
}

fn tls_config(extra_ca_pem: Option<&[u8]>) -> Option<rustls::ClientConfig> {
    let roots = match extra_ca_pem {
        None => system_roots().clone(),
        Some(pem) => {
            let mut roots = RootCertStore::clone(system_roots());
            let before = roots.len();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.ok()?).ok()?;
            }
            if roots.len() == before {
                return None;
            }
            Arc::new(roots)
        }
    };
    if roots.is_empty() {
        return None;
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(config)
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

/// How often one unreachable host is reported.
const UNREACHABLE_EVERY: Duration = Duration::from_secs(30);

/// A provider host that could not be reached (connection refused, DNS, TLS, timeout): one warning
/// per host per 30 s — an outage is a few lines, not one per notification and attempt — naming
/// the host and the cause, never the URL (an APNs path carries the device token).
pub(crate) fn warn_unreachable(provider: &'static str, e: &reqwest::Error) {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    use std::time::Instant;
    static REPORTED: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Mutex::default);
    if !(e.is_connect() || e.is_timeout()) {
        return;
    }
    let host = e
        .url()
        .map(|u| format!("{}:{}", u.host_str().unwrap_or("?"), u.port_or_known_default().unwrap_or(0)))
        .unwrap_or_else(|| "?".into());
    {
        let mut reported = REPORTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if reported.get(&host).is_some_and(|at| at.elapsed() < UNREACHABLE_EVERY) {
            return;
        }
        if reported.len() > 1024 {
            reported.clear();
        }
        reported.insert(host.clone(), Instant::now());
    }
    tracing::warn!(provider, %host, cause = %crate::apns::redact(e), "provider unreachable; its deliveries are retried");
}
