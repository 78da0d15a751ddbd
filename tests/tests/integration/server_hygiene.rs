//! HTTP hygiene of `pushgate-local`'s server, as an attacker would probe it: slow and idle
//! connections are closed, the number of connections is capped below the open-file limit, a
//! slow body gets a Twilio-shaped timeout, a client's `Host` header never becomes a link, and
//! malformed requests that reach the router get Twilio-shaped answers.
//!
//! Every server here runs with 1-second timeouts so the suite stays fast; waits are bounded by a
//! few seconds more than that, never asserted as performance.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pushgate_fakes::FakeApns;
use pushgate_local::LocalConfig;
use pushgate_tests::{TestApp, apn_token, send_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The short limits every test server runs with.
fn short_limits(config: &mut LocalConfig) {
    config.server.header_timeout = Duration::from_secs(1);
    config.server.idle_timeout = Duration::from_secs(2);
    config.api.request_timeout = Duration::from_secs(1);
}

async fn hardened() -> TestApp {
    TestApp::spawn_with(FakeApns::start_h2c().await, short_limits).await
}

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().expect("the base is http://ip:port")
}

fn basic(app: &TestApp) -> String {
    format!("Basic {}", STANDARD.encode(format!("{}:{}", app.account, app.token)))
}

/// `{code, status, message, moreInfo}` with `status` equal to the HTTP status.
fn assert_twilio_shaped(status: StatusCode, body: &Value) {
    assert!(body["code"].is_u64(), "no numeric code: {status} {body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {body}");
    assert!(body["moreInfo"].is_string(), "no moreInfo: {body}");
}

/// Keeps `stream` open, writing one byte of `drip` (if any is left) every `every`, until the
/// server closes it; whether that happened within `bound`.
async fn closed_by_the_server_within(mut stream: TcpStream, drip: &[u8], every: Duration, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    let mut drip = drip.iter();
    let mut buf = [0u8; 4096];
    while tokio::time::Instant::now() < deadline {
        if let Some(byte) = drip.next()
            && stream.write_all(&[*byte]).await.is_err()
        {
            return true;
        }
        // End of stream or a reset: closed. Bytes (an answer) or nothing yet: keep waiting.
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(every, stream.read(&mut buf)).await {
            return true;
        }
    }
    false
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body); `None` if nothing complete
/// arrives within `bound`.
async fn read_response(stream: &mut TcpStream, bound: Duration) -> Option<(StatusCode, String, Value)> {
    let read = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok())?;
                    let body = serde_json::from_slice(&raw[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    return Some((StatusCode::from_u16(status).ok()?, head, body));
                }
            }
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(bound, read).await.ok().flatten()
}

#[tokio::test]
async fn connections_that_trickle_a_request_head_are_closed_within_about_the_header_timeout() {
    let app = hardened().await;
    let head = b"GET /v1/PushNotifications HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(TcpStream::connect(addr(&app)).await.expect("connects"));
    }
    let closed = futures::future::join_all(
        slow.into_iter()
            .map(|s| closed_by_the_server_within(s, head, Duration::from_millis(100), Duration::from_secs(6))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of 50 slowloris connections were still open after 6 s (header timeout 1 s)");
}

#[tokio::test]
async fn connections_that_never_send_a_byte_are_closed_within_about_the_header_timeout() {
    let app = hardened().await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr(&app)).await.expect("connects"));
    }
    let closed = futures::future::join_all(
        silent
            .into_iter()
            .map(|s| closed_by_the_server_within(s, b"", Duration::from_millis(200), Duration::from_secs(6))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of 20 silent connections were still open after 6 s (header timeout 1 s)");
}

#[tokio::test]
async fn a_keep_alive_connection_left_idle_after_its_response_is_closed() {
    let app = hardened().await;
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connects");
    let request =
        format!("GET /v1/PushNotifications/Apps HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n", basic(&app));
    stream.write_all(request.as_bytes()).await.expect("sent");
    let (status, _, body) = read_response(&mut stream, Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        closed_by_the_server_within(stream, b"", Duration::from_millis(200), Duration::from_secs(8)).await,
        "an idle keep-alive connection was still open 8 s after its response (idle timeout 2 s)"
    );
}

#[tokio::test]
async fn an_http2_connection_that_never_sends_a_request_is_closed() {
    let app = hardened().await;
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connects");
    // The client preface and an empty SETTINGS frame: a valid HTTP/2 connection, and then nothing.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.expect("settings");
    assert!(
        closed_by_the_server_within(stream, b"", Duration::from_millis(200), Duration::from_secs(8)).await,
        "an HTTP/2 connection without requests was still open after 8 s"
    );
}

/// The name of the test below that runs in a child process as the server.
const CHILD_SERVER: &str = "server_hygiene::child_server_with_a_small_open_file_limit";
/// Set in the child's environment.
const CHILD_ENV: &str = "PUSHGATE_HYGIENE_CHILD";
/// The child's open-file limit (soft and hard), far below the idle connections opened against it.
const CHILD_FILE_LIMIT: u64 = 128;

/// Kills the child server when the test ends, however it ends.
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_and_the_open_file_limit_do_not_stop_a_valid_request() {
    // Arrange: the server in a child process whose open-file limit is 128, capped at 40
    // connections; 200 connections that send nothing.
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([CHILD_SERVER, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = ChildServer(child);
    let (found, listening) = tokio::sync::oneshot::channel::<String>();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test <name> ... " on the same line first.
            if let Some((_, rest)) = line.split_once("LISTENING ")
                && let Some(found) = found.take()
            {
                let _ = found.send(rest.to_owned());
            }
        }
    });
    let line = tokio::time::timeout(Duration::from_secs(60), listening)
        .await
        .expect("the child server listens within 60 s")
        .expect("the child printed its address");
    let mut words = line.split(' ');
    let (base, account, token) = (
        words.next().expect("base").to_owned(),
        words.next().expect("account").to_owned(),
        words.next().expect("token").to_owned(),
    );
    let server: SocketAddr = base.trim_start_matches("http://").parse().expect("address");
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(server).await.expect("connects"));
    }

    // Act: a valid request.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let answer =
        client.get(format!("{base}/v1/PushNotifications/Apps")).basic_auth(&account, Some(&token)).send().await;

    // Assert: answered.
    drop(child);
    let status = answer.map(|r| r.status()).map_err(|e| e.to_string());
    assert_eq!(status, Ok(StatusCode::OK), "a valid request behind 200 idle connections was not answered in 10 s");
    drop(idle);
}

/// The server half of the test above; it does nothing unless that test started it.
#[tokio::test]
#[ignore = "the server of idle_connections_beyond_the_cap_…, started by it in a child process"]
async fn child_server_with_a_small_open_file_limit() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, CHILD_FILE_LIMIT, CHILD_FILE_LIMIT).expect("lower the file limit");
    let app = TestApp::spawn_with(FakeApns::start_h2c().await, |config| {
        short_limits(config);
        config.server.max_connections = 40;
    })
    .await;
    println!("LISTENING {} {} {}", app.base, app.account, app.token);
    // Serve until the parent closes stdin (or kills this process), at most 60 s.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let _ = tokio::time::timeout(Duration::from_secs(60), stdin_closed).await;
}

#[tokio::test]
async fn a_body_that_trickles_slower_than_the_request_timeout_gets_a_twilio_shaped_408_and_nothing_is_sent() {
    let app = hardened().await;
    let body = json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "slow"}}).to_string();
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connects");
    let head = format!(
        "POST /v1/PushNotifications HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        basic(&app),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&body.as_bytes()[..5]).await.expect("a first piece of the body");

    // One more byte every 250 ms (the whole body would take ~15 s) while waiting for an answer.
    let (mut reader, mut writer) = stream.into_split();
    let rest = body.as_bytes()[5..].to_vec();
    let trickle = tokio::spawn(async move {
        for byte in rest {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(8), async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return raw,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
                && serde_json::from_slice::<Value>(&raw[end + 4..]).is_ok()
            {
                return raw;
            }
        }
    })
    .await;
    trickle.abort();

    let raw = answer.expect("an answer within 8 s while the body was still trickling");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, json_body) = text.split_once("\r\n\r\n").expect("a complete response");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let json_body: Value = serde_json::from_str(json_body).expect("a JSON body");
    assert_twilio_shaped(StatusCode::REQUEST_TIMEOUT, &json_body);
    let (status, operations) = app.get("/v1/PushNotifications/Operations").await;
    assert_eq!(status, StatusCode::OK, "{operations}");
    assert_eq!(operations["operations"], json!([]), "nothing was accepted");
    assert_eq!(app.apns.delivered_count(), 0);
}

#[tokio::test]
async fn a_hostile_host_header_never_appears_in_location_operation_location_or_resource_location() {
    let app = hardened().await;
    let evil = |method: Method, path: &str| app.request(method, path).header("host", "evil.example");
    let mut links = Vec::new();

    let credential = evil(Method::POST, "/v1/PushNotifications/Credentials")
        .json(&pushgate_tests::apn_credential_body(&app.apns_key, "app"))
        .send()
        .await
        .expect("sent");
    assert_eq!(credential.status(), StatusCode::ACCEPTED);
    links.extend(credential.headers().get("location").map(|v| v.to_str().unwrap_or("?").to_owned()));
    let credential: Value = credential.json().await.expect("json");
    links.extend(credential["resourceLocation"].as_str().map(str::to_owned));

    let registration = evil(Method::POST, "/v1/PushNotifications/DeviceRegistrations")
        .json(&json!({"appName": "app", "token": apn_token(1), "provider": "APN"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(registration.status(), StatusCode::ACCEPTED);
    links.extend(registration.headers().get("location").map(|v| v.to_str().unwrap_or("?").to_owned()));
    let registration: Value = registration.json().await.expect("json");
    links.extend(registration["resourceLocation"].as_str().map(str::to_owned));

    let send = evil(Method::POST, "/v1/PushNotifications")
        .json(&json!({"to": [{"token": apn_token(1), "provider": "APN"}], "content": {"title": "hi"}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(send.status(), StatusCode::ACCEPTED);
    links.extend(send.headers().get("location").map(|v| v.to_str().unwrap_or("?").to_owned()));
    let send: Value = send.json().await.expect("json");
    links.extend(send["operationLocation"].as_str().map(str::to_owned));

    assert_eq!(links.len(), 6, "every answer carries its two links: {links:?}");
    for link in &links {
        assert!(!link.contains("evil.example"), "the client's Host became a link: {link}");
        assert!(link.starts_with(&format!("{}/v1/PushNotifications/", app.base)), "{link} is not on {}", app.base);
    }
}

#[tokio::test]
async fn an_over_long_uri_gets_a_twilio_shaped_414() {
    let app = hardened().await;
    let path = format!("/v1/PushNotifications?status={}", "Q".repeat(10_000));
    let (status, body) = app.get(&path).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG, "{body}");
    assert_twilio_shaped(status, &body);
}

#[tokio::test]
async fn over_large_request_headers_get_a_twilio_shaped_431() {
    let app = hardened().await;
    let mut request = app.request(Method::GET, "/v1/PushNotifications/Apps");
    for i in 0..10 {
        request = request.header(format!("x-filler-{i}"), "f".repeat(4_000));
    }
    let (status, body) = send_json(request).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{body}");
    assert_twilio_shaped(status, &body);
}

#[tokio::test]
async fn more_request_headers_than_allowed_get_a_twilio_shaped_431() {
    let app = hardened().await;
    let mut request = app.request(Method::GET, "/v1/PushNotifications/Apps");
    for i in 0..150 {
        request = request.header(format!("x-many-{i}"), "v");
    }
    let (status, body) = send_json(request).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{body}");
    assert_twilio_shaped(status, &body);
}

#[tokio::test]
async fn a_malformed_percent_encoded_path_gets_a_twilio_shaped_400() {
    let app = hardened().await;
    for path in [
        "/v1/PushNotifications/%FF",
        "/v1/PushNotifications/Operations/%C3%28",
        "/v1/PushNotifications/Credentials/%80abc",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_twilio_shaped(status, &body);
    }
}

#[tokio::test]
async fn a_body_with_a_broken_chunked_encoding_gets_a_twilio_shaped_400() {
    let app = hardened().await;
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connects");
    let request = format!(
        "POST /v1/PushNotifications HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
        basic(&app)
    );
    stream.write_all(request.as_bytes()).await.expect("sent");
    let (status, _, body) = read_response(&mut stream, Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_twilio_shaped(status, &body);
}
