//! Lambda function `send`: `POST /v1/PushNotifications`: validates a send, stores its Operation and queues its chunks.
//! Wiring only: the behaviour lives in the shared crates (see `pushgate_glue::functions`).

use pushgate_glue::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(pushgate_glue::functions::cold_start::send).await
}
