//! `pushgate-bench-aws`: the serverless path on moto, measured through the Lambda entry points
//! (it asserts nothing; moto is far slower than DynamoDB/SQS, so read the figures as an upper
//! bound of pushgate's own cost plus the emulator's).
//!
//! Per run: one send of 10,000 recipients (half APN, half FCM, with variables) as an HTTP API
//! event through the `send` handler — time to 202, event parsing included — and the chunks it
//! queued, received back from SQS as a cross-check. Dispatch throughput is not measured here:
//! moto deep-copies its tables on every `TransactWriteItems` (to roll back), so its cost grows with
//! the data and says nothing about DynamoDB (`pushgate-bench` measures the dispatcher in memory).
//!
//! Needs moto: `AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=test
//! AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 cargo run --release -p pushgate-tests --bin
//! pushgate-bench-aws -- [--runs N]`.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use pushgate_api::Function;
use pushgate_tests::lambda_rig::{AwsRig, http_api_event};
use pushgate_tests::{bench_send_body, receive_all};

const RECIPIENTS: usize = 10_000;

#[tokio::main]
async fn main() -> Result<()> {
    let runs: usize = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 3,
        [flag, n] if flag == "--runs" => n.parse().context("--runs takes a number")?,
        _ => bail!("usage: pushgate-bench-aws [--runs N]"),
    };
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        bail!("set AWS_ENDPOINT_URL (and test credentials) to a running moto server");
    }
    let rig = AwsRig::new("bench", |_| {}).await.context("emulator")?;
    rig.create_credentials("main").await;
    let body = bench_send_body(RECIPIENTS);
    let event = http_api_event("POST", "/v1/PushNotifications", "$default", &rig.caller, Some(&body));
    println!("event: {} bytes, {RECIPIENTS} recipients", event.len());
    let mut to_202 = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let (status, _, answer) = rig.invoke(Function::Send, &event).await;
        let accepted = started.elapsed();
        if status != http::StatusCode::ACCEPTED {
            bail!("send answered {status}: {answer}");
        }
        let expected = RECIPIENTS.div_ceil(rig.deps.settings.chunk_size);
        let messages = receive_all(&rig.sqs, &rig.queue_url, expected, 3600).await; // invisible for the later runs
        println!(
            "run {run}: 202 in {:.1} ms; {} of {expected} chunks received back from SQS",
            accepted.as_secs_f64() * 1000.0,
            messages.len()
        );
        to_202.push(accepted.as_secs_f64() * 1000.0);
    }
    to_202.sort_by(f64::total_cmp);
    println!(
        "time to 202 through the send handler on moto: median {:.1} ms (min {:.1}, max {:.1})",
        to_202[to_202.len() / 2],
        to_202[0],
        to_202[to_202.len() - 1]
    );
    Ok(())
}
