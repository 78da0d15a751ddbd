//! The HTTP server of `pushgate-local`: HTTP/1.1 and HTTP/2 (cleartext) on hyper, with every
//! connection bounded in time and the connections bounded in number.
//!
//! What bounds each state of a connection:
//!
//! | state | bound |
//! |---|---|
//! | open, no complete request head yet (silent, slowloris, the HTTP/1-or-2 sniff) | the header timeout (ours, from the accept; hyper's for HTTP/1.1 too) |
//! | HTTP/1.1 between requests | the header timeout: hyper starts its header timer as soon as it waits for the next head |
//! | HTTP/2 without an open request | the idle timeout |
//! | reading a request body | the request timeout (`api::handlers::json_body`, a Twilio-shaped `408`) |
//! | running a handler | not cut: a send stopped half way could break promise 1; the use cases bound their own work |
//! | writing an answer nobody reads | the idle timeout (a request counts as in flight until its handler answered) |
//!
//! Connections are capped below the open-file limit. At the cap the server still accepts, and
//! makes room by closing the connection that has been idle longest (no request in flight): a
//! crowd of idle or slow connections then cannot keep a real client out, where refusing new
//! connections (or leaving them in the listen backlog) would keep out exactly the clients that
//! just arrived. Only when every connection has a request in flight does the newcomer wait for one
//! to finish, and nothing more is accepted meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use pushgate_api::PublicBase;

/// Limits of the local HTTP server (`PUSHGATE_HEADER_TIMEOUT_SECS`, `PUSHGATE_IDLE_TIMEOUT_SECS`,
/// `PUSHGATE_MAX_CONNECTIONS`, `PUSHGATE_HTTP2_MAX_STREAMS`; the body deadline is
/// [`pushgate_api::ApiConfig::request_timeout`], since the API reads the bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// A connection must deliver a complete request head this long after it opened (and, on
    /// HTTP/1.1, after its previous response); otherwise it is closed.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once (kept below the open-file limit).
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

/// Open files kept for everything but client connections: the listener, provider and webhook
/// connections, the AWS clients' sockets, logs.
const RESERVED_FILES: u64 = 64;
/// Header fields hyper parses before answering a bare `431` itself: above the router's limit
/// (`api::guard::MAX_HEADERS`), so that one answers first, Twilio-shaped.
const HYPER_MAX_HEADERS: usize = 200;
/// HTTP/2 header list size: above the router's `api::guard::MAX_HEADER_BYTES`, same reason.
const HTTP2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// HTTP/2 pings this often; a peer that does not answer one within the same time is gone.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// After the server asked a connection to close (shutdown), how long its last answer may take to
/// leave once no request is in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long the accept loop waits before it looks again at a full house.
const RECHECK: Duration = Duration::from_millis(100);

/// Raises the soft open-file limit to the hard one (each connection is a file); returns the
/// limit in force, `None` if it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(open_files = limit, "open-file limit");
            Some(limit)
        }
        Err(e) => {
            warn!(error = %e, "could not read or raise the open-file limit");
            None
        }
    }
}

/// The connection cap in force: `configured`, or less when the open-file limit leaves less room
/// (a connection beyond it would fail to be accepted, and make the server fail everything else
/// that opens a file).
pub fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else { return configured };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(1);
    if configured > room {
        warn!(
            configured,
            cap = room,
            open_files = limit,
            "PUSHGATE_MAX_CONNECTIONS is above what the open-file limit allows; capping connections lower"
        );
        room
    } else {
        configured
    }
}

/// The base of absolute links for a server listening on `addr`: `http://addr`, or the loopback
/// address with its port when it listens on every address (which is no address a client can use).
pub fn listen_base(addr: SocketAddr, public_url_set: bool) -> String {
    if !addr.ip().is_unspecified() {
        return format!("http://{addr}");
    }
    let loopback = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let base = format!("http://{}", SocketAddr::new(loopback, addr.port()));
    if !public_url_set {
        warn!(
            %addr,
            links = %base,
            "listening on every address: absolute links use the loopback address; set PUSHGATE_PUBLIC_URL to the URL clients use"
        );
    }
    base
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves; then stops accepting,
/// lets in-flight requests finish, and returns once every connection is closed. Links in answers
/// are based on `PUSHGATE_PUBLIC_URL` (the router's configuration) or else on the address bound.
pub(crate) async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    limits: &ServerLimits,
    public_url_set: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = connection_cap(limits.max_connections, raise_open_file_limit());
    let base = PublicBase::new(&listen_base(listener.local_addr()?, public_url_set));
    let builder = Arc::new(builder(limits));
    let registry = Arc::new(Registry::default());
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    info!(
        max_connections = cap,
        header_timeout_secs = limits.header_timeout.as_secs_f64(),
        idle_timeout_secs = limits.idle_timeout.as_secs_f64(),
        http2_max_streams = limits.http2_max_streams,
        "HTTP server limits"
    );
    let mut warned_full: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of files (or similar): wait for some to close rather than spin.
                warn!(error = %e, "accepting a connection failed; retrying in 1 s");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let slot = registry.register();
        if registry.len() > cap {
            if warned_full.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                warn!(max_connections = cap, "at the connection cap: closing the longest idle connections");
                warned_full = Some(Instant::now());
            }
            if !make_room(&registry, cap, slot.id, shutdown.as_mut()).await {
                break;
            }
        }
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            base: base.clone(),
            limits: limits.clone(),
            stopped: stopped.clone(),
        };
        tokio::spawn(connection.drive(stream, slot));
    }
    // Stop accepting: connections that arrive from now on are refused by the OS.
    drop(listener);
    let open = registry.len();
    info!(open_connections = open, "HTTP server stopping: finishing in-flight requests");
    let _ = stop.send(true);
    registry.wait_empty().await;
    Ok(())
}

/// The hyper connection builder: HTTP/1.1 and HTTP/2 (detected from the first bytes).
fn builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_headers(HYPER_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST)
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    builder
}

/// Errors of one incoming connection (it went away before we took it), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Waits until the connections (the newcomer `newcomer` included) fit under `cap`, closing the
/// longest idle ones; `false` if `shutdown` came first.
async fn make_room(
    registry: &Registry,
    cap: usize,
    newcomer: u64,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> bool {
    loop {
        let freed = registry.freed.notified();
        let mut freed = pin!(freed);
        freed.as_mut().enable();
        if registry.len() <= cap {
            return true;
        }
        if !registry.evict_longest_idle(newcomer) {
            debug!("every connection has a request in flight: the newcomer waits for a slot");
        }
        tokio::select! {
            () = shutdown.as_mut() => return false,
            () = freed => {}
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// The open connections.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    /// Notified whenever a connection closes.
    freed: Notify,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // The map stays consistent whatever panicked while holding it.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn register(self: &Arc<Self>) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.lock().insert(id, activity.clone());
        Slot { id, activity, registry: self.clone() }
    }

    /// Asks the connection idle longest (other than `except`) to close; `false` if none is idle.
    fn evict_longest_idle(&self, except: u64) -> bool {
        let conns = self.lock();
        let victim = conns
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(_, activity)| activity.evictable_since().map(|since| (since, activity)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, activity)) => {
                activity.evict();
                true
            }
            None => false,
        }
    }

    async fn wait_empty(&self) {
        loop {
            let freed = self.freed.notified();
            let mut freed = pin!(freed);
            freed.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

/// A connection's place in the registry; leaving it (however the connection ends) frees it.
struct Slot {
    id: u64,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.freed.notify_one();
    }
}

/// What a connection is doing, shared by its requests and its watchdog.
struct Activity {
    state: Mutex<ActivityState>,
    /// Notified when the accept loop wants this connection's slot.
    evicted: Notify,
}

struct ActivityState {
    in_flight: usize,
    /// Since when no request has been in flight.
    idle_since: Instant,
    /// Whether a request ever arrived (before that, the header timeout applies).
    served: bool,
    /// Asked to close and not yet gone.
    evicting: bool,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
                evicting: false,
            }),
            evicted: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Since when it is idle, if it is and is not already closing.
    fn evictable_since(&self) -> Option<Instant> {
        let state = self.lock();
        (state.in_flight == 0 && !state.evicting).then_some(state.idle_since)
    }

    fn evict(&self) {
        self.lock().evicting = true;
        self.evicted.notify_one();
    }

    fn is_idle(&self) -> bool {
        self.lock().in_flight == 0
    }

    /// A request that reached the service turned out to be in flight after all: not closed.
    fn spare(&self) {
        self.lock().evicting = false;
    }

    /// When it may be closed for idleness (`None` while a request is in flight): `closing_since`
    /// is when the server asked it to close, if it did.
    fn idle_deadline(&self, limits: &ServerLimits, closing_since: Option<Instant>) -> Option<Instant> {
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        Some(match closing_since {
            Some(at) => at.max(state.idle_since) + CLOSE_GRACE,
            None if state.served => state.idle_since + limits.idle_timeout,
            None => state.idle_since + limits.header_timeout,
        })
    }
}

/// A request in flight on a connection, from its head to its handler's answer.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        let mut state = activity.lock();
        state.in_flight += 1;
        state.served = true;
        drop(state);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// Everything one connection's task needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: axum::Router,
    base: PublicBase,
    limits: ServerLimits,
    stopped: watch::Receiver<bool>,
}

impl Connection {
    /// Serves one connection until it ends, or until it is idle past its deadline, evicted while
    /// idle, or done after a shutdown. Dropping the hyper connection closes the socket; that only
    /// happens with no request in flight.
    async fn drive(self, stream: TcpStream, slot: Slot) {
        let Connection { builder, router, base, limits, mut stopped } = self;
        let activity = slot.activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = InFlight::start(&activity);
            request.extensions_mut().insert(base.clone());
            let router = router.clone();
            async move {
                let _in_flight = in_flight;
                router.oneshot(request).await
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut connection = pin!(connection);
        let activity = &slot.activity;
        let mut closing_since: Option<Instant> = None;
        loop {
            // While a request is in flight there is no deadline; look again after a while.
            let wake = activity.idle_deadline(&limits, closing_since).unwrap_or_else(|| Instant::now() + RECHECK * 10);
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake) => {
                    if activity.idle_deadline(&limits, closing_since).is_some_and(|d| d <= Instant::now()) {
                        debug!("closing an idle connection");
                        return;
                    }
                }
                () = activity.evicted.notified() => {
                    if activity.is_idle() {
                        debug!("closing an idle connection to make room for a new one");
                        return;
                    }
                    activity.spare();
                }
                changed = stopped.changed(), if closing_since.is_none() => {
                    let _ = changed;
                    closing_since = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(1_000, Some(1_048_576)), 1_000);
        assert_eq!(connection_cap(1_000, Some(1_024)), 960);
        assert_eq!(connection_cap(1_000, Some(10)), 1);
        assert_eq!(connection_cap(1_000, None), 1_000);
    }

    #[test]
    fn links_of_a_server_on_every_address_use_the_loopback_address_with_its_port() {
        let base = |addr: &str| listen_base(addr.parse().expect("an address"), true);
        assert_eq!(base("127.0.0.1:3000"), "http://127.0.0.1:3000");
        assert_eq!(base("192.0.2.7:8080"), "http://192.0.2.7:8080");
        assert_eq!(base("0.0.0.0:3000"), "http://127.0.0.1:3000");
        assert_eq!(base("[::]:3000"), "http://[::1]:3000");
        assert_eq!(base("[::1]:3000"), "http://[::1]:3000");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_gets_the_header_timeout_before_its_first_request_and_the_idle_timeout_after() {
        let limits = ServerLimits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            ..ServerLimits::default()
        };
        let activity = Arc::new(Activity::new());
        let opened = Instant::now();
        assert_eq!(activity.idle_deadline(&limits, None), Some(opened + Duration::from_secs(1)));
        let request = InFlight::start(&activity);
        assert_eq!(activity.idle_deadline(&limits, None), None, "no deadline while a request is in flight");
        assert_eq!(activity.evictable_since(), None, "a connection with a request in flight is never evicted");
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(request);
        let answered = Instant::now();
        assert_eq!(activity.idle_deadline(&limits, None), Some(answered + Duration::from_secs(5)));
        assert_eq!(activity.evictable_since(), Some(answered));
    }

    #[test]
    fn the_longest_idle_connection_is_evicted_and_never_the_newcomer() {
        let registry = Arc::new(Registry::default());
        let older = registry.register();
        std::thread::sleep(Duration::from_millis(5));
        let busy = registry.register();
        let _request = InFlight::start(&busy.activity);
        let newer = registry.register();
        let newcomer = registry.register();
        assert!(registry.evict_longest_idle(newcomer.id));
        assert!(older.activity.lock().evicting);
        assert!(!busy.activity.lock().evicting && !newer.activity.lock().evicting);
        assert!(registry.evict_longest_idle(newcomer.id), "then the next idle one");
        assert!(newer.activity.lock().evicting);
        assert!(!registry.evict_longest_idle(newcomer.id), "no idle connection is left but the newcomer");
        assert!(!newcomer.activity.lock().evicting);
        drop(older);
        assert_eq!(registry.len(), 3);
    }
}
