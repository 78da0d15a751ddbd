//! A server that answers every request with a canned reply per path and
//! records what it received: the stand-in for an attacker's endpoint (a
//! loopback service a token URI points at, a token endpoint that redirects or
//! answers with hostile text, an APNs look-alike with an invented reason).
//!
//! It speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on `127.0.0.1`,
//! like the other fakes, so both pushgate's OAuth client and its provider
//! clients can reach it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::server::{self, ConnInfo};
use crate::support::lock;

/// One canned answer.
#[derive(Clone, Debug)]
pub struct CannedReply {
    /// Status code.
    pub status: u16,
    /// Extra headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Body, sent as is.
    pub body: String,
}

impl CannedReply {
    /// A JSON answer with `status`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self { status, headers: vec![("content-type".into(), "application/json".into())], body: body.to_string() }
    }

    /// A redirect (`302 Found`) to `location`.
    pub fn redirect(location: &str) -> Self {
        Self { status: 302, headers: vec![("location".into(), location.to_owned())], body: String::new() }
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct CannedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query as received.
    pub path_and_query: String,
}

/// A running canned server. Cheap to clone; all clones share the server.
#[derive(Clone)]
pub struct CannedServer {
    state: Arc<State>,
    base_url: String,
}

struct State {
    replies: HashMap<String, CannedReply>,
    received: Mutex<Vec<(u64, CannedRequest)>>,
    seq: AtomicU64,
}

impl std::fmt::Debug for CannedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CannedServer").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl CannedServer {
    /// Starts a server answering each path in `replies` (exact match on the
    /// path, query ignored) with its reply, and any other path `404`.
    pub async fn start(replies: Vec<(&str, CannedReply)>) -> CannedServer {
        let (listener, addr) = server::bind_loopback().await;
        let state = Arc::new(State {
            replies: replies.into_iter().map(|(path, reply)| (path.to_owned(), reply)).collect(),
            received: Mutex::default(),
            seq: AtomicU64::new(0),
        });
        let handler_state = Arc::clone(&state);
        server::spawn(listener, None, move |request, conn| handle(Arc::clone(&handler_state), request, conn));
        CannedServer { state, base_url: format!("http://127.0.0.1:{}", addr.port()) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// `{base_url}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Every request received, in arrival order.
    pub fn received(&self) -> Vec<CannedRequest> {
        let mut received = lock(&self.state.received).clone();
        received.sort_by_key(|(seq, _)| *seq);
        received.into_iter().map(|(_, request)| request).collect()
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
    let seq = state.seq.fetch_add(1, Ordering::Relaxed);
    let path_and_query = request.uri().path_and_query().map_or_else(|| "/".to_owned(), ToString::to_string);
    let reply = state.replies.get(request.uri().path()).cloned();
    lock(&state.received).push((seq, CannedRequest { method: request.method().to_string(), path_and_query }));
    let reply = reply.unwrap_or(CannedReply { status: 404, headers: Vec::new(), body: String::new() });
    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK));
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response.body(Body::from(reply.body)).unwrap_or_else(|_| Response::new(Body::empty()))
}
