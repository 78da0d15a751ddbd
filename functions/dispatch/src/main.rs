//! Lambda function `dispatch`: the SQS consumer: delivers queued chunks to APNs and FCM and reports per-message failures.
//! Wiring only: the behaviour lives in the shared crates (see `pushgate_glue::lambda`).

use pushgate_glue::lambda::{Error, init_logging, run_dispatch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_dispatch().await
}
