//! `pushgate-capacity`: what one notification costs on AWS today, measured (issue 11, step 1).
//!
//! Starts the metering proxy (`pushgate_tests::meter`) in front of moto, runs `pushgate-local`'s
//! AWS mode on it in a child process (this executable again, with fresh tables, queue and key),
//! creates an APN and an FCM credential against the fake providers, sends N mixed recipients
//! (half APN, half FCM device tokens, each with template variables; Liquid in the content; 2
//! tags) through the API, lets the in-process SQS consumers deliver everything until the
//! Operation is COMPLETED, and prints: DynamoDB write and read request units and calls per
//! notification (total, by table/index and API), the busiest partition key and item and the
//! ceilings they imply at 1,000 WCU/s and 3,000 RCU/s per partition key, SQS/KMS/Scheduler calls
//! per notification, Lambda GB-seconds per notification from pushgate's measured CPU time, and
//! dollars per million notifications at the public on-demand prices (printed with their date),
//! plus the storage a notification occupies for its 7 days. It asserts nothing.
//!
//! moto enforces no limit and reports no real consumed capacity: every unit is computed by the
//! proxy from DynamoDB's published sizing rules (`meter::size`). Set-up is not metered.
//!
//! `--write-budget-wcu N` runs the send under the fault layer (`meter::fault`): N write units
//! per second per partition key (`--burst-seconds S` of burst, default 1; `--conflicts off`
//! leaves concurrent transactions alone), answered with DynamoDB's throttling and conflict
//! errors; the report then adds what was throttled or conflicted and the time the send took
//! beside the time the meter predicts at that budget.
//!
//! Needs moto: `AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=test
//! AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 cargo run --release -p pushgate-tests --bin
//! pushgate-capacity -- [--recipients N] [--workers N] [--memory-mb MB] [--write-budget-wcu N
//! [--burst-seconds S] [--conflicts on|off]]` (defaults: 200 recipients, 4 queue consumers,
//! 512 MB functions, no fault layer).

use anyhow::{Context as _, Result, bail};
use pushgate_tests::meter::fault::FaultConfig;
use pushgate_tests::meter::report::Report;
use pushgate_tests::meter::run::{Plan, SERVE_ARG, measure, serve_local_aws};

/// The allocator `pushgate-local` runs with, so the CPU time measured is the one it spends.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(SERVE_ARG) {
        return serve_local_aws().await;
    }
    let (mut recipients, mut workers, mut memory_mb) = (200usize, 4usize, 512u64);
    let (mut budget, mut burst, mut conflicts) = (None::<f64>, 1.0f64, true);
    let usage = "usage: pushgate-capacity [--recipients N] [--workers N] [--memory-mb MB] [--write-budget-wcu N \
                 [--burst-seconds S] [--conflicts on|off]]";
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().with_context(|| format!("{flag} takes a number"))?;
        match flag.as_str() {
            "--recipients" => recipients = value.parse().context("--recipients takes a number")?,
            "--workers" => workers = value.parse().context("--workers takes a number")?,
            "--memory-mb" => memory_mb = value.parse().context("--memory-mb takes a number")?,
            "--write-budget-wcu" => budget = Some(value.parse().context("--write-budget-wcu takes a number")?),
            "--burst-seconds" => burst = value.parse().context("--burst-seconds takes a number")?,
            "--conflicts" => {
                conflicts = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => bail!("--conflicts takes on or off"),
                }
            }
            _ => bail!(usage),
        }
    }
    if !(1..=10_000).contains(&recipients) || workers == 0 {
        bail!("--recipients takes 1 to 10000, --workers at least 1");
    }
    if budget.is_some_and(|b| b <= 0.0) || burst <= 0.0 {
        bail!("--write-budget-wcu and --burst-seconds take positive numbers");
    }
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        bail!("set AWS_ENDPOINT_URL (and test credentials) to a running moto server");
    }
    let exe = std::env::current_exe().context("this executable's path")?;
    let mut plan = Plan::new(recipients, workers);
    if let Some(wcu) = budget {
        plan = plan.with_faults(FaultConfig { burst_seconds: burst, conflicts, ..FaultConfig::write_budget(wcu) });
    }
    let measurement = measure(&exe, &plan).await?;
    print!("{}", Report::new(&measurement, memory_mb).render(&measurement));
    Ok(())
}
