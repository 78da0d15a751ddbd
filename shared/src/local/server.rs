//! The HTTP server of `pushgate-local`: HTTP/1.1 and HTTP/2 (cleartext) on hyper, with every
//! connection bounded in time and in number.

use std::time::Duration;

/// Limits of the local HTTP server (`PUSHGATE_HEADER_TIMEOUT_SECS`, `PUSHGATE_IDLE_TIMEOUT_SECS`,
/// `PUSHGATE_MAX_CONNECTIONS`, `PUSHGATE_HTTP2_MAX_STREAMS`; the body deadline is
/// [`crate::api::ApiConfig::request_timeout`], since the API reads the bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// A connection must deliver a complete request head this long after it opened (and, on
    /// HTTP/1.1, after its previous response); otherwise it is closed.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most concurrent streams (requests) on one HTTP/2 connection.
    pub http2_max_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1_000,
            http2_max_streams: 100,
        }
    }
}
