//! The design brief's promises, proven by driving the use cases directly.

use pushgate_tests::commands;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pushgate_api::{ApiConfig, router};
use pushgate_core::app::dispatch::{ChunkResult, process_chunk};
use pushgate_core::app::ports::{NotificationFilter, OperationFilter, PageRequest};

use pushgate_core::domain::{NotificationStatus, OperationId, OperationStatus};
use pushgate_fakes::keys::fcm_service_account;
use pushgate_fakes::{ApnsReply, FakeApns, FakeFcm, FcmReply};
use pushgate_tests::{ManualQueue, ProviderRig, apn_token, fcm_credential_body, fcm_token, provider_rig};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Rig {
    deps: pushgate_core::app::Deps,
    account: pushgate_core::domain::AccountId,
    token: pushgate_core::domain::AuthToken,
    queue: Arc<ManualQueue>,
    apns: FakeApns,
    fcm: FakeFcm,
}

async fn rig() -> Rig {
    let queue = Arc::new(ManualQueue::default());
    let ProviderRig { deps, account, token, apns, fcm } = provider_rig(queue.clone(), |_| {}).await;
    Rig { deps, account, token, queue, apns, fcm }
}

fn mixed(n: usize) -> Value {
    let to: Vec<Value> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                json!({"token": apn_token(i), "provider": "APN", "variables": {"i": i}})
            } else {
                json!({"token": fcm_token(i), "provider": "FCM", "variables": {"i": i}})
            }
        })
        .collect();
    json!({"to": to, "content": {"title": "n{{ i }}"}})
}

#[tokio::test]
async fn a_queue_failure_gives_503_with_retry_after_and_leaves_no_operation_behind() {
    let rig = rig().await;
    rig.queue.fail.store(true, Ordering::SeqCst);
    let app = router(rig.deps.clone(), ApiConfig::default());
    let request = http::Request::post("/v1/PushNotifications")
        .header("content-type", "application/json")
        .header("authorization", basic(&rig.account.to_string(), rig.token.expose()))
        .body(axum::body::Body::from(mixed(4).to_string()))
        .expect("request");
    let response = app.oneshot(request).await.expect("answered");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let page = PageRequest { size: 10, cursor: None };
    let ops = rig.deps.push.list_operations(&rig.account, &OperationFilter::default(), &page).await.expect("listed");
    assert!(ops.items.is_empty(), "no operation survives a failed enqueue");
    assert_eq!(rig.apns.received().len() + rig.fcm.received().len(), 0, "nothing was sent");
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn processing_the_same_chunks_twice_sends_nothing_twice() {
    let rig = rig().await;
    let op = commands::send(&rig.deps, &rig.account, mixed(120)).await.expect("accepted");
    let chunks = rig.queue.take();
    assert!(chunks.len() > 1, "the test settings split 120 recipients into several chunks");
    for chunk in &chunks {
        assert_eq!(process_chunk(&rig.deps, chunk, 1).await, ChunkResult::Done);
    }
    for chunk in &chunks {
        assert_eq!(process_chunk(&rig.deps, chunk, 2).await, ChunkResult::Done);
    }
    assert_eq!(rig.apns.received().len(), 60);
    assert_eq!(rig.fcm.received().len(), 60);
    let operation = rig.deps.push.get_operation(&rig.account, op).await.expect("read").expect("exists");
    assert_eq!(operation.status, OperationStatus::Completed);
    assert_eq!(operation.stats.sent, 120, "stats count each notification once");
    assert!(operation.stats.adds_up());
}

#[tokio::test]
async fn the_same_chunk_delivered_to_two_dispatchers_at_once_sends_each_notification_once() {
    let rig = rig().await;
    let op = commands::send(&rig.deps, &rig.account, mixed(40)).await.expect("accepted");
    let chunks = rig.queue.take();
    let mut tasks = Vec::new();
    for chunk in chunks.iter().chain(chunks.iter()) {
        let deps = rig.deps.clone();
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move { process_chunk(&deps, &chunk, 1).await }));
    }
    let mut retries = Vec::new();
    for (task, chunk) in tasks.into_iter().zip(chunks.iter().chain(chunks.iter())) {
        if let ChunkResult::RetryAfter(_) = task.await.expect("task") {
            retries.push(chunk.clone());
        }
    }
    // A dispatcher that found a notification claimed by the other gives its chunk back; the
    // redelivery finds everything final.
    for chunk in retries {
        assert_eq!(process_chunk(&rig.deps, &chunk, 2).await, ChunkResult::Done);
    }
    assert_eq!(rig.apns.received().len() + rig.fcm.received().len(), 40);
    let operation = rig.deps.push.get_operation(&rig.account, op).await.expect("read").expect("exists");
    assert_eq!(operation.stats.sent, 40);
}

/// A dispatcher killed in the middle of a chunk leaves its lease held: a redelivery before the
/// lease expires gives the chunk back; the one after takes it over, reads what the dead one
/// stored and delivers only the rest. What the dead one had delivered but not yet stored (at
/// most one batch of decided notifications plus the deliveries in flight) is delivered again —
/// the at-least-once edge — and everything else exactly once; the stats count each
/// notification once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_chunk_is_taken_over_after_its_lease_and_resends_at_most_what_it_had_not_stored() {
    let queue = Arc::new(ManualQueue::default());
    let in_flight = 4;
    let ProviderRig { deps, account, fcm, .. } = provider_rig(queue.clone(), |s| {
        s.claim_lease = std::time::Duration::from_secs(1);
        s.delivery_concurrency = in_flight;
        s.chunk_size = 500;
    })
    .await;
    let recipients = 120;
    for i in 0..recipients {
        fcm.script(&fcm_token(i), vec![FcmReply::Delay(std::time::Duration::from_millis(10))]);
    }
    let to: Vec<Value> = (0..recipients).map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    let op = commands::send(&deps, &account, json!({"to": to, "content": {"title": "x"}})).await.expect("accepted");
    let chunks = queue.take();
    assert_eq!(chunks.len(), 1, "one chunk");
    let chunk = chunks[0].clone();

    let doomed = tokio::spawn({
        let (deps, chunk) = (deps.clone(), chunk.clone());
        async move { process_chunk(&deps, &chunk, 1).await }
    });
    while fcm.delivered_count() < 60 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    doomed.abort();
    let _ = doomed.await;
    let delivered_before = fcm.delivered_count();
    assert!(delivered_before < recipients, "killed before the end ({delivered_before})");

    assert!(
        matches!(process_chunk(&deps, &chunk, 2).await, ChunkResult::RetryAfter(_)),
        "the dead dispatcher's lease still holds the chunk"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(process_chunk(&deps, &chunk, 3).await, ChunkResult::Done);

    let operation = deps.push.get_operation(&account, op).await.expect("read").expect("exists");
    assert_eq!(operation.status, OperationStatus::Completed);
    assert_eq!(operation.stats.sent, recipients as u64, "{:?}", operation.stats);
    assert!(operation.stats.adds_up());
    // Deliveries the provider accepted (a request cut off by the kill may reach the fake
    // half-written and be refused: that is no delivery).
    let mut per_token = std::collections::HashMap::<String, usize>::new();
    for request in fcm.delivered() {
        *per_token.entry(request.device_token).or_default() += 1;
    }
    assert!((0..recipients).all(|i| per_token.contains_key(&fcm_token(i))), "every recipient delivered");
    assert_eq!(per_token.len(), recipients, "nothing but the recipients");
    let again = per_token.values().filter(|n| **n > 1).count();
    let bound = pushgate_core::app::dispatch::DECIDED_BATCH + in_flight;
    assert!(again <= bound, "{again} delivered twice; at most {bound} were decided and not yet stored");
    let filter = NotificationFilter { operation_id: Some(op), ..Default::default() };
    let listed = deps
        .push
        .list_notifications(&account, &filter, &PageRequest { size: 1000, cursor: None })
        .await
        .expect("listed");
    assert_eq!(listed.items.len(), recipients, "one notification per recipient");
    assert!(listed.items.iter().all(|n| n.status == NotificationStatus::Sent));
}

#[tokio::test]
async fn a_chunk_of_an_operation_that_was_never_accepted_sends_nothing() {
    let rig = rig().await;
    let op = commands::send(&rig.deps, &rig.account, mixed(10)).await.expect("accepted");
    // As if enqueueing had failed after some chunks made it: send discards the operation.
    rig.deps.push.discard_operation(&rig.account, op).await.expect("discarded");
    for chunk in rig.queue.take() {
        assert_eq!(process_chunk(&rig.deps, &chunk, 1).await, ChunkResult::Done);
    }
    assert_eq!(rig.apns.received().len() + rig.fcm.received().len(), 0);
}

#[tokio::test]
async fn every_recipient_ends_in_exactly_one_final_status_and_the_stats_add_up() {
    let rig = rig().await;
    for i in (0..200).step_by(10) {
        rig.apns.script(&apn_token(i), vec![ApnsReply::Unregistered]);
    }
    for i in (1..200).step_by(14) {
        rig.fcm.script(&fcm_token(i), vec![FcmReply::Unavailable, FcmReply::InvalidToken]);
    }
    let op = commands::send(&rig.deps, &rig.account, mixed(200)).await.expect("accepted");
    for chunk in rig.queue.take() {
        let mut receive = 1;
        while let ChunkResult::RetryAfter(_) = process_chunk(&rig.deps, &chunk, receive).await {
            receive += 1;
        }
    }
    let operation = rig.deps.push.get_operation(&rig.account, op).await.expect("read").expect("exists");
    assert_eq!(operation.status, OperationStatus::Completed);
    let s = operation.stats;
    assert_eq!(s.total, 200);
    assert!(s.adds_up(), "{s:?}");
    assert_eq!(s.failed, 20 + 15, "{s:?}");
    assert_eq!(s.sent, 200 - 35);

    let filter = NotificationFilter { operation_id: Some(op), ..Default::default() };
    let all = rig
        .deps
        .push
        .list_notifications(&rig.account, &filter, &PageRequest { size: 1000, cursor: None })
        .await
        .expect("listed");
    assert_eq!(all.items.len(), 200, "one notification per recipient, no more");
    assert!(all.items.iter().all(|n| n.status.is_final()));
    let failed = all.items.iter().filter(|n| n.status == NotificationStatus::Failed).count() as u64;
    assert_eq!(failed, s.failed);
}

#[tokio::test]
async fn an_operation_with_only_unaddressable_recipients_completes_at_once() {
    let rig = rig().await;
    let body =
        json!({"to": [{"userId": "comms_pushnotificationuser_01h9krwprkeee8fzqspvwy6nq8"}], "content": {"title": "x"}});
    let op: OperationId = commands::send(&rig.deps, &rig.account, body).await.expect("accepted");
    let operation = rig.deps.push.get_operation(&rig.account, op).await.expect("read").expect("exists");
    assert_eq!(operation.status, OperationStatus::Completed);
    assert_eq!((operation.stats.total, operation.stats.unaddressable), (0, 1));
    assert!(rig.queue.take().is_empty());
}

#[tokio::test]
async fn shutdown_drains_queued_chunks_before_the_process_exits() {
    let apns = FakeApns::start_h2c().await;
    let fcm = FakeFcm::start_h2c().await;
    let sa = fcm_service_account("pushgate-test", &fcm.token_uri());
    fcm.register_service_account(&sa);
    let mut config = pushgate_tests::test_config();
    config.providers.apns_endpoint = Some(apns.base_url());
    config.providers.fcm_endpoint = Some(fcm.base_url());
    config.providers.fcm_token_uris = vec![fcm.token_uri()];
    let app = pushgate_local::build(&config).expect("builds");
    let (account, token) = (app.account.to_string(), app.token.expose().to_owned());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(
        listener,
        async move {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(20),
    ));
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/v1/PushNotifications/Credentials"))
        .basic_auth(&account, Some(&token))
        .json(&fcm_credential_body(&sa, "drain"))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 202);
    for i in 0..20 {
        fcm.script(&fcm_token(i), vec![FcmReply::Delay(std::time::Duration::from_secs(1))]);
    }
    let to: Vec<Value> = (0..20).map(|i| json!({"token": fcm_token(i), "provider": "FCM"})).collect();
    let accepted = client
        .post(format!("{base}/v1/PushNotifications"))
        .basic_auth(&account, Some(&token))
        .json(&json!({"to": to, "content": {"title": "x"}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(accepted.status(), 202);
    // Stop right away: deliveries are still in flight (each takes 1 s at the fake).
    assert!(fcm.delivered_count() < 20);
    stop.send(()).expect("server running");
    server.await.expect("server task").expect("server ran");
    assert_eq!(fcm.delivered_count(), 20, "every accepted notification was delivered before exit");
    let _ = apns;
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight_and_does_not_wait_for_idle_connections() {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let fcm = FakeFcm::start_h2c().await;
    let sa = fcm_service_account("pushgate-test", &fcm.token_uri());
    let mut config = pushgate_tests::test_config();
    config.providers.fcm_endpoint = Some(fcm.base_url());
    config.providers.fcm_token_uris = vec![fcm.token_uri()];
    let app = pushgate_local::build(&config).expect("builds");
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", app.account, app.token.expose()))
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(
        listener,
        async move {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(5),
    ));
    // Two idle connections (one silent, one after a request) and one request whose body is half
    // sent when the shutdown comes.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let mut kept_alive = tokio::net::TcpStream::connect(addr).await.expect("connects");
    kept_alive.write_all(b"GET /v1/PushNotifications/Apps HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("sent");
    let mut buf = [0u8; 4096];
    assert!(kept_alive.read(&mut buf).await.expect("an answer") > 0);
    let body = fcm_credential_body(&sa, "shutdown").to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut busy = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "POST /v1/PushNotifications/Credentials HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).await.expect("head");
    busy.write_all(first).await.expect("half the body");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    stop.send(()).expect("server running");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!server.is_finished(), "the server waits for the request in flight");
    busy.write_all(rest).await.expect("the rest of the body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), busy.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "the request in flight was answered: {answer}");
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("idle connections did not hold the shutdown")
        .expect("server task")
        .expect("server ran");
}
