//! The fake APNs and the fake FCM + OAuth server on one listener, routed by
//! path: one port to point pushgate at (`pushgate-fake-providers`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::body::Body;
use http::{Response, StatusCode};
use tokio::net::TcpListener;

use crate::server;
use crate::{FakeApns, FakeFcm};

/// Serves a [`FakeApns`] and a [`FakeFcm`] on `listener` (plain TCP: HTTP/1.1
/// or h2c with prior knowledge, as [`FakeApns::start_h2c`] and
/// [`FakeFcm::start_h2c`] do), on the current tokio runtime:
///
/// * `/3/...` (`POST /3/device/{token}`) goes to the fake APNs, which checks
///   it as its own server does (HTTP/2 only, provider token, headers,
///   payload);
/// * `/token` and `/v1/...` (`POST /v1/projects/{project}/messages:send`) go
///   to the fake FCM;
/// * anything else is `404` with a plain-text list of the routes.
///
/// Both fakes' `base_url()` is the listener's address (`127.0.0.1` or `[::1]`
/// when it listens on every interface), and [`FakeFcm::token_uri`] is
/// `{base_url}/token`.
pub async fn start_combined(listener: TcpListener) -> (FakeApns, FakeFcm) {
    let addr = listener.local_addr().expect("pushgate-fakes: bound listener has no local address");
    let base_url = base_url(addr);
    let apns = FakeApns::unstarted(base_url.clone(), false);
    let fcm = FakeFcm::unstarted(base_url);
    let (to_apns, to_fcm) = (apns.clone(), fcm.clone());
    server::spawn(listener, None, move |request, conn| {
        let route = route(request.uri().path());
        let (apns, fcm) = (to_apns.clone(), to_fcm.clone());
        async move {
            match route {
                Route::Apns => apns.respond(request, conn).await,
                Route::Fcm => fcm.respond(request, conn).await,
                Route::Unknown => not_found(),
            }
        }
    });
    (apns, fcm)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Apns,
    Fcm,
    Unknown,
}

fn route(path: &str) -> Route {
    if path.starts_with("/3/") {
        Route::Apns
    } else if path == "/token" || path.starts_with("/v1/") {
        Route::Fcm
    } else {
        Route::Unknown
    }
}

fn not_found() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "pushgate-fakes: no such route. APNs: POST /3/device/{token}; \
         FCM: POST /v1/projects/{project}/messages:send; OAuth: POST /token\n",
    ));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `http://HOST:PORT` for a listener bound to `addr`; an unspecified address
/// (`0.0.0.0`, `::`) is reached on the loopback address of its family.
pub(crate) fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_path_to_apns_fcm_or_nowhere() {
        assert_eq!(route("/3/device/abcd"), Route::Apns);
        assert_eq!(route("/3/other"), Route::Apns);
        assert_eq!(route("/token"), Route::Fcm);
        assert_eq!(route("/v1/projects/demo/messages:send"), Route::Fcm);
        assert_eq!(route("/"), Route::Unknown);
        assert_eq!(route("/tokens"), Route::Unknown);
    }

    #[test]
    fn an_unspecified_listen_address_is_advertised_as_loopback() {
        let url = |s: &str| base_url(s.parse().expect("a socket address"));
        assert_eq!(url("127.0.0.1:4000"), "http://127.0.0.1:4000");
        assert_eq!(url("0.0.0.0:4000"), "http://127.0.0.1:4000");
        assert_eq!(url("[::]:4000"), "http://[::1]:4000");
        assert_eq!(url("192.168.1.2:80"), "http://192.168.1.2:80");
    }
}
