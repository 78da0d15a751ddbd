//! A webhook receiver for tests: records every POST (headers and JSON body) and answers each
//! with the next scripted status (200 once the script is used up).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers (lowercase names).
    pub headers: HeaderMap,
    /// Its raw body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<u16>,
}

/// The running receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
}

impl WebhookReceiver {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().route("/hook", post(receive)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let url = format!("http://{}/hook", listener.local_addr().expect("local addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { inner, url }
    }

    /// Answers the next requests with these statuses.
    pub fn script(&self, statuses: &[u16]) {
        self.inner.lock().expect("lock").script.extend(statuses);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").received.clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }

    /// Waits up to `secs` seconds until `count` requests were answered 2xx; returns them.
    pub async fn wait_delivered(&self, count: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let delivered = self.delivered();
            if delivered.len() >= count || std::time::Instant::now() > deadline {
                return delivered;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let mut inner = inner.lock().expect("lock");
    let status = inner.script.pop_front().unwrap_or(200);
    inner.received.push(Received { headers, body: body.to_vec(), status });
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// Checks `t=…,v1=…` against `secret` and `body` (computed here, independently of pushgate).
pub fn signature_is_valid(header: &str, secret: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut parts = header.split(',');
    let (Some(t), Some(v1)) =
        (parts.next().and_then(|p| p.strip_prefix("t=")), parts.next().and_then(|p| p.strip_prefix("v1=")))
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == v1
}
