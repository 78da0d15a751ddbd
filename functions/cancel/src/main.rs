//! Lambda function `cancel`: `PATCH /v1/PushNotifications/{id}` and
//! `PATCH /v1/PushNotifications/Operations/{operationId}` with `{"status": "CANCELED"}`. Wiring
//! only: the behaviour lives in the shared crates (see `pushgate_glue::functions`).

use pushgate_glue::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(pushgate_glue::functions::cold_start::cancel).await
}
