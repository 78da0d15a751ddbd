//! Lambda function `operations`: `GET /v1/PushNotifications/Operations[/{id}[/Errors]]`: operations and their errors.
//! Wiring only: the behaviour lives in the shared crates (see `pushgate_glue::functions`).

use pushgate_glue::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(pushgate_glue::functions::cold_start::operations).await
}
