//! The accept loop shared by the fakes: plain TCP (HTTP/1.1 or h2c with prior
//! knowledge) or TLS, each connection served by hyper-util's auto builder.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What a handler knows about the connection a request arrived on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    /// The TLS client presented a certificate (that the verifier accepted).
    pub client_certificate: bool,
}

/// How many concurrent streams one HTTP/2 connection may carry (Apple
/// advertises up to 1000 once a connection is established).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Binds `127.0.0.1:0`. Panics if the loopback interface is unusable, which
/// only happens at test start-up.
pub(crate) async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("pushgate-fakes: cannot bind a TCP port on 127.0.0.1");
    let addr = listener.local_addr().expect("pushgate-fakes: bound listener has no local address");
    (listener, addr)
}

/// Spawns the accept loop on the current tokio runtime. Every request is
/// passed to `handler` together with the connection's [`ConnInfo`].
pub(crate) fn spawn<H, Fut>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: H)
where
    H: Fn(Request<Incoming>, ConnInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _peer)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "pushgate-fakes: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tls = tls.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                match tls {
                    None => {
                        let info = ConnInfo { client_certificate: false };
                        serve(TokioIo::new(tcp), info, handler).await;
                    }
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => {
                            let info = ConnInfo {
                                client_certificate: stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .is_some_and(|certs| !certs.is_empty()),
                            };
                            serve(TokioIo::new(stream), info, handler).await;
                        }
                        Err(error) => {
                            tracing::debug!(%error, "pushgate-fakes: TLS handshake failed");
                        }
                    },
                }
            });
        }
    });
}

async fn serve<I, H, Fut>(io: I, info: ConnInfo, handler: H)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, ConnInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let response = handler(request, info);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    if let Err(error) = builder.serve_connection(io, service).await {
        tracing::debug!(%error, "pushgate-fakes: connection ended with an error");
    }
}
